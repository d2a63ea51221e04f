"""Helpers for the SIP-in-conferences tests: a real ConferenceService and SipBridge in-process."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from config.settings import SipSettings
from core.runtime import CoreServices
from mcu.conferences import ConferenceService, RunningConference
from mcu.legs.sip_bridge import SipBridge
from mcu.legs.sip_config import user_agent_config
from mcu.legs.site_media import SiteMedia
from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.aio.sip_endpoint import SipEndpoint
from sip_gateway.rtp.media_description import MediaPolicy

DEMO = "80000001"


async def start_bridge(core: CoreServices, service: ConferenceService, policy: MediaPolicy | None = None,
                       port_range: tuple[int, int] | None = None, **settings: object) -> SipBridge:
    """A SipBridge on a free port of 127.0.0.1 for ``service``'s conferences."""
    sip = SipSettings(udp_port=0, **settings)
    config = user_agent_config(sip)
    if policy is not None:
        config.policy = policy
    endpoint = SipEndpoint(config)
    bridge = SipBridge(core, service, endpoint, sip, port_range=port_range or RTP_PORT_RANGE)
    await endpoint.start()
    return bridge


async def until(predicate: Callable[[], object], within: float, what: str) -> None:
    """Wait until ``predicate()`` is true (AssertionError naming ``what`` otherwise)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def joined(conf: RunningConference) -> list[str]:
    return [s.site_id for s in conf.sites.values() if s.status == "joined"]


class MixTap:
    """Records the N-1 mixes a site is sent (wraps the leg SiteMedia drives)."""

    def __init__(self, media: SiteMedia) -> None:
        self.inner = media.leg
        self.frames: list[np.ndarray] = []
        media.leg = self

    def send_audio(self, pcm: np.ndarray) -> None:
        self.frames.append(pcm.copy())
        del self.frames[:-400]
        self.inner.send_audio(pcm)

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        self.inner.send_video_access_unit(access_unit, timestamp_90k)

    def request_keyframe(self) -> None:
        self.inner.request_keyframe()


def level_at(pcm: np.ndarray, hz: float, rate: int = 48_000) -> float:
    """Relative spectral magnitude at ``hz`` (0..1 of the strongest bin)."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    band = spectrum[(freqs > hz - 15) & (freqs < hz + 15)]
    peak = spectrum.max()
    return float(band.max() / peak) if peak > 0 and len(band) else 0.0


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
