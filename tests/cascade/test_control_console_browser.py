"""The chair console in headless Chromium at the city of a three-node cascade: remote sites behind
their link (经 …, 未知 when the channel is lost), commands on them with the remote node's answer,
and the path state per link (专线 / 电信备份 / 中断) with its switch history, live from
`cascade.path` events."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import expect

from config.roles import Role
from core import bus as core_bus
from tests.browser import chromium, sign_in
from tests.cascade.test_control_nodes import CONF, NodeUnderTest, eventually, nodes  # noqa: F401 - fixture
from tests.conftest import free_port
from web_console.app import create_app

PASSWORD = "Cascade-Console-Pass-2026"


@dataclass
class PathBoard:
    """The `cascade` capability's interface as the console reads it (status per link, control-state
    input). The failover itself is built on the cascade-link branch; this holds one link's state
    the way its `status()` reports it, and the test publishes `cascade.path` events as it does."""

    links: list[dict[str, Any]] = field(default_factory=list)
    control: list[tuple[str, bool]] = field(default_factory=list)

    def status(self, conference_id: str) -> list[dict[str, Any]]:
        return self.links if conference_id == CONF else []

    def switch(self, event: dict[str, Any]) -> dict[str, Any]:
        """Record a path switch as the failover would, and return it as its `cascade.path` event."""
        link = next(link for link in self.links if link["node"] == event["node"])
        link.update(state=event["state"], since=event["at"])
        link["history"].append({k: event[k] for k in ("at", "state", "previous", "reason")})
        return event

    def control_state(self, node: str, up: bool) -> None:
        self.control.append((node, up))

    async def stop(self) -> None:
        return None


@pytest.fixture
def chair_sees_cascade_events() -> None:
    """Chairs receive cascade.path events on /ws/events (the live badge depends on it)."""
    assert core_bus.visible_to("cascade.path", Role.CHAIR) and not core_bus.visible_to("cascade.path", Role.CALLTAKER)


async def test_console_shows_remote_sites_and_path_state(nodes: dict[str, NodeUnderTest],  # noqa: F811
                                                         chair_sees_cascade_events: None,
                                                         artifacts_dir: Path) -> None:
    city, county, town = nodes["city"], nodes["luoding"], nodes["luoding-t1"]
    started = time.time() - 60
    board = PathBoard([{"node": "luoding", "role": "down", "state": "primary", "since": started,
                        "history": [{"at": started, "state": "primary", "previous": "down", "reason": "专线已接通"}]}])
    city.node.cascade = board  # type: ignore[assignment]
    assert city.control is not None
    city.control.failover = board  # the control channels report to the failover they were given
    await city.core.identity.create_user("chair-b", PASSWORD, "chair")
    await eventually(lambda: "445381-05-room" in {s["site_id"] for s in city.conf.remote_site_list()})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(city.node), host="127.0.0.1", port=port, log_level="warning",
                                           ws="websockets-sansio", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(15)

    def wait_for(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not check():
            assert time.monotonic() < deadline, "condition not met"
            time.sleep(0.05)

    def drive() -> None:
        base = f"http://127.0.0.1:{port}"
        with chromium() as browser:
            page = browser.new_page()
            page.goto(base + "/conference")
            sign_in(page, "chair-b", PASSWORD)
            page.goto(base + f"/conference#{CONF}")
            page.reload()
            row = page.get_by_test_id("site-445381-05-room")
            expect(row).to_be_visible()
            expect(page.get_by_test_id("via-445381-05-room")).to_have_text("经 罗定市 › 罗镜镇")
            expect(page.get_by_test_id("status-445381-05-room")).to_have_text("已入会")
            expect(page.get_by_test_id("path-luoding")).to_have_text("专线")
            expect(page.get_by_test_id("channel-luoding")).to_have_text("控制通道正常")
            expect(page.get_by_test_id("history-luoding")).to_contain_text("中断 → 专线")

            # a switch to the telecom backup arrives live
            on_loop(city.core.bus.publish("cascade.path", board.switch({
                "conference_id": CONF, "node": "luoding", "state": "backup", "previous": "primary",
                "reason": "专线RTP 中断 3 秒", "at": time.time()})))
            expect(page.get_by_test_id("path-luoding")).to_have_text("电信备份")
            expect(page.get_by_test_id("path-luoding")).to_have_attribute("data-state", "backup")
            expect(page.get_by_test_id("history-luoding").locator("tbody tr").first).to_contain_text(
                "专线 → 电信备份")
            expect(page.get_by_test_id("history-luoding")).to_contain_text("专线RTP 中断 3 秒")

            # roll call of a township two levels down, from the console
            page.get_by_test_id("rollcall-445381-05-room").click()
            wait_for(lambda: town.conf.room.broadcast_id == "445381-05-room")
            wait_for(lambda: city.conf.room.broadcast_id == "cascade-luoding")
            expect(page.get_by_test_id("console-error")).to_have_text("")
            # select-view at the township node, among that node's own sites
            page.get_by_test_id("select-view-t1-extra").select_option("445381-05-room")
            wait_for(lambda: town.conf.room.selected.get("t1-extra") == "445381-05-room")
            # a refusal by the township node is shown as the answer
            # (focused, so that a refresh from the roll call's events does not reset the field)
            page.evaluate("(() => { const el = document.getElementById('banner-text');"
                          " el.focus(); el.value = 'a\\u0007b'; })()")
            page.get_by_test_id("banner-t1-extra").click()
            expect(page.get_by_test_id("console-error")).to_contain_text("会标包含不可显示的字符")
            assert town.conf.room.banner is None

            # the county's control channel goes: its sites are unknown, the link itself stays
            on_loop(county.stop_control())
            expect(page.get_by_test_id("status-445381-05-room")).to_have_text("未知")
            expect(page.get_by_test_id("status-luoding-room")).to_have_text("未知")
            expect(page.get_by_test_id("status-cascade-luoding")).to_have_text("已入会")
            expect(page.get_by_test_id("rollcall-445381-05-room")).to_have_count(0)
            expect(page.get_by_test_id("channel-luoding")).to_have_text("控制通道中断")
            page.screenshot(path=str(artifacts_dir / "cascade-console-unknown.png"), full_page=True)
            on_loop(county.start_control())
            expect(page.get_by_test_id("status-445381-05-room")).to_have_text("已入会", timeout=10_000)
            expect(page.get_by_test_id("channel-luoding")).to_have_text("控制通道正常")
            expect(page.get_by_test_id("path-luoding")).to_have_text("电信备份")  # reloaded from status()
            expect(page.get_by_test_id("cascade-link-luoding")).to_contain_text("罗定市")
            page.screenshot(path=str(artifacts_dir / "cascade-console.png"), full_page=True)

    try:
        await asyncio.to_thread(drive)
    finally:
        server.should_exit = True
        await serving
    assert ("luoding", False) in board.control and board.control[-1] == ("luoding", True)
