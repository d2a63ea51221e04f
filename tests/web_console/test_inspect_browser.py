"""Headless Chromium: an inspector searches, sees the timeline, plays two cameras in sync, steps frames,
bookmarks, exports (the downloaded bundle verifies offline), and sees "no recording" with the nearest spans.

The system is real: `commandcenter up` recording the demo halls' synthetic GStreamer cameras.
"""
from __future__ import annotations

import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect

from recorder.verify import verify_export
from tests.browser import sign_in
from tests.conftest import RunningServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SERVER_ENV = {"CC_RECORDER__DEMO_CAMERAS": "true", "CC_RECORDER__SEGMENT_SECONDS": "2"}
TZ = "Asia/Shanghai"
CAM1, CAM2 = "cam-city-w01", "cam-city-w02"


def local(ms: int) -> str:
    """A datetime-local input value in the browser's time zone."""
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(TZ)).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture(scope="module")
def overlap(server: RunningServer) -> tuple[int, int]:
    """Whole seconds in which both cameras have at least 10 s of continuous footage."""
    deadline = time.monotonic() + 60
    with closing(server.login("inspector")) as client:
        while True:
            now = int(time.time() * 1000)
            data = client.get("/api/inspect/search", params=[("camera", CAM1), ("camera", CAM2),
                                                              ("start_ms", now - 120_000), ("end_ms", now)]).json()
            last = [[s for s in c["spans"] if s["kind"] == "recorded"][-1:] for c in data["cameras"]]
            if all(last):
                start = max(s[0]["start_ms"] for s in last)
                end = min(s[0]["end_ms"] for s in last)
                start, end = (start // 1000 + 1) * 1000, end // 1000 * 1000
                if end - start >= 10_000:
                    return start, end
            assert time.monotonic() < deadline, f"demo cameras did not record: {data}"
            time.sleep(1.0)


def log_in(page: Page, server: RunningServer) -> None:
    page.goto(server.url + "/login?next=/inspect")
    sign_in(page, "inspector", server.passwords["inspector"])
    expect(page.get_by_test_id("console-title")).to_have_text("录像检查")


def video_times(page: Page) -> list[float]:
    return [float(t) for t in page.eval_on_selector_all("video[data-camera]", "vs => vs.map(v => v.currentTime)")]


def test_inspector_search_sync_playback_bookmark_export(browser: Browser, server: RunningServer,
                                                        overlap: tuple[int, int], artifacts_dir: Path,
                                                        tmp_path: Path) -> None:
    start, end = overlap
    context = browser.new_context(locale="zh-CN", timezone_id=TZ, accept_downloads=True,
                                  viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(page, server)
        # search: hall, time range
        page.get_by_test_id("f-hall").select_option("hall-city")
        page.get_by_test_id("f-start").fill(local(start))
        page.get_by_test_id("f-end").fill(local(end))
        page.get_by_test_id("search").click()
        rows = page.get_by_test_id("timeline-row")
        expect(rows).to_have_count(4)
        for cam in (CAM1, CAM2):
            expect(page.locator(f"[data-camera='{cam}'] .span[data-kind='recorded']").first).to_be_visible()
        expect(page.get_by_test_id("no-recording")).to_be_hidden()
        # choose exactly the first two windows
        for box in page.get_by_test_id("select-camera").all():
            box.set_checked(box.get_attribute("value") in (CAM1, CAM2))
        page.screenshot(path=str(artifacts_dir / "inspect-timeline.png"), full_page=True)

        # no reason: refused in the page, nothing starts
        page.get_by_test_id("play").click()
        expect(page.get_by_test_id("view-error")).to_contain_text("原因")
        expect(page.locator("#player-panel")).to_be_hidden()

        page.get_by_test_id("view-reason").fill("核查群众投诉：1、2号窗口服务态度")
        page.get_by_test_id("play").click()
        expect(page.get_by_test_id("view-logged")).to_contain_text("核查群众投诉")
        videos = page.locator("video[data-camera]")
        expect(videos).to_have_count(2)
        page.wait_for_function("() => [...document.querySelectorAll('video[data-camera]')]"
                               ".every(v => v.readyState >= 2)", timeout=15_000)

        # play both on one clock: both advance, together
        t0 = video_times(page)
        page.get_by_test_id("btn-play").click()
        samples = []
        for _ in range(6):
            page.wait_for_timeout(500)
            samples.append(video_times(page))
        t1 = samples[-1]
        assert all(b - a >= 1.5 for a, b in zip(t0, t1, strict=True)), (t0, samples)
        # together: typically within a frame or two; a busy machine may stall one decoder briefly
        diffs = sorted(abs(s[0] - s[1]) for s in samples[1:])
        assert diffs[len(diffs) // 2] < 0.25 and diffs[-1] < 0.5, samples
        page.screenshot(path=str(artifacts_dir / "inspect-playback.png"), full_page=True)

        # faster: at 4× both cover about four times the distance, still together
        page.get_by_test_id("speed").select_option("4")
        a = video_times(page)
        page.wait_for_timeout(1000)
        b = video_times(page)
        assert all(y - x >= 2.0 for x, y in zip(a, b, strict=True)), (a, b)
        assert abs(b[0] - b[1]) < 0.5, b
        page.get_by_test_id("speed").select_option("1")

        # pause and step frames: both videos follow the clock frame by frame
        page.get_by_test_id("btn-play").click()
        page.wait_for_timeout(300)
        before = float(page.get_by_test_id("clock").get_attribute("data-ms") or 0)
        for _ in range(3):
            page.get_by_test_id("btn-step").click()
        page.wait_for_timeout(400)
        after = float(page.get_by_test_id("clock").get_attribute("data-ms") or 0)
        fps = page.evaluate("() => window.inspectPlayer.fps")
        assert abs((after - before) - 3000 / fps) < 5, (before, after, fps)
        paused = video_times(page)
        clock_t = page.evaluate("() => window.inspectPlayer.t")
        assert all(abs(t - clock_t) < 0.05 for t in paused), (paused, clock_t)

        # bookmark with a note, shared: it lands in the list and on the timeline
        page.get_by_test_id("bm-camera").select_option(CAM2)
        page.get_by_test_id("bm-note").fill("窗口人员离岗")
        page.get_by_test_id("bm-add").click()
        expect(page.get_by_test_id("bookmark").filter(has_text="窗口人员离岗")).to_have_count(1)
        expect(page.locator(f"[data-camera='{CAM2}'] [data-testid='bm-mark']")).to_have_count(1)

        # a legal hold on the viewed range, shown on the timeline, then lifted (both need a reason)
        page.get_by_test_id("hold-place").click()
        expect(page.get_by_test_id("hold-error")).to_contain_text("原因")
        page.get_by_test_id("hold-reason").fill("信访件证据保全")
        page.get_by_test_id("hold-place").click()
        hold = page.get_by_test_id("hold").filter(has_text="信访件证据保全")
        expect(hold).to_have_count(1)
        expect(page.locator(f"[data-camera='{CAM1}'] .hold-band")).to_have_count(1)
        hold.get_by_test_id("lift-reason").fill("误操作，解除")
        hold.get_by_test_id("hold-lift").click()
        expect(page.get_by_test_id("hold").filter(has_text="信访件证据保全")).to_have_count(0)
        expect(page.locator(f"[data-camera='{CAM1}'] .hold-band")).to_have_count(0)

        # keep today's signed tree head in the browser (checked after the export has grown the log)
        expect(page.get_by_test_id("head").locator("[data-field='size']")).not_to_be_empty()
        page.get_by_test_id("head-keep").click()
        kept: dict[str, Any] = page.evaluate("() => JSON.parse(localStorage.getItem('cc.inspect.kept_head'))")

        # export the range and verify the downloaded bundle offline
        page.get_by_test_id("export-reason").fill("移交案件审理")
        page.get_by_test_id("export").click()
        link = page.get_by_test_id("export-link")
        expect(link).to_be_visible(timeout=30_000)
        with page.expect_download() as download_info:
            link.click()
        bundle = tmp_path / "export.zip"
        download_info.value.save_as(bundle)
        report = verify_export(bundle)
        assert report.ok, report.format()

        # a watermarked viewing copy of the selected camera around the current moment
        page.get_by_test_id("viewing-copy").click()
        expect(page.get_by_test_id("copy-link")).to_be_visible(timeout=30_000)

        # the kept head: the server checks it, and the page re-checks the RFC 6962 proof itself
        page.get_by_test_id("head-check").click()
        result = page.get_by_test_id("head-result")
        expect(result).to_have_attribute("data-consistent", "1")
        expect(result).to_have_attribute("data-browser-verified", "1")
        head: dict[str, Any] = page.evaluate(f"() => fetch('/api/inspect/head?kept_size={kept['tree_size']}').then(r => r.json())")
        assert head["tree_head"]["tree_size"] > kept["tree_size"] and head["consistency_proof"]
        forged = "00" * 32
        assert page.evaluate("([a, b, r1, r2, p]) => window.inspectVerifyConsistency(a, b, r1, r2, p)",
                             [kept["tree_size"], head["tree_head"]["tree_size"], kept["root_hash"],
                              head["tree_head"]["root_hash"], head["consistency_proof"]]) is True
        assert page.evaluate("([a, b, r1, r2, p]) => window.inspectVerifyConsistency(a, b, r1, r2, p)",
                             [kept["tree_size"], head["tree_head"]["tree_size"], forged,
                              head["tree_head"]["root_hash"], head["consistency_proof"]]) is False
        page.screenshot(path=str(artifacts_dir / "inspect-export.png"), full_page=True)


        # a range with no footage: clearly said, with the nearest spans to jump to
        page.get_by_test_id("f-start").fill(local(start - 86_400_000))
        page.get_by_test_id("f-end").fill(local(start - 86_400_000 + 600_000))
        page.get_by_test_id("search").click()
        expect(page.get_by_test_id("no-recording")).to_be_visible()
        expect(page.get_by_test_id("nearest-span").first).to_be_visible()
        page.screenshot(path=str(artifacts_dir / "inspect-no-recording.png"), full_page=True)
        page.get_by_test_id("nearest-span").first.click()
        expect(page.get_by_test_id("no-recording")).to_be_hidden()
        assert not errors, errors
    finally:
        context.close()


def test_complaint_jump_and_english(browser: Browser, server: RunningServer, overlap: tuple[int, int],
                                    artifacts_dir: Path) -> None:
    start, end = overlap
    context = browser.new_context(locale="en-US", timezone_id=TZ)
    page = context.new_page()
    try:
        log_in(page, server)
        page.goto(f"{server.url}/inspect?lang=en&window=hall-city-w02&at={(start + end) // 2}")
        expect(page.get_by_test_id("console-title")).to_have_text("Recording review")
        rows = page.get_by_test_id("timeline-row")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-camera", CAM2)
        # ±5 minutes around the complaint: the future part is explained as such
        expect(page.locator(f"[data-camera='{CAM2}'] .span[data-kind='recorded']").first).to_be_visible()
        expect(page.locator(f"[data-camera='{CAM2}'] .span[data-kind='future']")).to_have_count(1)
        page.screenshot(path=str(artifacts_dir / "inspect-complaint-en.png"), full_page=True)
    finally:
        context.close()


def test_page_checks_consistency_proofs_like_rfc6962(browser: Browser, server: RunningServer) -> None:
    """The page's own proof check agrees with the recorder's log for every pair of sizes up to 17."""
    from recorder.merkle import MerkleTree

    tree = MerkleTree()
    roots: list[str] = []
    for i in range(17):
        tree.append(f"leaf {i}".encode())
        roots.append(tree.root(len(tree)).hex())
    cases: list[tuple[int, int, str, str, list[str]]] = [
        (m, n, roots[m - 1], roots[n - 1], [p.hex() for p in tree.consistency_proof(m, n)])
        for n in range(1, 18) for m in range(1, n + 1)]
    # corrupted probes: a wrong old root, a wrong new root, a dropped or altered proof node
    bad = [(m, n, roots[n - 1] if m != n else "00" * 32, r2, p) for m, n, _, r2, p in cases]
    bad += [(m, n, r1, "11" * 32, p) for m, n, r1, _, p in cases]
    bad += [(m, n, r1, r2, p[:-1]) for m, n, r1, r2, p in cases if p]
    bad += [(m, n, r1, r2, ["22" * 32, *p[1:]]) for m, n, r1, r2, p in cases if p]
    context = browser.new_context()
    page = context.new_page()
    try:
        log_in(page, server)
        check = "cs => Promise.all(cs.map(c => window.inspectVerifyConsistency(...c)))"
        assert page.evaluate(check, cases) == [True] * len(cases)
        assert not any(page.evaluate(check, bad))
    finally:
        context.close()
