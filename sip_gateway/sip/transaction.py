"""SIP transactions (RFC 3261 §17 with the RFC 6026 "Accepted" states).

Each transaction is a small state machine. Inputs: messages, timer expiries. Outputs: a list
of :class:`Send`/:class:`StartTimer`/:class:`CancelTimer` actions plus :class:`Deliver`,
:class:`TransactionTimeout` and :class:`Terminated` notices for the transaction user.
Timers A–K (and L, M from RFC 6026) are named by their RFC letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .actions import T1, T2, T4, CancelTimer, Flow, Send, StartTimer
from .message import Headers, Request, Response

MAGIC_COOKIE = "z9hG4bK"


class State(Enum):
    """Transaction states (union of the four machines)."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class Deliver:
    """A response for the TU (client transactions)."""

    transaction: ClientTransaction
    response: Response


@dataclass(frozen=True)
class TransactionTimeout:
    """Timer B/F/H fired: no (final) response, or no ACK."""

    transaction: ClientTransaction | ServerTransaction


@dataclass(frozen=True)
class Terminated:
    """The transaction is finished; the owner drops it from its table."""

    transaction: ClientTransaction | ServerTransaction


Output = Send | StartTimer | CancelTimer | Deliver | TransactionTimeout | Terminated


def server_key(request: Request) -> str:
    """Key matching a request (or its retransmission/ACK) to a server transaction (§17.2.3)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    sent_by = f"{via.host}:{via.port or 5060}"
    if branch.startswith(MAGIC_COOKIE):
        return f"s|{branch}|{sent_by}|{method}"
    # RFC 2543 peers: fall back to the dialog-ish tuple.
    from_tag = request.from_.tag or ""
    return f"s2543|{request.call_id}|{from_tag}|{request.cseq[0]}|{sent_by}|{method}"


def client_key(branch: str, method: str) -> str:
    """Key matching a response to a client transaction (§17.1.3)."""
    return f"c|{branch}|{'INVITE' if method == 'ACK' else method}"


class ClientTransaction:
    """INVITE or non-INVITE client transaction."""

    def __init__(self, request: Request, flow: Flow) -> None:
        self.request = request
        self.flow = flow
        self.branch = request.top_via.branch or ""
        self.method = request.method
        self.key = client_key(self.branch, self.method)
        self.is_invite = request.method == "INVITE"
        self.state = State.CALLING if self.is_invite else State.TRYING
        self._interval = T1
        self.last_response: Response | None = None

    def _timer(self, name: str, delay: float) -> StartTimer:
        return StartTimer((self.key, name), delay)

    def _cancel(self, *names: str) -> list[Output]:
        return [CancelTimer((self.key, n)) for n in names]

    def start(self) -> list[Output]:
        """Send the request and start the retransmit/timeout timers."""
        out: list[Output] = [Send(self.flow, self.request.serialize())]
        if self.is_invite:
            if not self.flow.reliable:
                out.append(self._timer("A", T1))
            out.append(self._timer("B", 64 * T1))
        else:
            if not self.flow.reliable:
                out.append(self._timer("E", T1))
            out.append(self._timer("F", 64 * T1))
        return out

    def on_timer(self, name: str) -> list[Output]:
        """Handle an expired timer."""
        if self.state == State.TERMINATED:
            return []
        if name == "A" and self.state == State.CALLING:
            self._interval *= 2
            return [Send(self.flow, self.request.serialize()), self._timer("A", self._interval)]
        if name == "E" and self.state in (State.TRYING, State.PROCEEDING):
            self._interval = T2 if self.state == State.PROCEEDING else min(self._interval * 2, T2)
            return [Send(self.flow, self.request.serialize()), self._timer("E", self._interval)]
        if (name == "B" and self.state == State.CALLING) or (
            name == "F" and self.state in (State.TRYING, State.PROCEEDING)
        ):
            return self._terminate([TransactionTimeout(self)])
        if name in ("D", "K", "M"):
            return self._terminate([])
        return []

    def _terminate(self, out: list[Output]) -> list[Output]:
        self.state = State.TERMINATED
        return out + self._cancel("A", "B", "D", "E", "F", "K", "M") + [Terminated(self)]

    def on_response(self, response: Response) -> list[Output]:
        """Handle a response matched to this transaction."""
        status = response.status
        if self.state == State.TERMINATED:
            return []
        if self.is_invite:
            return self._invite_response(response, status)
        if self.state in (State.TRYING, State.PROCEEDING):
            self.last_response = response
            if status < 200:
                self.state = State.PROCEEDING
                return [Deliver(self, response)]
            self.state = State.COMPLETED
            out: list[Output] = [Deliver(self, response), *self._cancel("E", "F")]
            if self.flow.reliable:
                return self._terminate(out)
            return out + [self._timer("K", T4)]
        return []  # retransmitted final in Completed is absorbed

    def _invite_response(self, response: Response, status: int) -> list[Output]:
        if self.state in (State.CALLING, State.PROCEEDING):
            self.last_response = response
            if status < 200:
                self.state = State.PROCEEDING
                return [*self._cancel("A", "B"), Deliver(self, response)]
            if status < 300:
                self.state = State.ACCEPTED
                return [*self._cancel("A", "B"), Deliver(self, response), self._timer("M", 64 * T1)]
            self.state = State.COMPLETED
            out: list[Output] = [*self._cancel("A", "B"), Send(self.flow, self.build_ack(response))]
            out.append(Deliver(self, response))
            if self.flow.reliable:
                return self._terminate(out)
            return out + [self._timer("D", 32.0)]
        if self.state == State.COMPLETED and status >= 300:
            return [Send(self.flow, self.build_ack(response))]
        if self.state == State.ACCEPTED and 200 <= status < 300:
            return [Deliver(self, response)]  # the TU re-sends its ACK
        return []

    def build_ack(self, response: Response) -> bytes:
        """ACK for a non-2xx final response (§17.1.1.3): same branch, To from the response."""
        return same_hop_request(self.request, "ACK", response.headers.get("To") or "").serialize()


class ServerTransaction:
    """INVITE or non-INVITE server transaction."""

    def __init__(self, request: Request, flow: Flow) -> None:
        self.request = request
        self.flow = flow
        self.key = server_key(request)
        self.is_invite = request.method == "INVITE"
        self.state = State.PROCEEDING if self.is_invite else State.TRYING
        self.last_response: Response | None = None
        self._interval = T1

    def _timer(self, name: str, delay: float) -> StartTimer:
        return StartTimer((self.key, name), delay)

    def respond(self, response: Response) -> list[Output]:
        """Send a response from the TU."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            if self.state == State.ACCEPTED and 200 <= response.status < 300:
                # 2xx retransmissions by the TU (§13.3.1.4) pass straight through.
                return [Send(self.flow, response.serialize())]
            return []
        self.last_response = response
        out: list[Output] = [Send(self.flow, response.serialize())]
        if response.status < 200:
            self.state = State.PROCEEDING
            return out
        if self.is_invite:
            if response.status < 300:
                self.state = State.ACCEPTED
                return out + [self._timer("L", 64 * T1)]
            self.state = State.COMPLETED
            if not self.flow.reliable:
                out.append(self._timer("G", T1))
            return out + [self._timer("H", 64 * T1)]
        self.state = State.COMPLETED
        if self.flow.reliable:
            return self._terminate(out)
        return out + [self._timer("J", 64 * T1)]

    def on_request(self, request: Request) -> list[Output]:
        """A retransmitted request (or the ACK for a non-2xx final) matched this transaction."""
        if request.method == "ACK":
            if self.state == State.COMPLETED:
                self.state = State.CONFIRMED
                out: list[Output] = [CancelTimer((self.key, "G")), CancelTimer((self.key, "H"))]
                if self.flow.reliable:
                    return self._terminate(out)
                return out + [self._timer("I", T4)]
            return []
        if self.last_response is not None and self.state in (State.PROCEEDING, State.COMPLETED):
            return [Send(self.flow, self.last_response.serialize())]
        return []

    def on_timer(self, name: str) -> list[Output]:
        """Handle an expired timer."""
        if self.state == State.TERMINATED:
            return []
        if name == "G" and self.state == State.COMPLETED and self.last_response is not None:
            self._interval = min(self._interval * 2, T2)
            return [Send(self.flow, self.last_response.serialize()), self._timer("G", self._interval)]
        if name == "H" and self.state == State.COMPLETED:
            return self._terminate([TransactionTimeout(self)])
        if name in ("I", "J", "L"):
            return self._terminate([])
        return []

    def _terminate(self, out: list[Output]) -> list[Output]:
        self.state = State.TERMINATED
        cancels: list[Output] = [CancelTimer((self.key, n)) for n in ("G", "H", "I", "J", "L")]
        return out + cancels + [Terminated(self)]


def same_hop_request(invite: Request, method: str, to: str) -> Request:
    """A request that travels the INVITE's own hop: the ACK of a non-2xx answer (§17.1.1.3) and a
    CANCEL (§9.1) both copy its top Via (same branch), Route set, From, Call-ID and CSeq number."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", to)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} {method}")
    return Request(headers, b"", method, invite.uri)
