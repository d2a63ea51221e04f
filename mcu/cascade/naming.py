"""Names and secrets of cascade links: site ids, display names, the SIP digest password.

Site ids are a contract with the control channel: at a parent, a child's link is site
``cascade-<child>`` (and ``cascade-<child>-backup`` for its call to the telecom bridge while
the child is on backup); at a child, its up-link is ``cascade-<parent>`` (and
``cascade-<parent>-backup``).
"""
from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from config.site_plan import Node, SitePlan

if TYPE_CHECKING:
    from mcu.room import Room

LINK_PREFIX = "cascade-"
BACKUP_SUFFIX = "-backup"


def link_site_id(node: str) -> str:
    """The site id of the link to ``node`` (its primary call over the private line)."""
    return LINK_PREFIX + node


def backup_site_id(node: str) -> str:
    """The site id of the call that carries the link to ``node`` through the telecom bridge."""
    return LINK_PREFIX + node + BACKUP_SUFFIX


def link_participant(room: Room, child: str) -> str | None:
    """The participant that carries the link to ``child`` in ``room`` now: the member whose media
    the room uses (`Room.link_active`, kept by the parent's `BackupWatcher`), else the primary
    call, else the call through the telecom bridge (while the child is on backup); None when
    neither is in the room."""
    link = link_site_id(child)
    for pid in (room.link_active.get(link), link, backup_site_id(child)):
        if pid is not None and pid in room.participants:
            return pid
    return None


def link_name(plan: SitePlan, node: Node) -> str:
    """The console name of a link: the node's area name + 级联, e.g. 罗定市级联."""
    area = node.area
    names = {plan.city.adcode: plan.city.name}
    names.update({c.adcode: c.name for c in plan.counties})
    names.update({t.id: t.name for t in plan.townships})
    return f"{names.get(area, node.name)}级联"


def sip_password(token: str, node: str) -> str:
    """The SIP digest password a node uses toward its parent, derived from the cascade token.

    Bound to the node name, so one node's password does not let it (or anyone) pose as another;
    the plan PIN does not apply to these calls.
    """
    if not token:
        raise ValueError("cascade token is empty")
    return hmac.new(token.encode(), b"cc-cascade-sip-v1|" + node.encode(), hashlib.sha256).hexdigest()[:40]


__all__ = ["BACKUP_SUFFIX", "LINK_PREFIX", "backup_site_id", "link_name", "link_participant", "link_site_id",
           "sip_password"]
