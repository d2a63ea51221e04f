"""Real ``--role mcu`` nodes in this process for the content-through-the-cascade tests (issue 18):
the site plan around a test's own ``[[nodes]]``, one database per node, start and bounded stop, the
synthetic slides and their pixel check. Used by test_content_cascade.py (city ← 罗定 ← a township),
test_content_cascade_srtp.py (an SRTP link) and test_content_backup.py (a link on the telecom bridge).
"""
from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import asyncpg
import av
import numpy as np

from commandcenter.node import Node, start_node
from config.settings import DEMO_DIR
from core.runtime import CoreServices
from mcu.cascade.content_link import CascadedContent
from mcu.conferences import RunningConference
from mcu.content.service import ConferenceContent
from mcu.room import RoomSettings
from tests.conftest import make_settings, with_database

TOKEN = "cascade-content-token-0123456789"
CONF = "80000079"
# quadrant colours (top-left, top-right, bottom-left, bottom-right) of each presenter's slide
TOWN_SLIDE = ((220, 30, 30), (30, 200, 40), (30, 40, 220), (235, 235, 235))
CITY_SLIDE = ((240, 220, 30), (20, 20, 20), (200, 30, 200), (30, 200, 210))


def slide(colours: tuple[tuple[int, int, int], ...], pts: int) -> av.VideoFrame:
    img = np.zeros((360, 640, 3), dtype=np.uint8)
    img[:180, :320], img[:180, 320:], img[180:, :320], img[180:, 320:] = colours
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts, frame.time_base = pts, Fraction(1, 90000)
    return frame


def shows(content: ConferenceContent, colours: tuple[tuple[int, int, int], ...]) -> bool:
    """The node's content picture (decoded from what reached it) shows the slide's four quadrants."""
    sample = content.source.sample()
    if sample is None:
        return False
    img = sample.frame.to_ndarray(format="rgb24").astype(int)
    h, w = img.shape[:2]
    centres = ((h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4))
    return all(np.abs(img[y - 5:y + 5, x - 5:x + 5].reshape(-1, 3).mean(axis=0) - c).max() < 40
               for (y, x), c in zip(centres, colours, strict=True))


@dataclass
class Site:
    name: str
    node: Node

    @property
    def conf(self) -> RunningConference:
        assert self.node.mcu is not None
        conf = self.node.mcu.conferences.running(CONF)
        assert conf is not None
        return conf

    @property
    def content(self) -> ConferenceContent:
        assert self.node.mcu is not None and self.node.mcu.content is not None
        return self.node.mcu.content.of(self.conf)

    @property
    def tree(self) -> CascadedContent | None:
        return self.node.cascade_control.content_tree(CONF) if self.node.cascade_control is not None else None


def write_plan(tmp_path: Path, nodes_toml: str) -> Path:
    """The demo plan (conferences not standing) plus a test's own ``[[nodes]]``/``[[conferences]]``."""
    text = (DEMO_DIR / "yunfu.toml").read_text(encoding="utf-8").replace("standing = true", "standing = false")
    (tmp_path / "yunfu_counties.geojson").write_bytes((DEMO_DIR / "yunfu_counties.geojson").read_bytes())
    plans = tmp_path / "plans"
    if not plans.exists():
        plans.symlink_to(DEMO_DIR / "plans")
    path = tmp_path / "plan.toml"
    path.write_text(text + nodes_toml, encoding="utf-8")
    return path


async def stop_within(node: Node, seconds: float) -> None:
    """Stop a node, bounded: once (in one run of many) a node's stop hung past the test's timeout
    with nothing to show; past ``seconds`` the tasks still pending are printed and the test fails."""
    stopping = asyncio.ensure_future(node.stop())
    try:
        await asyncio.wait_for(asyncio.shield(stopping), seconds)
    except TimeoutError:
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                print("pending at stop:", task, file=sys.stderr)
                task.print_stack(limit=8, file=sys.stderr)
        raise AssertionError(f"node {node.core.settings.node_name} did not stop within {seconds} s") from None


@asynccontextmanager
async def running_nodes(pg_url: str, tmp_path: Path, plan: Path, sip: Mapping[str, int], cascade: dict[str, object],
                        srtp: str = "off", bridges: frozenset[str] = frozenset()) -> AsyncIterator[dict[str, Site]]:
    """One node per entry of ``sip`` (in its order, each with its own database), the conference
    started on every node but the ``bridges``; stopped in reverse order (bounded), databases dropped."""
    dbs = {n: "cc_" + uuid.uuid4().hex[:12] for n in sip}
    admin = await asyncpg.connect(pg_url)
    try:
        for db in dbs.values():
            await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    started: dict[str, Site] = {}
    try:
        for name, port in sip.items():
            settings = make_settings(
                with_database(pg_url, dbs[name]), tmp_path / name, node_name=name, site_plan=plan, cascade=cascade,
                sip={"host": "127.0.0.1", "udp_port": port, "tcp_port": port, "tls_port": 0, "srtp": srtp,
                     "max_video_size": "352x288", "stats_interval_seconds": 0},
                h323={"enabled": False}, demo={"enabled": False, "demo_sites": False})
            core = await CoreServices.start(settings, seed=False)
            try:
                node = await start_node(core, "mcu")
            except BaseException:
                await core.stop()
                raise
            assert node.mcu is not None and node.cascade is not None
            node.mcu.conferences.room_settings = RoomSettings(width=320, height=180, fps=10)
            if name not in bridges:
                assert node.cascade_control is not None
                node.cascade_control.reconnect_interval = 0.2
                await node.mcu.conferences.start_conference(CONF, "test")
            started[name] = Site(name, node)
        yield started
    finally:
        for site in reversed(list(started.values())):
            await stop_within(site.node, 60)
        admin = await asyncpg.connect(pg_url)
        try:
            for db in dbs.values():
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await admin.close()


async def eventually(check: Callable[[], bool], within: float, what: str,
                     why: Callable[[], str] = lambda: "") -> None:
    try:
        async with asyncio.timeout(within):
            while not check():  # noqa: ASYNC110 - media and channels have no event to await here
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what} {why()}") from None


def media_state(sites: dict[str, Site]) -> str:
    """Each node's content (who, from where, live) and its links' slides streams: for failure messages."""
    out = []
    for site in sites.values():
        content = site.content
        links = site.node.cascade.content.status() if site.node.cascade and site.node.cascade.content else []
        sample = content.source.sample()
        out.append(f"{site.name}: holder={content.holder} feed={content.feed} refused={content.source.frames_refused} "
                   f"in={content.source.frames_in} live={sample is not None} links={links}")
    return "; ".join(out)


async def present(site: Site, who: str, colours: tuple[tuple[int, int, int], ...],
                  frames: list[asyncio.Task[None]]) -> None:
    """``who`` at ``site`` takes the token and its synthetic slide is sent at 5 fps."""
    await site.content.present(who)

    async def feed() -> None:
        pts = 0
        while True:
            site.content.on_frame(who, slide(colours, pts))
            pts += 18000
            await asyncio.sleep(0.2)

    frames.append(asyncio.create_task(feed()))
