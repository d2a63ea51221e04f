"""The cascade control channel between two MCU nodes, sans-I/O.

One `ControlConnection` per websocket (the asyncio adapter feeds it text frames with `receive`
and sends what `data_to_send` returns). Every message is a JSON object with `"v": 1` and a
`"type"`. Handshake, mutual and symmetric: each side sends `hello` (its node name and a fresh
random nonce); on the peer's hello it sends `auth` with
`proof = HMAC-SHA256(token, "cc-cascade-v1|" + peer_nonce + "|" + own_node + "|" + peer_node)`.
Binding both names stops a proof being reflected back; fresh nonces stop replay. A peer is
authenticated once its proof checks out (`hmac.compare_digest`); a bad proof or an unexpected
node name ends the connection.

After authentication:
* `sites` (the full list of sites this node exposes, each `{id, name, status, speaking, muted,
  via}`) and `site` (one changed entry): the parent shows them as its own sites;
* `command` `{id, command, site, args}` from the parent's chair: mute, unmute, roll_call,
  broadcast, select_view (`args.source`), banner (`args.text`); answered by `result`
  `{id, ok, error?: {code, message}}`. Commands for a site this node never announced, or that
  this node does not support, are refused here with a clear error; the rest are handed to the
  application, which must `reply` (honoured or not, with a reason);
* `speaker` `{site}` (or null): active-speaker information;
* `error` `{code, message}`: what the peer found wrong with something we sent;
* `content` `{content: {kind, presenter, route|path, …}}`: the conference's content token across
  the tree (`mcu.cascade.content_tree`: requests and releases go up, decisions and the holder
  state come down). Added within version 1; an older peer answers it with `unknown_type`.

Several conferences share one connection per node pair: `sites`, `site`, `command` and
`speaker` carry an optional `conference` (the conference id, 4–12 digits). It was added within
protocol version 1 as an optional field: a message without it belongs to the default conference
"" (a link that carries a single conference, as before), so an older peer still interoperates
for that conference. Site lists, commands and speakers are kept per conference; a command names
a site of its own conference only.

Malformed input (not JSON, wrong version, unknown type, wrong field types, too large) gives an
`error` reply and a `ProtocolError` event and changes no state: it never raises.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcu.cascade import content_tree

VERSION = 1
MAX_MESSAGE = 256 * 1024
MAX_BANNER = 64
DEFAULT_CONFERENCE = ""  # messages without a `conference` field
SITE_STATUSES = frozenset({"joined", "calling", "left", "failed", "idle", "unknown"})
COMMANDS = frozenset({"mute", "unmute", "roll_call", "broadcast", "select_view", "banner"})

# User-facing reasons (shown on the chair console) are zh-CN.
ERRORS = {
    "not_json": "控制消息不是有效的 JSON",
    "too_large": "控制消息过大",
    "bad_version": "不支持的控制协议版本",
    "unknown_type": "未知的控制消息类型",
    "bad_field": "控制消息字段无效",
    "not_authenticated": "控制通道尚未认证",
    "auth_failed": "级联节点认证失败",
    "unknown_site": "下级节点上没有该会场",
    "unsupported_command": "下级节点不支持该命令",
    "unknown_command_id": "未知的命令编号",
    "closed": "控制通道已关闭",
    "timeout": "下级节点未在规定时间内答复该命令",
    "bad_conference": "会议号无效",
}


def _proof(token: bytes, verifier_nonce: str, prover: str, verifier: str) -> str:
    msg = f"cc-cascade-v1|{verifier_nonce}|{prover}|{verifier}".encode()
    return hmac.new(token, msg, hashlib.sha256).hexdigest()


class State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class RemoteSite:
    id: str
    name: str
    status: str = "joined"
    speaking: bool = False
    muted: bool = False
    via: tuple[str, ...] = ()  # node names between the announcing node and the site (relay path)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status, "speaking": self.speaking,
                "muted": self.muted, "via": list(self.via)}


# --- events ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Authenticated:
    peer: str


@dataclass(frozen=True)
class AuthFailed:
    reason: str


@dataclass(frozen=True)
class SitesReplaced:
    sites: tuple[RemoteSite, ...]
    conference: str = DEFAULT_CONFERENCE


@dataclass(frozen=True)
class SiteUpdated:
    site: RemoteSite
    conference: str = DEFAULT_CONFERENCE


@dataclass(frozen=True)
class CommandReceived:
    id: int
    command: str
    site: str
    args: dict[str, Any]
    conference: str = DEFAULT_CONFERENCE


@dataclass(frozen=True)
class CommandResult:
    id: int
    ok: bool
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class ActiveSpeaker:
    site: str | None
    conference: str = DEFAULT_CONFERENCE


@dataclass(frozen=True)
class ProtocolError:
    code: str
    message: str
    from_peer: bool = False  # True: the peer reported an error about something we sent


@dataclass(frozen=True)
class ContentReceived:
    """A content-token message of `conference` (see :mod:`mcu.cascade.content_tree`)."""

    message: content_tree.Message
    conference: str = DEFAULT_CONFERENCE


Event = (Authenticated | AuthFailed | SitesReplaced | SiteUpdated | CommandReceived | CommandResult
         | ActiveSpeaker | ContentReceived | ProtocolError)


class _Bad(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


def _str(msg: dict[str, Any], key: str, *, max_len: int = 256, empty: bool = False) -> str:
    v = msg.get(key)
    if not isinstance(v, str) or len(v) > max_len or (not v and not empty):
        raise _Bad("bad_field", key)
    return v


def _bool(obj: dict[str, Any], key: str) -> bool:
    v = obj.get(key, False)
    if not isinstance(v, bool):
        raise _Bad("bad_field", key)
    return v


def _int_id(msg: dict[str, Any]) -> int:
    v = msg.get("id")
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 2**53:
        raise _Bad("bad_field", "id")
    return v


def valid_conference(value: Any) -> bool:
    """A conference id as the schedule makes them (4–12 digits), or the default ""."""
    return isinstance(value, str) and (value == DEFAULT_CONFERENCE or (value.isascii() and value.isdigit()
                                                                       and 4 <= len(value) <= 12))


def _conference(msg: dict[str, Any]) -> str:
    value = msg.get("conference", DEFAULT_CONFERENCE)
    if not valid_conference(value):
        raise _Bad("bad_conference", str(value)[:16])
    return str(value)


def _with_conference(body: dict[str, Any], conference: str) -> dict[str, Any]:
    """The field is left out for the default conference (frames as in the first version)."""
    if not valid_conference(conference):
        raise ValueError(f"{ERRORS['bad_conference']}: {str(conference)[:16]!r}")
    return {**body, "conference": conference} if conference else body


def parse_site(obj: Any) -> RemoteSite:
    """Validate one site entry (raises `_Bad`)."""
    if not isinstance(obj, dict):
        raise _Bad("bad_field", "site")
    status = obj.get("status", "joined")
    if status not in SITE_STATUSES:
        raise _Bad("bad_field", "status")
    via = obj.get("via", [])
    if not isinstance(via, list) or len(via) > 16 or not all(isinstance(n, str) and 0 < len(n) <= 64 for n in via):
        raise _Bad("bad_field", "via")
    return RemoteSite(id=_str(obj, "id", max_len=128), name=_str(obj, "name", empty=True), status=status,
                      speaking=_bool(obj, "speaking"), muted=_bool(obj, "muted"), via=tuple(via))


def validate_command(command: str, args: Any) -> dict[str, Any]:
    """Check a command's arguments; returns them normalised (raises `_Bad`)."""
    if command not in COMMANDS:
        raise _Bad("unsupported_command", command[:64] if isinstance(command, str) else "")
    if not isinstance(args, dict):
        raise _Bad("bad_field", "args")
    if command == "select_view":
        return {"source": _str(args, "source", max_len=128)}
    if command == "banner":
        text = _str(args, "text", max_len=MAX_BANNER, empty=True)
        return {"text": text}
    if args:
        raise _Bad("bad_field", "args")
    return {}


def check_command(command: str, args: dict[str, Any]) -> dict[str, Any]:
    """`validate_command` for callers outside the protocol: ValueError with a zh-CN message."""
    try:
        return validate_command(command, args)
    except _Bad as bad:
        raise ValueError(ERRORS[bad.code] + (f"：{bad.detail}" if bad.detail else "")) from None


@dataclass
class ControlConnection:
    """One end of a control channel. `expected_peer` (if set) is the only node name accepted."""

    node: str
    token: bytes
    expected_peer: str | None = None
    nonce_factory: Callable[[], str] = field(default=lambda: secrets.token_hex(16))
    state: State = State.HANDSHAKE
    allowed_peers: frozenset[str] | None = None  # a parent serving several children: any of these
    peer: str | None = None
    remote: dict[str, dict[str, RemoteSite]] = field(default_factory=dict)  # conference -> site id -> site
    local: dict[str, dict[str, RemoteSite]] = field(default_factory=dict)
    _nonce: str = ""
    _peer_nonce: str | None = None
    _outbox: list[str] = field(default_factory=list)
    _next_id: int = 1
    command_timeout: float = 10.0
    _pending: dict[int, float] = field(default_factory=dict)  # command id -> when it was sent
    _awaiting_reply: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.node or len(self.node) > 64:
            raise ValueError("node name must be 1..64 characters")
        if len(self.token) < 16:
            raise ValueError("the cascade token must be at least 16 bytes")
        self._nonce = self.nonce_factory()

    @property
    def remote_sites(self) -> dict[str, RemoteSite]:
        """The peer's sites in the default conference (see `remote_of`)."""
        return self.remote_of(DEFAULT_CONFERENCE)

    @property
    def local_sites(self) -> dict[str, RemoteSite]:
        return self.local.get(DEFAULT_CONFERENCE, {})

    def remote_of(self, conference: str) -> dict[str, RemoteSite]:
        """The sites the peer announced for `conference` (empty when none)."""
        return self.remote.get(conference, {})

    # --- outgoing -----------------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue our hello (both ends call this when the websocket opens)."""
        self._send({"type": "hello", "node": self.node, "nonce": self._nonce})

    def data_to_send(self) -> list[str]:
        out, self._outbox = self._outbox, []
        return out

    def announce_sites(self, sites: list[RemoteSite], conference: str = DEFAULT_CONFERENCE) -> None:
        """Send our full site list of `conference`; remembers it so commands for other sites are
        refused."""
        self._require_open()
        body = _with_conference({"type": "sites", "sites": [s.to_json() for s in sites]}, conference)
        self.local[conference] = {s.id: s for s in sites}
        self._send(body)

    def update_site(self, site: RemoteSite, conference: str = DEFAULT_CONFERENCE) -> None:
        self._require_open()
        body = _with_conference({"type": "site", "site": site.to_json()}, conference)
        self.local.setdefault(conference, {})[site.id] = site
        self._send(body)

    def send_speaker(self, site: str | None, conference: str = DEFAULT_CONFERENCE) -> None:
        self._require_open()
        self._send(_with_conference({"type": "speaker", "site": site}, conference))

    def send_content(self, message: content_tree.Message, conference: str = DEFAULT_CONFERENCE) -> None:
        """Send a content-token message of `conference` to the peer."""
        self._require_open()
        self._send(_with_conference({"type": "content", "content": content_tree.to_json(message)}, conference))

    def send_command(self, command: str, site: str, args: dict[str, Any] | None = None, *,
                     at: float, conference: str = DEFAULT_CONFERENCE) -> int:
        """Send a chair command for one of the peer's sites of `conference` at time `at`; returns
        its id (answered by a `CommandResult` with the same id, from the peer or from `expire`).
        Raises ValueError for a command we would not send."""
        self._require_open()
        try:
            clean = validate_command(command, args or {})
        except _Bad as bad:
            raise ValueError(f"{ERRORS[bad.code]}: {bad.detail}") from None
        if site not in self.remote_of(conference):
            raise ValueError(f"{ERRORS['unknown_site']}: {site}")
        body = _with_conference({"type": "command", "command": command, "site": site, "args": clean}, conference)
        cmd_id = self._next_id
        self._next_id += 1
        self._pending[cmd_id] = at
        self._send({**body, "id": cmd_id})
        return cmd_id

    def reply(self, cmd_id: int, ok: bool = True, code: str = "", message: str = "") -> None:
        """Answer a `CommandReceived` (once). A refusal needs a code and a zh-CN message."""
        if cmd_id not in self._awaiting_reply:
            raise ValueError(f"{ERRORS['unknown_command_id']}: {cmd_id}")
        if not ok and not (code and message):
            raise ValueError("a refusal needs an error code and a message")
        self._awaiting_reply.discard(cmd_id)
        self._send_result(cmd_id, ok, code, message)

    def expire(self, now: float) -> list[Event]:
        """Give up on commands unanswered for `command_timeout`: a failed `CommandResult` each
        (a late answer is then reported as a ProtocolError, not as a second result)."""
        late = sorted(i for i, sent in self._pending.items() if now - sent >= self.command_timeout)
        for cmd_id in late:
            del self._pending[cmd_id]
        return [CommandResult(i, False, "timeout", ERRORS["timeout"]) for i in late]

    def next_expiry(self) -> float | None:
        """When `expire` next has something to do (the adapter's timer)."""
        return min(self._pending.values()) + self.command_timeout if self._pending else None

    def connection_lost(self) -> list[Event]:
        """The websocket went away: every remote site becomes 'unknown' (the county is still in
        the picture and sound; only what is behind it is unknown)."""
        self.state = State.CLOSED
        self._pending.clear()
        self._awaiting_reply.clear()
        events: list[Event] = []
        for conference, sites in self.remote.items():
            for sid, site in list(sites.items()):
                unknown = RemoteSite(site.id, site.name, "unknown", False, site.muted, site.via)
                sites[sid] = unknown
                events.append(SiteUpdated(unknown, conference))
        return events

    # --- incoming -----------------------------------------------------------------------------

    def receive(self, data: str | bytes) -> list[Event]:
        """Handle one websocket message. Never raises for bad input."""
        if self.state is State.CLOSED:
            return []
        try:
            msg = self._decode(data)
            return self._dispatch(msg)
        except _Bad as bad:
            message = ERRORS[bad.code] + (f"：{bad.detail}" if bad.detail else "")
            self._send({"type": "error", "code": bad.code, "message": message})
            if bad.code == "auth_failed":
                self.state = State.CLOSED
                return [AuthFailed(message)]
            return [ProtocolError(bad.code, message)]

    def _decode(self, data: str | bytes) -> dict[str, Any]:
        if len(data) > MAX_MESSAGE:
            raise _Bad("too_large")
        try:
            msg = json.loads(data)
        except (ValueError, RecursionError):
            raise _Bad("not_json") from None
        if not isinstance(msg, dict):
            raise _Bad("not_json", "需要 JSON 对象")
        if msg.get("v") != VERSION or isinstance(msg.get("v"), bool):
            raise _Bad("bad_version", str(msg.get("v"))[:16])
        if not isinstance(msg.get("type"), str):
            raise _Bad("unknown_type")
        return msg

    def _dispatch(self, msg: dict[str, Any]) -> list[Event]:
        kind = msg["type"]
        if kind == "hello":
            return self._on_hello(msg)
        if kind == "auth":
            return self._on_auth(msg)
        if kind == "error":
            # Peer's complaint about something we sent; never answered (no error ping-pong).
            code = msg.get("code") if isinstance(msg.get("code"), str) else "unknown"
            text = msg.get("message") if isinstance(msg.get("message"), str) else ""
            return [ProtocolError(str(code)[:64], str(text)[:256], from_peer=True)]
        if kind not in ("sites", "site", "command", "result", "speaker", "content"):
            raise _Bad("unknown_type", kind[:32])
        if self.state is not State.OPEN:
            raise _Bad("not_authenticated")
        if kind == "result":
            return self._on_result(msg)
        if kind == "command":
            return self._on_command(msg)
        conference = _conference(msg)
        if kind == "content":
            try:
                return [ContentReceived(content_tree.parse(msg.get("content")), conference)]
            except content_tree.TreeError as exc:
                raise _Bad("bad_field", f"content: {exc}"[:128]) from None
        if kind == "sites":
            raw = msg.get("sites")
            if not isinstance(raw, list) or len(raw) > 4096:
                raise _Bad("bad_field", "sites")
            sites = tuple(parse_site(s) for s in raw)
            if len({s.id for s in sites}) != len(sites):
                raise _Bad("bad_field", "重复的会场编号")
            self.remote[conference] = {s.id: s for s in sites}
            return [SitesReplaced(sites, conference)]
        if kind == "site":
            site = parse_site(msg.get("site"))
            self.remote.setdefault(conference, {})[site.id] = site
            return [SiteUpdated(site, conference)]
        speaker = msg.get("site")  # kind == "speaker"
        if speaker is not None and (not isinstance(speaker, str) or len(speaker) > 128):
            raise _Bad("bad_field", "site")
        return [ActiveSpeaker(speaker, conference)]

    def _on_hello(self, msg: dict[str, Any]) -> list[Event]:
        if self._peer_nonce is not None:
            raise _Bad("bad_field", "重复的 hello")
        peer = _str(msg, "node", max_len=64)
        nonce = _str(msg, "nonce", max_len=128)
        if len(nonce) < 16:
            raise _Bad("auth_failed", "nonce 太短")
        if peer == self.node or (self.expected_peer is not None and peer != self.expected_peer) or (
                self.allowed_peers is not None and peer not in self.allowed_peers):
            raise _Bad("auth_failed", f"意外的节点 {peer}")
        self.peer, self._peer_nonce = peer, nonce
        self._send({"type": "auth", "proof": _proof(self.token, nonce, self.node, peer)})
        return []

    def _on_auth(self, msg: dict[str, Any]) -> list[Event]:
        if self._peer_nonce is None or self.peer is None:
            raise _Bad("not_authenticated", "需要先发送 hello")
        if self.state is State.OPEN:
            raise _Bad("bad_field", "重复的 auth")
        proof = _str(msg, "proof", max_len=128)
        expected = _proof(self.token, self._nonce, self.peer, self.node)
        if not hmac.compare_digest(proof.encode(), expected.encode()):
            raise _Bad("auth_failed")
        self.state = State.OPEN
        return [Authenticated(self.peer)]

    def _on_command(self, msg: dict[str, Any]) -> list[Event]:
        cmd_id = _int_id(msg)
        site = _str(msg, "site", max_len=128)
        command = msg.get("command")
        if not isinstance(command, str):
            raise _Bad("bad_field", "command")
        if cmd_id in self._awaiting_reply:
            raise _Bad("bad_field", "重复的命令编号")
        conference = DEFAULT_CONFERENCE
        try:
            conference = _conference(msg)
            args = validate_command(command, msg.get("args", {}))
            own = self.local.get(conference, {})
            if site not in own:
                raise _Bad("unknown_site", site)
            if command == "select_view" and args["source"] not in own:
                raise _Bad("unknown_site", args["source"])
        except _Bad as bad:
            # A well-formed command we cannot honour: answer it (result), not a protocol error.
            self._send_result(cmd_id, False, bad.code, ERRORS[bad.code] + (f"：{bad.detail}" if bad.detail else ""))
            return []
        self._awaiting_reply.add(cmd_id)
        return [CommandReceived(cmd_id, command, site, args, conference)]

    def _on_result(self, msg: dict[str, Any]) -> list[Event]:
        cmd_id = _int_id(msg)
        ok = msg.get("ok")
        if not isinstance(ok, bool):
            raise _Bad("bad_field", "ok")
        if cmd_id not in self._pending:
            raise _Bad("unknown_command_id", str(cmd_id))
        code = message = ""
        if not ok:
            err = msg.get("error")
            if not isinstance(err, dict):
                raise _Bad("bad_field", "error")
            code, message = _str(err, "code", max_len=64), _str(err, "message", max_len=256)
        del self._pending[cmd_id]
        return [CommandResult(cmd_id, ok, code, message)]

    # --- helpers ------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self.state is not State.OPEN:
            raise ValueError(ERRORS["not_authenticated"] if self.state is State.HANDSHAKE else ERRORS["closed"])

    def _send_result(self, cmd_id: int, ok: bool, code: str, message: str) -> None:
        body: dict[str, Any] = {"type": "result", "id": cmd_id, "ok": ok}
        if not ok:
            body["error"] = {"code": code, "message": message}
        self._send(body)

    def _send(self, body: dict[str, Any]) -> None:
        self._outbox.append(json.dumps({"v": VERSION, **body}, ensure_ascii=False, separators=(",", ":")))
