"""Operating a conference room wherever it runs: `RoomHost`, in this process or over node RPC.

The chair routes (`conference_console`) operate rooms through the `RoomHost` Protocol declared
here. Two implementations:

* `LocalRoomHost`: the MCU (and the conference recorder) of this process. The routes of a node that
  hosts the room use it directly; `RoomHostService` serves it to other nodes over node RPC
  (`noderpc`), so a `--role mcu` process (which serves no HTTP) answers a web node's requests.
* `RemoteRoomHost`: a `--role web` node's client. It finds the node a room is pinned to
  (`rpc_pins`, kept by the hosting node's heartbeat) and calls it with a signed request that carries
  a deadline and the request's idempotency key. A dead owner, a missed deadline or a missing node
  secret is a `HostRefused` with status 503 and a zh-CN (or English) message, never a traceback.

Authorisation and auditing stay on the web node that received the user's request: the hosting node
trusts a request because it is signed with the cluster's node secret, and a forged one is refused
before anything runs (`noderpc.envelope`).

WebRTC signalling is proxied: the web node keeps the browser's websocket and forwards the offer
(`join`), the pings (`leg_state`) and the leave; the media flows between the browser and the hosting
node directly (its ICE candidates are in the answer). What the hosting node's leg says to the browser
(the pane size it should send, `mcu.legs.webrtc.send_size_message`) comes back by long poll
(`leg_signals`: answered at once when there is a newer message than the web node has, else when one
comes or after ``wait_s``) and the web node forwards it on the websocket.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from mcu.admission import Caller
from mcu.capability import McuCapability
from mcu.cascade.remote_chair import apply_remotely
from mcu.chair import ChairOperation, apply_operation
from mcu.conferences import ConferenceError, DialError, JoinRefused, RemoteCommandError
from mcu.content.deck import DECK_ACTIONS, ConferenceDeck
from mcu.content.deck import apply_action as apply_deck_action
from mcu.content.deck_render import DeckError
from mcu.content.deck_upload import DeckUploads
from mcu.content.service import ConferenceContent, ContentError, ContentService
from mcu.layout import LAYOUTS
from mcu.legs.webrtc import WebRtcLeg
from mcu.room import BROADCAST, RoomError
from noderpc.envelope import ERROR_STATUS
from noderpc.pinning import OwnerState
from noderpc.service import RpcCapability
from noderpc.transport import RpcError, RpcRefused
from recorder.conference_recording import HTTP_STATUS as RECORDING_HTTP_STATUS
from recorder.conference_recording import ConferenceRecorder, ConferenceRecordingError
from recorder.remote_tap import RemoteTapError
from web_console.i18n import translate
from web_console.room_state import room_state

# A leg joined through another node lives while that node keeps asking about it (the browser pings
# every 10 s and the web node forwards each ping): unasked this long, the web node is gone, so is the leg.
LEG_LEASE_S = 35.0
LEG_SIGNALS_WAIT_S = 8.0  # the long poll for a proxied leg's messages to its browser (well inside the lease)


class _Outbox:
    """The newest message a proxied leg has for its browser (a newer one supersedes it: it is a state)."""

    def __init__(self) -> None:
        self.version = 0
        self.message: dict[str, Any] | None = None
        self.changed = asyncio.Event()

    def put(self, message: dict[str, Any]) -> None:
        self.version += 1
        self.message = message
        self.changed.set()

ANONYMOUS_UNAVAILABLE = "无法加入该会议：会议号不存在、未开始、已结束、已锁定或不对访客开放"


class HostRefused(Exception):
    """Refused with nothing changed: the HTTP `status`, a stable `code` and a message for people."""

    def __init__(self, status: int, message: str, code: str = "refused", retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.retry_after = status, message, code, retry_after


@dataclass(frozen=True)
class JoinRequest:
    """A browser's join or preview, as the web node that authenticated it describes it."""

    conference_id: str
    kind: str  # "join" | "preview"
    sdp: str
    name: str = ""
    pin: str = ""
    codec: str | None = None
    username: str | None = None  # None: anonymous guest
    display_name: str = ""
    chair: bool = False
    source: str = ""
    may_preview: bool = False  # chair roles and the leader (the command view's receive-only video)


class RoomHost(Protocol):
    """What the chair routes do to a conference room (HostRefused: refused, nothing changed)."""

    async def conferences(self, include_ended: bool) -> list[dict[str, Any]]: ...

    async def state(self, conference_id: str) -> dict[str, Any]: ...

    async def create(self, fields: dict[str, Any], actor: str, start_now: bool) -> dict[str, Any]: ...

    async def extend(self, conference_id: str, minutes: int, actor: str) -> dict[str, Any]: ...

    async def start(self, conference_id: str, actor: str) -> dict[str, Any]: ...

    async def end(self, conference_id: str, actor: str) -> dict[str, Any]: ...

    async def operate(self, conference_id: str, op: ChairOperation) -> dict[str, Any]: ...

    async def dial(self, conference_id: str, site_id: str, action: str, actor: str) -> None: ...

    async def recording(self, conference_id: str, action: str, actor: str, source: str) -> dict[str, Any]: ...

    async def deck(self, conference_id: str, args: dict[str, Any], deadline_s: float | None = None) -> dict[str, Any]: ...

    async def content(self, conference_id: str, args: dict[str, Any]) -> dict[str, Any]: ...

    async def join(self, request: JoinRequest) -> dict[str, Any]: ...

    async def leg_state(self, conference_id: str, participant_id: str) -> dict[str, Any]: ...

    async def leg_signals(self, conference_id: str, participant_id: str, after: int,
                          wait_s: float = LEG_SIGNALS_WAIT_S) -> dict[str, Any]: ...

    async def leave(self, conference_id: str, participant_id: str) -> None: ...


class LocalRoomHost:
    """The rooms of this process's MCU."""

    def __init__(self, mcu: McuCapability, recorder: ConferenceRecorder | None = None) -> None:
        self.mcu = mcu
        self.service = mcu.conferences
        self.recorder = recorder
        self._legs: dict[str, WebRtcLeg] = {}  # joined through another node: f"{conference}/{participant}"
        self._asked: dict[str, float] = {}  # when the web node last asked about each of them (monotonic)
        self._outboxes: dict[str, _Outbox] = {}  # what each of them has to say to its browser
        self._reaper: asyncio.Task[None] | None = None
        self.lease_s = LEG_LEASE_S

    async def conferences(self, include_ended: bool) -> list[dict[str, Any]]:
        return [{**r.to_json(), "running": self.service.running(r.id) is not None}
                for r in await self.service.list_conferences(include_ended)]

    async def state(self, conference_id: str) -> dict[str, Any]:
        conf = self.service.running(conference_id)
        if conf is not None:
            keys = self.mcu.webrtc.legs if self.mcu.webrtc is not None else {}
            return room_state(conf) | {"webrtc_legs": sorted(k.split("/", 1)[1] for k in keys
                                                             if k.startswith(conference_id + "/"))}
        record = await self.service.get(conference_id)
        if record is None:
            raise HostRefused(404, f"会议不存在：{conference_id}", "unknown")
        return {"conference": record.to_json(), "running": False, "sites": [], "layouts": list(LAYOUTS)}

    async def create(self, fields: dict[str, Any], actor: str, start_now: bool) -> dict[str, Any]:
        """Schedule (and with `start_now` start) a conference; `fields` as the HTTP body, times ISO 8601."""
        def at(key: str) -> datetime | None:
            return datetime.fromisoformat(str(fields[key])) if fields.get(key) else None

        try:
            record = await self.service.create(name=str(fields["name"]), actor=actor, pin=str(fields.get("pin", "")),
                                               guests=bool(fields.get("guests")),
                                               sites=[str(x) for x in fields.get("sites") or []],
                                               starts_at=at("starts_at"), ends_at=at("ends_at"))
            if start_now:
                await self.service.start_conference(record.id, actor)
        except ConferenceError as exc:
            raise HostRefused(400, str(exc)) from None
        return {**record.to_json(), "running": self.service.running(record.id) is not None}

    async def extend(self, conference_id: str, minutes: int, actor: str) -> dict[str, Any]:
        try:
            return (await self.service.extend(conference_id, minutes, actor)).to_json()
        except ConferenceError as exc:
            raise HostRefused(400, str(exc)) from None

    async def start(self, conference_id: str, actor: str) -> dict[str, Any]:
        try:
            return room_state(await self.service.start_conference(conference_id, actor))
        except ConferenceError as exc:
            raise HostRefused(400, str(exc)) from None

    async def end(self, conference_id: str, actor: str) -> dict[str, Any]:
        try:
            await self.service.end(conference_id, actor)
        except ConferenceError as exc:
            raise HostRefused(400, str(exc)) from None
        return {"id": conference_id, "status": "ended"}

    async def operate(self, conference_id: str, op: ChairOperation) -> dict[str, Any]:
        conf = self.service.running(conference_id)
        if conf is None:
            raise HostRefused(404, f"会议未在进行：{conference_id}", "not_running")
        try:
            if conf.is_remote(op.site):
                await apply_remotely(conf, op)
            else:
                apply_operation(conf.room, op)
        except RemoteCommandError as exc:
            raise HostRefused(exc.status, exc.message, exc.code) from None
        except (RoomError, ValueError) as exc:
            raise HostRefused(400, str(exc)) from None
        return room_state(conf)

    async def dial(self, conference_id: str, site_id: str, action: str, actor: str) -> None:
        try:
            await self.service.dial(conference_id, site_id, action, actor)  # type: ignore[arg-type]
        except ConferenceError as exc:
            status, code = (exc.status, exc.code) if isinstance(exc, DialError) else (400, "refused")
            raise HostRefused(status, str(exc), code) from None

    async def recording(self, conference_id: str, action: str, actor: str, source: str) -> dict[str, Any]:
        if self.recorder is None:
            if action == "state":
                return {"available": False, "recording": False}
            raise HostRefused(503, "本节点未运行会议录制（需 MCU 与录像在同一进程）", "unavailable")
        return await recording_action(self.recorder, conference_id, action, actor, source)

    async def deck(self, conference_id: str, args: dict[str, Any], deadline_s: float | None = None) -> dict[str, Any]:
        """The chair's slide deck of a room here (web_console/deck_console.py on a web node).

        ``args["action"]``: ``state``, ``page_png`` (the current page, base64), ``upload`` (the row
        ``upload_id`` of ``deck_uploads``, taken and rendered) or a page action (`DECK_ACTIONS`,
        with ``page`` and ``actor``). Answers ``{"state": ...}`` (``{"png": ...}`` for ``page_png``),
        or ``{"error": {"code", "status", "values"}}`` for a refusal the caller words for its user
        (``deck.error.<code>``): nothing changed.
        """
        decks = self.mcu.decks
        if decks is None:
            raise HostRefused(503, "本节点未运行演示文稿服务", "unavailable")
        action = str(args["action"])
        content = decks.of(conference_id)
        uploads = DeckUploads(self.service.core.db)
        if content is None:
            if action == "upload":
                await uploads.drop(int(args["upload_id"]))
            return _deck_error("not_running", 404, id=conference_id)
        if action == "state":
            return {"state": content.state()}
        if action == "page_png":
            shown = content.deck
            if not isinstance(shown, ConferenceDeck) or shown.closed:
                return _deck_error("none", 404)
            png = await asyncio.to_thread(shown.pages[shown.pager.index].read_bytes)
            return {"png": base64.b64encode(png).decode("ascii")}
        if action == "upload":
            upload = await uploads.take(int(args["upload_id"]), conference_id)
            if upload is None:
                raise HostRefused(400, "文稿上传记录不存在或已被处理", "malformed")

            async def chunks() -> AsyncIterator[bytes]:
                yield upload.data

            try:
                deck = await decks.upload(content, chunks(), upload.name, upload.uploaded_by, len(upload.data))
            except DeckError as exc:
                return _deck_error(exc.code, 413 if exc.code == "too_big" else 400, exc.detail, **exc.values)
            return {"state": content.state(), "pages": len(deck.pages), "deck": deck.directory.name}
        if action not in DECK_ACTIONS:
            raise ValueError(f"unknown deck action {action[:32]}")
        page = args.get("page")
        try:
            deck = await apply_deck_action(content, action, int(page) if page is not None else None,
                                           str(args["actor"]))
        except DeckError as exc:
            return _deck_error(exc.code, 400, exc.detail, **exc.values)
        return {"state": content.state(), "page": deck.pager.index + 1}

    async def content(self, conference_id: str, args: dict[str, Any]) -> dict[str, Any]:
        """The content token, content layout and raised hands of a room here (`content_control`)."""
        return content_control(self.mcu.content, conference_id, args)

    async def admit(self, req: JoinRequest) -> tuple[WebRtcLeg, str]:
        """A WebRTC leg and its answer to `req`'s offer (HostRefused code malformed: a bad offer)."""
        legs = self.mcu.webrtc
        if legs is None:  # an MCU started without WebRTC legs (tests build such)
            raise HostRefused(503, "本节点未运行 WebRTC", "unavailable")
        service = self.service
        conference_id = req.conference_id
        if req.kind == "preview":
            conf = service.running(conference_id)
            if not req.may_preview or conf is None:
                raise HostRefused(403, "无权预览" if not req.may_preview else "会议未在进行",
                                  "forbidden" if not req.may_preview else "not_started")
            if not conf.record.dial_in:  # the room of an emergency call: the desk's, nobody else's
                raise HostRefused(403, "该会议不接受呼入", "protected")
            leg = legs.create(conf, participant_id=f"preview-{secrets.token_hex(4)}", view=BROADCAST)
        else:
            if req.username is None:  # anonymous: one answer for every conference a guest may not join
                record = await service.get(conference_id) if conference_id.isdigit() and len(conference_id) <= 12 \
                    else None
                if record is None or not record.guests:
                    raise HostRefused(404, ANONYMOUS_UNAVAILABLE, "unavailable")
            # The one admission policy (mcu.admission): a console login is the identity, chair roles host.
            caller = Caller("webrtc", req.source, identity=f"console:{req.username}" if req.username else None,
                            pin=req.pin or None, host=req.chair)
            try:
                conf = await service.admit(conference_id, caller)
            except JoinRefused as exc:
                if req.username is None and exc.code in ("unknown", "ended", "not_started", "locked",
                                                         "auth_required", "protected"):
                    raise HostRefused(404, ANONYMOUS_UNAVAILABLE, "unavailable") from None
                if exc.code == "auth_required":
                    raise HostRefused(401, "该会议需要登录后加入", "login_required") from None
                if exc.code == "pin_required":  # the page asks for the PIN on this code
                    raise HostRefused(403, exc.message, "wrong_pin") from None
                raise HostRefused(403, exc.message, exc.code, exc.retry_after) from None
            default = (req.display_name or req.username or "") if req.username else "访客"
            name = "".join(c for c in req.name.strip() if c.isprintable()) or default
            leg = legs.create(conf, participant_id=f"web-{secrets.token_hex(4)}", name=name)
        try:
            answer = await leg.answer(req.sdp, codec=req.codec)
        except (ValueError, RoomError) as exc:
            await leg.close("failed")
            if isinstance(exc, RoomError):
                raise HostRefused(409, str(exc), "refused") from None
            raise HostRefused(400, str(exc)[:200], "malformed") from None
        return leg, answer

    async def join(self, request: JoinRequest) -> dict[str, Any]:
        leg, answer = await self.admit(request)
        key = f"{request.conference_id}/{leg.participant_id}"
        self._legs[key], self._asked[key] = leg, time.monotonic()
        outbox = self._outboxes[key] = _Outbox()
        leg.attach_signalling(outbox.put)  # the pane size its browser should send (mcu.pane_size)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="proxied-leg-lease")
        return {"sdp": answer, "participant_id": leg.participant_id, "codec": leg.codec, "name": leg.name}

    async def _reap(self) -> None:
        """Close proxied legs whose web node stopped asking about them (it died with its websockets)."""
        while self._legs:
            await asyncio.sleep(min(5.0, self.lease_s / 2))
            now = time.monotonic()
            for key, leg in list(self._legs.items()):
                if leg.closed.is_set() or now - self._asked.get(key, now) > self.lease_s:
                    self._forget(key)
                    await leg.close("timeout")

    async def leg_state(self, conference_id: str, participant_id: str) -> dict[str, Any]:
        self._asked[f"{conference_id}/{participant_id}"] = time.monotonic()
        leg = self._legs.get(f"{conference_id}/{participant_id}")
        if leg is None:
            return {"open": False, "reason": "ended"}
        if leg.closed.is_set():
            self._forget(f"{conference_id}/{participant_id}")
            return {"open": False, "reason": leg.close_reason}
        return {"open": True, "stats": leg.describe()}

    async def leg_signals(self, conference_id: str, participant_id: str, after: int,
                          wait_s: float = LEG_SIGNALS_WAIT_S) -> dict[str, Any]:
        """The newest message the proxied leg has for its browser once its version is past ``after``
        (at once when it already is, else when one comes or after ``wait_s``, at most
        :data:`LEG_SIGNALS_WAIT_S`): ``{"open", "version", "message"}``; ``message`` is None when
        nothing newer came. Asking keeps the leg's lease, like a ping."""
        key = f"{conference_id}/{participant_id}"
        self._asked[key] = time.monotonic()
        leg, outbox = self._legs.get(key), self._outboxes.get(key)
        if leg is None or outbox is None or leg.closed.is_set():
            return {"open": False, "version": after, "message": None}
        if outbox.version <= after:
            outbox.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(float(wait_s), LEG_SIGNALS_WAIT_S))):
                    await outbox.changed.wait()
        newer = outbox.version > after
        return {"open": not leg.closed.is_set(), "version": outbox.version if newer else after,
                "message": outbox.message if newer else None}

    def _forget(self, key: str) -> None:
        self._legs.pop(key, None)
        self._asked.pop(key, None)
        self._outboxes.pop(key, None)

    async def leave(self, conference_id: str, participant_id: str) -> None:
        leg = self._legs.get(f"{conference_id}/{participant_id}")
        self._forget(f"{conference_id}/{participant_id}")
        if leg is not None:
            await leg.close("left")


def _deck_error(code: str, status: int, detail: str = "", **values: object) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "detail": detail[:300], "values": values}}


CONTENT_ACTIONS = frozenset({"grant", "revoke", "take", "policy", "layout", "dismiss"})
HANDS_ACTIONS = frozenset({"approve", "dismiss", "settings"})


def _need_site(args: dict[str, Any]) -> str:
    site = args.get("site")
    if not site:
        raise ContentError("missing", "缺少参数: site")
    return str(site)


def _optional(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    return None if value is None else str(value)


def content_control(service: ContentService | None, conference_id: str, args: dict[str, Any]) -> dict[str, Any]:
    """Read or change a running room's content token, content layout and raised hands
    (web_console/content_console.py, here or for a web node over ``room.content``).

    ``args["kind"]``: ``state``; ``content`` with ``action`` grant/revoke/take/policy/layout/dismiss
    (``site``, ``policy``, ``layout``; ``actor`` takes the token); ``hands`` with ``action``
    approve/dismiss/settings (``site``, ``approve``, ``mute_others``, ``raise_keys``, ``lower_keys``).
    Answers the content state. HostRefused: 503 no content service here, 404 not running, 400 the
    `ContentError` (its code and zh-CN message) — nothing changed. ValueError: malformed arguments.
    """
    if service is None:
        raise HostRefused(503, "本节点未运行会议服务（会控需与 MCU 在同一进程）", "unavailable")
    kind, action = str(args.get("kind", "")), str(args.get("action", ""))
    if kind not in ("state", "content", "hands") or (kind == "content" and action not in CONTENT_ACTIONS) \
            or (kind == "hands" and action not in HANDS_ACTIONS):
        raise ValueError(f"unknown content action {kind[:16]}/{action[:32]}")
    content = service.get(conference_id)
    if content is None:
        raise HostRefused(404, f"会议未在进行：{conference_id}", "not_running")
    try:
        if kind == "content":
            _apply_content(content, action, args)
        elif kind == "hands":
            _apply_hands(content, action, args)
    except ContentError as exc:
        raise HostRefused(400, exc.message, exc.code) from None
    return content.state()


def _apply_content(content: ConferenceContent, action: str, args: dict[str, Any]) -> None:
    match action:
        case "grant":
            content.grant(_need_site(args))
        case "revoke":
            content.revoke()
        case "take":
            content.take(str(args["actor"]))
        case "policy":
            content.set_policy(str(args.get("policy") or ""))
        case "layout":
            content.set_layout(str(args.get("layout") or ""))
        case "dismiss":
            content.dismiss_request(_need_site(args))


def _apply_hands(content: ConferenceContent, action: str, args: dict[str, Any]) -> None:
    match action:
        case "approve":
            content.approve(_need_site(args))
        case "dismiss":
            content.dismiss(_need_site(args))
        case "settings":
            mute = args.get("mute_others")
            content.configure_hands(_optional(args, "approve"), None if mute is None else bool(mute),
                                    _optional(args, "raise_keys"), _optional(args, "lower_keys"))


HOST_PREFIX = "host."  # a HostRefused code on the wire, apart from the transport's own codes


async def recording_action(recorder: ConferenceRecorder, conference_id: str, action: str, actor: str,
                           source: str) -> dict[str, Any]:
    """Start, stop or report a conference recording on this node's recorder (HostRefused: refused)."""
    if action == "state":
        handle = recorder.recording(conference_id)
        if handle is None:
            raise HostRefused(404, f"会议未在录制：{conference_id}", "not_recording")
        return {"available": True, "recording": True, **handle.to_json()}
    start = action == "start"
    try:
        if start:
            handle = await recorder.start_recording(conference_id, actor, source=source)
        else:
            handle = await recorder.stop_recording(conference_id, actor, source=source)
    except ConferenceRecordingError as exc:
        raise HostRefused(RECORDING_HTTP_STATUS.get(exc.code, 400), exc.message, exc.code) from None
    if handle is None:
        raise HostRefused(404, f"会议未在录制：{conference_id}", "not_recording")
    return {"recording": start, **handle.to_json()}


class RemoteRecordings(Protocol):
    """A recorder node's streams of conferences hosted elsewhere (``recorder.remote_tap.RemoteLiveSource``)."""

    async def prepare(self, conference_id: str) -> None: ...

    async def release(self, conference_id: str) -> None: ...


class RecordingHostService:
    """A `--role recorder` node's conference recordings, served to web nodes (method ``rec.recording``):
    it records conferences hosted by MCU nodes through their recording tap streams."""

    def __init__(self, recorder: ConferenceRecorder, streams: RemoteRecordings) -> None:
        self.recorder = recorder
        self.streams = streams

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method != "rec.recording":
            raise RpcRefused(501, f"unknown method {method[:64]}", "unknown_method")
        try:
            conference_id, action = str(args["conference_id"]), str(args["action"])
            actor, source = str(args["actor"]), str(args.get("source", ""))
            if action not in ("start", "stop", "state"):
                raise ValueError(f"unknown action {action[:32]}")
            if action == "start" and not self.recorder.is_recording(conference_id):
                try:
                    await self.streams.prepare(conference_id)
                except RemoteTapError as exc:
                    raise HostRefused(RECORDING_HTTP_STATUS.get(exc.code, 503), exc.message, exc.code) from None
            try:
                return await recording_action(self.recorder, conference_id, action, actor, source)
            finally:
                if not self.recorder.is_recording(conference_id):
                    await self.streams.release(conference_id)
        except HostRefused as exc:
            raise RpcRefused(exc.status, exc.message, HOST_PREFIX + exc.code) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcRefused(400, f"bad arguments: {exc}", HOST_PREFIX + "malformed") from None


class RoomHostService:
    """Serves a `LocalRoomHost` to other nodes (noderpc `RpcService`): one method per `RoomHost` method."""

    def __init__(self, host: LocalRoomHost) -> None:
        self.host = host

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._dispatch(method, args)
        except HostRefused as exc:
            raise RpcRefused(exc.status, exc.message, HOST_PREFIX + exc.code) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcRefused(400, f"bad arguments: {exc}", HOST_PREFIX + "malformed") from None

    async def _dispatch(self, method: str, a: dict[str, Any]) -> dict[str, Any]:
        host = self.host
        match method:
            case "room.conferences":
                return {"conferences": await host.conferences(bool(a["include_ended"]))}
            case "room.state":
                return await host.state(str(a["conference_id"]))
            case "room.create":
                return await host.create(dict(a["fields"]), str(a["actor"]), bool(a["start_now"]))
            case "room.extend":
                return await host.extend(str(a["conference_id"]), int(a["minutes"]), str(a["actor"]))
            case "room.start":
                return await host.start(str(a["conference_id"]), str(a["actor"]))
            case "room.end":
                return await host.end(str(a["conference_id"]), str(a["actor"]))
            case "room.operate":
                return await host.operate(str(a["conference_id"]), ChairOperation(**a["op"]))
            case "room.dial":
                await host.dial(str(a["conference_id"]), str(a["site_id"]), str(a["action"]), str(a["actor"]))
                return {}
            case "room.recording":
                return await host.recording(str(a["conference_id"]), str(a["action"]), str(a["actor"]),
                                            str(a["source"]))
            case "room.deck":
                return await host.deck(str(a["conference_id"]), a)
            case "room.content":
                return await host.content(str(a["conference_id"]), a)
            case "room.join":
                return await host.join(JoinRequest(**a["request"]))
            case "room.leg_state":
                return await host.leg_state(str(a["conference_id"]), str(a["participant_id"]))
            case "room.leg_signals":
                return await host.leg_signals(str(a["conference_id"]), str(a["participant_id"]), int(a["after"]),
                                              float(a.get("wait_s", LEG_SIGNALS_WAIT_S)))
            case "room.leave":
                await host.leave(str(a["conference_id"]), str(a["participant_id"]))
                return {}
        raise RpcRefused(501, f"unknown method {method[:64]}", "unknown_method")


class RemoteRoomHost:
    """The rooms of other nodes, reached over node RPC (the web node's `RoomHost`)."""

    def __init__(self, rpc: RpcCapability, lang: str = "zh-CN", key: str | None = None) -> None:
        self.rpc = rpc
        self.lang = lang
        self.key = key  # the HTTP request's idempotency key (a retried request runs once)

    def _refused(self, exc: RpcError) -> HostRefused:
        if exc.code.startswith(HOST_PREFIX):
            return HostRefused(exc.status, exc.message, exc.code[len(HOST_PREFIX):])
        status = ERROR_STATUS.get(exc.code, 503)
        return HostRefused(status if status in (404, 503) else 503,
                           translate(self.lang, f"node.{exc.code}" if exc.code in ERROR_STATUS else "node.failed"),
                           "node_" + exc.code)

    async def _room(self, conference_id: str, method: str, args: dict[str, Any],
                    timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109 - the call's deadline
        if not self.rpc.enabled:
            raise HostRefused(503, translate(self.lang, "node.unavailable"), "node_unavailable")
        try:
            return await self.rpc.rpc.call_owner("room", conference_id, method, {"conference_id": conference_id,
                                                                                  **args}, key=self.key,
                                                 timeout=timeout)
        except RpcError as exc:
            if exc.code == "unpinned":  # not running anywhere: a live MCU node answers for the record
                return await self._any(method, {"conference_id": conference_id, **args}, timeout)
            raise self._refused(exc) from None

    async def _any(self, method: str, args: dict[str, Any],
                   timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109 - the call's deadline
        """Call the most recently heard live MCU node (for what no room is pinned to yet)."""
        if not self.rpc.enabled:
            raise HostRefused(503, translate(self.lang, "node.unavailable"), "node_unavailable")
        nodes = await self.rpc.registry.alive("mcu")
        if not nodes:
            raise HostRefused(503, translate(self.lang, "node.no_mcu"), "node_no_mcu")
        try:
            return await self.rpc.rpc.call(nodes[0].node_id, method, args, key=self.key, timeout=timeout)
        except RpcError as exc:
            raise self._refused(exc) from None

    async def conferences(self, include_ended: bool) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self._any("room.conferences", {"include_ended": include_ended}))[
            "conferences"]
        return found

    async def state(self, conference_id: str) -> dict[str, Any]:
        return await self._room(conference_id, "room.state", {})

    async def create(self, fields: dict[str, Any], actor: str, start_now: bool) -> dict[str, Any]:
        return await self._any("room.create", {"fields": fields, "actor": actor, "start_now": start_now})

    async def extend(self, conference_id: str, minutes: int, actor: str) -> dict[str, Any]:
        return await self._room(conference_id, "room.extend", {"minutes": minutes, "actor": actor})

    async def start(self, conference_id: str, actor: str) -> dict[str, Any]:
        return await self._room(conference_id, "room.start", {"actor": actor})

    async def end(self, conference_id: str, actor: str) -> dict[str, Any]:
        return await self._room(conference_id, "room.end", {"actor": actor})

    async def operate(self, conference_id: str, op: ChairOperation) -> dict[str, Any]:
        return await self._room(conference_id, "room.operate", {"op": {**asdict(op), "sites": list(op.sites)}})

    async def dial(self, conference_id: str, site_id: str, action: str, actor: str) -> None:
        await self._room(conference_id, "room.dial", {"site_id": site_id, "action": action, "actor": actor})

    async def recording(self, conference_id: str, action: str, actor: str, source: str) -> dict[str, Any]:
        """On the recorder node that records the room (its `recording` pin), else, when recorder nodes run,
        on the most recently heard one (it streams the room from its MCU node), else on the room's node."""
        args = {"conference_id": conference_id, "action": action, "actor": actor, "source": source}
        if self.rpc.enabled:
            owner = await self.rpc.registry.owner("recording", conference_id)
            target: str | None = None
            if owner.state is OwnerState.ALIVE and owner.node is not None and owner.node.role == "recorder":
                target = owner.node.node_id
            elif owner.state is OwnerState.UNPINNED:
                recorders = [n for n in await self.rpc.registry.alive("recorder") if n.role == "recorder"]
                if recorders and action == "state":
                    return {"available": True, "recording": False}
                if recorders and action == "stop":
                    raise HostRefused(404, f"会议未在录制：{conference_id}", "not_recording")
                if recorders:
                    target = recorders[0].node_id
            if target is not None:
                try:
                    return await self.rpc.rpc.call(target, "rec.recording", args, key=self.key)
                except RpcError as exc:
                    raise self._refused(exc) from None
        return await self._room(conference_id, "room.recording", {"action": action, "actor": actor, "source": source})

    async def deck(self, conference_id: str, args: dict[str, Any], deadline_s: float | None = None) -> dict[str, Any]:
        return await self._room(conference_id, "room.deck", args, deadline_s)

    async def content(self, conference_id: str, args: dict[str, Any]) -> dict[str, Any]:
        return await self._room(conference_id, "room.content", args)

    async def join(self, request: JoinRequest) -> dict[str, Any]:
        return await self._room(request.conference_id, "room.join", {"request": asdict(request)})

    async def leg_state(self, conference_id: str, participant_id: str) -> dict[str, Any]:
        return await self._room(conference_id, "room.leg_state", {"participant_id": participant_id})

    async def leg_signals(self, conference_id: str, participant_id: str, after: int,
                          wait_s: float = LEG_SIGNALS_WAIT_S) -> dict[str, Any]:
        return await self._room(conference_id, "room.leg_signals",
                                {"participant_id": participant_id, "after": after, "wait_s": wait_s},
                                timeout=wait_s + 10)

    async def leave(self, conference_id: str, participant_id: str) -> None:
        with contextlib.suppress(HostRefused):  # the hosting node is gone: so is the leg
            await self._room(conference_id, "room.leave", {"participant_id": participant_id})
