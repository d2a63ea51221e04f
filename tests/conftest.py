"""Shared test fixtures. Package-specific fixtures live in tests/<package>/conftest.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Directory for screenshots, captures and other test artifacts (kept after the run)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("CC_TESTING", "1")
