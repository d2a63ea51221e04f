from __future__ import annotations

from pathlib import Path

import pytest

from gis.jurisdictions import Jurisdictions

COUNTIES = Path(__file__).resolve().parents[2] / "config" / "demo" / "yunfu_counties.geojson"


@pytest.fixture(scope="session")
def counties_path() -> Path:
    return COUNTIES


@pytest.fixture(scope="session")
def yunfu(counties_path: Path) -> Jurisdictions:
    return Jurisdictions.from_geojson(counties_path)
