"""Every zh-CN name of the dispatch model has one English name for the consoles' English mode."""
from __future__ import annotations

from dispatch.model import AGENCIES, CATEGORIES, INCIDENT_STATUS_NAMES, UNIT_STATUS_NAMES, UNIT_TYPES
from dispatch.names_en import english_names


def test_every_model_name_has_an_english_name() -> None:
    names = english_names()
    zh = ([c.name for c in CATEGORIES.values()] + [n for c in CATEGORIES.values() for n in c.subtypes.values()]
          + list(AGENCIES.values()) + list(INCIDENT_STATUS_NAMES.values()) + list(UNIT_STATUS_NAMES.values())
          + [t.name for t in UNIT_TYPES.values()])
    missing = [n for n in zh if n not in names]
    assert missing == []
    assert names["火灾"] == "Fire" and names["待命"] == "Available"
    assert all(en and en.isascii() for en in names.values())
