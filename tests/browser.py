"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for page and WebRTC tests."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Flags per the machine notes: no background networking (the network is closed), fake media devices.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]

# The end of an offering page function: the offer once ICE gathering is complete (3 s at most: on
# 127.0.0.1 and in a test's namespace there is nothing to wait for beyond host candidates), as SDP.
# The page's RTCPeerConnection is ``pc``.
OFFER_WHEN_GATHERED_JS = """  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const timer = setTimeout(resolve, 3000);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
  return pc.localDescription.sdp;
}"""


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium; the test fails (not skips) when Debian's chromium is missing."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian package 'chromium' (make test does it as root)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, username: str, password: str) -> None:
    """Fill and submit the login form the page is on (any page redirects there when signed out)."""
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")



class SignInTarget(Protocol):
    """What :func:`open_page` needs of a running system (tests/conftest.py ``RunningServer``)."""

    url: str
    passwords: dict[str, str]


def open_page(browser: Browser, server: SignInTarget, user: str, path: str, lang: str = "zh-CN",
              viewport: dict[str, int] | None = None) -> tuple[Page, list[str]]:
    """A page in a new ``lang`` context (default 1600x950) at ``path``, signed in as ``user``, and the
    list its uncaught page errors go to (a test asserts it stays empty)."""
    context = browser.new_context(locale=lang, viewport=viewport or {"width": 1600, "height": 950})  # type: ignore[arg-type]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + path)
    sign_in(page, user, server.passwords[user])
    return page, errors
