"""Backups and point-in-time recovery: a thin wrapper of pgBackRest (`commandcenter backup ...`).

pgBackRest does the work (full/incremental/differential backups, WAL archiving through the
cluster's `archive_command`, restore to a moment); we only build its command lines, read its
`info --output=json`, and check the operator's input first:

- `backup_argv(...)`, `restore_argv(...)`, `info_argv(...)`: the pgbackrest command lines (pure);
- `parse_backups(text, stanza)`: the backup sets of `pgbackrest info --output=json` (pure);
- `parse_target_time(text)`: a restore target must be an ISO-8601 time *with* a UTC offset
  (a restore to the wrong time zone is eight hours of lost or extra data); pure;
- `S3Repository`: the repository on the S3-compatible store (`repo1-type=s3`); `conf_lines()`
  for pgbackrest.conf, `environment()` for the command line we start (pgBackRest reads
  `PGBACKREST_REPO1_*`), so the key and secret never appear in an argv (`ps`) or a message;
- `PgBackRest.run(argv)`: runs it, as the database's system user when started as root (pgBackRest
  and the archive_command must own the same repository files).
"""
from __future__ import annotations

import json
import os
import pwd
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BACKUP_TYPES = ("full", "diff", "incr")


class BackupError(ValueError):
    """Bad input for a backup command, or pgBackRest failed (the message says which)."""


@dataclass(frozen=True)
class BackupSet:
    label: str
    type: str
    started: datetime
    stopped: datetime
    database_bytes: int
    repo_bytes: int
    prior: str | None


@dataclass(frozen=True)
class S3Repository:
    """pgBackRest's repository 1 on an S3-compatible store (the recorder's, or one at the other site).

    TLS is always used (pgBackRest speaks only HTTPS to S3) and verified by default: against the
    system's CAs, or `ca_file` for a store with its own CA. `verify_tls=False` is for a local test
    store only. The key and secret are kept out of `repr`."""

    endpoint: str
    bucket: str
    region: str
    key: str = field(repr=False)
    key_secret: str = field(repr=False)
    port: int | None = None
    path: str = "/pgbackrest"
    uri_style: str = "path"
    verify_tls: bool = True
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        for name, value in (("endpoint", self.endpoint), ("bucket", self.bucket), ("region", self.region),
                            ("key", self.key), ("key_secret", self.key_secret), ("path", self.path)):
            if not value or any(c in value for c in "\r\n\0"):
                raise BackupError(f"S3 repository: {name} is empty or holds a line break")
        if "://" in self.endpoint or "/" in self.endpoint:
            raise BackupError(f"S3 repository: endpoint is a host name, not a URL: {self.endpoint!r}")
        if self.uri_style not in ("path", "host"):
            raise BackupError("S3 repository: uri_style must be path or host")
        if self.port is not None and not 0 < self.port < 65536:
            raise BackupError(f"S3 repository: bad port {self.port}")
        if not self.path.startswith("/"):
            raise BackupError("S3 repository: path must start with /")

    def options(self) -> dict[str, str]:
        """pgBackRest's option names and values (secrets included: for a file or environment only)."""
        opts = {"repo1-type": "s3", "repo1-s3-endpoint": self.endpoint, "repo1-s3-bucket": self.bucket,
                "repo1-s3-region": self.region, "repo1-s3-key": self.key, "repo1-s3-key-secret": self.key_secret,
                "repo1-s3-uri-style": self.uri_style, "repo1-path": self.path,
                "repo1-storage-verify-tls": "y" if self.verify_tls else "n"}
        if self.port is not None:
            opts["repo1-storage-port"] = str(self.port)
        if self.ca_file is not None:
            opts["repo1-storage-ca-file"] = str(self.ca_file)
        return opts

    def conf_lines(self) -> list[str]:
        """The `[global]` lines of pgbackrest.conf (the archive_command reads the file)."""
        return [f"{k}={v}" for k, v in self.options().items()]

    def environment(self) -> dict[str, str]:
        """The same options as pgBackRest environment variables (`PGBACKREST_REPO1_S3_KEY=...`)."""
        return {"PGBACKREST_" + k.upper().replace("-", "_"): v for k, v in self.options().items()}

    def redact(self, text: str) -> str:
        """`text` with the key and secret replaced (a message that might quote them)."""
        return text.replace(self.key_secret, "[secret]").replace(self.key, "[key]")


def parse_target_time(text: str) -> datetime:
    """An aware datetime from ISO-8601 text with an offset (`2026-12-07T08:30:00+08:00`)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BackupError(f"not a time: {text!r} (use ISO 8601, e.g. 2026-12-07T08:30:00+08:00)") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise BackupError(f"the time {text!r} has no UTC offset (add e.g. +08:00)")
    return when


def _base(pgbackrest: str, config: Path | None, stanza: str) -> list[str]:
    argv = [pgbackrest]
    if config is not None:
        argv.append(f"--config={config}")
    argv.append(f"--stanza={stanza}")
    return argv


def backup_argv(pgbackrest: str, config: Path | None, stanza: str, kind: str) -> list[str]:
    if kind not in BACKUP_TYPES:
        raise BackupError(f"backup type must be one of {', '.join(BACKUP_TYPES)}, not {kind!r}")
    return [*_base(pgbackrest, config, stanza), "backup", f"--type={kind}"]


def info_argv(pgbackrest: str, config: Path | None, stanza: str) -> list[str]:
    return [*_base(pgbackrest, config, stanza), "info", "--output=json"]


def restore_argv(pgbackrest: str, config: Path | None, stanza: str, target: datetime, pg_path: Path) -> list[str]:
    """Restore into `pg_path` (an empty directory: a fresh cluster) up to `target`, then promote.

    pgBackRest restores from the newest backup whose stop time, kept in whole seconds, is before
    `target`: a target in the same second as a backup's end uses the backup before it, or fails
    with "unable to find backup set" when there is none."""
    if target.tzinfo is None:
        raise BackupError("the restore target needs a UTC offset")
    stamp = target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return [*_base(pgbackrest, config, stanza), "restore", f"--pg1-path={pg_path}", "--type=time",
            f"--target={stamp}", "--target-action=promote"]


def _when(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def parse_backups(text: str, stanza: str) -> list[BackupSet]:
    """The backup sets of `stanza` in `pgbackrest info --output=json` output, oldest first."""
    try:
        stanzas = json.loads(text)
        entry = next(s for s in stanzas if s.get("name") == stanza)
        # pgBackRest exits 0 and reports a repository it cannot read (TLS, credentials, missing
        # bucket) only here: code 0 ok, 2 no backups yet; anything else is an error to show
        status = entry.get("status") or {}
        if int(status.get("code", 0)) not in (0, 2):
            details = [str((r.get("status") or {}).get("message", "")) for r in entry.get("repo", [])]
            raise BackupError("pgBackRest cannot read the repository: "
                              + ("; ".join(d for d in details if d) or str(status.get("message", "unknown"))))
        return [BackupSet(
            label=str(b["label"]), type=str(b["type"]),
            started=_when(int(b["timestamp"]["start"])), stopped=_when(int(b["timestamp"]["stop"])),
            database_bytes=int(b["info"]["size"]), repo_bytes=int(b["info"]["repository"]["delta"]),
            prior=b.get("prior")) for b in entry.get("backup", [])]
    except StopIteration:
        raise BackupError(f"pgBackRest knows no stanza {stanza!r}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"unreadable pgBackRest info: {exc}") from None


class PgBackRest:
    """Runs pgbackrest for one stanza (as `run_as` when this process is root)."""

    def __init__(self, stanza: str, config: Path | None = None, run_as: str = "postgres",
                 pgbackrest: str = "pgbackrest", timeout: float = 6 * 3600.0, *,
                 repository: S3Repository | None = None) -> None:
        self.stanza, self.config, self.run_as, self.pgbackrest, self.timeout = stanza, config, run_as, pgbackrest, timeout
        self.repository = repository  # None: the repository of pgbackrest.conf

    def run(self, argv: list[str]) -> str:
        """Run `argv`; its standard output, or BackupError with pgBackRest's own message."""
        user: int | None = None
        group: int | None = None
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(self.run_as)
            except KeyError:
                raise BackupError(f"system user {self.run_as!r} does not exist") from None
            user, group = account.pw_uid, account.pw_gid
        env = None
        if self.repository is not None:  # overrides the file's repo1 options; never on the command line
            env = {k: v for k, v in os.environ.items() if not k.startswith("PGBACKREST_REPO1_")}
            env.update(self.repository.environment())
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, user=user, group=group,
                                    extra_groups=[] if user is not None else None, cwd="/", env=env)
        except FileNotFoundError:
            raise BackupError(f"{argv[0]} is not installed (Debian package pgbackrest)") from None
        except subprocess.TimeoutExpired:
            raise BackupError(f"pgbackrest did not finish within {self.timeout:.0f} s") from None
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            text = "pgbackrest failed: " + (" | ".join(message[-3:]) or f"exit {result.returncode}")
            raise BackupError(self.repository.redact(text) if self.repository is not None else text)
        return result.stdout

    def backup(self, kind: str) -> None:
        self.run(backup_argv(self.pgbackrest, self.config, self.stanza, kind))

    def backups(self) -> list[BackupSet]:
        return parse_backups(self.run(info_argv(self.pgbackrest, self.config, self.stanza)), self.stanza)

    def restore(self, target: datetime, pg_path: Path) -> None:
        """Restore into a fresh, empty `pg_path` (owned by `run_as`), to the moment `target`."""
        if pg_path.exists() and any(pg_path.iterdir()):
            raise BackupError(f"{pg_path} is not empty: restore into a fresh directory")
        pg_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            account = pwd.getpwnam(self.run_as)
            os.chown(pg_path, account.pw_uid, account.pw_gid)
        self.run(restore_argv(self.pgbackrest, self.config, self.stanza, target, pg_path))


__all__ = ["BACKUP_TYPES", "BackupError", "BackupSet", "PgBackRest", "S3Repository", "backup_argv", "info_argv",
           "parse_backups", "parse_target_time", "restore_argv"]
