"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for page and WebRTC tests."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Flags per the machine notes: no background networking (the network is closed), fake media devices.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]


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
