"""SMS fixtures: core services with SMS on, Kannel (bearerbox + smsbox) and fakesmsc on 127.0.0.1."""
from __future__ import annotations

import asyncio
import os
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from core.runtime import CoreServices
from tests.conftest import make_settings


def require_kannel() -> None:
    for path, pkg in (("/usr/sbin/bearerbox", "kannel"), ("/usr/lib/kannel/test/fakesmsc", "kannel-extras")):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} missing: install the Debian package {pkg} (make test installs it)")


class FixedDuty:
    def __init__(self, posts: dict[str, Sequence[str]]) -> None:
        self.posts = posts

    async def on_duty(self, post: str) -> Sequence[str]:
        return self.posts.get(post, ())


def _bytes(field: str) -> bytes:
    """fakesmsc prints bytes form-encoded: '+' is a space byte."""
    return urllib.parse.unquote_to_bytes(field.replace("+", " "))


def operator_lines(kannel: Any) -> list[str]:
    """What fakesmsc, the operator of the tests, has received (its printed lines)."""
    operator = kannel.operator
    assert operator is not None, "Kannel was started without fakesmsc"
    lines: list[str] = operator.received()
    return lines


def received_parts(lines: list[str]) -> list[tuple[str, str, bytes | None, bytes]]:
    """fakesmsc's lines as (from, to, udh or None, payload bytes)."""
    out: list[tuple[str, str, bytes | None, bytes]] = []
    for line in lines:
        f = line.split(" ")
        if f[2] == "udh":
            out.append((f[0], f[1], _bytes(f[3]), _bytes(f[5])))
        elif f[2] == "text":
            out.append((f[0], f[1], None, " ".join(f[3:]).encode()))
        else:  # ucs2/data
            out.append((f[0], f[1], None, _bytes(f[3])))
    return out


async def wait_for(cond: Callable[[], Any], within: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        v = await cond()
        if v:
            return v
        if loop.time() > end:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def sms_node(seeded_db_url: str, tmp_path: Path) -> AsyncIterator[tuple[CoreServices, Any]]:
    """Core services and the running SMS capability (throughput 50 parts/s)."""
    require_kannel()
    from sms import capability

    core = await CoreServices.start(make_settings(seeded_db_url, tmp_path, sms={"enabled": True, "throughput": 50}))
    cap = None
    try:
        cap = await capability.start(core, FixedDuty({"leader_on_duty": ["chair"], "duty_officer": ["dispatcher"]}))
        assert cap is not None
        yield core, cap
    finally:
        if cap is not None:
            await cap.stop()
        await core.stop()
