"""The chair's slide deck from a `--role web` node, on a room of a `--role mcu` node (issue 17/18).

Real processes on one PostgreSQL; the MCU node serves no HTTP. The chair signs in on the web node
and uploads a one-page PNG deck bigger than a node RPC's arguments may be (it travels through
``deck_uploads``) and then a three-page PDF, pages it, fetches the page preview (its colour names the
page), stops and shows it again: the content becomes live on the MCU node (the content state it
reports), the rendered pages are on the MCU node's disk and none on the web node's, and no upload
row is left. Bad files are refused by the web node with the same status and message as on one node.
Then the MCU node is killed: every deck route answers a clear 503 (zh-CN, English on request), an
upload leaves no row, and the web node keeps running.
"""
from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image, PngImagePlugin

from noderpc.envelope import MAX_ARGS_BYTES
from tests.conftest import run_async
from tests.mcu.mcu_helpers import identify, source_frame, yuv_at
from tests.noderpc.roles import RoleProcess, mcu_and_web
from tests.noderpc.test_split_recording import _rows

pytestmark = pytest.mark.timeout(240)
DEMO = "80000001"
PAGES = (2, 4, 6)  # palette colours of the PDF's pages
PNG_COLOUR = 9


@pytest.fixture(scope="module")
def cluster(pg_url: str) -> Iterator[tuple[RoleProcess, RoleProcess, str, Path]]:
    small = {"CC_DECK__MAX_MB": "2"}
    with mcu_and_web(pg_url, "splitdeck", mcu_env=small, web_env=small) as (mcu, web, db_url, work):
        yield mcu, web, db_url, work


@pytest.fixture(scope="module")
def chair(cluster: tuple[RoleProcess, RoleProcess, str, Path]) -> Iterator[httpx.Client]:
    mcu, web, db_url, _ = cluster
    client = web.login("chair", mcu.passwords()["chair"])
    client.timeout = httpx.Timeout(60.0)
    deadline = time.monotonic() + 30
    while not run_async(_rows(db_url, "SELECT 1 FROM rpc_pins WHERE kind = 'room' AND key = $1", DEMO)):
        assert time.monotonic() < deadline, "the room was never pinned"
        time.sleep(0.3)
    yield client
    client.close()


def until(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def big_png() -> bytes:
    """A one-colour 800x450 PNG carrying a large text chunk: more bytes than one RPC's arguments."""
    info = PngImagePlugin.PngInfo()
    info.add_text("padding", os.urandom(300 * 1024).hex())
    out = io.BytesIO()
    source_frame(PNG_COLOUR, 800, 450).to_image().save(out, "PNG", pnginfo=info)  # type: ignore[no-untyped-call]
    return out.getvalue()


def three_page_pdf() -> bytes:
    pages = [source_frame(i, 800, 450).to_image() for i in PAGES]  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    pages[0].save(out, "PDF", save_all=True, append_images=pages[1:])
    return out.getvalue()


def preview_colour(chair: httpx.Client) -> int | None:
    response = chair.get(f"/api/decks/{DEMO}/page.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text
    with Image.open(io.BytesIO(response.content)) as image:
        frame = av.VideoFrame.from_image(image.convert("RGB"))  # type: ignore[no-untyped-call]
    return identify(yuv_at(frame, frame.width // 2, frame.height // 2, radius=6), tolerance=20)


def deck_state(chair: httpx.Client) -> dict[str, Any]:
    response = chair.get(f"/api/decks/{DEMO}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def act(chair: httpx.Client, action: str, page: int | None = None) -> httpx.Response:
    return chair.post(f"/api/decks/{DEMO}", json={"action": action} | ({"page": page} if page else {}))


def test_chair_on_the_web_node_shows_and_pages_a_deck(cluster: tuple[RoleProcess, RoleProcess, str, Path],
                                                      chair: httpx.Client) -> None:
    _, _, db_url, work = cluster
    # Refusals, answered as on one node: nothing reaches the MCU node, nothing is kept.
    fake = chair.put(f"/api/decks/{DEMO}", params={"name": "fake.pdf"}, content=os.urandom(4096))
    assert fake.status_code == 400 and fake.json()["code"] == "not_supported", fake.text
    assert fake.json()["detail"].startswith("文件不是 PDF、PNG 或 JPEG"), fake.text
    huge = chair.put(f"/api/decks/{DEMO}", params={"name": "huge.pdf"}, content=b"%PDF-" + bytes(3 * 1024 * 1024))
    assert huge.status_code == 413 and huge.json()["detail"] == "文件过大，上限 2 MB，未作任何更改", huge.text
    empty = chair.put(f"/api/decks/{DEMO}", params={"name": "empty.png"}, content=b"")
    assert empty.status_code == 400 and empty.json()["code"] == "empty", empty.text
    assert deck_state(chair)["deck"] is None
    unknown = chair.get("/api/decks/99999999")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "会议未在进行：99999999", unknown.text

    # A PNG deck bigger than an RPC's arguments: shown at once, live on the MCU node.
    png = big_png()
    assert len(png) > MAX_ARGS_BYTES
    shown = chair.put(f"/api/decks/{DEMO}", params={"name": "大图.png"}, content=png)
    assert shown.status_code == 200, shown.text
    assert shown.json()["deck"] | {"uploaded_by": None} == {"name": "大图.png", "pages": 1, "page": 1,
                                                            "showing": True, "uploaded_by": None}
    assert shown.json()["holder"] == "chair:chair"
    until(lambda: bool(deck_state(chair)["live"]), 20, "the content never became live on the MCU node")
    assert preview_colour(chair) == PNG_COLOUR
    one_page = act(chair, "goto", 2)
    assert one_page.status_code == 400 and one_page.json()["detail"] == "页码超出范围（共 1 页）", one_page.text

    # A three-page PDF replaces it; paging and the preview follow.
    pdf = chair.put(f"/api/decks/{DEMO}", params={"name": "汇报.pdf"}, content=three_page_pdf())
    assert pdf.status_code == 200 and pdf.json()["deck"]["pages"] == 3, pdf.text
    assert preview_colour(chair) == PAGES[0]
    moved = act(chair, "next")
    assert moved.status_code == 200 and moved.json()["deck"]["page"] == 2, moved.text
    assert preview_colour(chair) == PAGES[1]
    assert act(chair, "last").json()["deck"]["page"] == 3
    assert preview_colour(chair) == PAGES[2]
    assert act(chair, "goto", 1).json()["deck"]["page"] == 1
    assert preview_colour(chair) == PAGES[0]
    stopped = act(chair, "stop")
    assert stopped.status_code == 200 and stopped.json()["deck"]["showing"] is False, stopped.text
    again = act(chair, "show")
    assert again.status_code == 200 and again.json()["deck"]["showing"] is True, again.text
    until(lambda: bool(deck_state(chair)["live"]), 20, "the content is not live again")

    # The pages live on the MCU node only; no upload row stays behind; the web node audited.
    assert len(list((work / "mcu" / "decks").rglob("*.png"))) == 3
    assert not (work / "web" / "decks").exists() or not list((work / "web" / "decks").rglob("*"))
    assert run_async(_rows(db_url, "SELECT id FROM deck_uploads")) == []
    audited = run_async(_rows(db_url, "SELECT outcome FROM audit_log WHERE action = 'conference.deck.upload' "
                                      "ORDER BY id"))
    assert [r["outcome"] for r in audited] == ["failed", "failed", "failed", "ok", "ok"], audited

    removed = act(chair, "remove")
    assert removed.status_code == 200 and removed.json()["deck"] is None, removed.text
    none = chair.get(f"/api/decks/{DEMO}/page.png")
    assert none.status_code == 404 and none.json()["detail"] == "本会议没有已上传的文稿", none.text


def test_dead_mcu_node_gives_a_clear_503(cluster: tuple[RoleProcess, RoleProcess, str, Path],
                                         chair: httpx.Client) -> None:
    mcu, web, db_url, _ = cluster
    mcu.kill()
    time.sleep(3.5)  # its heartbeat goes stale (dead after 3 s)
    for response in (chair.get(f"/api/decks/{DEMO}"), chair.get(f"/api/decks/{DEMO}/page.png"), act(chair, "next"),
                     chair.put(f"/api/decks/{DEMO}", params={"name": "x.pdf"}, content=three_page_pdf())):
        assert response.status_code == 503, response.text
        assert response.json()["detail"].startswith("承载该会议的节点已停止响应"), response.text
        assert "Traceback" not in response.text
    english = chair.get(f"/api/decks/{DEMO}", params={"lang": "en"})
    assert english.status_code == 503 and "stopped responding" in english.json()["detail"], english.text
    assert run_async(_rows(db_url, "SELECT id FROM deck_uploads")) == []
    assert web.process.poll() is None, "the web node keeps running"
