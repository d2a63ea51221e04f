"""Issue 17: a console whose event stream drops (a network cut, a web node or database failover)
reconnects with `?since=<last event id>` and shows every incident created meanwhile, once.

The cut is real: the browser reaches the server through a TCP relay on 127.0.0.1 that this test
owns; `cut()` closes every relayed connection (the websocket dies from the server's side of the
browser) and refuses new ones until `restore()`."""
from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from playwright.sync_api import Page, expect

from tests.browser import chromium, sign_in
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

LUODING = {"lon": 111.5700, "lat": 22.7690}


class CuttableLink:
    """A TCP relay 127.0.0.1:<port> -> the server, whose connections the test can cut."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stop = False
        self._thread = threading.Thread(target=self._accept, name="resync-link", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.up:
                client.close()  # the link is down: refused
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stop:
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            self._close(a, b)

    def _close(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                self._open.discard(s)
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self.up = False
        with self._lock:
            live = list(self._open)
        self._close(*live)

    def restore(self) -> None:
        self.up = True

    def stop(self) -> None:
        self._stop = True
        self.cut()
        self.listener.close()
        self._thread.join(5)


@pytest.fixture
def link(server: RunningServer) -> Iterator[CuttableLink]:
    port = int(server.url.rsplit(":", 1)[1])
    relay = CuttableLink(port)
    yield relay
    relay.stop()


def _event_ids(db_url: str, incident_ids: list[str]) -> dict[str, list[int]]:
    async def query() -> dict[str, list[int]]:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT id, payload->'incident'->>'id' AS inc FROM events "
                                    "WHERE topic = 'incident.created' AND payload->'incident'->>'id' = ANY($1::text[])",
                                    incident_ids)
        finally:
            await conn.close()
        out: dict[str, list[int]] = {i: [] for i in incident_ids}
        for r in rows:
            out[r["inc"]].append(r["id"])
        return out
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs an event loop in this thread
        return pool.submit(asyncio.run, query()).result(30)


def test_dispatch_console_catches_up_after_its_event_stream_is_cut(
        server: RunningServer, link: CuttableLink, artifacts_dir: Path) -> None:
    api = server.login("dispatcher")
    with chromium() as browser:
        context = browser.new_context(locale="zh-CN", viewport={"width": 1500, "height": 950})
        page: Page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{link.port}/dispatch")
        sign_in(page, "dispatcher", server.passwords["dispatcher"])
        expect(page.locator("#conn.up")).to_have_count(1, timeout=10_000)

        def create(note: str) -> str:
            r = api.post("/api/incidents", json={"category": "police", "priority": 3, **LUODING, "description": note})
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        before = create("before the cut")
        expect(page.locator(f'#queue li[data-incident-id="{before}"]')).to_have_count(1, timeout=10_000)
        last_before = page.evaluate("window.ccEventStreams[0].lastId")
        assert isinstance(last_before, int)

        link.cut()
        expect(page.locator("#conn.up")).to_have_count(0, timeout=10_000)
        missed = [create(f"while cut {i}") for i in range(3)]
        page.wait_for_timeout(2500)  # at least one reconnect attempt is refused while the link is down
        for inc in missed:
            expect(page.locator(f'#queue li[data-incident-id="{inc}"]')).to_have_count(0)

        link.restore()
        expect(page.locator("#conn.up")).to_have_count(1, timeout=20_000)
        for inc in missed:
            expect(page.locator(f'#queue li[data-incident-id="{inc}"]')).to_have_count(1, timeout=10_000)
        stream = page.evaluate("(() => { const s = window.ccEventStreams[0];"
                               " return {urls: s.urls, delivered: s.delivered, lastId: s.lastId}; })()")
        # the reconnect asked for what it missed, from the last id it had, with no topics lost
        assert any(u.endswith(f"?since={last_before}") for u in stream["urls"][1:]), stream["urls"]
        ids = _event_ids(server.db_url, [before, *missed])
        for inc in missed:
            assert len(ids[inc]) == 1, ids
            assert stream["delivered"].count(ids[inc][0]) == 1, (inc, stream["delivered"])  # replayed, once
        assert len(stream["delivered"]) == len(set(stream["delivered"]))
        page.screenshot(path=str(artifacts_dir / "dispatch_resync.png"))
        assert errors == [], errors
        context.close()
