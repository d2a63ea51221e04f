"""The chair console's site API for SIP against `commandcenter up` with SIP on a free port.

"Add a site by address" (`POST /api/conferences/{id}/sites`) and the site buttons
(`POST /api/conferences/{id}/sites/{site}/{invite|redial|hangup}`) go through the SIP dialer; a
real server (subprocess) dials our test endpoints; the test checks statuses, statistics in the
site list, failures with their reason, bad input (400/404/409/422), roles, CSRF and the audit log.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcu.conferences import DialError, protocol_for_address
from sip_gateway.aio.sip_endpoint import Decision, Reject, SipEndpoint
from sip_gateway.sip.dialog import Call
from sip_gateway.sip.useragent import UserAgentConfig
from tests.conftest import RunningServer, free_port
from tests.sip_gateway.peers import MediaUas

SIP_PORT = free_port()
SERVER_ENV = {"CC_SIP__UDP_PORT": str(SIP_PORT), "CC_SIP__MAX_VIDEO_SIZE": "352x288",
              "CC_SIP__STATS_INTERVAL_SECONDS": "1"}
DEMO = "80000001"


async def call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The HTTP client is synchronous; keep the event loop (our SIP peers) running meanwhile."""
    return await asyncio.to_thread(client.request, method, url, **kwargs)


async def site_row(client: httpx.Client, site: str) -> dict[str, Any]:
    """The site's row of the console's site list (status, detail, protocol, stats)."""
    response = await call(client, "GET", f"/api/conferences/{DEMO}")
    assert response.status_code == 200, response.text
    return next((row for row in response.json()["sites"] if row["site_id"] == site), {})


async def wait_status(client: httpx.Client, site: str, status: str, within: float = 30.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    row: dict[str, Any] = {}
    while loop.time() < deadline:
        row = await site_row(client, site)
        if row.get("status") == status:
            return row
        await asyncio.sleep(0.3)
    raise AssertionError(f"{site} never reached {status}: {row}")


@pytest.mark.slow
async def test_add_by_address_redial_hangup_through_the_console_api(server: RunningServer) -> None:
    uas = MediaUas(tone_hz=1000)

    async def busy(c: Call) -> Decision:
        return Reject(486, "Busy Here")

    refuser = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=0), busy)
    await uas.start()
    await refuser.start()
    chair = server.login("chair")
    operator = server.login("operator")
    viewer = server.login("viewer")
    admin = server.login("admin")
    hall = f"sip:hall@127.0.0.1:{uas.endpoint.config.port}"
    sites = f"/api/conferences/{DEMO}/sites"
    try:
        assert any(f"SIP: sip:<会议号>@127.0.0.1:{SIP_PORT}" in line for line in server.output)
        response = await call(chair, "POST", sites, json={"address": hall, "name": "大厅"})
        assert response.status_code == 202, response.text
        row = response.json()
        assert row["site_id"] == "sip-hall" and row["protocol"] == "sip" and row["name"] == "大厅"
        assert row["status"] in ("calling", "joined") and row["dial"] is True  # a local peer answers at once
        await wait_status(chair, "sip-hall", "joined")
        await asyncio.sleep(2.5)
        # Call statistics are in the console's site list.
        row = await site_row(operator, "sip-hall")
        streams = {s["kind"]: s for s in row["stats"]["streams"]}
        assert streams["audio"]["codec"] == "PCMU" and streams["video"]["codec"] == "H264"
        assert streams["video"]["resolution"] == [320, 240] and streams["video"]["bitrate_kbps"] > 0
        assert {"packets_lost", "jitter_ms"} <= set(streams["audio"])
        assert row["stats"]["send_video"]["width"] == 352 and row["stats"]["sip"]["direction"] == "out"

        # Adding a connected site again is refused; hang-up; a second hang-up is refused.
        response = await call(chair, "POST", sites, json={"address": hall})
        assert response.status_code == 409 and "已在会议中" in response.json()["detail"]
        response = await call(operator, "POST", f"{sites}/sip-hall/hangup")
        assert response.status_code == 200, response.text
        row = await wait_status(chair, "sip-hall", "left")
        assert row["detail"] == "已挂断"
        response = await call(chair, "POST", f"{sites}/sip-hall/hangup")
        assert response.status_code == 409 and "不在通话中" in response.json()["detail"]
        # Redial calls the last address again; the invite button too.
        assert (await call(chair, "POST", f"{sites}/sip-hall/redial")).status_code == 200
        await wait_status(chair, "sip-hall", "joined")
        assert (await call(chair, "POST", f"{sites}/sip-hall/invite")).status_code == 409  # connected
        assert (await call(chair, "POST", f"{sites}/sip-hall/hangup")).status_code == 200
        await wait_status(chair, "sip-hall", "left")
        assert (await call(operator, "POST", f"{sites}/sip-hall/invite")).status_code == 200
        await wait_status(chair, "sip-hall", "joined")
        assert (await call(operator, "POST", f"{sites}/sip-hall/hangup")).status_code == 200

        # A failing call: status failed with the reason.
        response = await call(chair, "POST", sites,
                              json={"address": f"sip:busy@127.0.0.1:{refuser.config.port}", "name": "忙线会场"})
        assert response.status_code == 202
        busy_id = response.json()["site_id"]
        row = await wait_status(chair, busy_id, "failed")
        assert "486" in row["detail"] and row["name"] == "忙线会场"

        # Bad requests change nothing, and say why.
        before = [r["site_id"] for r in (await call(chair, "GET", f"/api/conferences/{DEMO}")).json()["sites"]]
        for body, status, says in [({"address": "sip:nouser"}, 400, "须包含用户和主机"),
                                   ({"address": "sip:a@"}, 400, "SIP"),
                                   ({"address": f"sip:hall:s3cret-pw@127.0.0.1:{uas.endpoint.config.port}"},
                                    400, "不得包含密码"),
                                   ({"address": "bad address"}, 400, "无效的会场地址"),
                                   ({"address": "h323:"}, 400, "无效的会场地址"),
                                   ({}, 422, ""), ({"address": hall, "extra": 1}, 422, ""),
                                   ({"address": "x" * 300}, 422, "")]:
            response = await call(chair, "POST", sites, json=body)
            assert response.status_code == status, (body, response.text)
            assert says in str(response.json()["detail"]), (body, response.text)
        after = [r["site_id"] for r in (await call(chair, "GET", f"/api/conferences/{DEMO}")).json()["sites"]]
        assert after == before
        response = await call(chair, "POST", "/api/conferences/99999999/sites", json={"address": hall})
        assert response.status_code == 404 and "会议未在进行" in response.json()["detail"]
        assert (await call(chair, "POST", f"{sites}/no-such-site/invite")).status_code == 404
        assert (await call(chair, "POST", "/api/conferences/99999999/sites/sip-hall/redial")).status_code == 404
        assert (await call(chair, "POST", f"{sites}/sip-hall/bogus")).status_code == 404

        # Roles and CSRF.
        assert (await call(viewer, "POST", sites, json={"address": hall})).status_code == 403
        no_csrf = server.login("chair")
        del no_csrf.headers["X-CSRF-Token"]
        assert (await call(no_csrf, "POST", f"{sites}/sip-hall/redial")).status_code == 403
        assert (await call(no_csrf, "POST", sites, json={"address": hall})).status_code == 403
        anonymous = server.client()
        assert (await call(anonymous, "POST", sites, json={"address": hall})).status_code == 401

        # Audited, with the outcome.
        entries = (await call(admin, "GET", "/api/audit?action=conference.invite")).json()
        outcomes = {(e["actor"], e["target"], e["outcome"]) for e in entries}
        assert ("chair", f"{DEMO}/sip-hall", "ok") in outcomes and ("operator", f"{DEMO}/sip-hall", "ok") in outcomes
        failed = [e for e in entries if e["outcome"] == "failed"]
        assert {e["detail"].get("code") for e in failed} >= {"busy", "bad_uri", "bad_address", "not_running"}
        assert "s3cret-pw" not in str(entries) and any(":***@" in e["target"] for e in failed)  # no credentials
        hangups = (await call(admin, "GET", "/api/audit?action=conference.hangup")).json()
        assert {e["actor"] for e in hangups} == {"chair", "operator"}
        assert any(e["outcome"] == "failed" and e["detail"].get("code") == "not_connected" for e in hangups)
    finally:
        for client in (chair, operator, viewer, admin):
            client.close()
        await uas.close()
        await refuser.close()


@pytest.mark.slow
@pytest.mark.browser
async def test_console_page_adds_a_site_by_address_and_shows_its_statistics(
        server: RunningServer, artifacts_dir: Path) -> None:
    from tests.browser import chromium, sign_in

    uas = MediaUas(tone_hz=1000)
    await uas.start()
    lobby = f"sip:lobby@127.0.0.1:{uas.endpoint.config.port}"

    def drive() -> None:
        with chromium() as browser:
            page = browser.new_page()
            page.goto(server.url + "/login")
            sign_in(page, "chair", server.passwords["chair"])
            page.wait_for_url(server.url + "/")
            page.goto(server.url + f"/conference#{DEMO}")
            page.wait_for_selector("[data-testid=room]:not([hidden])", timeout=15_000)
            assert page.locator("[data-testid=add-site-form] h3").inner_text() == "按地址呼叫会场"
            # A bad address: the reason is shown, nothing is added.
            page.fill("[data-testid=add-site-address]", "bad address")
            page.click("[data-testid=add-site-submit]")
            page.wait_for_selector("[data-testid=console-error] >> text=无效的会场地址", timeout=5000)
            assert page.locator("[data-testid=site-sip-lobby]").count() == 0
            # A SIP address: the site appears, joins, and shows its call statistics.
            page.fill("[data-testid=add-site-address]", lobby)
            page.fill("[data-testid=add-site-name]", "一楼大厅")
            page.click("[data-testid=add-site-submit]")
            page.wait_for_selector("[data-testid=status-sip-lobby] >> text=已入会", timeout=15_000)
            assert "一楼大厅" in page.locator("[data-testid=site-sip-lobby] .name").inner_text()
            page.wait_for_selector("[data-testid=stats-sip-lobby] >> text=H264 320×240", timeout=15_000)
            stats = page.locator("[data-testid=stats-sip-lobby]").inner_text()
            assert "PCMU" in stats and "丢包" in stats and "抖动" in stats and "kb/s" in stats
            page.screenshot(path=str(artifacts_dir / "sip-add-site-console.png"), full_page=True)
            # The site's hang-up button ends the call; the reason is shown.
            page.click("[data-testid=hangup-sip-lobby]")
            page.wait_for_selector("[data-testid=status-sip-lobby] >> text=已离开", timeout=10_000)
            page.wait_for_selector("[data-testid=detail-sip-lobby] >> text=已挂断", timeout=5000)

    try:
        await asyncio.to_thread(drive)
        assert uas.endpoint.ua.calls == {} or all(
            c.state.name == "TERMINATED" for c in uas.endpoint.ua.calls.values())
    finally:
        await uas.close()


def test_protocol_for_address() -> None:
    """The console's "add a site by address" picks the dialer from the address."""
    assert protocol_for_address(" sip:room@10.1.2.3 ") == ("sip", "sip:room@10.1.2.3")
    assert protocol_for_address("SIPS:room@host:5061") == ("sip", "SIPS:room@host:5061")
    assert protocol_for_address("h323:1001@10.0.0.1") == ("h323", "1001@10.0.0.1")
    for address in ("10.0.0.5:1720", "luoding-h323", "07661234", "会场@10.1.1.1"):
        assert protocol_for_address(address) == ("h323", address)
    for bad in ("", "   ", "a b", "h323:", "x\x00y", "x" * 257):
        with pytest.raises(DialError) as refused:
            protocol_for_address(bad)
        assert refused.value.code == "bad_address" and refused.value.status == 400
