"""The long run of the registrar attack (issue 13): figures for the README Security section.

One command: ``python -m security.sip_registrar_proof [--runs 3] [--attack-seconds 180]``.

Each run starts a real MCU conference on the embedded PostgreSQL with two baresip calls in it
measures their audio for ``--baseline-seconds``, then attacks the registrar for ``--attack-seconds`` (security/sip_registrar_lab.py): sipvicious
``svmap``, ``svwar`` and ``svcrack`` (MD5 offered, since svcrack cannot answer SHA-256; the
first run also records what svcrack does with our default SHA-256-first challenge), our MD5
digest guesser on two accounts with the 200-word dictionary ``security/wordlists/
sip_passwords_200.txt`` (which holds account 2002's password), *patient*: it waits every
Retry-After, the best a guesser can do against the throttle; and one wrong guess from each of
25 addresses. tshark counts the audio RTP reaching baresip A throughout.

A control run first repeats the guesser against the same registrar with the throttle switched
off (``AuthThrottlePolicy`` with an unreachable limit): how long the dictionary takes to find
the password without it.

Writes security/results/sip_registrar.json (every run plus median/min/max) and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.db import EmbeddedPostgres  # noqa: E402
from core.runtime import CoreServices  # noqa: E402
from mcu.conferences import ConferenceService  # noqa: E402
from mcu.room import RoomSettings  # noqa: E402
from security.sip_digest_attack import DigestGuesser, read_words  # noqa: E402
from security.sip_registrar_lab import ACCOUNTS, LEAKED, WORDLIST, LabPlan, run_lab  # noqa: E402
from sip_gateway.sip.authguard import AuthThrottle, AuthThrottlePolicy, ThrottleTier  # noqa: E402
from tests.conftest import make_settings, private_tmp_dir, with_database  # noqa: E402
from tests.sip_gateway.conference_helpers import DEMO, start_bridge  # noqa: E402

OUT = ROOT / "security" / "results" / "sip_registrar.json"


async def _fresh_database(url: str) -> str:
    name = f"sec_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(url, name)


async def one_run(pg_url: str, plan: LabPlan, control: bool) -> dict[str, Any]:
    """One lab run (or, with ``control``, the guesser against a registrar without the throttle)."""
    work = private_tmp_dir("cc-sec-sip-")
    services = await CoreServices.start(make_settings(await _fresh_database(pg_url), work))
    conferences = ConferenceService(services, room_settings=RoomSettings(fps=10))
    await conferences.start()
    bridge = await start_bridge(services, conferences, accounts=dict(ACCOUNTS), max_video_size="352x288")
    try:
        if control:
            off = ThrottleTier(10**9, 0.0, 0.0)
            bridge.endpoint.ua.auth_throttle = AuthThrottle(AuthThrottlePolicy(off, off, off))
            bridge.endpoint.ua.digest.algorithms = ("MD5",)
            guesser = DigestGuesser(("127.0.0.1", bridge.endpoint.config.port), "2002", "127.0.0.5")
            try:
                report = await guesser.run(plan.words, time_limit=plan.attack_seconds, known=LEAKED)
            finally:
                guesser.close()
            return report.as_json()
        conf = conferences.running(DEMO)
        assert conf is not None
        figures = await run_lab(bridge, conf, work, plan)
        await bridge.auth_audit.drain()
        figures["audit_rows"] = len(await services.audit.recent(action="sip.auth.throttled", limit=10_000))
        return figures
    finally:
        await bridge.stop()
        await conferences.stop()
        await services.stop()


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    words = read_words(WORDLIST)
    pg_dir = private_tmp_dir("cc-sec-pg-")
    pg = EmbeddedPostgres(pg_dir)
    url = pg.start()
    try:
        started = time.time()
        control = await one_run(url, LabPlan(words, attack_seconds=120.0), control=True)
        runs: list[dict[str, Any]] = []
        failed_setups: list[str] = []
        for i in range(args.runs):
            plan = LabPlan(words, attack_seconds=args.attack_seconds, patient=True,
                           svcrack_sha256_probe=(i == 0), baseline_seconds=args.baseline_seconds)
            try:
                runs.append(await one_run(url, plan, control=False))
            except AssertionError as exc:  # a real peer failed to set up (not the attack): once more
                print(f"run {i + 1} failed to set up, repeating it: {exc}", flush=True)
                failed_setups.append(str(exc)[:3000])
                runs.append(await one_run(url, plan, control=False))
            print(f"run {i + 1}/{args.runs}: {json.dumps(runs[-1]['summary'], ensure_ascii=False)}", flush=True)
    finally:
        pg.stop()
    summaries = [r["summary"] for r in runs]
    during = [r["audio_to_baresip_a"]["during_attack"] for r in runs]
    before = [r["audio_to_baresip_a"]["baseline"] for r in runs]
    result: dict[str, Any] = {
        "command": "python -m security.sip_registrar_proof "
                   f"--runs {args.runs} --attack-seconds {args.attack_seconds:g} --baseline-seconds {args.baseline_seconds:g}",
        "conditions": "one host, 2 shared CPU cores, everything on loopback; MD5 offered so sipvicious can "
                      "answer; guessers patient (wait every Retry-After); 25-address distributed guesser",
        "wall_seconds": round(time.time() - started, 1),
        "control_without_throttle": control,
        "figures": {
            "password_guesses": _stats([s["password_guesses"] for s in summaries]),
            "accounts_cracked": _stats([s["accounts_cracked"] for s in summaries]),
            "throttle_after_failures": _stats([s["throttle_after_failures"] for s in summaries]),
            "seconds_to_first_throttle": _stats([s["seconds_to_first_throttle"] for s in summaries]),
            "account_tier_after_failures": _stats([s["account_tier_after_failures"] or 0 for s in summaries]),
            "audio_packets_during_attack": _stats([d["packets"] for d in during]),
            "audio_packets_per_second_during_attack": _stats([d["packets_per_second"] for d in during]),
            "audio_longest_gap_ms_during_attack": _stats([d["longest_gap_ms"] for d in during]),
            "audio_packets_per_second_before_attack": _stats([d["packets_per_second"] for d in before]),
            "audio_longest_gap_ms_before_attack": _stats([d["longest_gap_ms"] for d in before]),
            "guesses_checked_by_registrar": _stats([s["guesses_checked_by_registrar"] for s in summaries]),
            "guesses_per_guesser": _stats([g["attempts"] for r in runs for g in r["guessers"]]),
            "checked_per_guesser": _stats([g["checked"] for r in runs for g in r["guessers"]]),
            "svcrack_guesses": _stats([r["tools"]["svcrack"]["guesses"] for r in runs]),
        },
        "svcrack_sha256_first": runs[0].get("svcrack_sha256_first"),
        "failed_setups": failed_setups,
        "runs": runs,
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--attack-seconds", type=float, default=180.0)
    parser.add_argument("--baseline-seconds", type=float, default=60.0,
                        help="audio measured before the attack starts, for comparison")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    f = result["figures"]
    control = result["control_without_throttle"]
    print(f"\nSIP registrar under attack: {args.runs} runs of {args.attack_seconds:g} s "
          "(patient guessers, sipvicious, 25-address spray, a baresip call in a conference)")
    print(f"{'measure':<52}{'median':>10}{'min':>10}{'max':>10}")
    for key, label in (("password_guesses", "password guesses answered (all attackers)"),
                       ("guesses_checked_by_registrar", "  of which checked (not refused by the throttle)"),
                       ("accounts_cracked", "accounts cracked"),
                       ("throttle_after_failures", "(source, account) throttle after N failures"),
                       ("seconds_to_first_throttle", "seconds to the first 403"),
                       ("account_tier_after_failures", "account throttle after N failures (spread)"),
                       ("guesses_per_guesser", "guesses per patient guesser in the run"),
                       ("checked_per_guesser", "  of which checked"),
                       ("svcrack_guesses", "svcrack guesses before it gave up"),
                       ("audio_packets_during_attack", "audio RTP packets to baresip during attack"),
                       ("audio_packets_per_second_during_attack", "  per second (nominal 50)"),
                       ("audio_longest_gap_ms_during_attack", "  longest gap (ms)"),
                       ("audio_packets_per_second_before_attack", "audio packets/s before the attack"),
                       ("audio_longest_gap_ms_before_attack", "  longest gap (ms)")):
        s = f[key]
        print(f"{label:<52}{s['median']:>10}{s['min']:>10}{s['max']:>10}")
    print(f"\nwithout the throttle: {control['cracked']!r} found after {control['attempts'] - 1} wrong guesses "
          f"in {control['duration']} s")
    sha = result["svcrack_sha256_first"] or {}
    print(f"svcrack against the SHA-256-first challenge: exit {sha.get('exit_code')}, {sha.get('says')}, "
          f"crash: {sha.get('crash')} (before any guess was answered)")
    print(f"\nwrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
