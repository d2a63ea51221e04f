"""What the H.323 leg is configured with, and how it reads the addresses people type.

:class:`BridgeSettings` are the leg's knobs (the capability fills them from ``settings.h323``
and ``settings.rtp`` with :func:`bridge_settings`); :func:`parse_target` and
:func:`parse_address` read what the console and the site plan give as an H.323 destination.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sip_gateway.h323.events import MediaAddress

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["BridgeSettings", "bridge_settings", "parse_address", "parse_target"]


@dataclass(frozen=True)
class BridgeSettings:
    """Knobs of the bridge (the capability fills them from ``settings.h323``)."""

    host: str = "127.0.0.1"
    port: int = 1720
    rtp_first: int = 20000
    rtp_last: int = 29999
    ivr_digit_timeout: float = 20.0  # seconds for each IVR entry (conference id, PIN)
    ivr_attempts: int = 3
    media_settle: float = 3.0  # wait this long for the video channels after the audio ones
    round_trip_interval: float = 10.0  # H.245 roundTripDelay keep-alive (0: off)
    answer_timeout: float = 30.0  # dial-out: no Connect within this: failed
    pane_check_interval: float = 5.0  # how often the terminal's video rate is matched to its pane
    gatekeeper: str = "none"  # "none", "client" (register to gatekeeper_address) or "server" (built-in)
    gatekeeper_address: str = ""  # host[:port] (client mode)
    aliases: tuple[str, ...] = ("commandcenter-mcu",)  # registered besides the conference ids
    ras_host: str = ""  # RAS (UDP) address; empty: ``host``
    ras_port: int = 1719  # the built-in gatekeeper's port; the client's own RAS port (0: any)
    time_to_live: int = 300  # RAS registration time to live (seconds)
    dscp_audio: int = 46  # settings.rtp.dscp_audio: audio RTP/RTCP marking (EF)
    dscp_video: int = 34  # settings.rtp.dscp_video: video RTP/RTCP marking (AF41)
    gatekeeper_retry: float = 5.0  # client: wait this long after a failed registration
    alias_check_interval: float = 30.0  # client: re-register when the conference ids changed
    gatekeeper_accounts: tuple[tuple[str, str], ...] = ()  # server: H.235.1 (alias, password) of terminals



def parse_target(text: str, default_port: int = 1720) -> tuple[str | None, MediaAddress | None]:
    """What the console dials: ``(alias, address)``; ValueError (zh-CN) for anything else.

    ``host[:port]`` → ``(None, address)``; ``alias@host[:port]`` → both; ``alias:NAME`` or a bare
    E.164 number (digits, ``*``, ``#``) → ``(alias, None)``: resolved by the gatekeeper.
    """
    text = text.strip()
    if text.startswith("alias:"):
        alias = text[len("alias:"):].strip()
        if not alias or any(ord(c) < 32 for c in alias) or len(alias) > 128:
            raise ValueError(f"无效的 H.323 别名: {text!r}")
        return alias, None
    if re.fullmatch(r"[0-9*#]{1,32}", text):
        return text, None
    if "@" in text:
        alias, _, host = text.partition("@")
        if not alias.strip():
            raise ValueError(f"无效的 H.323 地址: {text!r}")
        return alias.strip(), parse_address(host, default_port)
    return None, parse_address(text, default_port)


def parse_address(address: str, default_port: int = 1720) -> MediaAddress:
    """``host`` or ``host:port`` (ValueError with a clear message otherwise)."""
    match = re.fullmatch(r"\s*([0-9A-Za-z.\-]+)(?::(\d{1,5}))?\s*", address)
    if match is None:
        raise ValueError(f"无效的 H.323 地址: {address!r}")
    port = int(match.group(2) or default_port)
    if not 0 < port < 65536:
        raise ValueError(f"无效的端口: {port}")
    return MediaAddress(match.group(1), port)


def bridge_settings(settings: Settings) -> BridgeSettings:
    """The bridge's knobs from the installation's ``[h323]`` and ``[rtp]`` settings."""
    h323, rtp = settings.h323, settings.rtp
    return BridgeSettings(host=h323.host, port=h323.signalling_port, rtp_first=rtp.port_min,
                          rtp_last=rtp.port_max, dscp_audio=rtp.dscp_audio, dscp_video=rtp.dscp_video,
                          gatekeeper=h323.gatekeeper,
                          gatekeeper_address=h323.gatekeeper_address, aliases=tuple(h323.aliases),
                          ras_port=h323.ras_port, time_to_live=h323.time_to_live_seconds,
                          gatekeeper_accounts=tuple((alias, password.get_secret_value())
                                                    for alias, password in h323.gatekeeper_accounts.items()))

