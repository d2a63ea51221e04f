"""FailoverDriver on the real event loop with short thresholds (mcu.cascade.failover_driver).

The SIP cascade leg does not exist yet, so the dialer here is a two-line switchboard: a call on
a line whose `up` flag is set answers after 50 ms and then streams 'RTP' every 50 ms; on a line
that is down it fails. That exercises the driver's timers, ordering and event publishing."""
from __future__ import annotations

import asyncio

from mcu.cascade.failover import FailoverConfig, FailoverLink, ObservationKind, PathEvent, PathState, Route
from mcu.cascade.failover_driver import FailoverDriver

K = ObservationKind


class Switchboard:
    def __init__(self) -> None:
        self.up = {Route.PRIMARY: True, Route.BACKUP: True}
        self.driver: FailoverDriver | None = None
        self.calls: dict[Route, asyncio.Task[None]] = {}
        self.log: list[tuple[str, Route]] = []

    async def dial(self, route: Route, target: str) -> None:
        self.log.append(("dial", route))
        self.calls[route] = asyncio.create_task(self._call(route))

    async def hangup(self, route: Route, reason: str) -> None:
        self.log.append(("hangup", route))
        task = self.calls.pop(route, None)
        if task:
            task.cancel()

    async def _call(self, route: Route) -> None:
        assert self.driver is not None
        await asyncio.sleep(0.05)
        if not self.up[route]:
            self.driver.observe(K.CALL_FAILED, route, "408")
            return
        self.driver.observe(K.CALL_UP, route)
        while True:
            await asyncio.sleep(0.05)
            if self.up[route]:
                self.driver.observe(K.MEDIA, route)


async def probe(board: Switchboard) -> None:
    assert board.driver is not None
    while True:
        await asyncio.sleep(0.1)
        board.driver.observe(K.OPTIONS_OK if board.up[Route.PRIMARY] else K.OPTIONS_TIMEOUT, Route.PRIMARY)


async def wait_state(link: FailoverLink, state: PathState, within: float) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with asyncio.timeout(within):
        while link.state is not state:  # noqa: ASYNC110  (the link is a plain object)
            await asyncio.sleep(0.01)
    return loop.time() - t0


async def test_driver_fails_over_and_switches_back_once() -> None:
    cfg = FailoverConfig("sip:cascade@10.0.1.2", "sip:99001@trunk", rtp_timeout=0.5, dial_timeout=1.0,
                         probe_gap=0.5, hold=0.6, retry_interval=0.2)
    link = FailoverLink(cfg)
    board = Switchboard()
    events: list[PathEvent] = []
    driver = FailoverDriver(link, board, events.append)
    board.driver = driver
    driver.start()
    prober = asyncio.create_task(probe(board))
    try:
        await wait_state(link, PathState.PRIMARY, 2)
        board.up[Route.PRIMARY] = False  # the private line goes down
        failover = await wait_state(link, PathState.BACKUP, 2)
        assert failover < 1.5  # threshold 0.5 + answer 0.05 + generous slack for a loaded CI box
        board.up[Route.PRIMARY] = True
        back = await wait_state(link, PathState.PRIMARY, 3)
        assert back >= 0.6  # not before the hold time
        await asyncio.sleep(0.5)
    finally:
        prober.cancel()
        await driver.stop()
        for task in board.calls.values():
            task.cancel()
    assert [e.state.value for e in events] == ["primary", "down", "backup", "primary"]
    assert [e.state for e in link.history] == [e.state for e in events]
    # ordered actions: primary up, hang it up, dial backup, ..., dial primary, then hang up backup
    assert board.log[:3] == [("dial", Route.PRIMARY), ("hangup", Route.PRIMARY), ("dial", Route.BACKUP)]
    assert board.log[-2:] == [("dial", Route.PRIMARY), ("hangup", Route.BACKUP)]


async def test_dial_that_cannot_start_counts_as_failed_call() -> None:
    loop = asyncio.get_running_loop()
    dials: list[tuple[float, Route]] = []

    class Broken:
        async def dial(self, route: Route, target: str) -> None:
            dials.append((loop.time(), route))
            raise OSError("no route to host")

        async def hangup(self, route: Route, reason: str) -> None:
            return None

    link = FailoverLink(FailoverConfig("sip:a@b", "sip:c@d", retry_interval=0.1))
    driver = FailoverDriver(link, Broken())
    driver.start()
    try:
        async with asyncio.timeout(2):
            while sum(r is Route.BACKUP for _, r in dials) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await driver.stop()
    assert link.state is PathState.DOWN
    primary = [t for t, r in dials if r is Route.PRIMARY]
    assert all(b - a >= 0.1 - 0.01 for a, b in zip(primary, primary[1:], strict=False))  # retries are paced
