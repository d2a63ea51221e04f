"""What every part of the SIP user agent shares: configuration, the dialog and transaction
tables, and the building of requests' answers.

:class:`UserAgentCore` runs the transactions (:meth:`~UserAgentCore.run` turns their outputs
into actions and hands responses and timeouts to whoever started them), builds responses and
ends dialogs. The UAS (:mod:`.uas`), the UAC (:mod:`.uac`), the registrar (:mod:`.registrar`),
the client registrations (:mod:`.registration`) and OPTIONS (:mod:`.qualify`) all work through
it; :class:`~.useragent.UserAgent` composes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..rtp.media_description import MediaPolicy
from . import events as ev
from . import info
from .actions import CancelTimer, Flow, Send, StartTimer
from .authguard import AuthThrottlePolicy
from .dialog import Call, CallState, new_tag
from .message import MAX_MESSAGE_SIZE, Headers, Request, Response
from .transaction import ClientTransaction, Deliver, ServerTransaction, Terminated, TransactionTimeout

Action = Send | StartTimer | CancelTimer
Output = Action | ev.Event
Handler = Callable[[Response], list[Output]]

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REGISTER")
KNOWN_METHODS = ("SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "PRACK")
SUPPORTED_EXTENSIONS = ("timer",)
REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    407: "Proxy Authentication Required", 408: "Request Timeout", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "Version Not Supported", 513: "Message Too Large", 603: "Decline",
}
CALL_TIMERS = ("answer", "2xx", "ack", "ring", "refresh", "expire", "retry-reinvite")


@dataclass
class UserAgentConfig:
    """Static settings of a :class:`~.useragent.UserAgent`."""

    host: str = "127.0.0.1"
    port: int = 5060
    tls_port: int = 5061
    user: str = "commandcenter"
    user_agent: str = "commandcenter-sip/0.1"
    max_message_size: int = MAX_MESSAGE_SIZE
    policy: MediaPolicy = field(default_factory=MediaPolicy)
    realm: str = "commandcenter"
    accounts: dict[str, str] = field(default_factory=dict)  # registrar users → passwords
    require_register_auth: bool = True
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 7200
    session_expires: int = 1800
    min_se: int = 90
    answer_timeout: float = 120.0  # unanswered incoming INVITE → 480
    ring_timeout: float = 60.0  # our unanswered INVITE → CANCEL
    rate: float = 10.0
    burst: float = 30.0
    auth_throttle: AuthThrottlePolicy = field(default_factory=AuthThrottlePolicy)


class UserAgentCore:
    """Dialogs, transactions and response building shared by the UAS, UAC and registrar.

    ``server_timeout`` is told when a server transaction times out (the UAS ends a call whose
    2xx was never ACKed).
    """

    def __init__(self, config: UserAgentConfig,
                 server_timeout: Callable[[ServerTransaction], list[Output]]) -> None:
        self.config = config
        self.calls: dict[str, Call] = {}
        self.server_tx: dict[str, ServerTransaction] = {}
        self.client_tx: dict[str, ClientTransaction] = {}
        self._handlers: dict[str, tuple[Handler, Callable[[], list[Output]]]] = {}
        self._server_timeout = server_timeout

    # ------------------------------------------------------------------ addresses

    def local_port(self, flow: Flow) -> int:
        """Our port for ``flow``'s transport."""
        return self.config.tls_port if flow.transport == "tls" else self.config.port

    def via(self, flow: Flow, branch: str) -> str:
        """Our Via header value for a request sent on ``flow``."""
        return f"SIP/2.0/{flow.transport.upper()} {self.config.host}:{self.local_port(flow)};branch={branch};rport"

    def contact(self, flow: Flow) -> str:
        """Our Contact header value for ``flow``."""
        transport = "" if flow.transport == "udp" else f";transport={flow.transport}"
        return f"<sip:{self.config.user}@{self.config.host}:{self.local_port(flow)}{transport}>"

    # ------------------------------------------------------------------ responses

    def response(self, request: Request, status: int, reason: str | None = None,
                 to_tag: str | None = None, flow: Flow | None = None) -> Response:
        """A response to ``request`` (Via with rport/received filled in for ``flow``)."""
        headers = Headers()
        vias = request.headers.get_all("Via")
        for i, via in enumerate(vias):
            if i == 0 and flow is not None and ";rport" in via and "rport=" not in via:
                via = via.replace(";rport", f";rport={flow.port}", 1) + f";received={flow.host}"
            headers.add("Via", via)
        headers.add("From", request.headers.get("From") or "")
        to = request.headers.get("To") or ""
        if to_tag and ";tag=" not in to.replace(" ", "") and status > 100:
            to = f"{to};tag={to_tag}"
        headers.add("To", to)
        headers.add("Call-ID", request.headers.get("Call-ID") or "")
        headers.add("CSeq", request.headers.get("CSeq") or "")
        headers.add("Server", self.config.user_agent)
        return Response(headers, b"", status, reason or REASONS.get(status, "Unknown"))

    def add_capabilities(self, response: Response) -> None:
        """Allow, Accept and Supported: what we can do (OPTIONS answers, 2xx to INVITE)."""
        response.headers.add("Allow", ", ".join(ALLOWED_METHODS))
        response.headers.add("Accept", "application/sdp, " + ", ".join(info.INFO_TYPES))
        response.headers.add("Supported", ", ".join(SUPPORTED_EXTENSIONS))

    def respond(self, tx: ServerTransaction, response: Response) -> list[Output]:
        """Send ``response`` through its server transaction."""
        return self.run(tx.respond(response))

    def reject(self, tx: ServerTransaction, status: int, reason: str | None = None,
               extra: list[tuple[str, str]] | None = None, to_tag: str | None = None) -> list[Output]:
        """Answer ``tx`` with a final error (MessageRejected for errors other than 401/407/487)."""
        response = self.response(tx.request, status, reason, to_tag or new_tag(), tx.flow)
        for name, value in extra or []:
            response.headers.add(name, value)
        out = self.respond(tx, response)
        if status >= 400 and status not in (401, 407, 487):
            out.append(ev.MessageRejected(tx.flow, status, response.reason))
        return out

    # ------------------------------------------------------------------ transactions

    def new_server_tx(self, request: Request, flow: Flow) -> ServerTransaction:
        """A server transaction for a new request (responses go where Via says, for UDP)."""
        dest = flow
        if not flow.reliable:
            dest = Flow(flow.transport, *request.top_via.response_address(flow.address))
        tx = ServerTransaction(request, dest)
        self.server_tx[tx.key] = tx
        return tx

    def start_client(self, request: Request, flow: Flow, on_response: Handler,
                     on_timeout: Callable[[], list[Output]]) -> list[Output]:
        """Send ``request`` in a new client transaction; its responses and timeout go to the callbacks."""
        tx = ClientTransaction(request, flow)
        self.client_tx[tx.key] = tx
        self._handlers[tx.key] = (on_response, on_timeout)
        return self.run(tx.start())

    def run(self, outputs: Sequence[object]) -> list[Output]:
        """Turn transaction outputs into actions, dispatching TU notices to their owners."""
        result: list[Output] = []
        for item in outputs:
            if isinstance(item, Send | StartTimer | CancelTimer):
                result.append(item)
            elif isinstance(item, Deliver):
                handler = self._handlers.get(item.transaction.key)
                if handler:
                    result += handler[0](item.response)
            elif isinstance(item, TransactionTimeout):
                if isinstance(item.transaction, ClientTransaction):
                    handler = self._handlers.get(item.transaction.key)
                    if handler:
                        result += handler[1]()
                else:
                    result += self._server_timeout(item.transaction)
            elif isinstance(item, Terminated):
                tx = item.transaction
                if isinstance(tx, ClientTransaction):
                    self.client_tx.pop(tx.key, None)
                    self._handlers.pop(tx.key, None)
                else:
                    self.server_tx.pop(tx.key, None)
        return result

    # ------------------------------------------------------------------ dialogs

    def reject_incoming(self, call: Call, status: int = 486, reason: str | None = None) -> list[Output]:
        """Refuse an incoming call with a final error response."""
        if call.state != CallState.INCOMING or not isinstance(call.invite_tx, ServerTransaction):
            return []
        out = self.reject(call.invite_tx, status, reason, to_tag=call.local_tag)
        return out + self.end(call, "rejected", status)

    def end(self, call: Call, reason: str, status: int | None = None, notify: bool = True) -> list[Output]:
        """Forget a call: cancel its timers and (``notify``) report CallEnded."""
        if call.state == CallState.TERMINATED:
            return []
        call.state = CallState.TERMINATED
        self.calls.pop(call.key, None)
        owner = f"call|{call.key}"
        out: list[Output] = [CancelTimer((owner, name)) for name in CALL_TIMERS]
        if notify:
            out.append(ev.CallEnded(call, reason, status))
        return out
