"""The field page (/field, issue 20) from a phone on a poor mobile link: headless Chromium in its own
network namespace behind the line emulator (tests/linesim, profile ``mobile_384k_2pct_60ms``: 384
kbit/s, 60±20 ms and 2 % loss each way), a 360×740 mobile viewport, a fake camera and a fake
geolocation; the server (`commandcenter up`) listens on the MCU end of the line, and its WebRTC legs
offer only that address, so every byte of the page, the API and the media crosses the line.

Over that line the crew of 罗定消01 sets its status and shares its position (the rows are in the
database), and joins the command conference: audio goes out first and keeps flowing; the video
adapts. Then the line narrows to 96 kbit/s, too little for the camera: the audio still reaches the
MCU (its receiver reports on the browser's audio stream show few losses while packets keep going
out), and the video gives way (Chromium reports it limited by bandwidth, with fewer pixels or frames
than the line carried before, or none). Asserted on ``RTCPeerConnection.getStats()`` and the rows.
Screenshots go to test-artifacts/."""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS, sign_in
from tests.conftest import RunningServer, new_database, private_tmp_dir, run_async, start_server, stop_server
from tests.linesim.line import Line, LineUnavailable, leftovers, open_line

pytestmark = [pytest.mark.browser, pytest.mark.slow]

UNIT = "luoding-fire-1"
SCENE = {"lon": 111.5700, "lat": 22.7690}
PHONE_AT = {"latitude": 22.7712, "longitude": 111.5650, "accuracy": 15}
PHONE = {"width": 360, "height": 740}
NARROW_KBPS = 96

STATS = """async () => {
  const pc = window.ccFieldPeer; if (!pc) return null;
  const out = {at: performance.now(), video: null, audio: null, audioRemote: null, pair: null,
               firstKind: pc.getTransceivers()[0].sender.track.kind};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.video = {frames: s.framesEncoded || 0,
      sent: s.framesSent || 0, width: s.frameWidth || 0, height: s.frameHeight || 0, fps: s.framesPerSecond || 0,
      limited: s.qualityLimitationReason, bytes: s.bytesSent || 0, target: s.targetBitrate || 0};
    if (s.type === 'outbound-rtp' && s.kind === 'audio') out.audio = {packets: s.packetsSent || 0, bytes: s.bytesSent || 0};
    if (s.type === 'remote-inbound-rtp' && s.kind === 'audio') out.audioRemote = {lost: s.packetsLost || 0,
      fraction: s.fractionLost || 0, rtt: s.roundTripTime || 0, reports: s.roundTripTimeMeasurements || 0};
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') out.pair = {
      available: s.availableOutgoingBitrate || 0, rtt: s.currentRoundTripTime || 0};
  });
  return out;
}"""


def db(server: RunningServer, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(server.db_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return run_async(go())


@pytest.fixture
def line_and_server(pg_url: str) -> Iterator[tuple[Line, RunningServer]]:
    """The line (as the ``linesim`` fixture makes it: a missing part fails the test) and a server on its
    MCU end; both torn down, the namespace checked gone."""
    with open_line("mobile_384k_2pct_60ms") as line:
        var = private_tmp_dir("cc-var-")
        server = start_server(new_database(pg_url, "m_"), var, host=line.mcu_address, timeout=120,
                              extra_env={"CC_WEBRTC__HOST_ADDRESSES": json.dumps([line.mcu_address])})
        try:
            yield line, server
        finally:
            stop_server(server)
            shutil.rmtree(var, ignore_errors=True)
    assert line.namespace not in leftovers(), f"{line.namespace} was left behind"


@pytest.fixture(autouse=True)
def _line_parts_present() -> None:
    from tests.linesim.line import check_parts

    try:
        check_parts()
    except LineUnavailable as exc:
        pytest.fail(f"the line emulator cannot run here: {exc}")


def stats(page: Page) -> dict[str, Any]:
    out = page.evaluate(STATS)
    assert out is not None, "the page has no peer connection"
    return dict(out)


def until_stats(page: Page, ok: Any, within: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + within
    s = stats(page)
    while not ok(s):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}: {s}")
        page.wait_for_timeout(500)
        s = stats(page)
    return s


def test_field_page_on_a_poor_mobile_line(line_and_server: tuple[Line, RunningServer], tmp_path: Path,
                                          artifacts_dir: Path) -> None:
    line, server = line_and_server
    dispatcher = server.login("dispatcher")
    inc = dispatcher.post("/api/incidents", json={"category": "fire", "subtype": "residential", "priority": 1,
                                                  "address": "罗定市罗城街道兴华一路", "description": "三楼住宅起火",
                                                  **SCENE})
    assert inc.status_code == 201, inc.text
    incident = inc.json()["id"]
    assert dispatcher.post(f"/api/incidents/{incident}/dispatch", json={"unit_ids": [UNIT]}).status_code == 200
    conf = dispatcher.post(f"/api/incidents/{incident}/conference")
    assert conf.status_code == 201, conf.text

    # Chromium in the line's namespace: it reaches the server only across the line
    wrapper = line.wrapper(CHROMIUM, tmp_path)
    args = [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={server.url}"]  # camera and GPS need it
    with httpx.Client(timeout=3.0) as probe:  # the root namespace reaches the server directly; the phone must not
        assert probe.get(server.url + "/readyz").status_code == 200
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(wrapper), args=args, headless=True)
        try:
            phone = browser.new_context(locale="zh-CN", viewport=PHONE, is_mobile=True, has_touch=True,  # type: ignore[arg-type]
                                        device_scale_factor=2, permissions=["geolocation", "camera", "microphone"])
            page = phone.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            phone.new_cdp_session(page).send("Emulation.setGeolocationOverride", PHONE_AT)
            page.goto(server.url + "/field", timeout=30_000)
            sign_in(page, "responder", server.passwords["responder"])
            expect(page.get_by_test_id("callsign")).to_have_text("罗定消01", timeout=20_000)
            expect(page.get_by_test_id("incident-id")).to_have_text(incident)

            # the big buttons and AVL work over the line: the rows are written
            page.get_by_test_id("status-en_route").tap()
            expect(page.get_by_test_id("unit-status")).to_have_attribute("data-status", "en_route", timeout=15_000)
            row = db(server, "SELECT status, actor, source FROM unit_status_history WHERE unit_id = $1 "
                             "ORDER BY id DESC LIMIT 1", UNIT)[0]
            assert dict(row) == {"status": "en_route", "actor": "responder", "source": "field"}
            page.get_by_test_id("gps-toggle").tap()
            expect(page.get_by_test_id("gps-state")).to_have_attribute("data-state", "sent", timeout=20_000)
            fix = db(server, "SELECT lon, lat FROM unit_positions WHERE unit_id = $1 ORDER BY id DESC LIMIT 1", UNIT)
            assert fix and abs(fix[0]["lat"] - PHONE_AT["latitude"]) < 1e-6, fix

            # the command conference over the line: audio first and flowing, video sent and adapting
            expect(page.get_by_test_id("conference-state")).to_have_attribute("data-state", "ready")
            page.get_by_test_id("conference-join").tap()
            expect(page.get_by_test_id("conference-state")).to_have_attribute("data-state", "joined", timeout=30_000)
            wide = until_stats(page, lambda s: s["audio"] and s["audio"]["packets"] > 100 and s["video"]
                               and s["video"]["sent"] > 30 and s["audioRemote"] and s["pair"], 30,
                               "audio and video going out over the 384 kbit/s line, and the MCU's reports back")
            assert wide["firstKind"] == "audio", wide
            page.wait_for_timeout(6000)
            wide = stats(page)
            print("384 kbit/s:", wide)
            assert wide["pair"]["rtt"] >= 0.1, wide  # the line's 2 × 60 ms is in the path
            page.screenshot(path=str(artifacts_dir / "field-line-384k.png"), full_page=True)

            # narrow the line: the audio keeps reaching the MCU, the video gives way
            line.set_rate(NARROW_KBPS)
            page.wait_for_timeout(6000)  # the congestion controller's first reaction
            samples = [stats(page)]
            for _ in range(12):
                page.wait_for_timeout(1000)
                samples.append(stats(page))
            before, after = samples[0], samples[-1]
            print(f"{NARROW_KBPS} kbit/s:", before, after)
            seconds = (after["at"] - before["at"]) / 1000
            audio_rate = (after["audio"]["packets"] - before["audio"]["packets"]) / seconds
            assert audio_rate > 40, f"audio nearly stopped on the narrow line: {audio_rate:.0f} packets/s"
            # the MCU's receiver reports on the phone's audio: packets keep arriving (the line's own 2 % loss
            # and some queue overflow while the video backs off; an unadapted camera would lose most of them)
            sent = after["audio"]["packets"] - before["audio"]["packets"]
            lost = after["audioRemote"]["lost"] - before["audioRemote"]["lost"]
            assert after["audioRemote"]["reports"] > before["audioRemote"]["reports"] and lost / sent < 0.25, (
                before, after)
            # the video gives way: it leaves room for the audio, and sends fewer frames (or pixels) than asked
            video_kbps = 8 * (after["video"]["bytes"] - before["video"]["bytes"]) / seconds / 1000
            assert video_kbps < NARROW_KBPS * 0.8, f"video sends {video_kbps:.0f} kbit/s on a {NARROW_KBPS} kbit/s line"
            fps = min(x["video"]["fps"] for x in samples)
            pixels = min(x["video"]["width"] * x["video"]["height"] for x in samples)
            assert fps < 15 or pixels < 320 * 240, samples  # the page asks for 320×240 at 15 fps
            print(f"narrow line: audio {audio_rate:.0f} packets/s, {lost}/{sent} lost at the MCU; video "
                  f"{video_kbps:.0f} kbit/s, down to {fps} fps and {pixels} pixels")
            page.screenshot(path=str(artifacts_dir / "field-line-narrow.png"), full_page=True)
            print("router queue drops:", line.tbf_drops())

            # and the status buttons still work on the narrow line
            page.get_by_test_id("status-on_scene").tap()
            expect(page.get_by_test_id("unit-status")).to_have_attribute("data-status", "on_scene", timeout=20_000)
            assert db(server, "SELECT status FROM units WHERE id = $1", UNIT)[0]["status"] == "on_scene"
            assert errors == [], errors
            phone.close()
        finally:
            browser.close()
