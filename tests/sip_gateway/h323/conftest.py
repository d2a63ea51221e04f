"""Fixtures of the H.323 tests: the third-party peer (H323Plus ``h323peer``), built once."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.sip_gateway.h323.h323plus_peer import ensure_built


@pytest.fixture(scope="session")
def h323peer_binary() -> Path:
    """``h323peer`` from the cache, built on first use (minutes); a failed build fails the test."""
    return ensure_built()
