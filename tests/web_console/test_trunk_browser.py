"""The trunk's trust model on a running `commandcenter up` configured by environment (issue 13), with
SIPp callers on other loopback addresses and the desk in headless Chromium:

* 127.0.0.2 is not a trunk peer: its INVITE to 110 (with a P-Asserted-Identity) gets 403 and the
  refusal is in the audit log with who/what/from where;
* 127.0.0.3 is a peer outside the trust domain (``trust_identity = false``, e.g. an internal PBX):
  the call is taken, its PAI is ignored, and the desk shows the From number marked unverified.
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import open_page
from tests.conftest import RunningServer
from tests.dispatch.calltaking_samples import finish_sipp, free_port, sipp_call

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
SIP_PORT = free_port()
SERVER_ENV = {"CC_SIP__UDP_PORT": str(SIP_PORT), "CC_SIP__TCP_PORT": str(SIP_PORT),
              "CC_EMERGENCY__TRUNK__PEERS": json.dumps(
                  ["127.0.0.1", {"address": "127.0.0.3", "trust_identity": False, "name": "internal-pbx"}])}


def sipp(scenario: str, local_ip: str) -> subprocess.Popen[str]:
    return sipp_call(scenario, SIP_PORT, local_ip=local_ip)


finish = finish_sipp


@pytest.fixture
def page(browser: Browser, server: RunningServer) -> Iterator[Page]:
    p, errors = open_page(browser, server, "calltaker", "/desk")
    expect(p.locator("#conn.up")).to_have_count(1, timeout=10_000)
    yield p
    assert errors == [], errors
    p.context.close()


def test_stranger_refused_and_audited_untrusted_peer_shown_unverified(page: Page, server: RunningServer) -> None:
    finish(sipp("emergency_pai_403.xml", "127.0.0.2"))
    admin = server.login("admin")
    audit = admin.get("/api/audit", params={"action": "emergency.invite_refused"}).json()
    assert len(audit) == 1, audit
    assert audit[0]["actor"] == "sip:13712345678" and audit[0]["target"] == "110"
    assert audit[0]["outcome"] == "denied" and audit[0]["source"].startswith("udp:127.0.0.2:")
    admin.close()

    page.get_by_test_id("btn-available").click()
    caller = sipp("emergency_pai.xml", "127.0.0.3")
    expect(page.get_by_test_id("ring")).to_be_visible(timeout=10_000)
    expect(page.get_by_test_id("ring-text")).to_contain_text("13900000001")  # the From, not the PAI
    page.get_by_test_id("btn-answer").click()
    expect(page.get_by_test_id("caller-number")).to_have_text("13900000001")
    expect(page.get_by_test_id("caller-verified")).to_have_text("⚠ 号码未核实")
    expect(page.get_by_test_id("caller-verified")).to_have_attribute("title", "该号码（及位置）不是由受信任的运营商中继提供的，可能由主叫自行设置")
    page.get_by_test_id("btn-hangup").click()
    finish(caller)
