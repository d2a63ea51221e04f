from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from gis.mbtiles import MBTilesError, MBTilesReader


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture()
def mbtiles(tmp_path: Path) -> Path:
    p = tmp_path / "yunfu.mbtiles"
    db = sqlite3.connect(p)
    db.executescript(
        "CREATE TABLE metadata (name text, value text);"
        "CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob);"
    )
    db.executemany("INSERT INTO metadata VALUES (?, ?)", [
        ("name", "云浮"), ("format", "png"), ("minzoom", "8"), ("maxzoom", "10"),
        ("bounds", "111.2,22.3,112.5,23.4")])
    # z=10: Yunfu around x=830, XYZ y=445 → TMS row 1023-445 = 578
    db.execute("INSERT INTO tiles VALUES (10, 830, 578, ?)", (png((255, 0, 0)),))
    db.execute("INSERT INTO tiles VALUES (10, 830, 445, ?)", (png((0, 0, 255)),))  # the wrong (unflipped) row
    db.commit()
    db.close()
    return p


def test_reads_tile_with_tms_flip(mbtiles: Path) -> None:
    with MBTilesReader(mbtiles) as r:
        assert r.content_type == "image/png" and r.minzoom == 8 and r.maxzoom == 10
        assert r.bounds() == (111.2, 22.3, 112.5, 23.4)
        data = r.get_tile(10, 830, 445)
        assert data is not None
        assert Image.open(io.BytesIO(data)).getpixel((5, 5)) == (255, 0, 0)
        assert r.get_tile(10, 831, 445) is None


def test_bad_addresses_and_files(mbtiles: Path, tmp_path: Path) -> None:
    r = MBTilesReader(mbtiles)
    for z, x, y in ((10, 1024, 0), (10, 0, -1), (31, 0, 0), (-1, 0, 0)):
        with pytest.raises(MBTilesError):
            r.get_tile(z, x, y)
    r.close()
    with pytest.raises(MBTilesError, match="不存在"):
        MBTilesReader(tmp_path / "none.mbtiles")
    junk = tmp_path / "junk.mbtiles"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(MBTilesError, match="MBTiles"):
        MBTilesReader(junk)
    # read-only: the reader cannot modify the file
    before = mbtiles.read_bytes()
    r2 = MBTilesReader(mbtiles)
    with pytest.raises(sqlite3.OperationalError):
        r2._db.execute("DELETE FROM tiles")
    assert mbtiles.read_bytes() == before
