"""The audit writer never fails on a NUL character (PostgreSQL text and jsonb cannot store one):
whatever a caller sent is recorded, with the NUL written as the visible text \\u0000 (issue 13)."""
from __future__ import annotations

from core.runtime import CoreServices


async def test_audit_record_with_nul_everywhere_is_written_visibly(services: CoreServices) -> None:
    entry_id = await services.audit.record("guest\x00", "login\x00", "admin\x00x", outcome="failed",
                                           source="127.0.0.1", detail={"raw\x00key": ["a\x00b", {"n": "\x00"}]})
    assert entry_id > 0
    entry = (await services.audit.recent(1))[0]
    assert entry.id == entry_id
    assert (entry.actor, entry.action, entry.target) == ("guest\\u0000", "login\\u0000", "admin\\u0000x")
    assert entry.detail == {"raw\\u0000key": ["a\\u0000b", {"n": "\\u0000"}]}
