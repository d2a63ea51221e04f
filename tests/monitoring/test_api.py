"""Monitoring over HTTP against a running `commandcenter up` (real PostgreSQL, its managed mosquitto):
the push API (system token, admin, refusals, bad items counted and never stored), MQTT into the
running server, alarms acknowledged by a person with audit, the chart and gauge views, the roles."""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import httpx
import paho.mqtt.publish as mqtt_publish
import pytest

from tests.conftest import RunningServer, free_port, run_async

TOKEN = "hydrology-bureau-" + "7" * 24
MQTT_PORT = free_port()
SERVER_ENV = {
    "CC_MONITORING__BROKER": "managed",
    "CC_MONITORING__MQTT_PORT": str(MQTT_PORT),
    "CC_MONITORING__PUSH_TOKENS": json.dumps({"hydro-bureau": hashlib.sha256(TOKEN.encode()).hexdigest()}),
}
WATCHERS = {"admin", "dispatcher", "chair", "leader"}
ROLES = ["admin", "chair", "operator", "calltaker", "dispatcher", "inspector", "viewer", "leader"]


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    out = {role: server.login(role) for role in ROLES}
    yield out
    for c in out.values():
        c.close()


def sql(server: RunningServer, query: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(server.db_url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows
        finally:
            await conn.close()
    return run_async(run())


def readings(server: RunningServer, gauge: str) -> list[float]:
    return [r["value"] for r in sql(server, "SELECT value FROM monitoring_readings WHERE gauge_id = $1 ORDER BY at", gauge)]


T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def push(server: RunningServer, body: object, token: str | None = TOKEN, raw: bytes | None = None) -> httpx.Response:
    headers = {"X-Monitoring-Token": token} if token is not None else {}
    with server.client() as c:
        if raw is not None:
            return c.post("/api/monitoring/readings", content=raw, headers={**headers, "Content-Type": "application/json"})
        return c.post("/api/monitoring/readings", json=body, headers=headers)


def test_push_with_a_system_token_stores_good_items_and_names_bad_ones(server: RunningServer) -> None:
    gauge = "gauge-xijiang-ducheng"
    now = time.time()
    r = push(server, None, raw=json.dumps({"readings": [
        {"gauge": gauge, "value": 20.5, "at": now - 20},
        {"gauge": gauge, "value": 20.6, "at": now - 10},
        {"gauge": "gauge-nowhere", "value": 1.0},
        {"gauge": gauge, "value": "high"},
        {"gauge": gauge, "value": 999.0},
    ]}).encode())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["rejected_total"] == 3
    assert [(x["index"], x["reason"]) for x in body["rejected"]] == [(2, "unknown_gauge"), (3, "bad_value"),
                                                                      (4, "out_of_range")]
    assert "gauge-nowhere" in body["rejected"][0]["detail"]
    assert wait_until(lambda: readings(server, gauge) == [20.5, 20.6])


def test_push_refusals_change_nothing(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    gauge = "gauge-nanjiang-liantan"
    one = {"readings": [{"gauge": gauge, "value": 10.0}]}
    assert push(server, one, token=None).status_code == 401
    assert push(server, one, token="wrong-token").status_code == 401
    assert push(server, one, token="").status_code == 401
    for role in ("dispatcher", "leader", "chair", "viewer"):
        assert clients[role].post("/api/monitoring/readings", json=one).status_code == 403, role
    # every item bad: 422 naming each
    r = push(server, {"readings": [{"gauge": "gauge-x1", "value": 1}, {"gauge": gauge, "value": None}]})
    assert r.status_code == 422 and "gauge-x1" in r.text and "bad_value" in r.text
    assert push(server, None, raw=b"{not json").status_code == 422
    assert push(server, None, raw=b'{"readings": [{"gauge": "' + gauge.encode() + b'", "value": NaN}]}').status_code == 422
    assert push(server, {"readings": "many"}).status_code == 422
    assert push(server, {"readings": [{"gauge": gauge, "value": 1}] * 5001}).status_code == 413
    assert push(server, {"readings": [{"gauge": gauge, "value": 1, "note": "a\u0000b"}]}).status_code == 422
    time.sleep(0.5)
    assert readings(server, gauge) == []
    # an admin may push (by session, with the CSRF token)
    assert clients["admin"].post("/api/monitoring/readings", json=one).json()["accepted"] == 1
    assert wait_until(lambda: readings(server, gauge) == [10.0])
    counters = clients["admin"].get("/api/monitoring/gauges").json()["counters"]
    assert counters["rejected"]["unknown_gauge"] >= 2 and counters["rejected"]["bad_value"] >= 2


def test_mqtt_into_the_running_server(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    gauge = "rain-luoding-luocheng"
    mqtt_publish.single(f"cc/gauges/{gauge}/reading", json.dumps({"value": 1.25}), qos=1,
                        hostname="127.0.0.1", port=MQTT_PORT)
    mqtt_publish.single(f"cc/gauges/{gauge}/reading", b"\x00garbage", qos=1, hostname="127.0.0.1", port=MQTT_PORT)

    def seen() -> dict[str, Any] | None:
        views = {g["id"]: g for g in clients["leader"].get("/api/monitoring/gauges").json()["gauges"]}
        return views[gauge] if views[gauge]["value"] == 1.25 else None
    view = wait_until(seen)
    assert view["state"] == "normal" and view["unit"] == "mm" and view["position_quality"] == "made-up"
    assert wait_until(lambda: readings(server, gauge) == [1.25])
    data = clients["leader"].get("/api/monitoring/gauges").json()
    assert data["mqtt"]["connected"] is True and data["counters"]["rejected"].get("not_json", 0) >= 1
    assert data["can_acknowledge"] is False and data["texts"]["panel"] == "水雨情监测"
    assert clients["dispatcher"].get("/api/monitoring/gauges?lang=en").json()["can_acknowledge"] is True


def test_alarm_over_the_warning_level_makes_an_incident_and_is_acknowledged_with_audit(
        server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    gauge = "gauge-luoding-river"  # 警戒水位 12.0 → a 三防 incident
    now = time.time()
    assert push(server, {"readings": [{"gauge": gauge, "value": v, "at": now - 30 + i}
                                      for i, v in enumerate([11.0, 11.6, 12.3])]}).json()["accepted"] == 3

    def raised() -> dict[str, Any] | None:
        alarms = clients["dispatcher"].get("/api/monitoring/alarms").json()["alarms"]
        return next((a for a in alarms if a["gauge_id"] == gauge and a["key"] == "warning" and a["incident_id"]), None)
    alarm = wait_until(raised)
    incident = clients["dispatcher"].get(f"/api/incidents/{alarm['incident_id']}").json()
    assert incident["category"] == "flood_control"
    assert clients["leader"].get("/api/monitoring/alarms").status_code == 200

    url = f"/api/monitoring/alarms/{alarm['id']}/acknowledge"
    assert clients["leader"].post(url, json={}).status_code == 403
    assert clients["chair"].post(url, json={}).status_code == 403
    with server.client() as anonymous:
        assert anonymous.post(url, json={}).status_code == 401
    assert clients["dispatcher"].post(url, json={"note": "x" * 501}).status_code == 422
    r = clients["dispatcher"].post(url, json={"note": "已通知罗定市三防办"})
    assert r.status_code == 200 and r.json()["alarm"]["acked_by"] == "dispatcher"
    assert clients["dispatcher"].post(url, json={}).status_code == 409
    assert clients["dispatcher"].post("/api/monitoring/alarms/999999999/acknowledge", json={}).status_code == 404
    rows = sql(server, "SELECT actor, target, detail FROM audit_log WHERE action = 'monitoring.acknowledge'")
    assert [(r["actor"], r["target"]) for r in rows] == [("dispatcher", str(alarm["id"]))]
    detail = rows[0]["detail"]
    assert "已通知罗定市三防办" in (detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False))


def test_chart_series_and_bad_queries(server: RunningServer, clients: dict[str, httpx.Client]) -> None:
    c = clients["chair"]
    day = c.get("/api/monitoring/gauges/gauge-xijiang-ducheng/series?span=24h")
    assert day.status_code == 200
    points = day.json()["points"]
    assert points and sum(p["count"] for p in points) == len(readings(server, "gauge-xijiang-ducheng"))
    assert c.get("/api/monitoring/gauges/gauge-xijiang-ducheng/series?span=7d").status_code == 200
    assert c.get("/api/monitoring/gauges/gauge-xijiang-ducheng/series?span=1y").status_code == 422
    assert c.get("/api/monitoring/gauges/nope/series").status_code == 404
    assert c.get("/api/monitoring/gauges/x%00y/series").status_code == 422


@pytest.mark.parametrize("path", ["/api/monitoring/gauges", "/api/monitoring/alarms",
                                  "/api/monitoring/gauges/gauge-luoding-river/series?span=7d"])
def test_who_may_watch(clients: dict[str, httpx.Client], path: str) -> None:
    for role in ROLES:
        status = clients[role].get(path).status_code
        assert status == (200 if role in WATCHERS else 403), (role, status)


def test_leader_gets_alarm_events_and_a_calltaker_does_not(server: RunningServer) -> None:
    from websockets.sync.client import connect

    def events(role: str) -> list[str]:
        client = server.login(role)
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        topics: list[str] = []
        with connect(server.url.replace("http", "ws") + "/ws/events?topics=monitoring.*",
                     additional_headers={"Cookie": cookie}) as ws:
            ws.recv(timeout=5)  # hello
            push(server, {"readings": [{"gauge": "gauge-luoding-river", "value": 11.0 if role == "calltaker" else 11.1}]})
            try:
                while True:
                    topics.append(json.loads(ws.recv(timeout=3))["topic"])
            except TimeoutError:
                pass
        return topics

    assert "monitoring.readings" in events("leader")
    assert events("calltaker") == []
