"""The node's INVITE router: one explicit order (emergency numbers, cascade children, conferences).

Pure tests on real ``Call`` objects (parsed by the sans-I/O user agent), then the real routes of
the emergency trunk and cascade admission added in both start orders: the same INVITE goes to the
same handler either way.
"""
from __future__ import annotations

import asyncio
import itertools
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config.site_plan import Node
from dispatch.calltaking.trunk import EmergencyTrunk, TrunkConfig
from mcu.cascade.admission import CascadeAdmission
from sip_gateway.aio.sip_endpoint import Decision, InviteHandler, Reject, SipEndpoint
from sip_gateway.sip import events as ev
from sip_gateway.sip.dialog import Call
from sip_gateway.sip.invite_router import (
    ROUTE_ORDER,
    InviteRoute,
    InviteRouter,
    build_invite_router,
    with_default,
    with_route,
    without_route,
)
from sip_gateway.sip.useragent import UserAgent, UserAgentConfig
from tests.sip_gateway.sip_testlib import SDP_OFFER, Harness, request

_ids = itertools.count()


def invite(dialled: str, caller: str = "peer") -> Call:
    """A real incoming call to ``dialled`` from ``sip:<caller>@...`` (as the user agent parses it)."""
    n = next(_ids)
    harness = Harness(UserAgent(UserAgentConfig()))
    data = request(uri=f"sip:{dialled}@127.0.0.1", call_id=f"router-{n}", branch=f"z9hG4bKr{n}",
                   body=SDP_OFFER).replace(b"sip:peer@", f"sip:{caller}@".encode())
    harness.receive(data)
    return harness.events_of(ev.IncomingCall)[0].call


def named(name: str, claims: Callable[[Call], bool]) -> InviteRoute[str]:
    return InviteRoute(name, claims, name)


def test_first_route_that_claims_the_invite_handles_it() -> None:
    everything = named("cascade", lambda call: True)
    emergency = named("emergency", lambda call: call.request_user == "110")
    router = build_invite_router(conferences="conferences", emergency=emergency, cascade=everything)
    assert router.names == ["emergency", "cascade", "default"]
    assert router.handler_for(invite("110")) == "emergency"  # both claim it: the earlier route wins
    assert router.claimant(invite("110")) == "emergency"
    assert router.handler_for(invite("4711")) == "cascade"


def test_a_call_no_route_claims_goes_to_the_default() -> None:
    router = build_invite_router(conferences="conferences",
                                 emergency=named("emergency", lambda call: call.request_user == "110"),
                                 cascade=named("cascade", lambda call: False))
    assert router.handler_for(invite("4711")) == "conferences"
    assert router.claimant(invite("4711")) == "default"
    assert InviteRouter((), "only").handler_for(invite("110")) == "only"


def test_the_order_is_fixed_whatever_order_the_routes_are_added_in() -> None:
    emergency = named("emergency", lambda call: call.request_user == "110")
    cascade = named("cascade", lambda call: True)
    base: InviteRouter[str] = InviteRouter((), "conferences")
    one = with_route(with_route(base, emergency), cascade)
    other = with_route(with_route(base, cascade), emergency)
    assert one.names == other.names == [*ROUTE_ORDER, "default"]
    assert one.handler_for(invite("110")) == other.handler_for(invite("110")) == "emergency"


def test_routes_are_replaced_removed_and_the_default_changed_without_losing_the_others() -> None:
    first = named("emergency", lambda call: True)
    router = with_route(InviteRouter((), "old"), first)
    replacement = InviteRoute("emergency", lambda call: True, "new trunk")
    router = with_route(router, replacement)
    assert router.routes == (replacement,)
    router = with_default(router, "conferences")
    assert router.routes == (replacement,) and router.default == "conferences"
    assert without_route(router, "emergency").names == ["default"]
    assert without_route(router, "cascade").routes == router.routes


def test_unknown_or_misplaced_routes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown INVITE route"):
        with_route(InviteRouter((), "conferences"), named("other", lambda call: True))
    with pytest.raises(ValueError, match="the emergency route is named 'cascade'"):
        build_invite_router(conferences="c", emergency=named("cascade", lambda call: True))
    with pytest.raises(ValueError, match="two INVITE routes"):
        InviteRouter([named("cascade", lambda call: True)] * 2, "c")


# --- the real features' routes, added the way their start code adds them ---------------------

class _Desk:
    async def call_arrived(self, call: Any, handle: Any) -> object:
        return None

    async def caller_hung_up(self, call_key: str) -> None:
        return None


class _NoMedia:
    async def caller(self, host: str, port_range: tuple[int, int]) -> Any:
        raise OSError("not in this test")


async def _conferences(call: Call) -> Decision:
    return Reject(404, "No such conference")


def _routes(endpoint: SipEndpoint) -> tuple[InviteRoute[InviteHandler], InviteRoute[InviteHandler]]:
    trunk = EmergencyTrunk(endpoint, _Desk(), TrunkConfig(recordings_dir=Path("unused")), media=_NoMedia())
    nodes = [Node(name="city", sip="127.0.0.1:5060"), Node(name="county", parent="city", sip="127.0.0.1:5062")]
    plan = types.SimpleNamespace(nodes=nodes, conferences=[],
                                 link_children=lambda name: [n for n in nodes if n.parent == name])
    sip = types.SimpleNamespace(endpoint=endpoint)
    admission = CascadeAdmission(sip, plan, Node(name="city", sip="127.0.0.1:5060"), "token")  # type: ignore[arg-type]
    return trunk.route, admission.route


@pytest.mark.parametrize("emergency_first", [True, False])
def test_which_feature_takes_a_call_does_not_depend_on_the_start_order(emergency_first: bool) -> None:
    endpoint = SipEndpoint(UserAgentConfig(port=0))  # never started: only its router is used
    endpoint.router = with_default(endpoint.router, _conferences)  # the conference gateway starts first
    emergency, cascade = _routes(endpoint)
    for route in (emergency, cascade) if emergency_first else (cascade, emergency):
        endpoint.router = with_route(endpoint.router, route)
    assert endpoint.router.names == ["emergency", "cascade", "default"]
    # A child node dialling 110 is an emergency call; dialling a conference it is a cascade link;
    # anyone else dialling a conference reaches the conference gateway.
    assert endpoint.router.handler_for(invite("110", caller="county")) == emergency.handler
    assert endpoint.router.handler_for(invite("4711", caller="county")) == cascade.handler
    assert endpoint.router.handler_for(invite("4711", caller="someone")) is _conferences
    # The cascade stopping takes its route out and leaves the others in place.
    endpoint.router = without_route(endpoint.router, "cascade")
    assert endpoint.router.handler_for(invite("4711", caller="county")) is _conferences
    assert endpoint.router.handler_for(invite("110", caller="county")) == emergency.handler


async def test_the_endpoint_asks_its_router() -> None:
    """A real INVITE over UDP reaches the handler of the route that claims it."""
    seen: list[str] = []

    async def emergency(call: Call) -> Decision:
        seen.append(f"emergency {call.request_user}")
        return Reject(486, "Busy")

    endpoint = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=0))
    endpoint.router = build_invite_router(
        conferences=_conferences,
        emergency=InviteRoute("emergency", lambda call: call.request_user == "110", emergency))
    await endpoint.start(tcp=False)
    try:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            port = endpoint.config.port
            for n, dialled in enumerate(("110", "4711")):
                data = request(uri=f"sip:{dialled}@127.0.0.1:{port}", call_id=f"udp-{n}", branch=f"z9hG4bKu{n}",
                               body=SDP_OFFER)
                transport.sendto(data, ("127.0.0.1", port))
                await endpoint.wait_for(ev.CallEnded, within=5.0)
        finally:
            transport.close()
    finally:
        await endpoint.close()
    assert seen == ["emergency 110"]
