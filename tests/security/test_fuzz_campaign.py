"""The fuzz campaign's short run in CI: every target under atheris for a few seconds, 0 crashes.

The long run is `python -m security.fuzz --seconds N --runs 1000000` (security/README.md).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from security.fuzz.targets import NAMES
from tests.conftest import ROOT


def test_every_parser_survives_a_short_fuzz_run(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    result = subprocess.run(
        [sys.executable, "-m", "security.fuzz", "--seconds", "2", "--quiet", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280)
    report = json.loads(out.read_text())
    assert set(report["targets"]) == set(NAMES) >= {"sip", "sdp", "h225", "h245", "ras", "rtp", "pidf_lo", "aml",
                                                    "eido", "settings", "site_plan", "verify_export"}
    crashes = {name: t["unique_crashes"] or t["hard_crashes"] for name, t in report["targets"].items()
               if t["crashes"]}
    assert not crashes, json.dumps(crashes, indent=1, ensure_ascii=False)
    for name, t in report["targets"].items():
        assert t["inputs"] >= 10, f"{name} barely ran: {t}"
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_crash_is_reported_with_its_input(tmp_path: Path) -> None:
    """The harness itself: an exception that is not the parser's documented error is a crash,
    counted, its input saved, and the campaign exits 1."""
    from security.fuzz import worker

    state = tmp_path / "state.json"
    code = subprocess.run(
        [sys.executable, "-c", "import sys; from security.fuzz import targets, worker\n"
         "def broken():\n"
         "    def run(data):\n"
         "        if data[:1] == b'!':\n"
         "            raise KeyError('boom')\n"
         "    return targets.Target('broken', run, (ValueError,), [b'!x', b'ok'])\n"
         "targets.BUILDERS['broken'] = broken\n"
         f"worker.main(['--target', 'broken', '--seconds', '1', '--runs', '50', '--state', {str(state)!r},"
         f" '--artifacts', {str(tmp_path / 'a')!r}, '--corpus', {str(tmp_path / 'c')!r}])"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert code.returncode == 0, code.stderr[-2000:]
    figures = json.loads(state.read_text())
    assert figures["inputs"] == 50 and figures["crashes"] >= 1
    (sig, info), = figures["unique_crashes"].items()
    assert sig.startswith("KeyError") and (tmp_path / "a" / info["input"]).read_bytes().startswith(b"!")
    assert worker.INSTRUMENT
