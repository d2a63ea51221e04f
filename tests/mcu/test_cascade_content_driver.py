"""The tree content token on the real loop, over real control channels (websockets on 127.0.0.1):
city ← county ← township, each node a TreeContentDriver fed by its ControlSessions."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from mcu.cascade.content_driver import TreeContentDriver
from mcu.cascade.content_tree import PARENT, Message, Source, TreeContent
from mcu.cascade.control import ContentReceived, ControlConnection, Event
from mcu.cascade.control_ws import ControlSession
from mcu.content.token import ContentToken, Result

TOKEN = b"shared-cascade-token-0123456789"
CONF = "80000001"


class Node:
    """One node: its driver, its control sessions (by link), what its content was told."""

    def __init__(self, name: str, parent: str | None, children: frozenset[str], **kw: Any) -> None:
        self.name = name
        self.sessions: dict[str, ControlSession] = {}
        self.answers: list[tuple[str, bool, str]] = []
        self.holders: list[tuple[str | None, Source | None]] = []
        self.applied: list[Result] = []
        self.driver = TreeContentDriver(TreeContent(name, parent, children, **kw), self, self)
        self.flushes: set[asyncio.Task[None]] = set()

    # ContentLinks
    def send(self, to: str, message: Message) -> None:
        session = self.sessions.get(to)
        if session is None:
            return
        session.conn.send_content(message, CONF)
        task = asyncio.get_running_loop().create_task(session.flush())
        self.flushes.add(task)
        task.add_done_callback(self.flushes.discard)

    # LocalContent
    def decided(self, site: str, granted: bool, reason: str, queued: bool = False) -> None:
        self.answers.append((site, granted, reason))

    def holder_changed(self, presenter: str | None, source: Source | None) -> None:
        self.holders.append((presenter, source))

    def token_applied(self, result: Result) -> None:
        self.applied.append(result)

    def dequeued(self, site: str) -> None:
        self.answers.append((site, False, "dequeued"))

    def on_event(self, link: str, event: Event) -> None:
        if isinstance(event, ContentReceived) and event.conference == CONF:
            if link == PARENT:
                self.driver.from_parent(event.message)
            else:
                self.driver.from_child(link, event.message)


@asynccontextmanager
async def listen(node: Node, child: str) -> AsyncIterator[str]:
    async def handler(ws: ServerConnection) -> None:
        session = ControlSession(ws, ControlConnection(node.name, TOKEN, expected_peer=child),
                                 lambda e: node.on_event(child, e))
        node.sessions[child] = session
        task = asyncio.create_task(session.run())
        await session.authenticated.wait()
        node.driver.child_up(child)
        await task
        node.sessions.pop(child, None)
        node.driver.child_lost(child)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws/cascade"


async def dial_up(stack: AsyncExitStack, node: Node, parent: str, uri: str) -> asyncio.Task[None]:
    ws = await stack.enter_async_context(connect(uri))
    session = ControlSession(ws, ControlConnection(node.name, TOKEN, expected_peer=parent),
                             lambda e: node.on_event(PARENT, e))
    node.sessions[PARENT] = session
    task = asyncio.create_task(session.run())
    await asyncio.wait_for(session.authenticated.wait(), 5)
    node.driver.parent_up()
    return task


async def wait_for(cond: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_township_presents_to_the_city_through_two_levels_and_the_city_chair_takes_it() -> None:
    await asyncio.wait_for(scenario(), 30)  # bounded, teardown included


async def scenario() -> None:
    city = Node("city", None, frozenset({"county"}), token=ContentToken(media_timeout=5.0))
    county = Node("county", "city", frozenset({"township"}))
    township = Node("township", "county", frozenset(), request_timeout=0.5)
    nodes = (city, county, township)
    for n in nodes:
        n.driver.start()
    try:
        async with AsyncExitStack() as stack:
            city_uri = await stack.enter_async_context(listen(city, "county"))
            county_uri = await stack.enter_async_context(listen(county, "township"))
            county_up = await dial_up(stack, county, "city", city_uri)
            await dial_up(stack, township, "county", county_uri)
            await wait_for(lambda: "township" in county.sessions and "county" in city.sessions)

            township.driver.request("site-7")
            await wait_for(lambda: township.answers == [("site-7", True, "")])
            await wait_for(lambda: all(n.driver.tree.holder == "township/site-7" for n in nodes))
            assert city.holders[-1] == ("township/site-7", Source("child", "county"))
            assert township.holders[-1] == ("township/site-7", Source("local", "township/site-7"))
            assert city.driver.media("township/site-7")

            city.driver.chair_take("zhang")
            await wait_for(lambda: township.driver.tree.holder == "chair:zhang")
            assert township.holders[-1] == ("chair:zhang", Source("parent", PARENT))
            assert not township.driver.tree.sends_to(PARENT)

            # The county loses the city: the township's request is refused at the county, at once.
            await county.sessions[PARENT].ws.close()
            await asyncio.wait_for(county_up, 5)
            county.driver.parent_lost()
            township.driver.request("site-7")
            await wait_for(lambda: township.answers[-1] == ("site-7", False, "unreachable"))
            assert township.driver.tree.holder is None  # the chair's picture came from above
            # The city noticed too: the county's subtree holds nothing there.
            await wait_for(lambda: "county" not in city.sessions)
            assert city.driver.tree.holder == "chair:zhang"

            # A county that never answers: the township's own timer refuses the request.
            county.driver.tree.parent_up = True  # it believes its parent is there; nothing arrives
            township.driver.request("site-8")
            await wait_for(lambda: township.answers[-1] == ("site-8", False, "timeout"), within=3.0)
    finally:
        for n in nodes:
            await n.driver.stop()
