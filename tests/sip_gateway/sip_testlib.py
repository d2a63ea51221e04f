"""Helpers for the SIP tests: a fake clock driven only by the core's timer requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from sip_gateway.sip import events as ev
from sip_gateway.sip.actions import CancelTimer, Flow, Send, StartTimer, TimerKey
from sip_gateway.sip.message import Response, parse_message
from sip_gateway.sip.useragent import Output, UserAgent

PEER = Flow("udp", "127.0.0.1", 5099)


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

    def events_of(self, kind: type) -> list[ev.Event]:
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
