"""What one cascade call is doing, read from the SIP bridge: dialling, joined, ended, RTP in.

Both ends of a link poll this (a few dict lookups, every 0.1 s): the child's `Uplink` turns it
into `FailoverLink` observations, the parent's `BackupWatcher` decides when to join the bridge.
"""
from __future__ import annotations

from dataclasses import dataclass

from mcu.legs.sip import SipSite
from mcu.legs.sip_bridge import SipBridge


@dataclass(frozen=True)
class CallSnapshot:
    attempt: int          # id() of the SipSite: a new dial or a new dial-in is a new attempt
    joined: bool          # in the room with media running
    ended: bool           # the call is over (failed, BYE, hung up)
    reason: str           # why it ended ('' while live)
    packets_in: int       # RTP packets received on all its streams so far


def packets_received(site: SipSite) -> int:
    """RTP packets received by the call's media leg (all streams)."""
    return sum(s.packets_received for s in site.leg.statistics())


def snapshot(sip: SipBridge, conference_id: str, site_id: str) -> CallSnapshot | None:
    """The latest call of ``site_id`` in a conference, or None if it never had one."""
    site = sip.sites.get((conference_id, site_id))
    if site is None:
        return None
    ended = not site.connected
    reason = ""
    if ended:
        reason = site.end_reason or "ended"
        if site.end_status is not None:
            reason = f"{site.end_status} {reason}"
    joined = site.media is not None and not site.media.closed and not ended
    return CallSnapshot(id(site), joined, ended, reason, packets_received(site))


__all__ = ["CallSnapshot", "packets_received", "snapshot"]
