"""Registrar bindings (RFC 3261 §10.3). Pure data; time is passed in."""

from __future__ import annotations

from dataclasses import dataclass

from .actions import Flow


@dataclass
class Binding:
    """One contact registered for an address-of-record."""

    contact: str  # the Contact URI
    expires_at: float
    call_id: str
    cseq: int
    flow: Flow


class Bindings:
    """Address-of-record → contacts, with expiry."""

    def __init__(self, max_per_aor: int = 10) -> None:
        self._table: dict[str, dict[str, Binding]] = {}
        self.max_per_aor = max_per_aor

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Unexpired bindings for ``aor`` (expired ones are removed)."""
        entries = self._table.get(aor, {})
        for key in [k for k, b in entries.items() if b.expires_at <= now]:
            del entries[key]
        if not entries:
            self._table.pop(aor, None)
        return list(entries.values())

    def update(self, aor: str, binding: Binding, expires: int, now: float) -> bool:
        """Add, refresh (expires > 0) or remove (expires == 0) a binding. False if out of order."""
        entries = self._table.setdefault(aor, {})
        old = entries.get(binding.contact)
        if old is not None and old.call_id == binding.call_id and binding.cseq <= old.cseq:
            return False
        if expires == 0:
            entries.pop(binding.contact, None)
        else:
            if old is None and len(entries) >= self.max_per_aor:
                oldest = min(entries.values(), key=lambda b: b.expires_at)
                del entries[oldest.contact]
            binding.expires_at = now + expires
            entries[binding.contact] = binding
        if not entries:
            self._table.pop(aor, None)
        return True

    def lookup_user(self, user: str, now: float) -> list[Binding]:
        """Unexpired bindings of every address-of-record whose user part is ``user``."""
        found: list[Binding] = []
        for aor in [a for a in self._table if a.split("@", 1)[0] == user]:
            found += self.lookup(aor, now)
        return found

    def remove_all(self, aor: str) -> None:
        """``Contact: *`` with ``Expires: 0``."""
        self._table.pop(aor, None)

    def aors(self) -> list[str]:
        """Every address-of-record with bindings (possibly expired)."""
        return list(self._table)
