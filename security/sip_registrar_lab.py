"""The registrar attack lab shared by the CI test and the long run (issue 13, "prove it").

A real MCU conference (``SipBridge`` on a ``ConferenceService``) holds two baresip calls, A (440
Hz) and B (880 Hz). While they talk, attackers on other loopback addresses go at the registrar:

* ``svmap`` (finds the SIP server), ``svwar`` (extension enumeration: must find nothing, known
  and unknown users get the same answers) and ``svcrack`` (password cracking) from sipvicious;
* our MD5 digest guesser (:mod:`security.sip_digest_attack`) on two accounts, one of which has a
  password that *is* in the dictionary;
* a distributed guesser: one wrong guess from each of many addresses (the per-account tier);
* meanwhile the account's own device re-registers from its usual address (127.0.0.1), and the
  right password is tried from a fresh address.

tshark counts the RTP audio packets that reach baresip A during the attack. :func:`run_lab`
returns the figures as a dict (the CI test asserts on them, the long run writes them as JSON).
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcu.conferences import RunningConference
from mcu.legs.sip_bridge import SipBridge
from security.sip_digest_attack import DigestGuesser
from sip_gateway.sip import events as ev
from tests.sip_gateway.conference_helpers import DEMO, joined, until
from tests.sip_gateway.peers import Baresip

STRONG = "Kx7#registrar-2001-pw"  # account 2001: passes the policy, in no dictionary
LEAKED = "meetingroom88"  # account 2002: passes the policy, but the attacker's dictionary has it
ACCOUNTS = {"2001": STRONG, "2002": LEAKED}
# Where the accounts' own devices register from. Not 127.0.0.1: svcrack (0.3.x) ignores its -b
# option and always sends from the default address, so it plays the attacker at 127.0.0.1.
DEVICE = "127.0.3.1"
BIN = Path(sys.executable).parent
WORDLIST = Path(__file__).parent / "wordlists" / "sip_passwords_200.txt"


@dataclass
class LabPlan:
    """How hard and how long to attack."""

    words: list[str]  # the dictionary (should contain LEAKED)
    attack_seconds: float  # time limit of each guesser
    patient: bool = False  # guessers wait Retry-After instead of hammering
    distributed_sources: int = 25  # one wrong guess each, for account 2001
    svcrack_sha256_probe: bool = False  # also run svcrack once against the SHA-256-first challenge
    baseline_seconds: float = 2.0  # audio captured before the attack, for comparison


async def _run(*args: str, limit: float = 120.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd="/tmp")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    return proc.returncode if proc.returncode is not None else -1, out.decode(errors="replace")


def _tool(name: str) -> str:
    path = BIN / f"sipvicious_{name}"
    if not path.exists():
        raise RuntimeError(f"sipvicious is not installed in this venv ({path}); pip install -e '.[test]'")
    return str(path)


class RtpCapture:
    """tshark on lo counting UDP packets to one port (baresip's audio RTP port)."""

    def __init__(self, port: int, path: Path) -> None:
        self.port = port
        self.path = path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "tshark", "-i", "lo", "-f", f"udp dst port {self.port}", "-w", str(self.path), "-q",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stderr is not None
        async with asyncio.timeout(30):
            while b"Capturing on" not in await self.proc.stderr.readline():
                pass
        await asyncio.sleep(1.0)  # dumpcap announces itself a moment before it really captures

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 20)

    async def packets(self) -> list[tuple[float, int]]:
        """(arrival time, RTP payload type) of every captured packet."""
        code, out = await _run("tshark", "-r", str(self.path), "-d", f"udp.port=={self.port},rtp",
                               "-T", "fields", "-e", "frame.time_epoch", "-e", "rtp.p_type", limit=120)
        rows = []
        for line in out.splitlines():
            parts = line.split("\t")
            with contextlib.suppress(ValueError, IndexError):
                rows.append((float(parts[0]), int(parts[1])))
        return rows


def audio_figures(rows: list[tuple[float, int]], start: float, end: float) -> dict[str, Any]:
    """Packets, rate and the longest gap of audio RTP (PCMU/PCMA) within [start, end]."""
    times = sorted(t for t, pt in rows if pt in (0, 8) and start <= t <= end)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    span = end - start
    return {"packets": len(times), "seconds": round(span, 2),
            "packets_per_second": round(len(times) / span, 1) if span > 0 else 0.0,
            "longest_gap_ms": round(1000 * max(gaps, default=span), 1)}


def _svcrack_summary(output: str) -> dict[str, Any]:
    cracked = re.findall(r"The password for (\S+) is (\S+)", output)
    last = [line for line in output.splitlines() if line.strip() and not line.startswith("DEBUG")][-3:]
    crash = re.search(r"Got unhandled exception : (.*)", output)
    unknown = re.search(r"Unknown algorithm: \S+", output)
    return {"cracked": len(cracked), "guesses": len(re.findall(r"trying ", output)),
            "crash": crash.group(1) if crash else None, "says": unknown.group(0) if unknown else None,
            "found_nothing": "found nothing" in output, "traceback": "Traceback" in output, "last_lines": last}


async def _guess_once(target: tuple[str, int], user: str, source: str, password: str) -> int:
    """One REGISTER with ``password`` from ``source``: the final status."""
    guesser = DigestGuesser(target, user, source)
    try:
        report = await guesser.run([password], time_limit=15)
    finally:
        guesser.close()
    return next(iter(report.statuses), 0)


async def run_lab(bridge: SipBridge, conf: RunningConference, workdir: Path, plan: LabPlan) -> dict[str, Any]:
    """Run the attack against ``bridge`` while two baresips talk in ``conf``; the figures."""
    port = bridge.endpoint.config.port
    target = ("127.0.0.1", port)
    uri = f"udp://127.0.0.1:{port}"
    throttled: list[tuple[float, ev.AuthThrottled]] = []
    rejected: Counter[int] = Counter()

    def listen(event: ev.Event) -> None:
        if isinstance(event, ev.AuthThrottled):
            throttled.append((time.time(), event))
        elif isinstance(event, ev.MessageRejected):
            rejected[event.status] += 1

    bridge.endpoint.listeners.append(listen)
    figures: dict[str, Any] = {"accounts": len(ACCOUNTS), "dictionary_words": len(plan.words),
                               "mode": "patient" if plan.patient else "hammer"}
    a = Baresip(workdir / "baresip-a", tone_hz=440)
    b = Baresip(workdir / "baresip-b", tone_hz=880)
    capture: RtpCapture | None = None
    try:
        # The accounts' own devices register from their usual address before anything happens.
        figures["device_registration_before"] = {
            user: await _guess_once(target, user, DEVICE, password) for user, password in ACCOUNTS.items()}

        if plan.svcrack_sha256_probe:  # what svcrack does with our default, SHA-256-first challenge
            code, out = await _run(_tool("svcrack"), "-vv", "-u", "2001", "-r", "1000-1010",
                                   "--maximumtime", "10", uri, limit=60)
            figures["svcrack_sha256_first"] = {"exit_code": code, **_svcrack_summary(out)}
        bridge.endpoint.ua.digest.algorithms = ("MD5",)  # sipvicious speaks MD5 only: let it try

        await a.start(f"/dial sip:{DEMO}@127.0.0.1:{port}")
        await b.start(f"/dial sip:{DEMO}@127.0.0.1:{port}")
        try:
            await until(lambda: len(joined(conf)) == 2, 45, "both baresips to join the conference")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; sites {[(s.site_id, s.status) for s in conf.sites.values()]}\n"
                                 f"baresip A: {a.text[-1500:]}\nbaresip B: {b.text[-1500:]}") from None
        site_a = next(s for s in bridge.gateway.sites.values() if s.call.flow.port == a.sip_port)
        audio = next(s for s in site_a.call.streams if s.kind == "audio")
        capture = RtpCapture(audio.remote_port, workdir / "baresip-a-audio.pcapng")
        await capture.start()
        baseline_start = time.time()
        await asyncio.sleep(plan.baseline_seconds)
        attack_start = time.time()

        async def tools() -> dict[str, Any]:
            out: dict[str, Any] = {}
            code, text = await _run(_tool("svmap"), "-b", "127.0.0.2", "-p", str(port), "127.0.0.1", limit=60)
            agent = re.search(rf"127\.0\.0\.1:{port}\s*\|\s*([^|]+?)\s*\|", text)
            out["svmap"] = {"exit_code": code, "found_server": agent is not None,
                            "user_agent": agent.group(1) if agent else None}
            code, text = await _run(_tool("svwar"), "-e2000-2010", "--force", "-b", "127.0.0.3", uri, limit=90)
            out["svwar"] = {"exit_code": code, "found_nothing": "found nothing" in text,
                            "extensions_found": sorted(set(re.findall(r"\|\s*(20\d\d)\s*\|", text)))}
            wordfile = workdir / "svcrack-words.txt"
            wordfile.write_text("\n".join(plan.words) + "\n")
            code, text = await _run(_tool("svcrack"), "-vv", "-u", "2002", "-d", str(wordfile),
                                    "--maximumtime", str(int(plan.attack_seconds)), uri,
                                    limit=plan.attack_seconds + 60)
            out["svcrack"] = {"exit_code": code, **_svcrack_summary(text)}
            return out

        async def guess(user: str, source: str) -> dict[str, Any]:
            guesser = DigestGuesser(target, user, source)
            try:
                report = await guesser.run(plan.words, patient=plan.patient, time_limit=plan.attack_seconds,
                                           known=ACCOUNTS.get(user))
            finally:
                guesser.close()
            return report.as_json()

        async def distributed() -> dict[str, Any]:
            statuses = Counter[int]()
            for i in range(plan.distributed_sources):
                statuses[await _guess_once(target, "2001", f"127.0.1.{10 + i}", f"wrong-{i}-guess")] += 1
            # Right after: the device from its usual address, and the right password from a new address.
            device = await _guess_once(target, "2001", DEVICE, STRONG)
            fresh = await _guess_once(target, "2001", "127.0.2.99", STRONG)
            return {"sources": plan.distributed_sources, "statuses": {str(k): v for k, v in statuses.items()},
                    "device_right_after": device, "new_address_right_password_right_after": fresh}

        results = await asyncio.gather(tools(), guess("2002", "127.0.0.5"), guess("2001", "127.0.0.6"),
                                       distributed())
        # The devices re-register from their usual address after the attack.
        figures["device_registration_after"] = {
            user: await _guess_once(target, user, DEVICE, password) for user, password in ACCOUNTS.items()}
        attack_end = time.time()
        await asyncio.sleep(0.5)
        await capture.stop()
        rows = await capture.packets()
        figures["tools"] = results[0]
        figures["guessers"] = [results[1], results[2]]
        figures["distributed"] = results[3]
        figures["attack_seconds"] = round(attack_end - attack_start, 1)
        figures["audio_to_baresip_a"] = {"baseline": audio_figures(rows, baseline_start, attack_start),
                                        "during_attack": audio_figures(rows, attack_start, attack_end)}
        figures["throttle_events"] = [
            {"t": round(t - attack_start, 2), "scope": e.scope, "username": e.username, "source": e.flow.host,
             "method": e.method, "failures": e.failures, "blocked_seconds": e.blocked_for}
            for t, e in throttled]
        figures["rejected_statuses"] = {str(k): v for k, v in sorted(rejected.items())}
        guessers = [results[1], results[2]]
        figures["summary"] = {
            "password_guesses": sum(g["attempts"] for g in guessers) + plan.distributed_sources
            + results[0]["svcrack"]["guesses"],
            "guesses_checked_by_registrar": sum(g["checked"] for g in guessers)
            + int(results[3]["statuses"].get("401", 0)),
            "accounts_cracked": sum(1 for g in guessers if g["cracked"]) + results[0]["svcrack"]["cracked"],
            "throttle_after_failures": min((e.failures for _, e in throttled if e.scope == "source+account"),
                                           default=None),
            "seconds_to_first_throttle": min((g["seconds_to_first_refusal"] for g in guessers
                                              if g["seconds_to_first_refusal"] is not None), default=None),
            "account_tier_after_failures": min((e.failures for _, e in throttled if e.scope == "account"),
                                               default=None),
            "leaked_password_refused_while_throttled": results[1]["right_word_refused"],
            "audio_packets_during_attack": figures["audio_to_baresip_a"]["during_attack"]["packets"],
        }
        return figures
    finally:
        bridge.endpoint.listeners.remove(listen)
        if capture is not None:
            await capture.stop()
        await a.stop()
        await b.stop()
