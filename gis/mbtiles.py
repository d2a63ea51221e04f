"""Read raster (or vector) tiles from a local MBTiles file (SQLite, MBTiles 1.3).

MBTiles stores rows in the TMS scheme (row 0 at the south), while Leaflet asks for XYZ tiles
(row 0 at the north): ``tile_row = 2**z - 1 - y``. The app serves ``/tiles/{z}/{x}/{y}`` from this
reader; the file is opened read-only so a bad request can never change it.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "pbf": "application/x-protobuf",
}


class MBTilesError(ValueError):
    """The file is missing or not an MBTiles database, or a tile address is out of range."""


class MBTilesReader:
    """Thread-safe read-only access to one MBTiles file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MBTilesError(f"{self.path}: 文件不存在")
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            rows = self._db.execute("SELECT name, value FROM metadata").fetchall()
            self._db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles LIMIT 0").fetchall()
        except sqlite3.Error as e:
            raise MBTilesError(f"{self.path}: 不是有效的 MBTiles 文件: {e}") from e
        self._lock = threading.Lock()
        self.metadata: dict[str, str] = {str(k): str(v) for k, v in rows}
        fmt = self.metadata.get("format", "png").lower()
        self.format = fmt
        self.content_type = _CONTENT_TYPES.get(fmt, "application/octet-stream")
        self.minzoom = int(self.metadata.get("minzoom", 0))
        self.maxzoom = int(self.metadata.get("maxzoom", 22))

    def bounds(self) -> tuple[float, float, float, float] | None:
        """(west, south, east, north) from the metadata, if present."""
        b = self.metadata.get("bounds")
        if not b:
            return None
        w, s, e, n = (float(v) for v in b.split(","))
        return (w, s, e, n)

    def get_tile(self, z: int, x: int, y: int) -> bytes | None:
        """Tile bytes for an XYZ address, or None when the file has no such tile."""
        if not (0 <= z <= 30):
            raise MBTilesError(f"缩放级别超出范围: {z}")
        n = 1 << z
        if not (0 <= x < n and 0 <= y < n):
            raise MBTilesError(f"瓦片坐标超出范围: z={z} x={x} y={y}")
        tms_y = n - 1 - y
        with self._lock:
            row = self._db.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                (z, x, tms_y),
            ).fetchone()
        return bytes(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> MBTilesReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
