"""H323Plus 1.28 (PTLib 2.10.9) as a real third-party H.323 peer: ``h323peer``.

``../shared/tools/h323plus/build.sh`` (beside the repository; ``$H323PLUS_TOOLS`` elsewhere) builds
it from the source tarballs beside that script, with our ``tests/tools/h323plus/h323peer.cxx``, into a
cache directory (``$H323PEER_PREFIX``, default ``~/.cache/h323peer``) in about four minutes.
:func:`ensure_built` reuses that build when its sources are unchanged (a hash of the tool folder
is stamped into the cache; when only ``h323peer.cxx`` changed, just the peer is recompiled)
and builds otherwise, under a file lock so that parallel test runs
build it once. A failed build raises: a test that needs the peer fails, it never skips.

:class:`H323Peer` runs one ``h323peer`` process (calling, or listening with ``-l --once``) and
parses what it prints: the connect line, the opened and closed logical channels, the first
decoded video frame and the media summary.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
# Our copy holds only what we changed (h323peer.cxx); the build script, the FFmpeg 5 patch and the
# third-party source tarballs stay in the shared tool folder beside the repository (CI has a copy of
# it there), so no third-party code is committed here.
OUR_TOOLS = REPO / "tests" / "tools" / "h323plus"


def _shared_tools() -> Path:
    """$H323PLUS_TOOLS, else the first ``shared/tools/h323plus`` beside the repository or beside one of
    its parents (a worktree at /work/wt/NAME finds /work/shared as a clone at /work/NAME does)."""
    env = os.environ.get("H323PLUS_TOOLS")
    if env:
        return Path(env)
    candidates = [parent / "shared" / "tools" / "h323plus" for parent in REPO.parents]
    return next((c for c in candidates if (c / "build.sh").is_file()), candidates[0])


SHARED_TOOLS = _shared_tools()
BUILD_TIMEOUT = 40 * 60  # seconds; ~4 min on an idle 2-core machine, much more under load


def default_prefix() -> Path:
    env = os.environ.get("H323PEER_PREFIX")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "h323peer"


PEER_SOURCE = "h323peer.cxx"  # alone changed: only the peer is recompiled (seconds, PEER_ONLY=1)


def tool_files() -> dict[str, Path]:
    """The files the build is made from: the shared tool folder, with our files in place of its own."""
    if not (SHARED_TOOLS / "build.sh").is_file():
        raise RuntimeError(f"the H323Plus build tools are missing: {SHARED_TOOLS} (set H323PLUS_TOOLS to "
                           "the folder holding build.sh and the PTLib/H323Plus source tarballs)")
    files = {p.name: p for p in sorted(SHARED_TOOLS.iterdir()) if p.is_file() and p.suffix != ".md"}
    files.update({p.name: p for p in sorted(OUR_TOOLS.iterdir()) if p.is_file() and p.suffix != ".md"})
    return files


def source_hashes() -> dict[str, str]:
    """Hash of each file the build is made from (READMEs aside)."""
    return {name: hashlib.sha256(path.read_bytes()).hexdigest()[:16] for name, path in tool_files().items()}


def stage_tools(into: Path) -> Path:
    """A folder holding the build's files (build.sh finds its tarballs, patch and peer beside itself)."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    for name, path in tool_files().items():
        shutil.copyfile(path, into / name)
    return into


def _stamp(prefix: Path) -> dict[str, str]:
    try:
        data = json.loads((prefix / "SOURCE-HASHES.json").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _runs(binary: Path) -> bool:
    try:
        result = subprocess.run([str(binary), "--list-caps"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "G.711" in result.stdout


def _usable(prefix: Path, wanted: dict[str, str]) -> bool:
    binary = prefix / "bin" / "h323peer"
    return binary.is_file() and _stamp(prefix) == wanted and _runs(binary)


def ensure_built(prefix: Path | None = None) -> Path:
    """The ``h323peer`` binary: the cached build, or a new one (RuntimeError when it fails)."""
    prefix = prefix or default_prefix()
    wanted = source_hashes()
    binary = prefix / "bin" / "h323peer"
    if _usable(prefix, wanted):
        return binary
    prefix.parent.mkdir(parents=True, exist_ok=True)
    build_dir = prefix.parent / f"{prefix.name}-build"
    with open(prefix.parent / f".{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building it right now
        if _usable(prefix, wanted):
            return binary
        stamp = _stamp(prefix)
        peer_only = (binary.is_file() and bool(stamp) and build_dir.is_dir()
                     and {k: v for k, v in stamp.items() if k != PEER_SOURCE}
                     == {k: v for k, v in wanted.items() if k != PEER_SOURCE})
        log = prefix.parent / f"{prefix.name}-build.log"
        env = {**os.environ, "PREFIX": str(prefix), "BUILD_DIR": str(build_dir), "SELFTEST": "0",
               "NO_APT": "1",  # the Makefile (system-deps) installs the Debian build packages
               "PEER_ONLY": "1" if peer_only else "0"}
        (prefix / "SOURCE-HASHES.json").unlink(missing_ok=True)
        started = time.monotonic()
        with open(log, "w") as out:
            try:
                tools = stage_tools(prefix.parent / f"{prefix.name}-tools")
                result = subprocess.run(["bash", str(tools / "build.sh")], stdout=out, stderr=subprocess.STDOUT,
                                        env=env, timeout=BUILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"building h323peer took over {BUILD_TIMEOUT} s (log: {log})") from None
        if result.returncode != 0 or not binary.is_file():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"building h323peer failed (exit {result.returncode}, log {log}; "
                               f"`make system-deps` as root installs its Debian packages):\n{tail}")
        (prefix / "SOURCE-HASHES.json").write_text(json.dumps(wanted, indent=1) + "\n")
        if not _usable(prefix, wanted):
            raise RuntimeError(f"h323peer was built but does not run (log: {log})")
        print(f"h323peer {'recompiled' if peer_only else 'built'} in {time.monotonic() - started:.0f} s into {prefix}")
    return binary


_SUMMARY = re.compile(
    r"Media summary: audio sent (\d+) ms, received (\d+) ms, received RMS ([0-9.eE+-]+), non-silent ([0-9.]+)%; "
    r"RTP audio packets sent (\d+) received (\d+); RTP video packets sent (\d+) received (\d+), "
    r"distinct video frames decoded (\d+)")


@dataclass
class MediaSummary:
    audio_sent_ms: int
    audio_received_ms: int
    received_rms: float
    non_silent_percent: float
    audio_packets_sent: int
    audio_packets_received: int
    video_packets_sent: int
    video_packets_received: int
    video_frames_decoded: int


@dataclass
class H323Peer:
    """One ``h323peer`` process; ``args`` are its options (the destination last when calling)."""

    binary: Path
    args: list[str]
    lines: list[str] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> H323Peer:
        self.proc = await asyncio.create_subprocess_exec(
            str(self.binary), *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL)
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                self._changed.set()
                return
            self.lines.append(line.decode(errors="replace").rstrip())
            self._changed.set()

    def has(self, pattern: str) -> re.Match[str] | None:
        regex = re.compile(pattern)
        return next((m for m in (regex.search(line) for line in self.lines) if m), None)

    async def wait_for(self, pattern: str, seconds: float) -> re.Match[str]:
        """The first printed line matching ``pattern`` (TimeoutError with the output otherwise)."""
        try:
            async with asyncio.timeout(seconds):
                while (found := self.has(pattern)) is None:
                    if self.proc is not None and self.proc.returncode is not None and self._reader and self._reader.done():
                        raise AssertionError(f"h323peer exited without {pattern!r}:\n{self.output}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"h323peer did not print {pattern!r} in {seconds} s:\n{self.output}") from None
        return found

    async def wait(self, seconds: float) -> int:
        assert self.proc is not None
        async with asyncio.timeout(seconds):
            code = await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> None:
        """Stop it if it still runs (SIGTERM, then SIGKILL)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def summary(self) -> MediaSummary | None:
        found = self.has(_SUMMARY.pattern)
        if found is None:
            return None
        g = found.groups()
        return MediaSummary(int(g[0]), int(g[1]), float(g[2]), float(g[3]), *(int(x) for x in g[4:]))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples (int16) and rate of a mono 16-bit WAV file."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return data, rate


def tone_level(samples: np.ndarray, freq: float, rate: int) -> float:
    """How far ``freq`` stands above the spectrum's mean (a ratio; a clean tone gives hundreds)."""
    if len(samples) < rate // 10:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    band = (freqs > freq - 15) & (freqs < freq + 15)
    return float(spectrum[band].max() / (spectrum.mean() + 1e-9))
