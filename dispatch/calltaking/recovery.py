"""What a desk finds in PostgreSQL after a desk node crashed (sans-I/O: ``now`` is an argument).

Two moments apply the same rules: a desk restarting after a crash (its previous run's calls), and
a live desk node taking over at once from another desk node that died (the calls that node took,
``emergency_calls.desk_node``), on its heartbeat cadence, two desks active/standby on one database.

The queue and the unmatched AML reports live in the database as they change (``emergency_calls``,
``aml_reports``), so a restarted desk node reloads them. Rules:

* A call left ``queued`` or ``offered`` (waiting) or ``answered`` without an end, by a desk that is
  gone, had its SIP dialog and audio in that process: the caller is no longer connected. It is not
  offered again (a call-taker would answer silence); its number goes on the callback list at once,
  flagged ``node_lost``. Waiting calls come first, in the order the queue would have offered them
  (head-of-queue flag, priority, arrival), then the interrupted answered calls by arrival.
  ``waited_s`` is how long the caller waited unanswered: until the restart for a waiting call,
  until the answer for an answered one.
* A call that a live desk node still holds (two desks, active/standby) is not touched.
* Takeover: a desk node looks only at the calls of nodes that are dead by node RPC's liveness rule
  (``noderpc.pinning.is_alive``; a node id with no row is dead), never at its own
  (``orphaned_nodes``). The I/O shell locks the calls and moves them out of the open states in one
  transaction, so two surviving desks never both list a call.
* An AML report still ``pending`` waits for its call again with its original reception time, so it
  matches a call that arrives within the window of when it was *received*; one older than the
  window is expired, as the running desk would have done.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WAITING = ("queued", "offered")
NODE_LOST = "node_lost"


@dataclass(frozen=True)
class LeftCall:
    """An emergency_calls row without an end."""

    id: str
    number: str
    state: str
    priority: int
    offered_at: float
    answered_at: float | None = None
    head: bool = False  # back at the head of the queue (requeued after a position failure)
    training: bool = False
    node: str | None = None  # the desk node that took it (None: before that was recorded)


@dataclass(frozen=True)
class LostCall:
    call_id: str
    number: str
    order: int  # 1-based: the order of the callback list
    waited_s: float
    answered: bool
    training: bool
    node: str | None = None


def lost_calls(left: Iterable[LeftCall], now: float, held_elsewhere: Iterable[str] = ()) -> list[LostCall]:
    """The calls a restarting desk puts on the callback list, in order."""
    skip = set(held_elsewhere)
    mine = [c for c in left if c.id not in skip]
    waiting = sorted((c for c in mine if c.state in WAITING), key=lambda c: (not c.head, c.priority, c.offered_at))
    answered = sorted((c for c in mine if c.state == "answered"), key=lambda c: c.offered_at)
    out = []
    for order, call in enumerate([*waiting, *answered], 1):
        until = call.answered_at if call.state == "answered" and call.answered_at is not None else now
        out.append(LostCall(call.id, call.number, order, max(0.0, until - call.offered_at), call.state == "answered",
                            call.training, call.node))
    return out


def orphaned_nodes(with_open_calls: Iterable[str], me: str, dead: Iterable[str]) -> set[str]:
    """The desk nodes whose open calls a live desk node `me` takes over: the dead ones, never itself."""
    gone = set(dead)
    return {node for node in with_open_calls if node != me and node in gone}


def pending_reports(received: Sequence[tuple[int, float]], now: float, window_s: float) -> tuple[list[int], list[int]]:
    """(ids that wait for their call again, ids to expire) of pending AML reports (id, received at)."""
    keep = [rid for rid, at in received if now - at <= window_s]
    return keep, [rid for rid, at in received if now - at > window_s]
