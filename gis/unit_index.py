"""Spatial index of moving units: O(1) position updates, nearest-k queries.

shapely's STRtree is immutable, so with thousands of AVL updates per second it would be rebuilt
constantly. Units live instead in a uniform grid of ``cell_deg`` cells (a dict of sets); a query
visits rings of cells around the point until it has k candidates whose great-circle distance is
smaller than anything an unvisited ring could hold. Written by hand because it is ~80 lines and
no maintained pure-Python library offers a mutable geographic index with a filter.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gis.geodesy import check_lon_lat, haversine_m, metres_per_degree


@dataclass(frozen=True)
class Neighbour:
    unit_id: str
    lon: float
    lat: float
    distance_m: float


class UnitIndex:
    """Positions of units keyed by id, in a grid of ``cell_deg``-degree cells."""

    def __init__(self, cell_deg: float = 0.02) -> None:
        if not cell_deg > 0:
            raise ValueError("cell_deg 必须为正数")
        self.cell_deg = cell_deg
        self._pos: dict[str, tuple[float, float]] = {}
        self._cell_of: dict[str, tuple[int, int]] = {}
        self._cells: dict[tuple[int, int], set[str]] = {}
        # grow-only bounding box of occupied cells: bounds the ring search when few units match
        self._bbox: tuple[int, int, int, int] | None = None

    def _cell(self, lon: float, lat: float) -> tuple[int, int]:
        return (math.floor(lon / self.cell_deg), math.floor(lat / self.cell_deg))

    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self._pos

    def position(self, unit_id: str) -> tuple[float, float] | None:
        return self._pos.get(unit_id)

    def items(self) -> Iterator[tuple[str, tuple[float, float]]]:
        yield from self._pos.items()

    def update(self, unit_id: str, lon: float, lat: float) -> None:
        """Insert or move a unit (CoordinateError for out-of-range coordinates)."""
        check_lon_lat(lon, lat)
        cell = self._cell(lon, lat)
        old = self._cell_of.get(unit_id)
        if old != cell:
            if old is not None:
                members = self._cells[old]
                members.discard(unit_id)
                if not members:
                    del self._cells[old]
            self._cells.setdefault(cell, set()).add(unit_id)
            self._cell_of[unit_id] = cell
            b = self._bbox
            self._bbox = (
                (cell[0], cell[1], cell[0], cell[1])
                if b is None
                else (min(b[0], cell[0]), min(b[1], cell[1]), max(b[2], cell[0]), max(b[3], cell[1]))
            )
        self._pos[unit_id] = (lon, lat)

    def remove(self, unit_id: str) -> None:
        """Forget a unit (no error if unknown)."""
        cell = self._cell_of.pop(unit_id, None)
        self._pos.pop(unit_id, None)
        if cell is not None:
            members = self._cells[cell]
            members.discard(unit_id)
            if not members:
                del self._cells[cell]

    def nearest(
        self,
        lon: float,
        lat: float,
        k: int = 10,
        max_distance_m: float = math.inf,
        where: Callable[[str], bool] | None = None,
    ) -> list[Neighbour]:
        """The k nearest units (great-circle metres), optionally filtered by ``where(unit_id)``."""
        check_lon_lat(lon, lat)
        if k <= 0 or not self._pos:
            return []
        cx, cy = self._cell(lon, lat)
        mx, my = metres_per_degree(lat)
        # a ring r cells away is at least (r - 1) cells (the smaller cell side) from the point
        cell_m = self.cell_deg * min(max(mx, 1.0), my)
        found: list[Neighbour] = []
        # the grid is bounded by the occupied cells; stop when rings pass all of them
        max_ring = self._max_ring(cx, cy)
        r = 0
        while r <= max_ring:
            for cell in _ring(cx, cy, r):
                for uid in self._cells.get(cell, ()):
                    if where is not None and not where(uid):
                        continue
                    ulon, ulat = self._pos[uid]
                    d = haversine_m(lon, lat, ulon, ulat)
                    if d <= max_distance_m:
                        found.append(Neighbour(uid, ulon, ulat, d))
            bound = r * cell_m  # anything in ring r+1 or beyond is at least this far
            if bound > max_distance_m:
                break
            if len(found) >= k:
                found.sort(key=lambda n: (n.distance_m, n.unit_id))
                if found[k - 1].distance_m <= bound:
                    return found[:k]
            r += 1
        found.sort(key=lambda n: (n.distance_m, n.unit_id))
        return found[:k]

    def _max_ring(self, cx: int, cy: int) -> int:
        if self._bbox is None:
            return -1
        x0, y0, x1, y1 = self._bbox
        return max(abs(x1 - cx), abs(x0 - cx), abs(y1 - cy), abs(y0 - cy))


def _ring(cx: int, cy: int, r: int) -> Iterator[tuple[int, int]]:
    if r == 0:
        yield (cx, cy)
        return
    for x in range(cx - r, cx + r + 1):
        yield (x, cy - r)
        yield (x, cy + r)
    for y in range(cy - r + 1, cy + r):
        yield (cx - r, y)
        yield (cx + r, y)
