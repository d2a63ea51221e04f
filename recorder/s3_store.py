"""`SegmentStore` on an S3-compatible object store (AWS S3, MinIO, Ceph RGW, moto, ...).

The open segment is still written to a local staging file (PyAV needs a seekable file);
`commit` publishes it:

  1. hash the staging file (SHA-256 and MD5) after an fsync;
  2. one `PutObject` to the final key with `Content-MD5` (the server refuses a body that
     arrived changed) and the SHA-256 as object metadata. S3 makes an object visible only
     when its PUT completed, so an unclean stop during the upload leaves *nothing* under
     the key, never half an object;
  3. `HeadObject` checks what the server holds: size, ETag (= MD5 for a single-part PUT)
     and the SHA-256 metadata. On any mismatch the object is deleted and `S3StoreError`
     raised, the staging file stays for the next try / recovery;
  4. only then is the staging file moved into the local read cache.

Segments are a few MB (6 s at 4 Mbit/s ≈ 3 MB), far below the 5 GB single-PUT limit, so no
multipart upload is needed (and none can be left dangling).

`local_path` returns a copy in a bounded local cache (least recently used evicted); a cached
copy is revalidated against the object's ETag on every call, so a changed object in the
bucket is never hidden by a stale cache (the store audit and the export verifier see it).

Credentials are read from a JSON file under `var/keys` named in the settings
(`{"access_key_id": ..., "secret_access_key": ...}`); the secret is never logged or put in
an exception message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from recorder.store import (
    KEY,
    STAGING,
    StoreError,
    fsync_dir,
    fsync_file,
    parse_key,
    staging_file,
)

CACHE = ".cache"
SHA256_META = "sha256"  # x-amz-meta-sha256


class S3StoreError(RuntimeError):
    """The object store is unreachable, misconfigured, or refused/corrupted an upload."""


@dataclass(frozen=True)
class S3Config:
    """Where segments go. `credentials_file` is a path; the secret itself never sits in config."""

    endpoint_url: str
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    credentials_file: Path | None = None  # None: boto3's default chain (env, instance role, ...)
    cache_max_bytes: int = 2 << 30
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0


def load_s3_credentials(path: Path) -> tuple[str, str]:
    """(access key id, secret) from a JSON file; the error names the file, never the content."""
    try:
        data = json.loads(path.read_text())
        return str(data["access_key_id"]), str(data["secret_access_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise S3StoreError(
            f"S3 凭据文件无法读取 (cannot read S3 credentials {path}: {type(exc).__name__}; "
            'expected JSON {"access_key_id": "...", "secret_access_key": "..."})'
        ) from None


def _digests(path: Path) -> tuple[str, bytes, int]:
    """(SHA-256 hex, MD5 digest, size) of a file in one pass."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.digest(), size


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store:
    """Segments as objects `<prefix><camera>/<day>/<start>-<end>.mp4`; staging and cache on local disk."""

    def __init__(self, config: S3Config, local_root: Path | str) -> None:
        """Connect and check the bucket; raises S3StoreError (nothing is written) if it is not usable."""
        self.config = config
        self.prefix = config.prefix.strip("/") + "/" if config.prefix.strip("/") else ""
        self.root = Path(local_root)  # staging and read cache (local disk)
        self.bucket = config.bucket
        self._cache_lock = threading.Lock()  # camera threads commit concurrently; the cache is shared
        kwargs: dict[str, Any] = {}
        if config.credentials_file is not None:
            key_id, secret = load_s3_credentials(config.credentials_file)
            kwargs = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
        self.client = boto3.client(
            "s3", endpoint_url=config.endpoint_url, region_name=config.region,
            config=BotoConfig(connect_timeout=config.connect_timeout_s, read_timeout=config.read_timeout_s,
                              retries={"max_attempts": 2, "mode": "standard"},
                              s3={"addressing_style": "path"}),
            **kwargs)
        self._check_bucket()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:  # never shows credentials
        return f"S3Store({self.config.endpoint_url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _check_bucket(self) -> None:
        where = f"{self.config.endpoint_url} bucket {self.bucket!r}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("404", "NoSuchBucket"):
                raise S3StoreError(f"S3 存储桶不存在 (bucket does not exist): {where}") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise S3StoreError(f"S3 访问被拒绝，请检查凭据 (access denied, check credentials): {where}") from None
            raise S3StoreError(f"S3 存储不可用 (object store error {code}): {where}") from None
        except BotoCoreError as exc:
            raise S3StoreError(f"S3 存储无法连接 (object store unreachable: {type(exc).__name__}): {where}") from None

    # ---- keys -----------------------------------------------------------------------------------

    def _object(self, key: str) -> str:
        parse_key(key)  # only segment keys reach the bucket
        return self.prefix + key

    def _cache_path(self, key: str) -> Path:
        parse_key(key)
        return self.root / CACHE / key

    # ---- SegmentStore ---------------------------------------------------------------------------

    def staging_path(self, camera: str, name: str) -> Path:
        return staging_file(self.root, camera, name)

    def commit(self, staging: Path, key: str) -> None:
        """Upload, verify what the server holds, then drop the staging file into the cache."""
        name = self._object(key)
        fsync_file(staging)
        sha, md5, size = _digests(staging)
        try:
            with open(staging, "rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=body, ContentLength=size,
                                       ContentMD5=base64.b64encode(md5).decode(), ContentType="video/mp4",
                                       Metadata={SHA256_META: sha})
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise S3StoreError(f"上传失败 (upload of {key} failed: {exc})") from None
        etag = str(head.get("ETag", "")).strip('"')
        problems = []
        if int(head.get("ContentLength", -1)) != size:
            problems.append(f"size {head.get('ContentLength')} != {size}")
        if head.get("Metadata", {}).get(SHA256_META) != sha:
            problems.append("sha256 metadata differs")
        if "-" not in etag and etag != md5.hex():  # a multipart ETag is not an MD5; ours never is multipart
            problems.append(f"etag {etag} != md5 {md5.hex()}")
        if problems:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.delete_object(Bucket=self.bucket, Key=name)
            raise S3StoreError(f"上传校验失败 (upload of {key} not verified: {'; '.join(problems)})")
        self._into_cache(staging, key, etag)

    def open(self, key: str) -> BinaryIO:
        """A streaming reader of the object (FileNotFoundError if absent)."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey"):
                raise FileNotFoundError(key) from None
            raise S3StoreError(f"读取失败 (cannot read {key}: {exc})") from None
        return cast(BinaryIO, response["Body"])

    def local_path(self, key: str) -> Path | None:
        """A cached local copy matching the object's current ETag, or None when there is no object."""
        etag = self._etag(key)
        if etag is None:
            self._drop_cached(key)
            return None
        path = self._cache_path(key)
        tag = path.with_name(path.name + ".etag")
        if path.is_file() and tag.is_file() and tag.read_text() == etag:
            os.utime(path)  # recently used
            return path
        tmp = self.root / CACHE / f".{uuid.uuid4().hex}.part"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._object(key), str(tmp))
        except (ClientError, BotoCoreError):
            tmp.unlink(missing_ok=True)
            return None
        self._into_cache(tmp, key, etag)
        return path

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._object(key))
        except (ClientError, BotoCoreError) as exc:
            raise S3StoreError(f"删除失败 (cannot delete {key}: {exc})") from None
        self._drop_cached(key)

    def exists(self, key: str) -> bool:
        return self._etag(key) is not None

    def size(self, key: str) -> int:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._object(key))["ContentLength"])
        except ClientError as exc:
            raise FileNotFoundError(key) from exc

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Committed segment keys under `prefix` (`camera/` or `camera/day/`), in key order."""
        if prefix and (".." in prefix or prefix.count("/") > 2 or prefix.startswith("/")):
            raise StoreError(f"bad key prefix {prefix!r}")
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                key = str(obj["Key"])[len(self.prefix):]
                if KEY.match(key):
                    yield key

    def recent_keys(self, days: int = 2) -> list[str]:
        """Keys of the newest `days` days per camera (where a crash can leave unindexed objects)."""
        out: list[str] = []
        for camera in self._common_prefixes(self.prefix):
            for day in sorted(self._common_prefixes(self.prefix + camera))[-days:]:
                out.extend(self.keys(camera + day))
        return out

    def _common_prefixes(self, under: str) -> list[str]:
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=under, Delimiter="/"):
            for p in page.get("CommonPrefixes", []):
                part = str(p["Prefix"])[len(under):]
                if not part.startswith("."):
                    found.append(part)
        return found

    def discard_staging(self) -> list[Path]:
        staging = self.root / STAGING
        removed = sorted(p for p in staging.rglob("*") if p.is_file()) if staging.exists() else []
        for p in removed:
            p.unlink()
        cache = self.root / CACHE
        if cache.exists():  # half-downloaded cache files
            for p in cache.glob(".*.part"):
                p.unlink()
        return removed

    def free_bytes(self) -> int:
        """Free space where staging and cache live (the bucket itself has no such limit)."""
        return shutil.disk_usage(self.root).free

    # ---- cache ------------------------------------------------------------------------------------

    def _etag(self, key: str) -> str | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise S3StoreError(f"读取失败 (cannot stat {key}: {exc})") from None
        return str(head.get("ETag", "")).strip('"')

    def _into_cache(self, src: Path, key: str, etag: str) -> None:
        path = self._cache_path(key)
        with self._cache_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, path)
            path.with_name(path.name + ".etag").write_text(etag)
            fsync_dir(path.parent)
            self._evict()

    def _drop_cached(self, key: str) -> None:
        path = self._cache_path(key)
        with self._cache_lock:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".etag").unlink(missing_ok=True)

    def cache_bytes(self) -> int:
        cache = self.root / CACHE
        return sum(p.stat().st_size for p in cache.rglob("*.mp4")) if cache.exists() else 0

    def _evict(self) -> None:
        """Drop least recently used cached copies until the cache fits `cache_max_bytes` (lock held)."""
        cache = self.root / CACHE
        files = sorted(((p.stat().st_mtime, p.stat().st_size, p) for p in cache.rglob("*.mp4")),
                       key=lambda t: t[0])
        total = sum(size for _, size, _ in files)
        for _, size, p in files[:-1]:  # the newest copy stays: a caller is about to read it
            if total <= self.config.cache_max_bytes:
                break
            p.unlink(missing_ok=True)
            p.with_name(p.name + ".etag").unlink(missing_ok=True)
            total -= size
