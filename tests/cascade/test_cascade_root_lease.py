"""The pure rules of `RootLease`: at most one city node acts as the cascade's root (issue 17).

A tiny stand-in for the database's lease row (`Witness`: holder and expiry on *its* clock, which the
nodes never read) drives the two machines as `CascadeService.root_step` does; a node's own clock
is the time it passes to its machine. The database's clock here runs ahead of the nodes' by a
large offset, which must change nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from mcu.cascade.root_lease import Role, RootLease, RootLeaseConfig, Step, lease_name

TTL, RENEW, DEAD = 3.0, 1.0, 1.5
DB_OFFSET = 1000.0   # the database's clock minus the nodes' clock: never compared with a node's


@dataclass
class Witness:
    """The lease row: holder, expiry on the database's clock; `reachable` per node."""

    holder: str = ""
    expires: float = float("-inf")
    cut: frozenset[str] = frozenset()

    def renew(self, node: str, now: float) -> bool | None:
        """None when ``node`` cannot reach the database."""
        if node in self.cut:
            return None
        db_now = now + DB_OFFSET
        if self.holder == node or self.expires < db_now:
            self.holder, self.expires = node, db_now + TTL
            return True
        return False

    def release(self, node: str, now: float) -> None:
        if node not in self.cut and self.holder == node:
            self.expires = now + DB_OFFSET - 1.0


def step(node: str, lease: RootLease, witness: Witness, now: float) -> None:
    due = lease.due(now)
    if due is Step.RENEW:
        lease.attempting(now)
        ok = witness.renew(node, now)
        if ok is None:
            lease.failed(now)
        elif ok:
            lease.renewed(now)
        else:
            lease.refused(now)
    elif due is Step.RELEASE:
        witness.release(node, now)
        lease.released(now)


@dataclass
class World:
    city: RootLease
    standby: RootLease
    witness: Witness
    now: float = 0.0
    city_alive: bool = True
    hears_city: bool = True        # the standby hears the city's OPTIONS answers
    both_acting: float | None = None

    def run(self, until: float, dt: float = 0.1) -> None:
        while self.now < until - 1e-9:
            self.now = round(self.now + dt, 6)
            if self.city_alive:
                step("city", self.city, self.witness, self.now)
                if self.hears_city and int(self.now * 10) % 5 == 0:   # OPTIONS every 0.5 s
                    self.standby.city_answered(self.now)
            step("city-standby", self.standby, self.witness, self.now)
            if self.city_alive and self.city.acting(self.now) and self.standby.acting(self.now):
                self.both_acting = self.now

    def roots(self) -> set[str]:
        acting = {"city"} if self.city_alive and self.city.acting(self.now) else set()
        return acting | ({"city-standby"} if self.standby.acting(self.now) else set())


def world() -> World:
    def make(role: Role) -> RootLease:
        return RootLease(RootLeaseConfig(role, ttl=TTL, renew=RENEW, dead_after=DEAD, startup_grace=5.0), 0.0)
    w = World(make(Role.CITY), make(Role.STANDBY), Witness())
    w.run(3.0)
    assert w.roots() == {"city"}, "the city takes the lease at once; the standby, hearing it, does not contend"
    return w


def test_the_city_is_the_root_and_the_standby_hearing_it_never_contends() -> None:
    w = world()
    w.run(20.0)
    assert w.roots() == {"city"} and w.witness.holder == "city"
    assert w.standby.due(w.now) is None and not w.standby.contends(w.now)
    assert w.both_acting is None


def test_a_partition_between_city_and_standby_both_reaching_the_database_makes_no_second_root() -> None:
    w = world()
    w.hears_city = False
    w.run(30.0)
    assert w.standby.contends(w.now), "the standby counts the city gone"
    assert w.roots() == {"city"}, "the city keeps renewing: the standby is refused and stays passive"
    assert w.both_acting is None and w.witness.holder == "city"


def test_the_city_cut_off_from_the_database_stops_acting_within_the_lease() -> None:
    w = world()
    w.witness.cut = frozenset({"city"})
    cut = w.now
    w.run(cut + TTL - RENEW - 0.1)   # the last renewal was sent at most RENEW before the cut
    assert w.roots() == {"city"}, "a failed renewal leaves the belief to run out by itself"
    w.run(cut + TTL + 0.1)
    assert w.roots() == set(), "the belief has run out; the standby still hears the city: no root"
    w.run(cut + 20.0)
    assert w.roots() == set() and w.both_acting is None
    w.witness.cut = frozenset()   # the database back: the city is the root again
    w.run(w.now + RENEW + 0.2)
    assert w.roots() == {"city"}


def test_the_city_cut_off_from_the_database_and_from_the_standby_hands_over_after_the_lease() -> None:
    w = world()
    w.witness.cut, w.hears_city = frozenset({"city"}), False
    cut = w.now
    w.run(cut + TTL + RENEW + 0.5)
    assert w.roots() == {"city-standby"}, "the lease expired by the database's clock: the standby took it"
    assert w.both_acting is None, "the city's belief ended before the database let the standby in"


def test_the_standby_cut_off_from_the_database_never_acts() -> None:
    w = world()
    w.city_alive, w.witness.cut = False, frozenset({"city-standby"})
    w.run(w.now + 20.0)
    assert w.standby.contends(w.now) and w.roots() == set()


def test_both_cut_off_from_the_database_no_root_until_one_reaches_it() -> None:
    w = world()
    w.witness.cut, w.hears_city = frozenset({"city", "city-standby"}), False
    cut = w.now
    w.run(cut + TTL + 0.1)
    assert w.roots() == set()
    w.run(cut + 30.0)
    assert w.roots() == set() and w.both_acting is None
    w.witness.cut = frozenset({"city"})   # the standby reaches it first
    w.run(w.now + RENEW + 0.2)
    assert w.roots() == {"city-standby"}


def test_the_lease_expires_when_the_city_dies_and_the_standby_takes_it() -> None:
    w = world()
    w.city_alive = False
    died = w.now
    w.run(died + DEAD + 0.2)
    assert w.roots() == set(), "the city is gone from the standby's view but its lease still runs"
    w.run(died + TTL + RENEW + 0.2)
    assert w.roots() == {"city-standby"} and w.witness.holder == "city-standby"
    w.run(died + 30.0)
    assert w.roots() == {"city-standby"}, "the standby renews while the city stays gone"


def test_the_city_returning_gets_the_root_back_and_never_two_roots() -> None:
    w = world()
    w.city_alive = False
    w.run(w.now + TTL + RENEW + 0.5)
    assert w.roots() == {"city-standby"}
    # the city restarts (a fresh machine): refused while the standby holds the lease
    w.city = RootLease(w.city.config, w.now)
    w.city_alive, w.hears_city = True, False
    w.run(w.now + 5.0)
    assert w.roots() == {"city-standby"}, "not heard by the standby yet (still partitioned): it keeps the root"
    w.hears_city = True
    back = w.now
    w.run(back + 0.6)
    assert "city-standby" not in w.roots(), "the standby hearing the city stops acting and releases at once"
    w.run(back + RENEW + 0.7)
    assert w.roots() == {"city"} and w.witness.holder == "city"
    assert w.both_acting is None


def test_a_stale_belief_cannot_outlive_the_database_lease() -> None:
    lease = RootLease(RootLeaseConfig(Role.CITY, ttl=TTL, renew=RENEW), 0.0)
    lease.attempting(10.0)
    lease.renewed(10.0)          # sent at 10.0: the database's expiry is later than 10 + TTL
    assert lease.acting(10.0 + TTL - 0.01) and not lease.acting(10.0 + TTL)
    lease.refused(11.0)
    assert not lease.acting(11.0), "a refusal ends the belief at once"


def test_a_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="ttl must exceed renew"):
        RootLeaseConfig(Role.CITY, ttl=1.0, renew=1.0)
    with pytest.raises(ValueError, match="dead_after must be positive"):
        RootLeaseConfig(Role.STANDBY, dead_after=0.0)
    assert lease_name("city") == "cascade.root:city"
