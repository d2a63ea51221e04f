"""Helpers for the SIP tests: a fake clock driven only by the core's timer requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from sip_gateway.sip import events as ev
from sip_gateway.sip.actions import CancelTimer, Flow, Send, StartTimer, TimerKey
from sip_gateway.sip.message import Response, parse_message
from sip_gateway.sip.useragent import Output, UserAgent

PEER = Flow("udp", "127.0.0.1", 5099)


E = TypeVar("E")


@dataclass
class Harness:
    """Runs a :class:`UserAgent` with a virtual clock; records what it sends and emits."""

    ua: UserAgent
    now: float = 0.0
    timers: dict[TimerKey, float] = field(default_factory=dict)
    sent: list[tuple[Flow, bytes]] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)

    def run(self, outputs: list[Output]) -> list[Output]:
        for item in outputs:
            if isinstance(item, Send):
                self.sent.append((item.flow, item.data))
            elif isinstance(item, StartTimer):
                self.timers[item.key] = self.now + item.delay
            elif isinstance(item, CancelTimer):
                self.timers.pop(item.key, None)
            else:
                self.events.append(item)
        return outputs

    def receive(self, data: bytes | str, flow: Flow = PEER) -> list[Output]:
        if isinstance(data, str):
            data = data.replace("\n", "\r\n").encode()
        return self.run(self.ua.receive(data, flow, self.now))

    def advance(self, seconds: float) -> None:
        """Move the clock, firing due timers in order."""
        end = self.now + seconds
        while True:
            due = [(t, k) for k, t in self.timers.items() if t <= end]
            if not due:
                break
            when, key = min(due)
            self.now = when
            del self.timers[key]
            self.run(self.ua.on_timer(key, self.now))
        self.now = end

    def responses(self) -> list[Response]:
        out = []
        for _, data in self.sent:
            msg = parse_message(data)
            if isinstance(msg, Response):
                out.append(msg)
        return out

    def last_response(self) -> Response:
        return self.responses()[-1]

    def take(self) -> list[tuple[Flow, bytes]]:
        sent, self.sent = self.sent, []
        return sent

    def events_of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


SDP_OFFER = (
    "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    "m=video 6002 RTP/AVP 97 96\r\na=rtpmap:97 H264/90000\r\n"
    "a=fmtp:97 profile-level-id=42801f;packetization-mode=0\r\n"
    "a=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n"
)


def request(method: str = "INVITE", call_id: str = "call-1", cseq: int = 1, branch: str = "z9hG4bKabc1",
            to_tag: str | None = None, body: str = "", extra: str = "", uri: str = "sip:80000001@127.0.0.1",
            content_type: str = "application/sdp", from_tag: str = "ft1") -> bytes:
    """Build a request the way a typical peer would send it."""
    to = "<sip:80000001@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5099;branch={branch}",
        "Max-Forwards: 70",
        f"From: \"Peer\" <sip:peer@127.0.0.1:5099>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:peer@127.0.0.1:5099>",
    ]
    if extra:
        lines += extra.strip("\n").split("\n")
    if body:
        lines.append(f"Content-Type: {content_type}")
    body_bytes = body.encode()
    lines.append(f"Content-Length: {len(body_bytes)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body_bytes


# --- a real endpoint on 127.0.0.1 for SIPp/baresip/pjsua tests -----------------------

import asyncio  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402

from sip_gateway.aio.sip_endpoint import Answer, Challenge, Decision, SipEndpoint  # noqa: E402
from sip_gateway.rtp.media_description import LocalMedia  # noqa: E402
from sip_gateway.sip.dialog import Call  # noqa: E402
from sip_gateway.sip.useragent import UserAgentConfig  # noqa: E402

SIPP_DIR = Path(__file__).parent / "sipp"
SIPP_ACCOUNTS = {"sippuser": "Sipp-Pass-123"}


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestApp:
    """Conference-less test UAS: behaviour chosen by the dialled user part."""

    def __init__(self) -> None:
        self.endpoint: SipEndpoint | None = None
        self.calls: list[Call] = []

    async def on_invite(self, call: Call) -> Decision:
        assert self.endpoint is not None
        self.calls.append(call)
        user = call.request_user or ""
        ua = self.endpoint.ua
        if user.startswith("auth") and call.authenticated_user is None:
            return Challenge()
        self.endpoint.process(ua.ring(call))
        if user == "slow":
            await asyncio.sleep(5)
        if user == "hangup":
            asyncio.get_running_loop().call_later(0.5, self.endpoint.hangup, call)
        return Answer(LocalMedia("127.0.0.1", 40000, 40002))


async def start_test_endpoint(**config: object) -> tuple[SipEndpoint, TestApp]:
    app = TestApp()
    config.setdefault("accounts", dict(SIPP_ACCOUNTS))
    cfg = UserAgentConfig(host="127.0.0.1", port=0, **config)  # type: ignore[arg-type]
    endpoint = SipEndpoint(cfg, app.on_invite)
    app.endpoint = endpoint
    await endpoint.start()
    return endpoint, app


async def run_sipp(scenario: str, port: int, service: str = "80000001", transport: str = "u1",
                   calls: int = 1, rate: float = 10.0, limit: float = 30.0,
                   extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run one SIPp scenario file against 127.0.0.1:port; returns (exit code, output)."""
    local = free_port(socket.SOCK_STREAM if transport.startswith("t") else socket.SOCK_DGRAM)
    args = [
        "sipp", "-sf", str(SIPP_DIR / scenario), f"127.0.0.1:{port}", "-i", "127.0.0.1",
        "-p", str(local), "-s", service, "-m", str(calls), "-r", str(rate), "-t", transport,
        "-nostdin", "-timeout", f"{int(limit)}s", "-timeout_error", "-max_recv_loops", "1000",
        "-trace_err", "-error_file", f"/tmp/sipp-{scenario}-{local}.err", *extra,
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd="/tmp"
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit + 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "timeout"
    text = out.decode(errors="replace")
    return proc.returncode or 0, text + _read_and_remove(Path(f"/tmp/sipp-{scenario}-{local}.err"))


def _read_and_remove(path: Path) -> str:
    if not path.exists():
        return ""
    text = "\n--- errors ---\n" + path.read_text(errors="replace")[-3000:]
    path.unlink()
    return text
