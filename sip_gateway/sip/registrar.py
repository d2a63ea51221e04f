"""The registrar (RFC 3261 §10.3): REGISTER handling and the bindings it keeps. Time is passed in."""

from __future__ import annotations

from dataclasses import dataclass

from . import events as ev
from .actions import Flow
from .authentication import Authenticator
from .dialog import new_tag
from .transaction import ServerTransaction
from .ua_core import Output, UserAgentCore


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


class Registrar:
    """Answers REGISTER: digest-checked (unless configured open), bindings in :attr:`bindings`."""

    def __init__(self, core: UserAgentCore, auth: Authenticator, bindings: Bindings | None = None) -> None:
        self.core = core
        self.auth = auth
        self.bindings = bindings or Bindings()

    def on_register(self, tx: ServerTransaction, now: float) -> list[Output]:
        """Add, refresh or remove the request's contacts; 200 lists the current bindings."""
        config = self.core.config
        request = tx.request
        aor_uri = request.to.uri
        aor = f"{aor_uri.user}@{aor_uri.host}" if aor_uri.user else aor_uri.host
        if config.require_register_auth:
            user, out = self.auth.authenticate(tx, now)
            if user is None:
                return out
            if user != aor_uri.user:
                return self.core.reject(tx, 403, "Not allowed to register this address")
        header_expires = request.headers.get("Expires")
        default = int(header_expires) if header_expires and header_expires.isdigit() else config.default_expires
        contacts = request.contacts
        if any(c.wildcard for c in contacts):
            if len(contacts) != 1 or default != 0:
                return self.core.reject(tx, 400, "Wildcard Contact requires Expires: 0")
            self.bindings.remove_all(aor)
        for contact in contacts:
            if contact.wildcard:
                continue
            expires_text = contact.params.get("expires")
            expires = int(expires_text) if expires_text and expires_text.isdigit() else default
            if 0 < expires < config.min_expires:
                return self.core.reject(tx, 423, extra=[("Min-Expires", str(config.min_expires))])
            expires = min(expires, config.max_expires)
            binding = Binding(str(contact.uri), 0.0, request.call_id, request.cseq[0], tx.flow)
            self.bindings.update(aor, binding, expires, now)
        response = self.core.response(request, 200, to_tag=new_tag(), flow=tx.flow)
        current = self.bindings.lookup(aor, now)
        for binding in current:
            response.headers.add("Contact", f"<{binding.contact}>;expires={int(binding.expires_at - now)}")
        out = self.core.respond(tx, response)
        if contacts:
            out.append(ev.RegistrationChanged(aor, tuple(b.contact for b in current)))
        return out
