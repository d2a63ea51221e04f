"""Warnings that reach people (issue 20), timed end to end, p95 over ``--n`` samples each:

* ``crossing_to_console``: a gauge reading crossing its 警戒水位, published to the node's MQTT
  broker (mosquitto, QoS 1), until a dispatcher console's websocket (``/ws/events``) has the
  ``monitoring.alarm_raised`` event for that gauge. A ``commandcenter up`` server on an embedded
  PostgreSQL with the demo site plan (its managed mosquitto on a free port, demo publisher off); the
  console is a websocket client logged in as the dispatcher. Between samples the level falls back
  below the warning level less its hysteresis and the alarm clears.
* ``approval_to_sms``: the leader's approval (``WarningService.approve`` called) until Kannel has
  handed the warning's SMS to the operator for every person on duty (fakesmsc printed a part for
  each of the two numbers: accepted by the gateway and passed on over SMPP). Core services on an
  embedded PostgreSQL, real Kannel (bearerbox + smsbox) and fakesmsc on 127.0.0.1, throughput 50
  parts/s, a one-part UCS-2 warning. Reference in the same run: the SMS service's own send of the
  same text to the same numbers (no warning, no approval), to fakesmsc likewise.

* ``approval_to_banner``: the leader's approval until the red warning banner is in the bottom rows
  of the conference composite of a township room called in over SIP (baresip): the frame the room's
  encoder is fed, rendered by the MCU room and read back as pixels (not decoded at the peer).

    python -m bench.warnings [--n 20] [--only sms|console|banner]

Writes bench/results/warnings.json and prints a table. The machine is shared (2 cores, other jobs):
the load average is recorded before each part.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import dispatch as dispatch_bench  # noqa: E402
from bench.report import write_result  # noqa: E402

SQUARE = ((111.5, 22.6), (111.7, 22.6), (111.7, 22.8), (111.5, 22.8), (111.5, 22.6))


free_port = dispatch_bench.free_port


def stats(samples: Sequence[float]) -> dict[str, Any]:
    s = sorted(samples)
    return {"n": len(s), "p50_ms": round(1000 * s[len(s) // 2], 1),
            "p95_ms": round(1000 * s[min(len(s) - 1, int(0.95 * len(s)))], 1), "max_ms": round(1000 * s[-1], 1)}


# -- approval → SMS at the operator ------------------------------------------------------------------

class Duty:
    async def on_duty(self, post: str) -> Sequence[str]:
        return {"leader_on_duty": ["chair"], "duty_officer": ["dispatcher"]}.get(post, [])


async def approval_to_sms(n: int) -> dict[str, Any]:
    from alerts import capability as alerts_capability
    from alerts.lifecycle import Area, Content
    from config.settings import Settings
    from core.runtime import CoreServices
    from sms import capability as sms_capability

    var = Path(tempfile.mkdtemp(prefix="cc-bench-warnings-"))
    core = await CoreServices.start(Settings(var_dir=var, sms={"enabled": True, "throughput": 50}))
    sms = await sms_capability.start(core, Duty())
    assert sms is not None and sms.kannel.operator is not None, "SMS needs Kannel and fakesmsc (make installs them)"
    operator = sms.kannel.operator
    alerts = await alerts_capability.start(core, sweep_every=0, sms=sms.service)
    svc = alerts.service
    people = 2  # the chair (leader_on_duty) and the dispatcher (duty_officer)

    async def at_operator(before: int) -> set[str]:
        """The numbers fakesmsc has had a part for since line `before`, once there are `people` of them."""
        while True:
            got = {line.split(" ")[1] for line in operator.received()[before:]}
            if len(got) >= people:
                return got
            await asyncio.sleep(0.005)

    try:
        samples, reference = [], []
        numbers: set[str] = set()
        for i in range(n):
            content = Content(event="暴雨", headline=f"罗定市暴雨橙色预警{i}", description="未来6小时将出现暴雨。",
                              instruction="注意防范。", severity="Severe", urgency="Expected", certainty="Likely",
                              areas=(Area("罗定市", polygons=(SQUARE,), adcodes=("445381",)),),
                              expires=datetime.now(UTC) + timedelta(hours=6))
            w = await svc.draft(content, "dispatcher", "dispatcher", "127.0.0.1")
            await svc.submit(w["id"], "dispatcher", "dispatcher")
            await svc.drain()
            before = len(operator.received())
            t0 = time.perf_counter()
            await svc.approve(w["id"], "leader", "leader")
            numbers = await asyncio.wait_for(at_operator(before), 60)
            samples.append(time.perf_counter() - t0)
            await asyncio.sleep(0.5)  # the delivery reports come back; the next sample starts on a quiet gateway
            before = len(operator.received())
            t0 = time.perf_counter()
            await sms.service.send(f"【预警】罗定市暴雨橙色预警{i}（罗定市）注意防范。", kind="command", actor="bench",
                                   numbers=sorted(numbers))
            await asyncio.wait_for(at_operator(before), 60)
            reference.append(time.perf_counter() - t0)
            await asyncio.sleep(0.5)
        ours, ref = stats(samples), stats(reference)
        return {"people_on_duty": people, "approval_to_operator": ours, "reference_sms_send_to_operator": ref,
                "ratio_p95_to_reference": round(ours["p95_ms"] / ref["p95_ms"], 2) if ref["p95_ms"] else None,
                "load_average_before": os.getloadavg()[0]}
    finally:
        await alerts.stop()
        await sms.stop()
        await core.stop()
        shutil.rmtree(var, ignore_errors=True)


# -- approval → banner in a room's conference video -----------------------------------------------------

BUSY_ROOM, BUSY_AREA = "445322-12-room", "445322-12"  # 连滩镇 in the demo plan


async def approval_to_banner(n: int) -> dict[str, Any]:
    """A township room system (baresip, auto-answer) is called into the demo conference over SIP; each
    sample is an approved warning for its township until the conference's composite (the frame the
    room's H.264 encoder is fed, rendered by the room) carries the red banner bar with white text in
    its bottom rows; then the warning is cancelled and the bar is gone before the next sample."""
    import numpy as np

    from alerts import capability as alerts_capability
    from alerts.lifecycle import Area, Content
    from config.settings import Settings
    from core.runtime import CoreServices
    from mcu.compositor import Compositor
    from mcu.conferences import ConferenceService
    from mcu.legs.sip_bridge import SipSiteDialer
    from mcu.room import RoomSettings
    from mcu.warning_rooms import McuWarningRooms
    from tests.sip_gateway.conference_helpers import DEMO, start_bridge, until
    from tests.sip_gateway.peers import Baresip

    def red_share(room: Any) -> float:
        frame = room.render("broadcast").frame.to_ndarray(format="rgb24").astype(int)
        h = frame.shape[0]
        bar = Compositor.banner_height(Compositor.__new__(Compositor), h)
        rows = frame[h - bar + 2: h - 2]
        return float(np.all(np.abs(rows - np.array(Compositor.BANNER_COLOUR)) < 40, axis=-1).mean())

    var = Path(tempfile.mkdtemp(prefix="cc-bench-banner-"))
    core = await CoreServices.start(Settings(var_dir=var))
    conferences = ConferenceService(core, room_settings=RoomSettings(fps=10))
    await conferences.start()
    bridge = await start_bridge(core, conferences)
    conferences.register_dialer("sip", SipSiteDialer(bridge))
    room_system = Baresip(var / "room", tone_hz=880, auto_answer=True)
    alerts = await alerts_capability.start(core, McuWarningRooms(conferences, answer_timeout=30), sweep_every=0)
    svc = alerts.service
    try:
        await room_system.start()
        await room_system.wait_log("baresip is ready")
        conf = conferences.running(DEMO)
        assert conf is not None
        await bridge.invite(DEMO, site_id=BUSY_ROOM, uri=f"sip:baresip@127.0.0.1:{room_system.sip_port}", name="连滩镇")
        await until(lambda: conf.sites[BUSY_ROOM].status == "joined", 60, "the room system to join")
        assert red_share(conf.room) < 0.2
        samples = []
        for i in range(n):
            content = Content(event="暴雨", headline=f"连滩镇暴雨红色预警{i}", description="未来3小时将出现特大暴雨。",
                              instruction="立即转移低洼地带人员。", severity="Extreme", urgency="Immediate",
                              certainty="Likely", areas=(Area("连滩镇", adcodes=(BUSY_AREA,)),),
                              expires=datetime.now(UTC) + timedelta(hours=3))
            w = await svc.draft(content, "dispatcher", "dispatcher")
            await svc.submit(w["id"], "dispatcher", "dispatcher")
            await svc.drain()
            t0 = time.perf_counter()
            await svc.approve(w["id"], "leader", "leader")
            while red_share(conf.room) <= 0.5:
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("no banner within 30 s")
                await asyncio.sleep(0.005)
            samples.append(time.perf_counter() - t0)
            await svc.propose_cancel(w["id"], "dispatcher", "dispatcher", "解除")
            await svc.approve(w["id"], "leader", "leader")
            await svc.drain()
            await until(lambda: red_share(conf.room) < 0.2, 30, "the banner gone after Cancel")
            await asyncio.sleep(1.1)  # identifiers are per second: never more than ten in one
        return {"room": BUSY_ROOM, **stats(samples), "load_average_before": os.getloadavg()[0]}
    finally:
        await alerts.stop()
        await bridge.stop()
        await room_system.stop()
        await conferences.stop()
        await core.stop()
        shutil.rmtree(var, ignore_errors=True)


# -- threshold crossing → alarm on a console's websocket -----------------------------------------------

def start_server(db_url: str, var: Path, mqtt_port: int) -> tuple[subprocess.Popen[str], str, str]:
    """The dispatch bench's server, with its own managed MQTT broker and no demo publisher."""
    return dispatch_bench.start_server(db_url, var, {
        "CC_MONITORING__BROKER": "managed", "CC_MONITORING__MQTT_PORT": str(mqtt_port),
        "CC_MONITORING__DEMO_PUBLISHER": "false"}, start_s=180)


async def crossing_to_console(n: int) -> dict[str, Any]:
    import aiomqtt
    import asyncpg
    import httpx
    from websockets.asyncio.client import connect as ws_connect

    from core.db import EmbeddedPostgres

    data = Path(tempfile.mkdtemp(prefix="cc-bench-warnings-pg-"))
    pg = EmbeddedPostgres(data)
    base = await asyncio.to_thread(pg.start)
    proc = None
    try:
        admin = await asyncpg.connect(base)
        await admin.execute("CREATE DATABASE bench_warnings")
        await admin.close()
        parts = urlsplit(base)
        url_db = urlunsplit((parts.scheme, parts.netloc, "/bench_warnings", parts.query, parts.fragment))
        mqtt_port = free_port()
        proc, url, password = start_server(url_db, data / "var", mqtt_port)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            page = await http.get("/login")
            token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
            assert token
            r = await http.post("/login", data={"username": "dispatcher", "password": password,
                                                "login_csrf": token.group(1), "next": "/"})
            assert r.status_code == 303, r.text
            cookie = "cc_session=" + http.cookies["cc_session"]
            gauges = (await http.get("/api/monitoring/gauges", headers={"Cookie": cookie})).json()["gauges"]
        gauge, level = next((g, t) for g in gauges for t in g["thresholds"]
                            if t["direction"] == "rising" and t["window_s"] == 0)
        low = level["value"] - 1.0
        ws_url = url.replace("http://", "ws://") + "/ws/events?topics=monitoring.*"
        samples = []
        async with ws_connect(ws_url, additional_headers={"Cookie": cookie}, max_queue=None) as ws, \
                aiomqtt.Client("127.0.0.1", mqtt_port, identifier="bench-gauge") as client:
            assert json.loads(await ws.recv())["topic"] == "system.hello"

            async def event(topic: str) -> None:
                while True:
                    ev = json.loads(await ws.recv())
                    if ev["topic"] == topic and ev["payload"].get("alarm", {}).get("gauge_id") == gauge["id"] \
                            and ev["payload"]["alarm"].get("key") == level["key"]:
                        return

            topic = f"cc/gauges/{gauge['id']}/reading"
            for _ in range(n):
                await client.publish(topic, json.dumps({"value": low}), qos=1)
                with contextlib.suppress(TimeoutError):  # the first time there is no alarm to clear
                    await asyncio.wait_for(event("monitoring.alarm_cleared"), 5)
                await asyncio.sleep(0.2)
                t0 = time.perf_counter()
                await client.publish(topic, json.dumps({"value": level["value"] + 0.5}), qos=1)
                await asyncio.wait_for(event("monitoring.alarm_raised"), 30)
                samples.append(time.perf_counter() - t0)
        return {"gauge": gauge["id"], "threshold": level["key"], **stats(samples),
                "load_average_before": os.getloadavg()[0]}
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--only", choices=("sms", "console", "banner"), default=None)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    result: dict[str, Any] = {"benchmark": "warnings", "at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "conditions": "shared 2-core machine with other jobs running; see each part's "
                                            "load_average_before"}
    if args.only in (None, "console"):
        result["crossing_to_console"] = asyncio.run(crossing_to_console(args.n))
    if args.only in (None, "sms"):
        result["approval_to_sms"] = asyncio.run(approval_to_sms(args.n))
    if args.only in (None, "banner"):
        result["approval_to_banner"] = asyncio.run(approval_to_banner(args.n))
    write_result("warnings", result, load)


if __name__ == "__main__":
    main()
