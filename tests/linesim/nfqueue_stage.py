"""The line emulator's delay/jitter/loss stage: an NFQUEUE listener over raw netlink.

This kernel has no ``sch_netem``, so the line's delay, jitter and loss are done in user space:
iptables sends the line's packets to NFQUEUE ``N`` (``--queue-bypass``: they pass when no one
listens), and this stage gives each packet a verdict. It drops a packet with probability
``loss`` and accepts the others ``delay ± jitter`` after they arrived (uniform), never before
the packet queued ahead of it, so the order is kept (a real line does not reorder). The
randomness is seeded: a profile gives the same drops and delays every run.

Written by hand on raw netlink (``NETLINK_NETFILTER``, subsystem ``NFNL_SUBSYS_QUEUE``) rather
than with the ``NetfilterQueue`` binding: that package ships no wheel, only a C extension that
needs ``libnetfilter-queue-dev`` and a compiler, and the protocol needed here is four messages.
The script has no imports from the project: the fixture runs it inside the line's namespace
(``ip netns exec NS python nfqueue_stage.py ...``). It prints ``ready`` once bound, and on
SIGTERM/SIGINT releases what it holds and prints one JSON line of per-queue counters.
"""
from __future__ import annotations

import argparse
import collections
import errno
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_DROP = 0
NF_ACCEPT = 1
NLA_TYPE_MASK = 0x3FFF


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(msg_type: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    """One nfnetlink message of the queue subsystem (nlmsghdr, nfgenmsg, attributes)."""
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


def config_bind(queue: int, seq: int) -> bytes:
    cmd = _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET))
    params = _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    maxlen = _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 8192))
    return message(NFQNL_MSG_CONFIG, queue, cmd + params + maxlen, seq, NLM_F_REQUEST | NLM_F_ACK)


def config_unbind(queue: int, seq: int) -> bytes:
    cmd = _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, socket.AF_INET))
    return message(NFQNL_MSG_CONFIG, queue, cmd, seq)


def verdict(queue: int, packet_id: int, accept: bool, seq: int) -> bytes:
    hdr = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT if accept else NF_DROP, packet_id))
    return message(NFQNL_MSG_VERDICT, queue, hdr, seq)


def parse(data: bytes) -> list[tuple[str, int, int]]:
    """Messages in a netlink datagram: ("packet", queue, packet id) or ("error", 0, errno)."""
    out: list[tuple[str, int, int]] = []
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            break
        if msg_type == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + 16)
            out.append(("error", 0, -code))
        elif msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            (queue,) = struct.unpack_from("!H", data, offset + 18)
            pos = offset + 20
            while pos + 4 <= offset + length:
                alen, akind = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if akind & NLA_TYPE_MASK == NFQA_PACKET_HDR:
                    (packet_id,) = struct.unpack_from("!I", data, pos + 4)
                    out.append(("packet", queue, packet_id))
                pos += (alen + 3) & ~3
        offset += (length + 3) & ~3
    return out


@dataclass
class QueueState:
    """One direction of the line: its randomness, its held packets and its counters."""

    rng: random.Random
    held: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    last_release: float = 0.0
    seen: int = 0
    dropped: int = 0
    delays: list[float] = field(default_factory=list)

    def admit(self, now: float, loss: float, delay: float, jitter: float) -> float | None:
        """When to release a packet that arrived at ``now``, or None to drop it."""
        self.seen += 1
        if loss > 0 and self.rng.random() < loss:
            self.dropped += 1
            return None
        wanted = now + max(0.0, delay + (self.rng.uniform(-jitter, jitter) if jitter > 0 else 0.0))
        self.last_release = max(wanted, self.last_release)  # never overtake the packet ahead
        return self.last_release


def run(queues: list[int], loss: float, delay: float, jitter: float, seed: int) -> dict[str, object]:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE (root), else the capped one
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
            break
        except OSError:
            continue
    seq = 1
    for queue in queues:
        sock.send(config_bind(queue, seq))
        seq += 1
        reply = parse(sock.recv(65536))
        problems = [code for kind, _q, code in reply if kind == "error" and code != 0]
        if problems:
            raise OSError(problems[0], f"binding NFQUEUE {queue}: {os.strerror(problems[0])}")
    states = {q: QueueState(random.Random(seed * 1000 + q)) for q in queues}
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sock.setblocking(False)
    overruns = 0
    print("ready", flush=True)
    while not stop:
        now = time.monotonic()
        heads = [s.held[0][0] for s in states.values() if s.held]
        timeout = max(0.0, min(heads) - now) if heads else 0.2
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if readable:
            while True:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:  # the kernel's copy queue overflowed: those packets are lost
                        overruns += 1
                        continue
                    raise
                now = time.monotonic()
                for kind, queue, packet_id in parse(data):
                    state = states.get(queue)
                    if kind != "packet" or state is None:
                        continue
                    release = state.admit(now, loss, delay, jitter)
                    if release is None:
                        sock.send(verdict(queue, packet_id, False, 0))
                    else:
                        state.held.append((release, packet_id))
                        state.delays.append(release - now)
        now = time.monotonic()
        for queue, state in states.items():
            while state.held and state.held[0][0] <= now:
                _, packet_id = state.held.popleft()
                sock.send(verdict(queue, packet_id, True, 0))
    for queue, state in states.items():  # let what we hold go, then stop listening
        while state.held:
            _, packet_id = state.held.popleft()
            sock.send(verdict(queue, packet_id, True, 0))
        sock.send(config_unbind(queue, 0))
    sock.close()
    return {
        "overruns": overruns,
        "queues": {str(q): {"seen": s.seen, "dropped": s.dropped,
                            "mean_delay_ms": round(1000 * sum(s.delays) / len(s.delays), 2) if s.delays else 0.0}
                   for q, s in states.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, action="append", required=True, help="NFQUEUE number (repeatable)")
    parser.add_argument("--loss", type=float, default=0.0, help="drop probability per packet, 0..1")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not 0 <= args.loss < 1 or args.delay_ms < 0 or args.jitter_ms < 0 or args.jitter_ms > args.delay_ms:
        parser.error("need 0 <= loss < 1 and 0 <= jitter <= delay")
    try:
        stats = run(args.queue, args.loss, args.delay_ms / 1000, args.jitter_ms / 1000, args.seed)
    except OSError as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(2)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
