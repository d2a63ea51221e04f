"""The offline raster map tiles the consoles draw on (``dispatch.mbtiles``, default ``var/tiles.mbtiles``).

One reader for every page that shows a map (the dispatch console, the field responders' phone page),
so the answers (404 when no file or no tile, the media type, caching) are the same everywhere."""
from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import HTTPException, Request, Response

from gis.mbtiles import MBTilesError, MBTilesReader
from web_console.auth import services_of


def mbtiles_path(request: Request) -> Path:
    """Where this node's MBTiles file is (it may not exist: the map then has no base layer)."""
    settings = services_of(request).settings
    return settings.dispatch.mbtiles or settings.var_dir / "tiles.mbtiles"


async def tile_response(request: Request, z: int, x: int, y: int) -> Response:
    """One tile as PNG or JPEG, cached by the browser for a day; 404 with a reason otherwise."""
    path = mbtiles_path(request)
    if not path.is_file():
        raise HTTPException(404, "未配置离线瓦片")
    try:
        with MBTilesReader(path) as reader:
            data = await asyncio.to_thread(reader.get_tile, z, x, y)
    except MBTilesError as e:
        raise HTTPException(500, str(e)) from None
    if data is None:
        raise HTTPException(404, "无此瓦片")
    media = ("image/png" if data[:4] == b"\x89PNG" else "image/jpeg" if data[:2] == b"\xff\xd8"
             else "application/octet-stream")
    return Response(data, media_type=media, headers={"Cache-Control": "max-age=86400"})
