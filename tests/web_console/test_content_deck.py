"""The chair's slide deck against a running server: headless Chromium uploads and pages it on the
chair console, real WebRTC receivers (aiortc) decode it.

A two-page PDF is made here with Pillow's PDF writer, each page one palette colour. The chair
uploads it on the console; a site that takes the content as a second stream sees page 1's colour
on it, a single-stream site sees it in its composite; the chair clicks 下一页 and both see page 2's
colour. Random bytes named ``.pdf`` are refused with the clear message and nothing changes; the
leader pages the deck, a viewer cannot (403); ending the conference deletes the deck's files.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, run_async
from tests.mcu.mcu_helpers import source_frame
from tests.web_console.test_content_share import Watcher, at, create, join, next_message

SERVER_ENV = {"CC_DEMO__DEMO_SITES": "false"}
PAGE1, PAGE2 = 9, 17  # palette colours of the two pages
SITE = 3


@pytest.fixture(scope="module")
def chair(server: RunningServer) -> Iterator[httpx.Client]:
    client = server.login("chair")
    yield client
    client.close()


def two_page_pdf(path: Path) -> Path:
    pages = [source_frame(i, 800, 450).to_image() for i in (PAGE1, PAGE2)]  # type: ignore[no-untyped-call]
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:])
    return path


def var_dir(server: RunningServer) -> Path:
    environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
    return Path(next(e for e in environ if e.startswith(b"CC_VAR_DIR=")).split(b"=", 1)[1].decode())


def wait(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def test_chair_uploads_and_pages_a_deck_seen_on_the_content_stream(
        server: RunningServer, chair: httpx.Client, tmp_path: Path, artifacts_dir: Path) -> None:
    from tests.browser import chromium, sign_in

    cid = create(chair, "演示文稿测试")
    pdf = two_page_pdf(tmp_path / "汇报.pdf")
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(os.urandom(4096).replace(b"%", b"x"))
    shared: dict[str, Any] = {}

    def second_stream_shows(colour: int) -> bool:
        watcher: Watcher | None = shared.get("watcher")
        return (watcher is not None and bool(watcher.frames)
                and at(watcher.frames[-1][1], 0.5, 0.5) == colour and at(watcher.frames[-1][1], 0.1, 0.1) == colour)

    def composite_shows(colour: int) -> bool:
        c = shared["c"]
        return c.latest is not None and [at(c.latest, x, 0.4) for x in (0.3, 0.5, 0.7)] == [colour] * 3

    def drive() -> None:
        with chromium() as browser:
            console = browser.new_context().new_page()
            console.goto(server.url + "/login")
            sign_in(console, "chair", server.passwords["chair"])
            console.wait_for_url(server.url + "/")
            console.goto(server.url + f"/conference#{cid}")
            console.wait_for_selector("[data-testid=room]:not([hidden])", timeout=20_000)
            console.set_input_files("[data-testid=deck-file]", str(pdf))
            console.wait_for_function("document.querySelector('[data-testid=deck-page]').dataset.page === '1'",
                                      timeout=60_000)
            assert console.inner_text("[data-testid=deck-name]") == "汇报.pdf"
            assert "第 1 / 2 页" in console.inner_text("[data-testid=deck-page]")
            console.wait_for_function("document.querySelector('[data-testid=deck-status]').dataset.showing === '1'",
                                      timeout=10_000)
            wait(lambda: second_stream_shows(PAGE1), 40, "page 1 on the content stream")
            wait(lambda: composite_shows(PAGE1), 20, "page 1 in the single-stream composite")
            console.screenshot(path=str(artifacts_dir / "deck-chair-console.png"), full_page=True)
            console.click("[data-testid=deck-next]")
            console.wait_for_function("document.querySelector('[data-testid=deck-page]').dataset.page === '2'",
                                      timeout=10_000)
            wait(lambda: second_stream_shows(PAGE2), 20, "page 2 on the content stream")
            wait(lambda: composite_shows(PAGE2), 20, "page 2 in the single-stream composite")
            # A fake PDF (random bytes): refused with the clear message; the deck stays on page 2.
            console.set_input_files("[data-testid=deck-file]", str(fake))
            console.wait_for_function(
                "document.querySelector('[data-testid=console-error]').textContent.includes('不是 PDF')",
                timeout=20_000)
            assert console.eval_on_selector("[data-testid=console-error]", "e => e.dataset.code") == "not_supported"
            assert console.inner_text("[data-testid=deck-name]") == "汇报.pdf"
            assert console.eval_on_selector("[data-testid=deck-page]", "e => e.dataset.page") == "2"
            time.sleep(1.0)
            assert second_stream_shows(PAGE2)

    async def scenario() -> None:
        b = await join(server, cid, SITE)  # takes the content as a second stream
        c = await join(server, cid, SITE + 1)  # one video stream: the content composed
        shared["c"] = c
        watcher = Watcher(b)
        try:
            driving = asyncio.ensure_future(asyncio.to_thread(drive))
            live = await next_message(b, {"content_live"}, within=90)
            assert live["live"] is True and live["presenter"] == "主席"
            assert (await watcher.watch())["type"] == "content_watch_answer"
            shared["watcher"] = watcher
            await driving
            frame = watcher.frames[-1][1]
            assert (frame.width, frame.height) == (1920, 1080)
            frame.to_image().save(artifacts_dir / "deck-second-stream.png")
        finally:
            await watcher.close()
            await b.close()
            await c.close()

    run_async(scenario())

    # The fake upload was audited as refused; the real one as done.
    admin = server.login("admin")
    uploads = admin.get("/api/audit", params={"action": "conference.deck.upload"}).json()
    outcomes = sorted(e["outcome"] for e in uploads if e["target"] == cid)
    assert outcomes == ["failed", "ok"], uploads
    # English: the same refusal in the caller's language.
    r = chair.put(f"/api/decks/{cid}", params={"name": "x.pdf", "lang": "en"}, content=b"GIF89a" + bytes(64))
    assert r.status_code == 400 and "not a PDF, PNG or JPEG" in r.json()["detail"], r.text
    assert chair.get(f"/api/decks/{cid}").json()["deck"]["page"] == 2  # nothing changed

    # The leader pages the deck and reaches the content routes; a viewer does neither.
    leader, viewer = server.login("leader"), server.login("viewer")
    r = leader.post(f"/api/decks/{cid}", json={"action": "prev"})
    assert r.status_code == 200 and r.json()["deck"]["page"] == 1, r.text
    assert leader.get(f"/api/conferences/{cid}/content").status_code == 200
    r = leader.post(f"/api/decks/{cid}", json={"action": "goto", "page": 3})
    assert r.status_code == 400 and r.json()["code"] == "bad_page"
    assert viewer.post(f"/api/decks/{cid}", json={"action": "next"}).status_code == 403
    assert viewer.put(f"/api/decks/{cid}", content=pdf.read_bytes()).status_code == 403
    assert viewer.get(f"/api/decks/{cid}/page.png").status_code == 403
    assert server.client().get(f"/api/decks/{cid}").status_code == 401
    page = leader.get(f"/api/decks/{cid}/page.png")
    assert page.status_code == 200 and page.content.startswith(b"\x89PNG")
    assert chair.get(f"/api/decks/{cid}").json()["deck"]["page"] == 1

    # Granting the token elsewhere (here: revoking it) stops the deck; "show" takes it back.
    assert chair.post(f"/api/conferences/{cid}/content", json={"action": "revoke"}).status_code == 200
    assert chair.get(f"/api/decks/{cid}").json()["deck"]["showing"] is False
    r = leader.post(f"/api/decks/{cid}", json={"action": "show"})
    assert r.status_code == 200 and r.json()["deck"]["showing"] is True and r.json()["holder"] == "chair:leader"

    # Ending the conference deletes the deck's page images.
    decks = var_dir(server) / "decks" / cid
    assert any(decks.rglob("page-*.png"))
    assert chair.post(f"/api/conferences/{cid}/end").status_code == 200
    wait(lambda: not decks.exists() or not any(decks.rglob("*.png")), 10, "the deck's files deleted")
    gone = chair.get(f"/api/decks/{cid}")
    assert gone.status_code == 404 and "会议未在进行" in gone.json()["detail"], gone.text
