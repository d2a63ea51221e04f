"""The warnings API against a running `commandcenter up` (real PostgreSQL): the approval rule by
role, references over Update and Cancel, the CAP download, and bad input refused with the field
named and nothing changed."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser
import httpx
import pytest

from dispatch.exchange.cap import validate_cap
from tests.conftest import RunningServer

FEED_TOKEN = "feed-token-of-the-national-release-system"
# the national early-warning release system reads the CAP feed with a token of its own
SERVER_ENV = {"CC_WARNINGS__FEED_TOKENS": json.dumps({"national": hashlib.sha256(FEED_TOKEN.encode()).hexdigest()})}
TOWNSHIP = "445302-01"  # 云城街道: no meeting room of its own, so nothing is called


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    out = {r: server.login(r) for r in ("admin", "leader", "chair", "dispatcher", "viewer", "operator")}
    yield out
    for c in out.values():
        c.close()


def body(**kw: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "event": "暴雨", "headline": "云城街道暴雨黄色预警", "description": "未来3小时将出现暴雨。", "instruction": "注意防范。",
        "severity": "Moderate", "expires": (datetime.now(UTC) + timedelta(hours=3)).isoformat(),
        "areas": [{"desc": "云城街道", "adcodes": [TOWNSHIP]}]}
    b.update(kw)
    return b


def count(c: httpx.Client) -> int:
    r = c.get("/api/warnings")
    assert r.status_code == 200, r.text
    return len(r.json())


def test_dispatcher_drafts_leader_approves_then_update_and_cancel(clients: dict[str, httpx.Client]) -> None:
    d, lead = clients["dispatcher"], clients["leader"]
    r = d.post("/api/warnings", json=body())
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    area = r.json()["content"]["areas"][0]
    assert area["circles"], "a township-only area gets its circle for CAP receivers"
    assert d.post(f"/api/warnings/{wid}/approve").status_code == 403  # not before submit, and never a dispatcher
    assert d.post(f"/api/warnings/{wid}/submit").status_code == 200
    r = d.post(f"/api/warnings/{wid}/approve")
    assert r.status_code == 403
    assert d.get(f"/api/warnings/{wid}").json()["cap_messages"] == []  # nothing sent unapproved
    assert clients["viewer"].get(f"/api/warnings/{wid}").status_code == 403
    r = lead.post(f"/api/warnings/{wid}/approve")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"
    assert wid in [w["id"] for w in lead.get("/api/warnings/active").json()]
    # Update, then Cancel, each approved; references name every earlier message
    assert d.post(f"/api/warnings/{wid}/update", json=body(headline="云城街道暴雨橙色预警", severity="Severe")).status_code == 200
    assert lead.post(f"/api/warnings/{wid}/reject", json={"reason": ""}).status_code == 422  # a reason is needed
    assert clients["chair"].post(f"/api/warnings/{wid}/approve").status_code == 200
    assert d.post(f"/api/warnings/{wid}/cancel", json={"reason": "雨停"}).status_code == 200
    assert lead.post(f"/api/warnings/{wid}/approve").json()["state"] == "cancelled"
    detail = d.get(f"/api/warnings/{wid}").json()
    msgs = detail["cap_messages"]
    assert [m["msg_type"] for m in msgs] == ["Alert", "Update", "Cancel"]
    assert msgs[0]["references"] == ""
    assert [ref.split(",")[1] for ref in msgs[2]["references"].split(" ")] == [m["identifier"] for m in msgs[:2]]
    assert [ref.split(",")[1] for ref in msgs[1]["references"].split(" ")] == [msgs[0]["identifier"]]
    for m in msgs:
        x = d.get(f"/api/warnings/cap/{m['identifier']}.xml")
        assert x.status_code == 200 and x.headers["content-type"].startswith("application/cap+xml")
        assert validate_cap(x.text) == []
        assert f"<msgType>{m['msg_type']}</msgType>" in x.text
    assert wid not in [w["id"] for w in lead.get("/api/warnings/active").json()]
    actions = [s["action"] for s in detail["steps"]]
    assert actions == ["draft", "submit", "approve_alert", "send_alert", "propose_update", "approve_update",
                       "send_update", "propose_cancel", "approve_cancel", "send_cancel"]
    assert [s["actor"] for s in detail["steps"] if s["action"].startswith("approve_")] == ["leader", "chair", "leader"]
    # closed: everything refused
    assert d.post(f"/api/warnings/{wid}/update", json=body()).status_code == 409
    audit = clients["admin"].get("/api/audit", params={"limit": 500}).json()
    entries = audit["entries"] if isinstance(audit, dict) else audit
    mine = [(e["actor"], e["action"], e["outcome"]) for e in entries if e["target"] == wid]
    assert ("dispatcher", "access.denied", "denied") in [
        (e["actor"], e["action"], e["outcome"]) for e in entries if e["target"] == f"/api/warnings/{wid}/approve"]
    assert ("leader", "warning.approve_alert", "ok") in mine


def test_leader_drafting_still_records_approval(clients: dict[str, httpx.Client]) -> None:
    lead = clients["leader"]
    wid = lead.post("/api/warnings", json=body()).json()["id"]
    assert lead.post(f"/api/warnings/{wid}/approve").status_code == 409  # a draft is not pending
    assert lead.post(f"/api/warnings/{wid}/submit").status_code == 200
    assert lead.post(f"/api/warnings/{wid}/approve").status_code == 200
    steps = [(s["actor"], s["action"]) for s in lead.get(f"/api/warnings/{wid}").json()["steps"]]
    assert steps[:4] == [("leader", "draft"), ("leader", "submit"), ("leader", "approve_alert"), ("system", "send_alert")]
    # the admin passes the route's gate but the lifecycle keeps approval the leader's
    d = clients["dispatcher"]
    d.post(f"/api/warnings/{wid}/cancel", json={"reason": ""})
    r = clients["admin"].post(f"/api/warnings/{wid}/approve")
    assert r.status_code == 403 and r.json()["detail"]["field"] == "role"
    assert lead.post(f"/api/warnings/{wid}/approve").json()["state"] == "cancelled"


SQUARE = [[112.0, 22.9], [112.1, 22.9], [112.1, 23.0], [112.0, 23.0], [112.0, 22.9]]


@pytest.mark.parametrize(("change", "field", "status"), [
    ({"areas": [{"desc": "x", "adcodes": ["999999"]}]}, "areas[0].adcodes", 422),
    ({"areas": [{"desc": "x", "polygons": [SQUARE[:-1]]}]}, "areas[0].polygons[0]", 422),
    ({"areas": [{"desc": "x", "polygons": [[[500.0, 1.0]] * 5]}]}, "areas[0].polygons[0]", 422),
    ({"areas": [{"desc": "x", "circles": [[112.0, 22.9, -1.0]]}]}, "areas[0].circles[0]", 422),
    ({"areas": [{"desc": "x"}]}, "areas[0]", 422),
    ({"expires": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}, "expires", 422),
    ({"expires": "2030-01-01T00:00:00"}, "expires", 422),
    ({"headline": "长" * 5000}, "headline", 422),
    ({"description": "x" * 100_000}, "description", 422),
    ({"severity": "Catastrophic"}, "severity", 422),
    ({"areas": []}, "areas", 422),
    ({"unknown_field": 1}, "unknown_field", 422),
])
def test_bad_input_refused_with_field_named(clients: dict[str, httpx.Client], change: dict[str, Any],
                                            field: str, status: int) -> None:
    d = clients["dispatcher"]
    before = count(d)
    r = d.post("/api/warnings", json=body(**change))
    assert r.status_code == status, r.text
    assert field in r.text, r.text
    assert count(d) == before


def test_unknown_warning_and_bad_ids(clients: dict[str, httpx.Client]) -> None:
    d, lead = clients["dispatcher"], clients["leader"]
    r = d.post("/api/warnings/W20990101-deadbeef/update", json=body())
    assert r.status_code == 404 and r.json()["detail"]["field"] == "id"
    assert lead.post("/api/warnings/W20990101-deadbeef/approve").status_code == 404
    assert d.get("/api/warnings/cap/nope.xml").status_code == 404
    assert d.get("/api/warnings/a%20b").status_code == 422
    assert clients["operator"].post("/api/warnings", json=body()).status_code == 403
    # an Update of a warning that is only a draft (never sent) is refused, and so is a cancel
    wid = d.post("/api/warnings", json=body()).json()["id"]
    assert d.post(f"/api/warnings/{wid}/update", json=body()).status_code == 409
    assert d.post(f"/api/warnings/{wid}/cancel", json={"reason": "x"}).status_code == 409
    assert d.get(f"/api/warnings/{wid}").json()["state"] == "draft"


def test_draft_from_a_plan_activation(clients: dict[str, httpx.Client]) -> None:
    d = clients["dispatcher"]
    inc = d.post("/api/incidents", json={"category": "flood_control", "priority": 2, "lon": 111.57, "lat": 22.77})
    assert inc.status_code == 201, inc.text
    act = d.post(f"/api/incidents/{inc.json()['id']}/plans", json={"plan_key": "flood", "level": "II"})
    assert act.status_code == 201, act.text
    prefill = d.get(f"/api/warnings/plan-draft/{act.json()['id']}")
    assert prefill.status_code == 200, prefill.text
    assert prefill.json()["headline"].startswith("暴雨橙色预警")
    r = d.post("/api/warnings", json=body(headline=prefill.json()["headline"], plan_activation=act.json()["id"]))
    assert r.status_code == 201, r.text
    before = count(d)
    r = d.post("/api/warnings", json=body(plan_activation=987654321))
    assert r.status_code == 422 and r.json()["detail"]["field"] == "plan_activation"
    assert count(d) == before
    assert d.get("/api/warnings/plan-draft/987654321").status_code == 422


def test_atom_feed_route(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    """The feed lists sent messages only, newest first; dispatchers, leaders and a system holding a feed
    token read it (and the CAP XML it links to); viewers and wrong tokens do not."""
    d, lead = clients["dispatcher"], clients["leader"]
    wid = d.post("/api/warnings", json=body(headline="云城街道大风蓝色预警", event="大风")).json()["id"]
    d.post(f"/api/warnings/{wid}/submit")
    pending = d.post("/api/warnings", json=body(headline="尚未批准的预警")).json()["id"]
    d.post(f"/api/warnings/{pending}/submit")
    assert lead.post(f"/api/warnings/{wid}/approve").status_code == 200
    sent = lead.get(f"/api/warnings/{wid}").json()["cap_messages"]
    r = lead.get("/api/warnings/feed.atom")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(r.content)
    assert parsed.bozo == 0 and parsed.version == "atom10"
    top = parsed.entries[0]
    assert top.id.endswith(":" + sent[0]["identifier"]) and top.title == "大风 首次发布：云城街道大风蓝色预警"
    assert "尚未批准的预警" not in r.text  # a pending warning is never in the feed
    sents = [e.updated for e in parsed.entries]
    assert sents == sorted(sents, reverse=True)
    assert parsed.feed.links[0].href == server.url + "/api/warnings/feed.atom"
    # a system with the feed token: the feed and the linked CAP XML, nothing else
    with httpx.Client(base_url=server.url, timeout=10) as system:
        ok = {"X-Warning-Feed-Token": FEED_TOKEN}
        assert system.get("/api/warnings/feed.atom", headers=ok).content.count(b"<entry>") == len(parsed.entries)
        x = system.get(top.links[0].href, headers=ok)
        assert x.status_code == 200 and validate_cap(x.text) == []
        assert system.get("/api/warnings/feed.atom", headers={"X-Warning-Feed-Token": "wrong"}).status_code == 401
        assert system.get("/api/warnings/feed.atom").status_code == 401
        assert system.get("/api/warnings", headers=ok).status_code == 401
    assert clients["viewer"].get("/api/warnings/feed.atom").status_code == 403
    assert clients["operator"].get("/api/warnings/feed.atom", headers={"X-Warning-Feed-Token": "wrong"}).status_code == 401
    assert clients["viewer"].get("/api/warnings/feed.atom?lang=en").status_code == 403
    en = lead.get("/api/warnings/feed.atom", params={"lang": "en"})
    assert "大风 first alert: 云城街道大风蓝色预警" in en.text
