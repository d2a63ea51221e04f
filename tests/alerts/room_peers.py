"""SIP room systems (baresip) as the warning tests' meeting rooms, and what they see and hear.

* ``RecordingBaresip`` dumps the audio it decodes (what the room hears) to WAV; ``loud_seconds``
  measures how much of it carries sound (the spoken warning, not silence);
* ``SnapshotBaresip`` captures the next frame it decodes (what the room sees); ``banner_at_peer``
  waits until those frames show (or no longer show) the warning banner's red bar with white text.

Used by tests/alerts/test_rooms.py and tests/alerts/test_flood_end_to_end.py.
"""
from __future__ import annotations

import asyncio
import glob
import shutil
import socket
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcu.compositor import Compositor
from tests.sip_gateway.peers import Baresip


class RecordingBaresip(Baresip):
    """baresip that also dumps the audio it decodes (what the room hears) to WAV (module sndfile)."""

    def write_config(self) -> None:
        super().write_config()
        with open(self.home / "config", "a") as fh:
            fh.write(f"module sndfile.so\nsnd_path {self.home}\n")

    def heard(self) -> tuple[np.ndarray, int]:
        """The audio of the newest call as decoded (mono int16) and its sample rate (8 kHz for PCMU)."""
        files = sorted(glob.glob(str(self.home / "dump-*-dec.wav")))
        assert files, f"baresip wrote no decoded-audio dump in {self.home}"
        with wave.open(files[-1]) as w:
            data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
            mono = data.reshape(-1, w.getnchannels())[:, 0] if w.getnchannels() > 1 else data
            return mono, w.getframerate()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SnapshotBaresip(Baresip):
    """baresip whose decoded incoming video can be captured: the snapshot module writes the next
    frame it decodes to ``snapshot-recv-<time>.png``, on the command ``/snapshot`` sent to its UDP
    console (module cons on 127.0.0.1)."""

    cons_port: int = field(default_factory=free_udp_port)

    def write_config(self) -> None:
        super().write_config()
        with open(self.home / "config", "a") as fh:
            fh.write(f"module cons.so\ncons_listen 127.0.0.1:{self.cons_port}\n")

    async def seen(self, keep: Path | None = None) -> np.ndarray:
        """The next frame baresip decodes from the call, as RGB (the PNG copied to `keep` if given)."""
        from PIL import Image

        for old in self.home.glob("snapshot-*.png"):
            old.unlink()
        written = sum("wrote snapshot-recv" in line for line in self.log)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"/snapshot\n", ("127.0.0.1", self.cons_port))
        async with asyncio.timeout(10):
            while sum("wrote snapshot-recv" in line for line in self.log) <= written:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        (png,) = self.home.glob("snapshot-recv-*.png")
        async with asyncio.timeout(5):  # baresip logs "wrote" before the file is closed
            while True:
                try:
                    with Image.open(png) as img:
                        rgb = np.asarray(img.convert("RGB")).astype(int)
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        if keep is not None:
            shutil.copyfile(png, keep)
        return rgb


def peer_banner_rows(frame: np.ndarray) -> np.ndarray:
    """The bottom rows of a decoded frame that lie inside the banner bar at any size (the bar is 1/12
    of the height, at least 20 rows, of the composite, which the room's encoder scales)."""
    h = frame.shape[0]
    return frame[h - max(4, h // 16): h - 2]


async def banner_at_peer(peer: SnapshotBaresip, shown: bool, keep: Path, within: float = 15.0) -> tuple[float, float]:
    """Snapshots of what the room decodes until the banner is (or is no longer) in them; the last one
    is kept in `keep` (test-artifacts)."""
    seen = (0.0, 0.0)
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        seen = looks_like_banner(peer_banner_rows(await peer.seen(keep)), tolerance=60)
        print(f"the room decodes: banner {'wanted' if shown else 'not wanted'}, red {seen[0]:.2f}, "
              f"white {seen[1]:.3f} ({keep.name})")
        if (seen[0] > 0.5) == shown:
            return seen
        await asyncio.sleep(0.5)
    raise AssertionError(f"the room's decoded video {'never showed' if shown else 'still shows'} the banner: "
                         f"red {seen[0]:.2f}, white {seen[1]:.3f}")


def looks_like_banner(rows: np.ndarray, tolerance: int = 40) -> tuple[float, float]:
    """Share of the rows' pixels in the banner's red and in its white text colour."""
    red = np.all(np.abs(rows - np.array(Compositor.BANNER_COLOUR)) < tolerance, axis=-1).mean()
    white = np.all(rows > 200, axis=-1).mean()
    return float(red), float(white)


def loud_seconds(pcm: np.ndarray, rate: int, threshold: float = 500.0) -> float:
    """Seconds of ``pcm`` (mono int16 at ``rate``) whose 20 ms RMS is above ``threshold``: speech
    energy well above the silence (and the comfort noise) of an idle call."""
    frame = rate // 50
    heard = pcm.astype(np.float64)
    frames = heard[: len(heard) // frame * frame].reshape(-1, frame)
    return float((np.sqrt((frames ** 2).mean(axis=1)) > threshold).sum() * 0.02)


def tone_share(pcm: np.ndarray, rate: int) -> float:
    """Share of the spectral power of ``pcm`` within ±20 Hz of its strongest frequency: near 1 for a
    test tone, small for speech (its energy spread over many harmonics and formants)."""
    x = pcm.astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    peak = freqs[int(np.argmax(power[1:])) + 1]
    total = float(power[1:].sum())
    return float(power[np.abs(freqs - peak) <= 20].sum() / total) if total > 0 else 1.0
