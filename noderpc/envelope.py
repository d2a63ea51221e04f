"""The node RPC envelope: a signed request and its signed reply (sans-I/O: time is an argument).

Rules:

* A request names its sender, its target node, a method, JSON arguments, an absolute deadline
  (seconds since the epoch) and an idempotency key. It is signed with HMAC-SHA256 over a canonical
  JSON form under the cluster's node secret (settings ``nodes.secret``). The secret never travels.
* The target refuses a request that is malformed, not for it, badly signed (``forged``) or past its
  deadline (``deadline``); a refused request runs nothing.
* A reply carries the request id, ``ok`` and either a JSON ``result`` or an ``error`` code with a
  message; it is signed the same way over the request id too, so a reply cannot be moved to
  another request or forged by anyone who can write rows but lacks the secret.
* The idempotency key is the caller's: the same key to the same target is the same request (the
  transport keeps one row per key), so a retry never runs an operation twice.

Why PostgreSQL and not HTTP between nodes: `--role mcu` and `--role recorder` serve no HTTP at all,
every node already holds a connection to the one database, and LISTEN/NOTIFY gives a push channel
without opening a port on the media nodes; the request row doubles as the audit of the call and the
idempotency record.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

MAX_ARGS_BYTES = 256 * 1024
METHOD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._")

# error codes a caller may see, and the HTTP status a web route answers with
ERROR_STATUS = {
    "dead": 503,        # the owning node stopped heartbeating
    "unpinned": 404,    # no node hosts it
    "deadline": 503,    # no reply in time
    "forged": 403,      # bad signature (the target refuses it)
    "malformed": 400,
    "unknown_method": 501,
    "unavailable": 503,  # the target lacks the capability, or no secret is configured
    "failed": 500,      # the handler raised something unexpected (no traceback travels)
}


class EnvelopeError(ValueError):
    """A request or reply that is malformed, forged or too late; `code` is one of ERROR_STATUS."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    id: str
    key: str  # idempotency key
    sender: str
    target: str
    method: str
    args: dict[str, Any]
    deadline: float

    def canonical(self) -> bytes:
        return _canonical({"id": self.id, "key": self.key, "sender": self.sender, "target": self.target,
                           "method": self.method, "args": self.args, "deadline": repr(float(self.deadline))})


@dataclass(frozen=True)
class Reply:
    request_id: str
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    message: str = ""
    status: int = 200  # a handler's own refusal carries the HTTP status it means (400, 404, 409...)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "result": self.result, "error": self.error, "message": self.message,
                "status": self.status}

    def canonical(self) -> bytes:
        return _canonical({"request_id": self.request_id, **self.to_json()})


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _mac(secret: bytes, data: bytes) -> str:
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def _same(expected: str, given: object) -> bool:
    """Constant-time comparison of a signature with whatever a row holds (non-ASCII text too)."""
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def sign(secret: bytes, message: Request | Reply) -> str:
    if not secret:
        raise EnvelopeError("unavailable", "no node secret configured")
    return _mac(secret, message.canonical())


def make_request(*, request_id: str, key: str, sender: str, target: str, method: str, args: dict[str, Any],
                 now: float, timeout: float) -> Request:
    """A request due by `now + timeout` (EnvelopeError malformed for bad fields)."""
    if not method or len(method) > 64 or not set(method) <= METHOD_CHARS:
        raise EnvelopeError("malformed", f"bad method {method[:64]!r}")
    if not 0 < timeout <= 300:
        raise EnvelopeError("malformed", "timeout must be within (0, 300] s")
    if not key or len(key) > 128:
        raise EnvelopeError("malformed", "idempotency key must be 1-128 characters")
    if len(_canonical(args)) > MAX_ARGS_BYTES:
        raise EnvelopeError("malformed", "arguments too large")
    return Request(request_id, key, sender, target, method, args, now + timeout)


def parse_request(row: dict[str, Any]) -> Request:
    """A request from its stored fields (EnvelopeError malformed when a field is missing or mistyped)."""
    try:
        req = Request(str(row["id"]), str(row["idempotency_key"]), str(row["sender"]), str(row["target"]),
                      str(row["method"]), row["args"], float(row["deadline"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError("malformed", f"bad request row: {exc}") from None
    if not isinstance(req.args, dict):
        raise EnvelopeError("malformed", "arguments must be an object")
    return req


def check_request(secret: bytes, request: Request, signature: str, me: str, now: float) -> None:
    """Raise EnvelopeError unless `request` is for `me`, signed with `secret` and not past its deadline."""
    if request.target != me:
        raise EnvelopeError("malformed", "request is for another node")
    if not secret or not _same(sign(secret, request), signature):
        raise EnvelopeError("forged", "request signature does not verify")
    if now > request.deadline:
        raise EnvelopeError("deadline", "request arrived after its deadline")


def parse_reply(request_id: str, data: Any) -> Reply:
    if not isinstance(data, dict):
        raise EnvelopeError("malformed", "reply must be an object")
    try:
        result = data.get("result") or {}
        if not isinstance(result, dict):
            raise TypeError("result must be an object")
        return Reply(request_id, bool(data["ok"]), result, str(data.get("error", "")), str(data.get("message", "")),
                     int(data.get("status", 200)))
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError("malformed", f"bad reply: {exc}") from None


def check_reply(secret: bytes, reply: Reply, signature: str | None) -> None:
    if not secret or not _same(sign(secret, reply), signature):
        raise EnvelopeError("forged", "reply signature does not verify")


def refusal(request_id: str, error: EnvelopeError) -> Reply:
    return Reply(request_id, False, {}, error.code, error.message, ERROR_STATUS.get(error.code, 500))
