"""The join page follows the MCU's pane sizes: a running server, two headless Chromium sites on
`/join/<id>`, the chair's layout/pane operations over the API. What the page applied is read back
from its video sender (`RTCRtpSender.getParameters()`), what it sends from `getStats()`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer


@pytest.fixture(scope="module")
def chair(server: RunningServer) -> Iterator[httpx.Client]:
    client = server.login("chair")
    yield client
    client.close()


SENDER_JS = """async () => {
  const pc = window.ccPeer;
  const sender = pc && pc.getSenders().find((s) => s.track && s.track.kind === 'video');
  if (!sender) return null;
  const e = sender.getParameters().encodings[0] || {};
  const out = {active: e.active !== false, scale: e.scaleResolutionDownBy || 1, maxBitrate: e.maxBitrate || 0,
               camera: sender.track.getSettings().width, frameWidth: 0, framesEncoded: 0};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') { out.frameWidth = s.frameWidth || 0; out.framesEncoded = s.framesEncoded || 0; }
  });
  return out;
}"""


def _wait(page: Any, predicate: Callable[[dict[str, Any]], bool], within: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        value = page.evaluate(SENDER_JS)
        if value is not None and predicate(value):
            return dict(value)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within} s, last {value}")
        page.wait_for_timeout(200)


def _join(page: Any, server: RunningServer, cid: str, name: str) -> str:
    page.goto(server.url + f"/join/{cid}")
    page.wait_for_selector("[data-testid=camera] option", state="attached", timeout=10_000)
    page.fill("[data-testid=name]", name)
    page.click("[data-testid=join-button]")
    page.wait_for_selector("[data-testid=call]:not([hidden])", timeout=20_000)
    return str(page.evaluate("document.getElementById('join').dataset.participant"))


def test_join_page_sends_its_pane_size_and_pauses_when_hidden(server: RunningServer, chair: httpx.Client) -> None:
    from tests.browser import chromium

    response = chair.post("/api/conferences", json={"name": "分屏尺寸", "start_now": True, "guests": True})
    assert response.status_code == 201, response.text
    cid = response.json()["id"]

    def op(**kw: Any) -> None:
        r = chair.post(f"/api/conferences/{cid}/ops", json=kw)
        assert r.status_code == 200, r.text

    op(op="layout", layout="5x5")
    with chromium() as browser:
        one, two = browser.new_page(), browser.new_page()
        first = _join(one, server, cid, "甲")
        second = _join(two, server, cid, "乙")
        # A 5x5 pane of the 1280x720 room is 256x144; the page's camera is 640x360: scale 2.5.
        small = _wait(one, lambda s: s["scale"] == s["camera"] / 256 and s["scale"] > 1, 10, "scaled to 256 wide")
        assert small["maxBitrate"] == 96_000 and small["active"]
        _wait(one, lambda s: 0 < s["frameWidth"] <= 256, 10, "sends at most 256 wide")
        op(op="layout", layout="1")
        op(op="pane", index=0, mode="static", site=first)
        big = _wait(one, lambda s: s["scale"] == 1 and s["maxBitrate"] == 1_500_000, 5, "full size")
        assert big["active"]
        _wait(one, lambda s: s["frameWidth"] > 256, 20, "back above 256 wide")
        op(op="pane", index=0, mode="static", site=second)  # the first site is shown nowhere now
        paused = _wait(one, lambda s: not s["active"], 8, "paused")
        one.wait_for_timeout(1500)
        still = _wait(one, lambda s: True, 1, "")
        assert still["framesEncoded"] - paused["framesEncoded"] <= 2, (paused, still)  # nothing encoded
        assert _wait(two, lambda s: s["active"] and s["scale"] == 1, 5, "the shown site at full size")
        op(op="pane", index=0, mode="static", site=first)
        resumed = _wait(one, lambda s: s["active"], 3, "resumed")
        _wait(one, lambda s: s["framesEncoded"] > resumed["framesEncoded"], 3, "encoding again")
        one.click("[data-testid=leave]")
        two.click("[data-testid=leave]")
    chair.post(f"/api/conferences/{cid}/end")
