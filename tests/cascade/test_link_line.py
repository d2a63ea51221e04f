"""A cascade link's line rate reaches the SIP call that carries it (the link's rate budget)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mcu.cascade.failover import Route
from mcu.cascade.uplink import RouteCall, SipPathDialer


class _Sip:
    """The part of SipBridge the dialer uses; records the invite."""

    def __init__(self) -> None:
        room = SimpleNamespace(set_loop_free=lambda site_id, group: None)
        self.conferences = SimpleNamespace(running=lambda conference_id: SimpleNamespace(room=room))
        self.invites: list[dict[str, Any]] = []

    async def invite(self, conference_id: str, site_id: str, **kwargs: Any) -> None:
        self.invites.append({"conference_id": conference_id, "site_id": site_id, **kwargs})


async def test_the_uplink_dials_on_its_line() -> None:
    sip = _Sip()
    routes = {Route.PRIMARY: RouteCall("cascade-city", "云浮市级联"), Route.BACKUP: RouteCall("cascade-city-backup", "b")}
    dialer = SipPathDialer(sip, "81000001", "county-a", routes, line_kbps=768)  # type: ignore[arg-type]
    await dialer.dial(Route.PRIMARY, "sip:81000001@10.0.0.1:5060")
    await dialer.dial(Route.BACKUP, "sip:981000001@10.0.0.9:5060")
    assert [i["line_kbps"] for i in sip.invites] == [768, 768]
    assert [i["site_id"] for i in sip.invites] == ["cascade-city", "cascade-city-backup"]
