"""Many LL-HLS viewers in one process: what a low-latency player asks a node for, N times over.

Each client (an asyncio task with its own keep-alive HTTP/1.1 connection: a minimal client on
asyncio streams, because httpx costs ~5 ms of CPU per request and the load generator shares the
machine with the node) does what hls.js does in low-latency mode, minus the decoding:

1. a plain playlist request (where is the live edge);
2. forever: a blocking reload for the part after the newest one it knows
   (``?_HLS_msn=M&_HLS_part=P``), then a GET of every part the playlist lists that it has not
   fetched yet.

Per part received it records the **delivery latency**: the time the client had the whole part
minus the time the part became available at the server (``X-Published``; client and server share
this machine's clock), and the **age** of the part's newest media at reception: received minus
(segment's EXT-X-PROGRAM-DATE-TIME + the durations of the parts before it + its own duration),
i.e. composition of the part's last frame → bytes at the viewer. A player shows media
PART-HOLD-BACK behind the live edge, so glass-to-glass ≈ capture→composition + age + hold-back.

Errors: any non-200 answer or exception is counted. *Missing*: parts a client saw listed after its
first playlist but never fetched (they must be 0: every viewer got every part).
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

_PDT = re.compile(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)")
_PART = re.compile(r'#EXT-X-PART:DURATION=([0-9.]+),URI="([^"]+)"')
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="[0-9a-f]{8}_(\d+)\.(\d+)\.m4s"')
_NAME = re.compile(r"[0-9a-f]{8}_(\d+)\.(\d+)\.m4s")


@dataclass
class ClientResult:
    parts: int = 0
    bytes: int = 0
    errors: int = 0
    missing: int = 0
    delivery: list[float] = field(default_factory=list)
    age: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)


class HttpError(Exception):
    pass


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Connection:
    """One keep-alive HTTP/1.1 connection (GET only, Content-Length bodies: what the console sends);
    reconnects after a failure."""

    def __init__(self, url: str, cookies: dict[str, str] | None, timeout: float = 15.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        cookie = "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())
        self.head = f"Host: {self.host}:{self.port}\r\n" + (f"Cookie: {cookie}\r\n" if cookie else "")
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, params: dict[str, str] | None = None) -> Reply:
        if params:
            path += "?" + urlencode(params)
        try:
            return await asyncio.wait_for(self._get(path), self.timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            await self.close()
            raise HttpError(type(exc).__name__) from exc

    async def _get(self, path: str) -> Reply:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.head}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, headers, body)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.reader = None


def _parse_dates(text: str) -> dict[str, tuple[float, float]]:
    """Part name -> (date of its last media sample end, duration), from the playlist's PDT lines."""
    out: dict[str, tuple[float, float]] = {}
    date = 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            date = datetime.strptime(line.split(":", 1)[1], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        elif line.startswith("#EXT-X-PART:"):
            match = _PART.match(line)
            if match:
                duration = float(match.group(1))
                date += duration
                out[match.group(2)] = (date, duration)
    return out


async def viewer(client: Connection, base: str, stop_at: float, result: ClientResult) -> None:
    fetched: set[str] = set()
    listed: set[str] = set()
    first = True
    next_part: tuple[int, int] | None = None

    def fail(kind: str) -> None:
        result.errors += 1
        result.error_kinds[kind] = result.error_kinds.get(kind, 0) + 1

    while time.time() < stop_at:
        params = {} if next_part is None else {"_HLS_msn": str(next_part[0]), "_HLS_part": str(next_part[1])}
        try:
            r = await client.get(base + "index.m3u8", params)
        except HttpError as exc:
            fail(str(exc))
            await asyncio.sleep(0.2)
            continue
        if r.status_code != 200:
            fail(f"playlist {r.status_code}")
            await asyncio.sleep(0.2)
            continue
        text = r.text
        dates = _parse_dates(text)
        names = list(dates)
        if first:  # start at the live edge: what was listed before is not ours to fetch
            fetched.update(names)
            first = False
        else:
            listed.update(names)
        hint = _HINT.search(text)
        if hint:
            next_part = (int(hint.group(1)), int(hint.group(2)))
        for name in names:
            if name in fetched:
                continue
            if time.time() >= stop_at:  # the run is over: not missing, just not asked for
                listed.discard(name)
                continue
            try:
                p = await client.get(base + name)
            except HttpError as exc:
                fail(str(exc))
                continue
            received = time.time()
            if p.status_code != 200:
                fail(f"part {p.status_code}")
                continue
            fetched.add(name)
            result.parts += 1
            result.bytes += len(p.content)
            published = p.headers.get("x-published")
            if published:
                result.delivery.append(received - float(published))
            result.age.append(received - dates[name][0])
    result.missing = len(listed - fetched)


async def run_viewers(url: str, base_path: str, n: int, seconds: float, *, cookies: dict[str, str] | None = None,
                      ramp_s: float = 1.0) -> dict[str, Any]:
    """``n`` viewers of ``url + base_path`` (ending in ``/``) for ``seconds``; summary figures."""
    results = [ClientResult() for _ in range(n)]
    connections = [Connection(url, cookies) for _ in range(n)]
    start = time.time()
    stop_at = start + seconds
    tasks = []
    try:
        for i, (result, connection) in enumerate(zip(results, connections, strict=True)):
            tasks.append(asyncio.create_task(viewer(connection, base_path, stop_at, result)))
            if ramp_s and i % 50 == 49:
                await asyncio.sleep(ramp_s * 50 / n)
        await asyncio.gather(*tasks)
    finally:
        for connection in connections:
            await connection.close()
    delivery = sorted(d for r in results for d in r.delivery)
    age = sorted(a for r in results for a in r.age)

    def pct(values: list[float], q: float) -> float | None:
        return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1) if values else None

    errors: dict[str, int] = {}
    for r in results:
        for kind, count in r.error_kinds.items():
            errors[kind] = errors.get(kind, 0) + count
    return {"clients": n, "seconds": seconds, "parts": sum(r.parts for r in results),
            "parts_per_client_min": min(r.parts for r in results), "bytes": sum(r.bytes for r in results),
            "errors": sum(r.errors for r in results), "error_kinds": errors,
            "missing": sum(r.missing for r in results),
            "delivery_ms": {"p50": pct(delivery, 0.5), "p95": pct(delivery, 0.95), "max": pct(delivery, 1.0)},
            "age_ms": {"p50": pct(age, 0.5), "p95": pct(age, 0.95)}}
