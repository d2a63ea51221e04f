"""The chair's content control from a `--role web` node, on a room of a `--role mcu` node (issue 17/18).

Real processes on one PostgreSQL; the MCU node serves no HTTP. The chair signs in on the web node,
shows a slide deck (through ``room.deck``) and reads the content state through the web node
(``room.content``): live, held by the chair. The chair changes the content layout, revokes the token
and takes it back, and changes the hand settings; each change is the hosting node's state, read back
both through ``/api/conferences/<id>/content`` and through the deck route (which the MCU node answers
from its own content state). Bad requests are refused with the same status, code and message as on one
node and change nothing; the web node audited. Then the MCU node is killed: the content routes
answer 503 with the ``node.*`` message (English on request) and the web node keeps running.
"""
from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import run_async
from tests.mcu.mcu_helpers import source_frame
from tests.noderpc.roles import RoleProcess, mcu_and_web
from tests.noderpc.test_split_deck import until
from tests.noderpc.test_split_recording import _rows

pytestmark = pytest.mark.timeout(240)
DEMO = "80000001"
URL = f"/api/conferences/{DEMO}/content"


@pytest.fixture(scope="module")
def cluster(pg_url: str) -> Iterator[tuple[RoleProcess, RoleProcess, str]]:
    with mcu_and_web(pg_url, "splitcontent") as (mcu, web, db_url, work):
        yield mcu, web, db_url


@pytest.fixture(scope="module")
def chair(cluster: tuple[RoleProcess, RoleProcess, str]) -> Iterator[httpx.Client]:
    mcu, web, db_url = cluster
    client = web.login("chair", mcu.passwords()["chair"])
    client.timeout = httpx.Timeout(60.0)
    until(lambda: bool(run_async(_rows(db_url, "SELECT 1 FROM rpc_pins WHERE kind = 'room' AND key = $1", DEMO))),
          30, "the room was never pinned")
    yield client
    client.close()


def png_deck() -> bytes:
    out = io.BytesIO()
    source_frame(5, 800, 450).to_image().save(out, "PNG")  # type: ignore[no-untyped-call]
    return out.getvalue()


def content(chair: httpx.Client) -> dict[str, Any]:
    response = chair.get(URL)
    assert response.status_code == 200, response.text
    return dict(response.json())


def hosted(chair: httpx.Client) -> dict[str, Any]:
    """The hosting node's content state through another route (`room.deck` answers `content.state()`)."""
    response = chair.get(f"/api/decks/{DEMO}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def act(chair: httpx.Client, path: str = URL, **body: object) -> httpx.Response:
    return chair.post(path, json=body)


def test_chair_on_the_web_node_controls_the_content(cluster: tuple[RoleProcess, RoleProcess, str],
                                                    chair: httpx.Client) -> None:
    _, _, db_url = cluster
    before = content(chair)
    assert before["conference_id"] == DEMO and before["holder"] is None and before["live"] is False, before
    assert before["layout"] == "content+speakers" and before["policy"] in ("free", "chair"), before

    # Refusals, as on one node: status, code and message; nothing changed.
    nobody = act(chair, action="revoke")
    assert nobody.status_code == 400 and nobody.json() == {"detail": "当前没有人共享内容", "code": "nobody"}, \
        nobody.text
    stranger = act(chair, action="grant", site="no-such-site")
    assert stranger.status_code == 400 and stranger.json() == {"detail": "会场不在会议中：no-such-site",
                                                               "code": "not_site"}, stranger.text
    missing = act(chair, action="grant")
    assert missing.status_code == 400 and missing.json() == {"detail": "缺少参数: site", "code": "missing"}, \
        missing.text
    assert act(chair, action="layout", layout="sideways").status_code == 422  # validated on the web node
    unknown = chair.get("/api/conferences/99999999/content")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "会议未在进行：99999999", unknown.text
    assert content(chair) == before

    # A deck shown from the web node: the content is live there, held by the chair.
    shown = chair.put(f"/api/decks/{DEMO}", params={"name": "p.png"}, content=png_deck())
    assert shown.status_code == 200, shown.text
    until(lambda: bool(content(chair)["live"]), 30, "the content never became live through the web node")
    assert content(chair)["holder"] == "chair:chair"

    # The content layout follows on the hosting node.
    layout = act(chair, action="layout", layout="content")
    assert layout.status_code == 200 and layout.json()["layout"] == "content", layout.text
    assert content(chair)["layout"] == "content" and hosted(chair)["layout"] == "content"

    # Revoke the token, then take it back.
    revoked = act(chair, action="revoke")
    assert revoked.status_code == 200 and revoked.json()["holder"] is None, revoked.text
    assert hosted(chair)["holder"] is None
    taken = act(chair, action="take")
    assert taken.status_code == 200 and taken.json()["holder"] == "chair:chair", taken.text
    assert hosted(chair)["holder"] == "chair:chair"

    # The hands route too.
    hands = act(chair, f"/api/conferences/{DEMO}/hands", action="settings", approve="pane", mute_others=True)
    assert hands.status_code == 200 and hands.json()["approve"] == "pane" and hands.json()["mute_others"], hands.text
    assert content(chair)["approve"] == "pane"
    dismiss = act(chair, f"/api/conferences/{DEMO}/hands", action="approve", site="nobody-here")
    assert dismiss.status_code == 400 and dismiss.json()["code"] == "not_site", dismiss.text

    audited = run_async(_rows(db_url, "SELECT action, outcome, detail FROM audit_log "
                                      "WHERE action LIKE 'conference.content.%' OR action LIKE 'conference.hands.%' "
                                      "ORDER BY id"))
    assert [(r["action"], r["outcome"]) for r in audited] == [
        ("conference.content.revoke", "failed"), ("conference.content.grant", "failed"),
        ("conference.content.grant", "failed"), ("conference.content.layout", "ok"),
        ("conference.content.revoke", "ok"), ("conference.content.take", "ok"),
        ("conference.hands.settings", "ok"), ("conference.hands.approve", "failed")], audited
    assert all(json.loads(r["detail"])["via"] == "node-rpc" for r in audited), audited


def test_dead_mcu_node_gives_a_clear_503(cluster: tuple[RoleProcess, RoleProcess, str], chair: httpx.Client) -> None:
    mcu, web, _ = cluster
    mcu.kill()
    time.sleep(3.5)  # its heartbeat goes stale (dead after 3 s)
    for response in (chair.get(URL), act(chair, action="take"),
                     act(chair, f"/api/conferences/{DEMO}/hands", action="dismiss", site="x")):
        assert response.status_code == 503, response.text
        assert response.json()["detail"].startswith("承载该会议的节点已停止响应"), response.text
        assert "Traceback" not in response.text
    english = chair.get(URL, params={"lang": "en"})
    assert english.status_code == 503 and "stopped responding" in english.json()["detail"], english.text
    assert web.process.poll() is None, "the web node keeps running"
