"""Which city node may act as the root of the cascade now: a lease in the shared database (issue 17).

The city node and its standby city node share the city's database. As Patroni does with its DCS,
they use it as the witness of who is the root: the lease ``cascade.root:<city>`` in ``rpc_leases``
(noderpc migration 0002, the table the desk nodes' active/standby uses). *Acting as the root*
here means meeting, in their telecom bridge conferences, the counties that may cascade into either
city node (those listing ``standby_parents``): the city's `BackupWatcher` for such a plan child,
the standby's watcher for a county armed on it (`StandbyWatch`). Two city nodes in one county's
bridge loop the sound (city → standby → bridge → city); everything else either city node does
(its own up-links, admitting a county's link call over the private line, the city watching the
bridge of its other children) makes no loop and is not gated.

Sans-I/O: the owner calls `due(now)` often (a few times a second) and does what it says: ``renew``
(one renewal or acquisition: ``expires_at = now() + ttl`` on the **database's** clock, taken over
only once ``expires_at < now()``, both compared in SQL) then reports `renewed(sent_at)`,
`refused(now)` (another node holds it) or `failed(now)` (the database did not answer); ``release`` (``expires_at`` set in the past, only by the holder) then `released(now)`.
It reports the standby's OPTIONS answers from the city with `city_answered(now)` and asks
`acting(now)` before every act of the root. ``now`` is the node's own monotonic clock: the machine
never sees a database time, so no comparison ever mixes the database's clock with a node's.

Rules:
* **One holder.** The lease is held by at most one node at a time by the database's clock; a node
  acts as the root only while it believes it holds the lease, and it believes so only until
  ``sent_at + ttl`` on its own clock, ``sent_at`` being when it *sent* its last successful renewal
  (the database set the expiry later than that, so the belief ends before anyone else can take the
  lease; clock rates assumed equal, as for the desk's lease). A refused renewal (another node holds
  the lease) ends the belief at once; a renewal the database did not answer leaves it to run out by
  itself (so a database failover shorter than ``ttl`` changes nothing). So the two city nodes never
  act as the root at the same time.
* **The city contends always**: it renews every ``renew`` seconds while it runs. A city that cannot
  renew (cut off from the database, frozen) stops acting as the root when its belief runs out, and
  leaves its counties' bridges.
* **The standby contends only while the city is gone from its view**: no OPTIONS answer from the city
  for ``dead_after`` seconds (a city never heard: ``startup_grace`` after the start). It takes the
  lease only once the city's has expired; it renews it while the city stays gone.
* **The city returning.** A standby that hears the city again stops contending and releases the
  lease at once (it stops acting as the root before it releases); the city takes it at its next
  renewal, so the root is the city again within ``renew`` seconds (no root meanwhile).
* **Partition between the city and the standby, both reaching the database**: the standby contends,
  but the city renews the lease, so the standby is refused and stays passive; the city stays root.
* **The city cut off from the database** (the standby still hearing it): the city stops acting as the
  root after ``ttl``; the standby does not contend while it hears the city, so there is no root
  until the city reaches the database again. Counties on their private lines are unaffected; a
  county that falls onto its bridge meanwhile is met by no city node (safe, not live).
* **The standby cut off from the database**: it cannot take the lease; it never acts as the root
  (the city, when alive and reaching the database, does).
* **Both cut off from the database**: neither acts as the root after ``ttl``: no city node meets a
  county in its bridge until one of them reaches the database again. A database failover shorter
  than ``ttl`` changes nothing.
* **Lease expiry**: a holder that stops renewing (dead, frozen) loses it ``ttl`` after its last
  renewal by the database's clock, when the other may take it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.Enum):
    CITY = "city"
    STANDBY = "standby"


class Step(enum.Enum):
    RENEW = "renew"
    RELEASE = "release"


@dataclass(frozen=True)
class RootLeaseConfig:
    role: Role
    ttl: float = 10.0               # the lease's time to live (nodes.dead_after_seconds)
    renew: float = 2.0              # renewal interval (nodes.heartbeat_seconds)
    dead_after: float = 3.0         # the standby: the city is gone after this long without an answer
    startup_grace: float = 10.0     # the standby: a city never heard is gone this long after the start

    def __post_init__(self) -> None:
        for name in ("ttl", "renew", "dead_after", "startup_grace"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.ttl <= self.renew:
            raise ValueError("ttl must exceed renew")


def lease_name(city: str) -> str:
    """The root lease of the cascade whose root is ``city``."""
    return f"cascade.root:{city}"


@dataclass
class RootLease:
    """One city node's view of the root lease (its own monotonic clock throughout)."""

    config: RootLeaseConfig
    started: float
    _until: float = 0.0                 # believed holder until then
    _last_attempt: float | None = None
    _city_last_ok: float | None = None
    _holds_in_db: bool = False          # a renewal succeeded since the last release or refusal

    @property
    def holds(self) -> bool:
        """Whether the database may still list this node as the holder (a release is owed on stopping)."""
        return self._holds_in_db

    def city_answered(self, now: float) -> None:
        """The city answered the standby's OPTIONS (ignored on the city itself)."""
        if self._city_last_ok is None or now > self._city_last_ok:
            self._city_last_ok = now

    def city_gone(self, now: float) -> bool:
        if self.config.role is Role.CITY:
            return False
        if self._city_last_ok is None:
            return now - self.started >= self.config.startup_grace
        return now - self._city_last_ok >= self.config.dead_after

    def contends(self, now: float) -> bool:
        return self.config.role is Role.CITY or self.city_gone(now)

    def acting(self, now: float) -> bool:
        """Whether this node may act as the root now (ask before every act of the root)."""
        return now < self._until and self.contends(now)

    def due(self, now: float) -> Step | None:
        """What to do with the lease now, if anything."""
        if not self.contends(now):
            return Step.RELEASE if self._holds_in_db else None
        if self._last_attempt is None or now - self._last_attempt >= self.config.renew:
            return Step.RENEW
        return None

    def attempting(self, now: float) -> None:
        """A renewal is being sent at ``now`` (so `due` waits ``renew`` before the next one)."""
        self._last_attempt = now

    def renewed(self, sent_at: float) -> None:
        """The renewal sent at ``sent_at`` succeeded: the lease is ours by the database's clock."""
        self._until = max(self._until, sent_at + self.config.ttl)
        self._holds_in_db = True

    def refused(self, now: float) -> None:
        """The database refused the renewal: another node holds the lease."""
        self._until = 0.0
        self._holds_in_db = False

    def failed(self, now: float) -> None:
        """The database did not answer: the belief runs out by itself at its last renewal's end."""

    def released(self, now: float) -> None:
        """The lease was given up (whether or not the database heard it: it expires anyway)."""
        self._until = 0.0
        self._holds_in_db = False
        self._last_attempt = None


__all__ = ["Role", "RootLease", "RootLeaseConfig", "Step", "lease_name"]
