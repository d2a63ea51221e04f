"""Operating the call-taking desk wherever it runs: `DeskHost`, in this process or over node RPC.

The desk routes (`desk_console`) act on the desk through the `DeskHost` Protocol declared here:
one method, `op(name, args)`, whose names and arguments are JSON (the table is `DESK_OPS`). Two
implementations:

* `LocalDesk`: the `DeskService` of this process (`--role all`, or a `--role web` node that runs its
  own desk). `DeskHostService` serves it to other nodes over node RPC (methods `desk.<op>`), so a
  `--role desk` node (which serves no HTTP) answers a web node's requests.
* `RemoteDesk`: the client of a `--role web` node with `emergency.remote_desk = true`. It sends each
  operation to the desk node that holds the desk lease (`desk_node`), signed, with the HTTP request's
  idempotency key. A desk refusal (call gone, not offered to you) comes back as a `DeskError` (409);
  a dead or silent desk node, a missed deadline or no node secret is `DeskUnavailable` (503) with a
  zh-CN (or English) message, never a traceback.

The softphone's signalling is proxied like the conferences' WebRTC signalling: the browser posts its
offer to the web node, which forwards it (`media`); the desk node's answer carries its own ICE
candidates, so the call's audio flows between the browser and the desk node directly. Role checks,
CSRF and the route's own audit rows stay on the web node; the desk's audit rows are written by the
desk node (same database).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi.encoders import jsonable_encoder

from dispatch.calltaking.acd import PositionState
from dispatch.calltaking.aml import AmlFormatError
from dispatch.calltaking.errors import DeskError
from dispatch.calltaking.service import DeskService
from noderpc.lease import lease_holder
from noderpc.service import RpcCapability
from noderpc.transport import RpcError, RpcRefused
from web_console.desk_recordings import OPS as RECORDING_OPS
from web_console.desk_recordings import RecordingTransfers
from web_console.i18n import translate

DESK_PREFIX = "desk."
CONFLICT = "desk.conflict"


class DeskUnavailable(Exception):
    """The desk could not be reached (HTTP `status`, 503 mostly); nothing changed on this node."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class DeskHost(Protocol):
    """What the desk routes do to the desk: run operation `name` (a key of `DESK_OPS`) with JSON `args`.

    Raises DeskError (the desk refused: 409) or DeskUnavailable (not reachable)."""

    @property
    def local(self) -> DeskService | None: ...

    async def op(self, name: str, args: dict[str, Any]) -> Any: ...


Op = Callable[[DeskService, dict[str, Any]], Awaitable[Any]]


async def _position(svc: DeskService, a: dict[str, Any]) -> Any:
    me, state, training = str(a["me"]), str(a["state"]), a.get("training")
    if state == PositionState.AVAILABLE or me not in svc.acd.positions:
        await svc.login(me, str(a.get("group", "primary")), None if training is None else bool(training))
    elif training is not None:
        await svc.set_position_training(me, bool(training))
    if state != PositionState.AVAILABLE:
        await svc.set_position_state(me, state)
    return {"positions": svc.positions_view()}


async def _position_training(svc: DeskService, a: dict[str, Any]) -> Any:
    me = str(a["me"])
    if me not in svc.acd.positions:
        raise DeskError("席位尚未签入，请先示闲")
    await svc.set_position_training(me, bool(a["training"]))
    return {"positions": svc.positions_view(), "training_alarm": svc.training_alarm_view()}


async def _hangup(svc: DeskService, a: dict[str, Any]) -> Any:
    q = svc.acd.calls.get(str(a["call_id"]))
    if q is None or q.position_id != str(a["me"]):
        raise DeskError("该呼叫不在本席位")
    await svc.end_call(str(a["call_id"]), str(a["me"]), str(a["disposition"]))
    return {"ok": True}


async def _position_lost(svc: DeskService, a: dict[str, Any]) -> Any:
    pos = svc.acd.positions.get(str(a["me"]))
    if pos is not None and pos.state != PositionState.LOGGED_OUT:
        await svc.position_lost(str(a["me"]))
    return {"ok": True}


async def _page(svc: DeskService, a: dict[str, Any]) -> Any:
    return {"softphone": svc.bridge is not None, "thresholds": list(svc.config.answer_thresholds_s)}


async def _state(svc: DeskService, a: dict[str, Any]) -> Any:
    return {"queue": await svc.queue_view(), "dashboard": await svc.dashboard(), "callbacks": await svc.callbacks()}


async def _aml(svc: DeskService, a: dict[str, Any]) -> Any:
    """{"report": …} or {"rejected": reason} when the payload is not AML (the route audits it and answers 400)."""
    try:
        return {"report": await svc.post_aml(str(a["fmt"]), str(a["text"]), str(a["sender"]))}
    except AmlFormatError as exc:
        return {"rejected": str(exc)}


async def _ok(result: Awaitable[Any]) -> Any:
    await result
    return {"ok": True}


DESK_OPS: dict[str, Op] = {
    "page": _page,
    "state": _state,
    "position": _position,
    "position_training": _position_training,
    "position_lost": _position_lost,
    "call": lambda s, a: s.call_view(str(a["call_id"])),
    "answer": lambda s, a: s.answer(str(a["me"]), str(a["call_id"])),
    "location": lambda s, a: s.set_manual_location(str(a["call_id"]), float(a["lon"]), float(a["lat"]),
                                                   None if a.get("radius_m") is None else float(a["radius_m"]),
                                                   str(a.get("label", "")), str(a["me"])),
    "incident": lambda s, a: s.create_incident(str(a["call_id"]), str(a["me"]), **dict(a["fields"])),
    "merge": lambda s, a: s.link_to_incident(str(a["call_id"]), str(a["incident_id"]), str(a["me"])),
    "hangup": _hangup,
    "media": lambda s, a: s.media_offer(str(a["call_id"]), str(a["me"]), str(a["sdp"])),
    "hold": lambda s, a: _ok(s.hold(str(a["call_id"]), str(a["me"]), bool(a["on_hold"]))),
    "dtmf": lambda s, a: _ok(s.dtmf(str(a["call_id"]), str(a["me"]), str(a["digits"]))),
    "invite": lambda s, a: _ok(s.invite(str(a["call_id"]), str(a["me"]), str(a["target"]))),
    "leave": lambda s, a: _ok(s.leave_room(str(a["call_id"]), str(a["me"]))),
    "transfer": lambda s, a: _ok(s.transfer(str(a["call_id"]), str(a["me"]), str(a["target"]), bool(a["blind"]))),
    "dashboard": lambda s, a: s.dashboard(int(a["hours"])),
    "callbacks": lambda s, a: s.callbacks(bool(a["include_done"])),
    "callback_done": lambda s, a: _ok(s.callback_done(str(a["call_id"]), str(a["me"]))),
    "incident_calls": lambda s, a: s.calls_for_incident(str(a["incident_id"])),
    "aml": _aml,
}


class LocalDesk:
    """The desk of this process."""

    def __init__(self, service: DeskService) -> None:
        self.service = service

    @property
    def local(self) -> DeskService | None:
        return self.service

    async def op(self, name: str, args: dict[str, Any]) -> Any:
        run = DESK_OPS.get(name)
        if run is None:
            raise DeskUnavailable(501, f"unknown desk operation {name[:64]}")
        return await run(self.service, args)


class DeskHostService:
    """Serves a `LocalDesk` to other nodes (noderpc `RpcService`): method ``desk.<op>``."""

    def __init__(self, desk: LocalDesk) -> None:
        self.desk = desk
        self.recordings = RecordingTransfers(desk.service.recordings)  # desk.recording_* (desk_recordings.py)

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        name = method.removeprefix(DESK_PREFIX)
        if method.startswith(DESK_PREFIX) and name in RECORDING_OPS:
            try:
                return await self.recordings.handle(name, args)
            except (KeyError, TypeError, ValueError) as exc:
                raise RpcRefused(400, f"bad arguments: {exc}", "desk.malformed") from None
        if not method.startswith(DESK_PREFIX) or name not in DESK_OPS:
            raise RpcRefused(501, f"unknown method {method[:64]}", "unknown_method")
        try:
            result = await self.desk.op(name, args)
        except DeskError as exc:
            raise RpcRefused(409, str(exc), CONFLICT) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcRefused(400, f"bad arguments: {exc}", "desk.malformed") from None
        return {"result": jsonable_encoder(result)}


class DeskNodes(Protocol):
    """Which node runs the desk now (the holder of the desk lease)."""

    async def desk_node(self) -> str | None: ...


class RemoteDesk:
    """The desk of another node, reached over node RPC (a web node's `DeskHost`)."""

    def __init__(self, rpc: RpcCapability, nodes: DeskNodes, lang: str = "zh-CN", key: str | None = None) -> None:
        self.rpc = rpc
        self.nodes = nodes
        self.lang = lang
        self.key = key  # the HTTP request's idempotency key (a retried request runs once)

    @property
    def local(self) -> DeskService | None:
        return None

    async def op(self, name: str, args: dict[str, Any]) -> Any:
        if not self.rpc.enabled:
            raise DeskUnavailable(503, translate(self.lang, "node.unavailable"))
        target = await self.nodes.desk_node()
        if target is None:
            raise DeskUnavailable(503, translate(self.lang, "node.no_desk"))
        try:
            reply = await self.rpc.rpc.call(target, DESK_PREFIX + name, args,
                                            key=f"{self.key}:{name}" if self.key else None)
        except RpcError as exc:
            if exc.code == CONFLICT:
                raise DeskError(exc.message) from None
            if exc.code.startswith(DESK_PREFIX):
                raise DeskUnavailable(exc.status or 400, exc.message) from None
            code = "node.unavailable" if exc.code == "unavailable" else "node.desk_unreachable"
            raise DeskUnavailable(503, translate(self.lang, code)) from None
        return reply["result"]


class DeskLease:
    """The desk node a web node sends desk operations to: the holder of the desk lease (noderpc/lease.py)."""

    def __init__(self, rpc: RpcCapability, name: str = "desk") -> None:
        self.rpc = rpc
        self.name = name

    async def desk_node(self) -> str | None:
        return await lease_holder(self.rpc.registry.db, self.name)


__all__ = ["DESK_OPS", "DeskHost", "DeskHostService", "DeskLease", "DeskNodes", "DeskUnavailable", "DeskLease", "LocalDesk",
           "RemoteDesk"]
