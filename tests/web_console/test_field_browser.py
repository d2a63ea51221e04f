"""The field responders' phone page (/field, issue 20) against a running server (real PostgreSQL, the
MCU in the same process) and headless Chromium at 360×740 with a fake camera and a fake geolocation
(CDP ``Emulation.setGeolocationOverride``).

The crew of 罗定消01 (demo login ``responder``) sees its job and navigation target, sets its status
(the row is written and the dispatch map shows it), shares its position (stored as AVL, the dispatch
map's marker moves there) and joins the incident's command conference with the phone camera: an
aiortc receiver in the conference decodes frames with the fake camera's moving picture in the pane
labelled with the callsign. A responder reaches only its own unit: anything else is 403 and audited.
Screenshots go to test-artifacts/."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect

from bench.webrtc_client import WebRtcTestClient
from tests.browser import chromium, sign_in
from tests.conftest import RunningServer, run_async

pytestmark = pytest.mark.browser

UNIT, OTHER = "luoding-fire-1", "luoding-fire-2"
SCENE = {"lon": 111.5700, "lat": 22.7690}
PHONE_AT = {"latitude": 22.7801, "longitude": 111.5523, "accuracy": 8}  # ~2 km from the scene: no geofence arrival
PHONE = {"width": 360, "height": 740}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    out = {r: server.login(r) for r in ("dispatcher", "responder", "admin")}
    yield out
    for c in out.values():
        c.close()


def db(server: RunningServer, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(server.db_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return run_async(go())


def new_incident(api: dict[str, httpx.Client], unit: str) -> dict[str, Any]:
    d = api["dispatcher"]
    inc = d.post("/api/incidents", json={"category": "fire", "subtype": "residential", "priority": 1,
                                         "address": "罗定市罗城街道兴华一路", "description": "三楼住宅起火，有人被困",
                                         **SCENE})
    assert inc.status_code == 201, inc.text
    sent = d.post(f"/api/incidents/{inc.json()['id']}/dispatch", json={"unit_ids": [unit]})
    assert sent.status_code == 200, sent.text
    assert d.post(f"/api/incidents/{inc.json()['id']}/notes", json={"text": "从北侧消防通道进入"}).status_code == 200
    return dict(inc.json())


def denied_audits(server: RunningServer, actor: str, target: str) -> list[str]:
    return [r["action"] for r in db(server, "SELECT action FROM audit_log WHERE actor = $1 AND target = $2 "
                                            "AND outcome = 'denied' ORDER BY id", actor, target)]


# -- API: own unit only, the status machine's rules, AVL validation --------------------------------

def test_responder_reaches_only_its_own_unit(server: RunningServer, api: dict[str, httpx.Client]) -> None:
    admin, responder = api["admin"], api["responder"]
    # a second crew login, bound by an administrator to 罗定消02
    name = "crew" + uuid.uuid4().hex[:6]
    made = admin.post("/api/users", json={"username": name, "password": "Str0ngPassw0rd!", "role": "responder"})
    assert made.status_code == 201, made.text
    assert admin.put(f"/api/field/crews/{name}", json={"unit_id": OTHER}).status_code == 200
    assert admin.put("/api/field/crews/dispatcher", json={"unit_id": OTHER}).status_code == 422  # not a responder
    assert admin.put(f"/api/field/crews/{name}", json={"unit_id": "no-such-unit"}).status_code == 404
    crew2 = server.login(name, "Str0ngPassw0rd!")
    try:
        inc = new_incident(api, UNIT)
        mine = responder.get("/api/field/state").json()
        assert mine["unit"]["id"] == UNIT and mine["unit"]["callsign"] == "罗定消01"
        assert mine["incident"]["id"] == inc["id"] and mine["incident"]["address"] == "罗定市罗城街道兴华一路"
        assert "caller" not in mine["incident"]
        theirs = crew2.get("/api/field/state").json()
        assert theirs["unit"]["id"] == OTHER and theirs["incident"] is None  # never sees 罗定消01's job

        # another unit: 403 for reading, status and AVL; nothing changes; every refusal is audited
        before = db(server, "SELECT status, lon FROM units WHERE id = $1", UNIT)[0]
        assert crew2.get(f"/api/field/units/{UNIT}").status_code == 403
        assert crew2.post(f"/api/field/units/{UNIT}/status", json={"status": "available"}).status_code == 403
        assert crew2.post(f"/api/field/units/{UNIT}/avl", json={"lon": 111.5, "lat": 22.7,
                                                                "ts": time.time()}).status_code == 403
        assert db(server, "SELECT status, lon FROM units WHERE id = $1", UNIT)[0] == before
        assert denied_audits(server, name, UNIT) == ["field.view", "field.status", "field.avl"]
        # other roles have no field API at all
        assert api["dispatcher"].get("/api/field/state").status_code == 403
        assert api["dispatcher"].post(f"/api/field/units/{UNIT}/status", json={"status": "en_route"}).status_code == 403

        # the status machine's rules: dispatching is the dispatcher's; a refused transition says why
        assert crew2.post(f"/api/field/units/{OTHER}/status", json={"status": "dispatched"}).status_code == 422
        refused = crew2.post(f"/api/field/units/{OTHER}/status", json={"status": "on_scene"})
        assert refused.status_code == 409 and "不能从「待命」改为「到场」" in refused.json()["detail"], refused.text
        assert db(server, "SELECT status FROM units WHERE id = $1", OTHER)[0]["status"] == "available"

        # AVL: the ingest's validation (one reason per bad fix, nothing stored), then a rate limit
        count = db(server, "SELECT count(*) AS n FROM unit_positions WHERE unit_id = $1", OTHER)[0]["n"]
        bad = crew2.post(f"/api/field/units/{OTHER}/avl", json={"lon": 111.5, "lat": 95.0, "ts": time.time()})
        assert bad.status_code == 422 and "lat" in bad.json()["detail"], bad.text
        naive = crew2.post(f"/api/field/units/{OTHER}/avl", json={"lon": 111.5, "lat": 22.7, "ts": "2026-12-07T10:00:00"})
        assert naive.status_code == 422 and "时区" in naive.json()["detail"], naive.text
        assert crew2.post(f"/api/field/units/{OTHER}/avl", json={"lon": "x", "lat": 22.7, "ts": 1}).status_code == 422
        assert db(server, "SELECT count(*) AS n FROM unit_positions WHERE unit_id = $1", OTHER)[0]["n"] == count
        # the conference socket: a crew joins only its own incident's command conference (not even the
        # demo conference open to guests); the refusal is audited
        async def try_join(client: httpx.Client, conference_id: str) -> dict[str, Any]:
            peer = WebRtcTestClient(None, None)
            try:
                return await peer.join_ws(server.url.replace("http://", "ws://") + f"/ws/conference/{conference_id}",
                                          message={"name": "x"},
                                          headers={"Cookie": f"cc_session={client.cookies['cc_session']}"})
            finally:
                await peer.close()

        refused_join = run_async(try_join(crew2, "80000001"))
        assert refused_join["type"] == "refused" and refused_join["code"] == "forbidden", refused_join
        assert denied_audits(server, name, "80000001") == ["conference.join"]
        codes = [crew2.post(f"/api/field/units/{OTHER}/avl", json={"lon": 111.55, "lat": 22.78, "ts": time.time()}).status_code
                 for _ in range(8)]
        assert 200 in codes and 429 in codes, codes
        # unbound by an administrator: the page and the API no longer know a unit for the login
        assert admin.delete(f"/api/field/crews/{name}").status_code == 200
        assert admin.delete(f"/api/field/crews/{name}").status_code == 404
        assert crew2.get("/api/field/state").json() == {"unit": None, "incident": None}
        assert crew2.post(f"/api/field/units/{OTHER}/status", json={"status": "out_of_service"}).status_code == 403
        assert name not in [c["username"] for c in admin.get("/api/field/crews").json()]
    finally:
        crew2.close()


# -- the page in Chromium ----------------------------------------------------------------------------

def _live_picture(frames: list[Any]) -> bool:
    """Chromium's fake camera (a moving pattern on green) fills the picture: green dominant, detail,
    and changing between frames (not a still placeholder)."""
    rgb = [f.to_ndarray(format="rgb24").astype(np.int16) for f in frames]
    h, w = rgb[-1].shape[:2]
    centre = [a[h // 4: 3 * h // 4, w // 4: 3 * w // 4] for a in rgb]
    mean = centre[-1].reshape(-1, 3).mean(axis=0)
    greenish = mean[1] > mean[0] + 20 and mean[1] > mean[2] + 20
    detail = float(centre[-1].std()) > 8
    moving = float(np.abs(centre[-1] - centre[0]).mean()) > 1
    return bool(greenish and detail and moving)


def _no_horizontal_scroll(page: Page) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths


OUTBOUND = """async () => {
  const pc = window.ccFieldPeer; if (!pc) return null;
  const out = {frames: 0, width: 0, audio: 0, maxBitrate: null};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') { out.frames = s.framesEncoded || 0; out.width = s.frameWidth || 0; }
    if (s.type === 'outbound-rtp' && s.kind === 'audio') out.audio = s.packetsSent || 0;
  });
  const v = pc.getSenders().find((x) => x.track && x.track.kind === 'video');
  if (v) out.maxBitrate = v.getParameters().encodings[0].maxBitrate;
  out.firstKind = pc.getTransceivers()[0].sender.track.kind;
  return out;
}"""


def test_field_page_status_avl_and_scene_video(browser: Browser, server: RunningServer,
                                               api: dict[str, httpx.Client], artifacts_dir: Path) -> None:
    # the unit may be on 罗定消01's earlier job (the test above): back to available first
    api["dispatcher"].post(f"/api/units/{UNIT}/status", json={"status": "available"})
    inc = new_incident(api, UNIT)
    conf = api["dispatcher"].post(f"/api/incidents/{inc['id']}/conference")
    assert conf.status_code == 201 and conf.json()["status"] == "running", conf.text
    cid = conf.json()["conference_id"]

    phone = browser.new_context(locale="zh-CN", viewport=PHONE, is_mobile=True, has_touch=True,  # type: ignore[arg-type]
                                device_scale_factor=2, permissions=["geolocation", "camera", "microphone"])
    page = phone.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    cdp = phone.new_cdp_session(page)
    cdp.send("Emulation.setGeolocationOverride", PHONE_AT)
    page.goto(server.url + "/field")
    sign_in(page, "responder", server.passwords["responder"])
    expect(page.get_by_test_id("callsign")).to_have_text("罗定消01", timeout=10_000)
    expect(page.get_by_test_id("incident-id")).to_have_text(inc["id"])
    expect(page.get_by_test_id("incident-address")).to_contain_text("罗定市罗城街道兴华一路")
    expect(page.get_by_test_id("incident-notes")).to_contain_text("从北侧消防通道进入")
    expect(page.get_by_test_id("unit-status")).to_have_attribute("data-status", "dispatched")
    expect(page.get_by_test_id("map-target")).to_have_count(1)
    assert str(page.get_by_test_id("navigate").get_attribute("href")).startswith(f"geo:{SCENE['lat']},{SCENE['lon']}?q=")
    _no_horizontal_scroll(page)
    buttons = page.locator(".status-button").evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
    assert min(buttons) >= 48, buttons  # big touch targets
    page.screenshot(path=str(artifacts_dir / "field-assignment.png"), full_page=True)

    # the dispatcher's map is open beside
    desk = browser.new_context(locale="zh-CN", viewport={"width": 1500, "height": 950})
    dmap = desk.new_page()
    dmap.goto(server.url + "/dispatch")
    sign_in(dmap, "dispatcher", server.passwords["dispatcher"])
    expect(dmap.locator("#conn.up")).to_have_count(1, timeout=10_000)
    marker = dmap.locator(f".unit-marker[data-unit-id='{UNIT}']")
    expect(marker).to_have_attribute("data-status", "dispatched")

    # status: en route, with the big button; the row is written and the dispatch map follows
    page.get_by_test_id("status-en_route").tap()
    expect(page.get_by_test_id("unit-status")).to_have_attribute("data-status", "en_route")
    expect(page.get_by_test_id("field-message")).to_contain_text("已上报：出动途中")
    rows = db(server, "SELECT status, actor, source, incident_id FROM unit_status_history WHERE unit_id = $1 "
                      "ORDER BY id DESC LIMIT 1", UNIT)
    assert dict(rows[0]) == {"status": "en_route", "actor": "responder", "source": "field", "incident_id": inc["id"]}
    expect(marker).to_have_attribute("data-status", "en_route", timeout=5000)
    # a transition the status machine refuses: a clear message, nothing changes
    page.get_by_test_id("status-at_hospital").tap()
    expect(page.get_by_test_id("field-message")).to_contain_text("不能从「出动途中」改为「到达医院」")
    expect(page.get_by_test_id("field-message")).to_have_attribute("data-code", "409")
    expect(page.get_by_test_id("unit-status")).to_have_attribute("data-status", "en_route")

    # GPS as AVL: stored, and the unit's marker moves on the dispatch map (and on the phone's map)
    page.get_by_test_id("gps-toggle").tap()
    expect(page.get_by_test_id("gps-state")).to_have_attribute("data-state", "sent", timeout=15_000)
    fix = db(server, "SELECT lon, lat, accuracy_m FROM unit_positions WHERE unit_id = $1 ORDER BY id DESC LIMIT 1", UNIT)
    assert fix and abs(fix[0]["lat"] - PHONE_AT["latitude"]) < 1e-6 and abs(fix[0]["lon"] - PHONE_AT["longitude"]) < 1e-6
    assert fix[0]["accuracy_m"] == pytest.approx(8)
    dmap.wait_for_function(
        f"() => {{ const m = window.dispatchConsole.markers.units.get('{UNIT}'); if (!m) return false;"
        f" const p = m.getLatLng(); return Math.abs(p.lat - {PHONE_AT['latitude']}) < 1e-6"
        f" && Math.abs(p.lng - {PHONE_AT['longitude']}) < 1e-6; }}", timeout=10_000)
    expect(page.get_by_test_id("map-unit")).to_have_count(1, timeout=10_000)
    page.wait_for_function("""() => {  // the phone's map shows both the unit (at its fix) and the target
      const m = document.getElementById('field-map').getBoundingClientRect();
      return ['map-unit', 'map-target'].every((id) => {
        const r = document.querySelector(`[data-testid=${id}]`).getBoundingClientRect();
        return r.left >= m.left && r.right <= m.right && r.top >= m.top && r.bottom <= m.bottom; });
    }""", timeout=10_000)
    dmap.screenshot(path=str(artifacts_dir / "field-dispatch-map.png"))

    # the command conference with the phone camera: audio first, small video, labelled with the callsign
    expect(page.get_by_test_id("conference-state")).to_have_attribute("data-state", "ready")
    page.get_by_test_id("conference-join").tap()
    expect(page.get_by_test_id("conference-state")).to_have_attribute("data-state", "joined", timeout=20_000)
    expect(page.get_by_test_id("conference-state")).to_contain_text("罗定消01")
    deadline = time.monotonic() + 20
    out = page.evaluate(OUTBOUND)
    while (not out or out["frames"] == 0 or out["audio"] == 0) and time.monotonic() < deadline:
        page.wait_for_timeout(300)
        out = page.evaluate(OUTBOUND)
    assert out["frames"] > 0 and out["audio"] > 0, out
    assert out["firstKind"] == "audio" and out["maxBitrate"] == 300_000 and 0 < out["width"] <= 320, out
    _no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts_dir / "field-conference.png"), full_page=True)

    admin = api["admin"]
    room = admin.get(f"/api/conferences/{cid}").json()
    site = next(s for s in room["sites"] if s.get("name") == "罗定消01")
    # the leaders see the scene: full screen for everyone, and a receiver in the room decodes it
    assert admin.post(f"/api/conferences/{cid}/ops", json={"op": "roll_call", "site": site["site_id"]}).status_code == 200

    async def receiver() -> list[Any]:
        client = WebRtcTestClient(None, None)
        cookie = api["dispatcher"].cookies["cc_session"]
        try:
            reply = await client.join_ws(server.url.replace("http://", "ws://") + f"/ws/conference/{cid}",
                                         message={"name": "指挥中心"}, headers={"Cookie": f"cc_session={cookie}"})
            assert reply["type"] == "answer", reply
            frames: list[Any] = []
            end = time.monotonic() + 30
            while time.monotonic() < end:
                await client.wait_frames(1, 15)
                frames = (frames + [client.latest])[-2:]
                if len(frames) == 2 and _live_picture([frames[0], frames[-1]]):
                    await asyncio.sleep(1.0)
                    return [frames[0], client.latest]
                await asyncio.sleep(0.5)
            return frames
        finally:
            await client.close()

    frames = run_async(receiver())
    assert len(frames) == 2 and _live_picture(frames), "the phone's camera is not the picture the room sees"
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts_dir / "field-conference-live.png"), full_page=True)

    page.get_by_test_id("conference-leave").tap()
    expect(page.get_by_test_id("conference-state")).to_have_attribute("data-state", "left")
    assert errors == [], errors
    desk.close()
    phone.close()


def test_english_and_unbound_logins(browser: Browser, server: RunningServer, api: dict[str, httpx.Client]) -> None:
    name = "crew" + uuid.uuid4().hex[:6]
    assert api["admin"].post("/api/users", json={"username": name, "password": "Str0ngPassw0rd!",
                                                 "role": "responder"}).status_code == 201
    errors: list[str] = []
    for user, password in ((name, "Str0ngPassw0rd!"), ("responder", server.passwords["responder"])):
        context = browser.new_context(locale="en", viewport=PHONE, is_mobile=True)  # type: ignore[arg-type]
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/login")
        sign_in(page, user, password)
        page.wait_for_url(server.url + "/")
        expect(page.locator("[data-console]")).to_have_count(1)  # the landing page offers the field page only
        page.goto(server.url + "/field?lang=en")
        if user == name:  # a responder login bound to no unit is told so
            expect(page.get_by_test_id("field-unbound")).to_contain_text("not bound to a unit")
        else:
            expect(page.get_by_test_id("status-returning")).to_have_text("Leaving scene", timeout=10_000)
            expect(page.get_by_test_id("gps-toggle")).to_have_text("Share my position")
            expect(page.get_by_test_id("callsign")).to_have_text("罗定消01")
        _no_horizontal_scroll(page)
        assert errors == [], errors
        context.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_field_api_fuzzed_as_responder_and_admin(server: RunningServer) -> None:
    """schemathesis on the field routes (and the dispatch routes beside them) with the responder's and
    an admin's session: no 5xx, and no answer that lets the responder outside its family (``field``)."""
    from security.api_fuzz import describe, run_role, summary

    admin = server.login("admin")
    schema = admin.get("/openapi.json").json()
    op = schema["paths"]["/api/field/units/{unit_id}/status"]["post"]
    assert op["x-roles"] == ["admin", "responder"] and op["tags"] == ["field"]
    runs = []
    for role in ("responder", "admin"):
        client = admin if role == "admin" else server.login(role)
        headers = {"Cookie": f"cc_session={client.cookies['cc_session']}", "X-CSRF-Token": client.headers["X-CSRF-Token"]}
        runs.append(run_role(schema, server.url, role, headers, 3, only=("/api/field", "/api/units", "/api/avl")))
    totals = summary(runs)
    assert totals["run_errors"] == 0, describe(runs)
    assert totals["server_errors"] == 0, describe(runs)
    assert totals["violations"] == 0, describe(runs)
    assert runs[0].statuses[403] > 0 and runs[0].statuses[200] > 0, describe(runs)


def test_site_plan_binding_needs_a_known_unit_and_the_responder_role(tmp_path: Path) -> None:
    from config.errors import ConfigError
    from config.settings import DEMO_DIR
    from config.site_plan import load_site_plan

    text = (DEMO_DIR / "yunfu.toml").read_text(encoding="utf-8")
    (tmp_path / "yunfu_counties.geojson").write_bytes((DEMO_DIR / "yunfu_counties.geojson").read_bytes())
    plan = tmp_path / "plan.toml"
    assert next(u for u in load_site_plan(DEMO_DIR / "yunfu.toml").users if u.username == "responder").unit == UNIT
    plan.write_text(text.replace(f'unit = "{UNIT}"', 'unit = "no-such-unit"', 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="user 'responder': unit 'no-such-unit' needs a known unit"):
        load_site_plan(plan)
    plan.write_text(text.replace('role = "responder"', 'role = "viewer"', 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="role responder"):
        load_site_plan(plan)


def test_field_texts_exist_in_both_languages() -> None:
    """Every text of the field page (and every status it can show) in zh-CN and English."""
    import re

    from dispatch.model import UnitStatus
    from web_console.field_console import FIELD_STATUSES
    from web_console.i18n import MESSAGES

    zh = {k for k in MESSAGES["zh-CN"] if k.startswith(("field.", "console.field"))}
    en = {k for k in MESSAGES["en"] if k.startswith(("field.", "console.field"))}
    assert zh == en and len(zh) > 40, zh ^ en
    assert {f"field.status.{s.value}" for s in FIELD_STATUSES} <= zh
    assert {f"field.unit_status.{s.value}" for s in UnitStatus} <= zh
    assert "role.responder" in MESSAGES["zh-CN"] and "role.responder" in MESSAGES["en"]
    template = (Path(__file__).resolve().parents[2] / "web_console/templates/field.html").read_text(encoding="utf-8")
    used = set(re.findall(r"t\('(field\.[a-z_.]+)'\)", template))
    assert used and used <= zh, used - zh
