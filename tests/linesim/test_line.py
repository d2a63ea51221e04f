"""The line emulator itself, measured with a UDP probe: rate, loss, delay, order, teardown."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.linesim.conftest import OpenLine
from tests.linesim.line import PROFILES, Line, LineUnavailable, Profile, leftovers, open_line
from tests.linesim.udp_probe import blast

PROBE = Path(__file__).with_name("udp_probe.py")
pytestmark = pytest.mark.timeout(90)


def measure(line: Line, kbps: float, seconds: float, size: int = 1000) -> tuple[int, dict[str, Any]]:
    """Blast UDP from the MCU side to a receiver behind the line; (sent, the receiver's summary)."""
    port = free_port()
    receiver = subprocess.Popen(line.exec_args(sys.executable, str(PROBE), line.peer_address, str(port), "1.0"),
                                stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        sent = blast(line.peer_address, port, kbps, seconds, size)
        out, _ = receiver.communicate(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    return sent, json.loads(out.strip().splitlines()[-1])


def test_768k_line_delivers_its_rate_and_drops_the_excess_at_its_queue(linesim: OpenLine) -> None:
    line = linesim("768k_20ms")
    sent, got = measure(line, kbps=1500, seconds=4.0)
    rate = float(got["rate_kbps"])
    assert 768 * 0.9 <= rate <= 768 * 1.1, got
    assert got["in_order"] is True
    drops = line.tbf_drops()["down"]
    assert drops > sent * 0.3, (drops, sent)  # about half of a 1.5 Mbit/s blast does not fit
    assert int(got["received"]) + drops == sent
    # The delay is the line's 20 ms plus the router queue, which is bounded (~200 ms).
    assert 19 <= float(got["min_delay_ms"]) <= 40, got
    assert float(got["median_delay_ms"]) <= 20 + 200 + 40, got


def test_lossy_line_loses_about_its_share_delays_with_jitter_and_keeps_order(linesim: OpenLine) -> None:
    line = linesim("2M_2pct_30ms", seed=7)
    sent, got = measure(line, kbps=500, seconds=6.0, size=200)  # well under the rate: no queue drops
    assert line.tbf_drops()["down"] == 0
    loss = 1 - int(got["received"]) / sent
    assert 0.01 <= loss <= 0.03, (loss, sent, got)
    assert got["in_order"] is True
    assert 20 <= float(got["min_delay_ms"]) <= 32, got  # 30 - 10 ms jitter, a little scheduling
    assert 27 <= float(got["median_delay_ms"]) <= 42, got


def test_rate_changes_live(linesim: OpenLine) -> None:
    line = linesim(Profile("test_drop", rate_kbps=2000, then_kbps=768, change_after_s=0.01))
    threading.Event().wait(0.5)
    assert line.rate_kbps == 768
    _, got = measure(line, kbps=1500, seconds=3.0)
    assert 768 * 0.9 <= float(got["rate_kbps"]) <= 768 * 1.1, got


def test_clean_profile_has_no_shaping_and_everything_is_removed_after() -> None:
    with open_line("clean") as line:
        sent, got = measure(line, kbps=3000, seconds=1.0)
        assert got["received"] == sent and line.stage is None
        name = line.namespace
    assert name not in leftovers()
    assert not [n for n in leftovers() if n.startswith(f"linesim{name[-4:]}")]


def test_teardown_after_a_failed_setup_leaves_nothing() -> None:
    # A profile whose stage cannot start (jitter above delay is refused): setup fails, teardown still runs.
    before = set(leftovers())
    bad = Profile("bad", rate_kbps=768, delay_ms=1, jitter_ms=5)
    with pytest.raises(LineUnavailable, match="NFQUEUE stage"), open_line(bad):
        pass
    assert set(leftovers()) <= before


def test_all_named_profiles_exist() -> None:
    assert set(PROFILES) == {"clean", "2M_20ms", "768k_20ms", "2M_2pct_30ms", "768k_1pct_30ms", "drop_2M_to_768k",
                             "mobile_384k_2pct_60ms"}


def test_a_missing_part_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A PATH that has iproute2 but no iptables: the line refuses to start and says what to install.
    for tool in ("ip", "tc"):
        found = shutil.which(tool)
        assert found is not None
        (tmp_path / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(tmp_path))
    before = set(leftovers())
    with pytest.raises(LineUnavailable, match="`iptables` is missing: install the Debian package iptables"), \
            open_line("768k_20ms"):
        pass
    monkeypatch.undo()
    assert set(leftovers()) <= before
