"""Input guards shared by every route: no NUL characters, bounded bodies, anonymous rate limits.

* **NUL** (U+0000): PostgreSQL's text and jsonb cannot store it, so a NUL that reaches the
  database fails the statement (asyncpg ``CharacterNotInRepertoireError`` /
  ``UntranslatableCharacterError``) and used to surface as a 500. Every request model derives
  from :class:`ApiModel`, whose one validator refuses a NUL in any text field with a 422 naming
  the field; :func:`nul_in_url` does the same for the URL path and the query string; raw bodies
  (AML, EIDO, AVL) are checked with :func:`nul_path`. A database error of that kind that slips
  through anyway is answered 422 by the app's handler, never 500.
* **Body size**: :class:`BodyLimit` (``http.max_body_bytes``, 1 MiB): 413 as soon as the declared
  length or the bytes read pass the limit, before the whole body is read.
* **Anonymous rate limit**: :class:`TokenBucket`, a pure per-key token bucket (time passed in).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationInfo, field_validator
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NUL = "\x00"


def nul_path(value: Any, path: str = "") -> str | None:
    """Where in `value` (str, list, tuple, dict keys and values) a NUL character is, or None.

    The answer names the place like ``sites[2]`` or ``detail.note``; the empty string is `value` itself.
    """
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = nul_path(item, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and NUL in key:
                return where
            found = nul_path(item, where)
            if found is not None:
                return found
    return None


def nul_message(field: str) -> str:
    return f"字段 {field} 含有 NUL 字符 (U+0000)，不能保存 (field {field!r} contains a NUL character)"


class ApiModel(BaseModel):
    """Base of every request model: no text field (however nested) may contain a NUL character."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any, info: ValidationInfo) -> Any:
        where = nul_path(value)
        if where is not None:
            raise ValueError(nul_message(f"{info.field_name}{where if where.startswith('[') else ''}"))
        return value


def nul_error(loc: list[str | int], field: str) -> JSONResponse:
    """The 422 answer for a NUL found outside a model, shaped like a validation error."""
    return JSONResponse({"detail": [{"loc": loc, "msg": nul_message(field), "type": "nul_character"}]},
                        status_code=422)


def nul_in_url(scope: Scope) -> JSONResponse | None:
    """422 naming the place when the URL path or a query parameter holds a NUL character.

    Called by `RoleFirstRoute` after the role check (so a stranger still gets 401/403 first)."""
    if NUL in scope.get("path", ""):
        return nul_error(["path"], "path")
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" in query or NUL in query:
        for name, value in parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"):
            if NUL in name or NUL in value:
                shown = name.replace(NUL, "\\u0000")
                return nul_error(["query", shown], shown)
    return None


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBucket:
    """Per-key token buckets: `burst` requests at once, refilled at `rate` per second.

    Pure: the caller passes the time. Keys idle long enough to be full again are forgotten, so
    the table stays as small as the set of recently active keys (at most `max_keys`: beyond that
    the oldest are dropped).
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float:
        """Spend one token of `key`: 0.0 when allowed, else the seconds until one is available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after_header(wait: float) -> str:
        return str(max(1, math.ceil(wait)))

    def _forget(self, now: float) -> None:
        full_after = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.at >= full_after]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]


def too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"请求体过大，上限 {limit} 字节 (request body larger than {limit} bytes)"},
                        status_code=413)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the bytes read pass the limit (an HTTPException, so FastAPI's
    body parsing lets it through and the app's handler answers 413)."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="request body too large")


class BodyLimit:
    """ASGI middleware: request bodies larger than `limit` bytes get 413 before they are read.

    A declared Content-Length over the limit is answered at once, without reading a byte of the
    body; a body without a declared length (chunked) or longer than declared is counted as it
    arrives and refused as soon as it passes the limit. Routes that legitimately take more (none
    today) would get a larger limit by path in `larger`.
    """

    def __init__(self, app: ASGIApp, limit: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.larger = larger or {}

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.larger.items() if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await too_large(limit)(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await too_large(limit)(scope, receive, send)
