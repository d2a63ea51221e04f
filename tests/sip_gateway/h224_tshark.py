"""tshark as the judge of H.224/H.281: Wireshark's own H.224 dissector, from Debian 13's tshark.

Debian 12's tshark 4.0 has no H.224 dissector (Wireshark 4.2 added one). The judge is Debian 13's
tshark 4.4, unmodified, in a minimal Debian 13 root that `debootstrap` builds from the Debian
archive on first use (about 3 minutes, 415 MB; kept in ``~/.cache/cc-trixie-tshark`` or
``$CC_TRIXIE_TSHARK_ROOT``) and that tshark runs in with ``chroot``. No third-party code is
committed here and nothing of ours is in the dissector's path. Needs root and Debian ``debootstrap``
(the Makefile's test packages); a missing part fails the test, naming it.
"""
from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"


def _root() -> Path:
    env = os.environ.get("CC_TRIXIE_TSHARK_ROOT")
    return Path(env) if env else Path.home() / ".cache" / "cc-trixie-tshark"


@functools.cache
def judge_root() -> Path:
    """The Debian 13 root with tshark 4.4, built once (RuntimeError naming what is missing)."""
    root = _root()
    if (root / "usr" / "bin" / "tshark").is_file():
        return root
    if os.geteuid() != 0:
        raise RuntimeError("judging H.224 needs root (chroot into Debian 13's tshark)")
    if shutil.which("debootstrap") is None:
        raise RuntimeError("judging H.224 needs debootstrap (Debian package debootstrap) to build Debian 13's tshark")
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / (root.name + ".lock"), "w") as lock:  # one build when pytest runs twice
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / "usr" / "bin" / "tshark").is_file():
            return root
        building = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
        result = subprocess.run(["debootstrap", "--variant=minbase", "--include=tshark", SUITE, str(building),
                                 MIRROR], capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0 or not (building / "usr" / "bin" / "tshark").is_file():
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"building Debian 13's tshark failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
        shutil.rmtree(root, ignore_errors=True)
        building.rename(root)
    return root


def tshark_h224(capture: Path, port: int, payload_type: int, *args: str) -> str:
    """Run Debian 13's tshark on ``capture`` with UDP ``port`` as RTP and ``payload_type`` as H.224."""
    root = judge_root()
    scratch = Path(tempfile.mkdtemp(prefix="cc-h224-", dir=root / "tmp"))
    try:
        shutil.copy(capture, scratch / capture.name)
        inside = "/" + str((scratch / capture.name).relative_to(root))
        result = subprocess.run(
            ["chroot", str(root), "tshark", "-r", inside, "-d", f"udp.port=={port},rtp",
             "-d", f"rtp.pt=={payload_type},h224", *args],
            capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"tshark failed: {result.stderr[-1500:]}")
    return result.stdout


def h224_fields(capture: Path, port: int, payload_type: int, *fields: str, display_filter: str = "h224") -> list[list[str]]:
    """One row of ``fields`` per H.224 frame (``-T fields``)."""
    args = ["-Y", display_filter, "-T", "fields"] + [a for f in fields for a in ("-e", f)]
    return [line.split("\t") for line in tshark_h224(capture, port, payload_type, *args).splitlines() if line]
