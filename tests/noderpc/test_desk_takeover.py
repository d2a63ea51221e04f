"""Two live desk nodes, active/standby, behind Kamailio: the standby takes over at once when the active dies.

The scenario is tests/noderpc/desk_pair.py (two real desk nodes on one PostgreSQL, Kamailio's
dispatcher in front, SIPp callers through it, desk A killed with SIGKILL). Asserted:

* while A is alive every call goes to A (the standby's queue is empty);
* the waiting callers are on the callback list, seen through B's API, within the dead-after bound
  (B's takeover watch: ``dead_after_seconds`` + its heartbeat cadence), in queue order, listed
  once and audited once;
* a new SIPp call through Kamailio, made at the moment of the crash, is offered on B within 10 s
  (the times are printed).

The same with the deploy/ha example's nodes (``role="desk"``): two `--role desk` nodes holding the
desk lease in turn and a `--role web` node with the remote desk, everything seen through the web
node; the new caller redials every second (until the standby holds the lease both desks are
unavailable to Kamailio), and the first of its calls is offered on B within 10 s.
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.noderpc.desk_pair import DEAD_AFTER_S, HEARTBEAT_S, LATE, WAITING, Takeover, run_takeover

pytestmark = pytest.mark.timeout(240)
NEW_CALL_BOUND_S = 10.0
LISTED_BOUND_S = DEAD_AFTER_S + 2 * HEARTBEAT_S + 3.0  # + 3 s for a loaded 2-core machine


def assert_taken_over(run: Takeover) -> list[dict[str, Any]]:
    """What both topologies promise: A held every waiting caller and B none before the crash, the
    callback list and a new call within their bounds, the lost callers listed once each in queue
    order. Returns those listed callers."""
    assert run.waiting_on_a == WAITING, run.waiting_on_a
    assert run.waiting_on_b_before == [], "the standby took a call while the active was alive"
    assert run.listed_s <= LISTED_BOUND_S, f"callback list after {run.listed_s:.2f} s"
    assert run.offered_s <= NEW_CALL_BOUND_S, f"new call offered after {run.offered_s:.2f} s"
    lost = [c for c in run.callbacks if c["number"] in WAITING]
    assert [c["number"] for c in lost] == WAITING, run.callbacks  # in queue order, once each
    return lost


def test_standby_desk_takes_over_the_callers_and_the_trunk(pg_url: str) -> None:
    run = run_takeover(pg_url)
    print(f"\ndesk takeover: callers on the callback list {run.listed_s:.2f} s after the crash "
          f"(bound {LISTED_BOUND_S:.1f} s); new call offered on the survivor {run.offered_s:.2f} s after the crash")
    lost = assert_taken_over(run)
    assert all(c["waited_s"] >= 1.0 for c in lost), lost
    assert LATE not in [c["number"] for c in run.callbacks], "the survivor's own live call was listed"
    assert len(run.audited) == 1 and "desk-a/" in run.audited[0], run.audited


@pytest.mark.slow
def test_the_example_lease_desks_take_over_behind_kamailio(pg_url: str) -> None:
    run = run_takeover(pg_url, role="desk")
    print(f"\ndesk takeover (lease): callers on the callback list {run.listed_s:.2f} s after the crash; a "
          f"redialling caller offered on the survivor {run.offered_s:.2f} s after the crash, after "
          f"{run.late_refused} refused call(s)")
    # the lease: ttl (dead after) from A's last renewal, then B's next attempt (one heartbeat)
    assert_taken_over(run)
    assert not [c for c in run.callbacks if c["number"].startswith(LATE[:-1])], "a live call was listed"
    assert len(run.audited) == 1 and "desk-a/" in run.audited[0], run.audited
