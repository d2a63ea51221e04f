"""The sans-I/O SIP user-agent core: transactions, dialogs, registrar, auth, session timers.

Feed it datagrams/stream frames (:meth:`UserAgent.receive`) and timer expiries
(:meth:`UserAgent.on_timer`); it returns :class:`~.actions.Send`, timer requests and
application events (:mod:`.events`). The application decides on incoming calls by calling
:meth:`UserAgent.answer` / :meth:`~UserAgent.reject` / :meth:`~UserAgent.challenge` after an
:class:`~.events.IncomingCall` event; that is where conference rooms plug in.
``now`` (seconds, any monotonic origin) is passed in wherever time matters.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..rtp.media_description import LocalMedia, MediaPolicy
from . import events as ev
from . import info
from .actions import T1, T2, CancelTimer, Flow, Send, StartTimer, TimerKey
from .authguard import AuthThrottle, AuthThrottlePolicy
from .dialog import Call, CallState, ClientRegistration, new_branch, new_tag
from .digest import (
    AuthResult,
    Credentials,
    DigestServer,
    build_authorization,
    claimed_username,
    pick_challenge,
    redact,
)
from .errors import MessageTooLarge, SipParseError
from .message import (
    MAX_MESSAGE_SIZE,
    Headers,
    IncompleteMessage,
    Request,
    Response,
    find_body,
    parse_message,
)
from .ratelimit import RateLimiter
from .registrar import Binding, Bindings
from .sdp import SdpError, SessionDescription, answer, create_offer
from .sdp import streams_from_answer as negotiate_from_answer
from .transaction import (
    ClientTransaction,
    Deliver,
    ServerTransaction,
    Terminated,
    TransactionTimeout,
    server_key,
)
from .uri import NameAddr, SipUri

log = logging.getLogger(__name__)

Action = Send | StartTimer | CancelTimer
Output = Action | ev.Event

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


@dataclass
class UserAgentConfig:
    """Static settings of a :class:`UserAgent`."""

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


Handler = Callable[[Response], list[Output]]


class UserAgent:
    """Sans-I/O SIP user agent (UAC + UAS + registrar)."""

    def __init__(self, config: UserAgentConfig | None = None) -> None:
        self.config = config or UserAgentConfig()
        self.calls: dict[str, Call] = {}
        self.registrations: dict[str, ClientRegistration] = {}
        self.bindings = Bindings()
        self.digest = DigestServer(
            self.config.realm, self.config.accounts.get, algorithms=self.config.auth_algorithms
        )
        self.limiter = RateLimiter(self.config.rate, self.config.burst)
        # Sources whose INVITEs skip the per-source limit (the emergency trunk's peers); pure predicate.
        self.invite_rate_exempt: Callable[[str], bool] | None = None
        self.auth_throttle = AuthThrottle(self.config.auth_throttle)
        self._server_tx: dict[str, ServerTransaction] = {}
        self._client_tx: dict[str, ClientTransaction] = {}
        self._handlers: dict[str, tuple[Handler, Callable[[], list[Output]]]] = {}
        self._qualify: dict[str, Flow] = {}

    # ------------------------------------------------------------------ helpers

    def _local_port(self, flow: Flow) -> int:
        return self.config.tls_port if flow.transport == "tls" else self.config.port

    def _via(self, flow: Flow, branch: str) -> str:
        return f"SIP/2.0/{flow.transport.upper()} {self.config.host}:{self._local_port(flow)};branch={branch};rport"

    def _contact(self, flow: Flow) -> str:
        transport = "" if flow.transport == "udp" else f";transport={flow.transport}"
        return f"<sip:{self.config.user}@{self.config.host}:{self._local_port(flow)}{transport}>"

    def _response(self, request: Request, status: int, reason: str | None = None,
                  to_tag: str | None = None, flow: Flow | None = None) -> Response:
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

    def _start_client(self, request: Request, flow: Flow, on_response: Handler,
                      on_timeout: Callable[[], list[Output]]) -> list[Output]:
        tx = ClientTransaction(request, flow)
        self._client_tx[tx.key] = tx
        self._handlers[tx.key] = (on_response, on_timeout)
        return self._run(tx.start())

    def _run(self, outputs: Sequence[object]) -> list[Output]:
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
                    self._client_tx.pop(tx.key, None)
                    self._handlers.pop(tx.key, None)
                else:
                    self._server_tx.pop(tx.key, None)
        return result

    def _respond(self, tx: ServerTransaction, response: Response) -> list[Output]:
        return self._run(tx.respond(response))

    def _reject(self, tx: ServerTransaction, status: int, reason: str | None = None,
                extra: list[tuple[str, str]] | None = None, to_tag: str | None = None) -> list[Output]:
        response = self._response(tx.request, status, reason, to_tag or new_tag(), tx.flow)
        for name, value in extra or []:
            response.headers.add(name, value)
        out = self._respond(tx, response)
        if status >= 400 and status not in (401, 407, 487):
            out.append(ev.MessageRejected(tx.flow, status, response.reason))
        return out

    # ------------------------------------------------------------------ input

    def receive(self, data: bytes, flow: Flow, now: float) -> list[Output]:
        """Handle one datagram (UDP) or one framed message (TCP/TLS)."""
        try:
            message = parse_message(data, self.config.max_message_size, stream=flow.reliable)
        except MessageTooLarge as exc:
            log.warning("dropped oversized SIP message from %s: %s", flow.address, exc.reason)
            return [ev.MessageDropped(flow, exc.reason)]
        except IncompleteMessage as exc:
            return self._bad_request(exc, flow)
        except SipParseError as exc:
            return [ev.MessageDropped(flow, exc.reason)]
        try:
            if isinstance(message, Response):
                return self._on_response(message)
            return self._on_request(message, flow, now)
        except SipParseError as exc:
            # A header the parser did not need to validate turned out to be malformed.
            log.info("dropped request from %s: %s", flow.address, exc.reason)
            return [ev.MessageDropped(flow, exc.reason)]

    def _bad_request(self, exc: IncompleteMessage, flow: Flow) -> list[Output]:
        try:
            return self._bad_request_response(exc, flow)
        except SipParseError:
            return [ev.MessageDropped(flow, exc.reason)]

    def _bad_request_response(self, exc: IncompleteMessage, flow: Flow) -> list[Output]:
        partial = exc.partial
        if partial is None or partial.method == "ACK" or not partial.headers.get("Via"):
            return [ev.MessageDropped(flow, exc.reason)]
        if not partial.headers.get("Call-ID"):
            return [ev.MessageDropped(flow, exc.reason)]
        response = self._response(partial, exc.status, exc.reason, new_tag(), flow)
        if exc.status == 416:
            response.reason = REASONS[416]
        dest = flow
        if not flow.reliable:
            try:
                dest = Flow(flow.transport, *partial.top_via.response_address(flow.address))
            except SipParseError:
                pass
        data = response.serialize()
        try:
            parse_message(data)
        except SipParseError:
            # The headers we must echo are themselves broken: the peer could not match a reply.
            log.info("dropped malformed request from %s: %s", flow.address, exc.reason)
            return [ev.MessageDropped(flow, exc.reason)]
        log.info("rejected malformed request from %s: %d %s", flow.address, exc.status, exc.reason)
        return [Send(dest, data), ev.MessageRejected(flow, exc.status, exc.reason)]

    def _on_response(self, response: Response) -> list[Output]:
        branch = response.top_via.branch or ""
        method = response.cseq[1]
        tx = self._client_tx.get(f"c|{branch}|{'INVITE' if method == 'ACK' else method}")
        if tx is None:
            return self._stray_response(response)
        return self._run(tx.on_response(response))

    def _stray_response(self, response: Response) -> list[Output]:
        # A retransmitted 2xx to our INVITE after the transaction ended: ACK it again.
        if 200 <= response.status < 300 and response.cseq[1] == "INVITE":
            call = self.calls.get(f"{response.call_id}|{response.from_.tag}")
            if call is not None and call.state == CallState.CONFIRMED:
                return self._send_ack(call, response.cseq[0], None)
        return []

    def _on_request(self, request: Request, flow: Flow, now: float) -> list[Output]:
        # Retransmissions and non-2xx ACKs go to their server transaction.
        key = server_key(request)
        tx = self._server_tx.get(key)
        if tx is not None:
            return self._run(tx.on_request(request))
        if request.method == "ACK":
            return self._on_ack(request)
        method = request.method
        exempt = method == "INVITE" and self.invite_rate_exempt is not None and self.invite_rate_exempt(flow.host)
        if method in ("INVITE", "REGISTER") and not exempt:
            source = flow.host
            if not self.limiter.allow(f"{method}|{source}", now):
                if self.limiter.should_reply(f"{method}|{source}", now):
                    tx = self._new_server_tx(request, flow)
                    out = self._reject(tx, 503, "Rate limit exceeded", [("Retry-After", "5")])
                    return out
                return [ev.MessageDropped(flow, "rate limited")]
        tx = self._new_server_tx(request, flow)
        if method == "CANCEL":
            return self._on_cancel(tx)
        if method not in ALLOWED_METHODS:
            if method in KNOWN_METHODS:
                return self._reject(tx, 405, extra=[("Allow", ", ".join(ALLOWED_METHODS))])
            return self._reject(tx, 501, extra=[("Allow", ", ".join(ALLOWED_METHODS))])
        unsupported = [
            tag for tag in request.headers.get_all("Require") if tag.lower() not in SUPPORTED_EXTENSIONS
        ]
        if unsupported and method not in ("CANCEL", "ACK"):
            return self._reject(tx, 420, extra=[("Unsupported", ", ".join(unsupported))])
        to_tag = request.to.tag
        if to_tag and method != "OPTIONS":
            call = self.calls.get(f"{request.call_id}|{to_tag}")
            if call is None or call.state == CallState.TERMINATED:
                return self._reject(tx, 481, to_tag=to_tag)
            return self._in_dialog(call, tx, now)
        if method == "INVITE":
            return self._on_invite(tx, now, flow)
        if method == "OPTIONS":
            return self._on_options(tx)
        if method == "REGISTER":
            return self._on_register(tx, now)
        return self._reject(tx, 481)  # BYE/INFO/UPDATE outside a dialog

    def _new_server_tx(self, request: Request, flow: Flow) -> ServerTransaction:
        dest = flow
        if not flow.reliable:
            dest = Flow(flow.transport, *request.top_via.response_address(flow.address))
        tx = ServerTransaction(request, dest)
        self._server_tx[tx.key] = tx
        return tx

    # ------------------------------------------------------------------ OPTIONS / REGISTER

    def _capabilities(self, response: Response) -> None:
        response.headers.add("Allow", ", ".join(ALLOWED_METHODS))
        response.headers.add("Accept", "application/sdp, " + ", ".join(info.INFO_TYPES))
        response.headers.add("Supported", ", ".join(SUPPORTED_EXTENSIONS))

    def _on_options(self, tx: ServerTransaction) -> list[Output]:
        response = self._response(tx.request, 200, to_tag=new_tag(), flow=tx.flow)
        self._capabilities(response)
        return self._respond(tx, response)

    def _throttled(self, tx: ServerTransaction, header: str | None, now: float) -> list[Output] | None:
        """403 with Retry-After when this attempt's source/username is blocked (see :mod:`.authguard`).

        Checked before the password, so a blocked guesser is refused even with the right one.
        """
        if not header:
            return None
        verdict = self.auth_throttle.check(tx.flow.host, claimed_username(header), now)
        if verdict.allowed:
            return None
        retry = max(1, int(verdict.retry_after + 0.999))
        return self._reject(tx, 403, "Too many failed authentications", [("Retry-After", str(retry))])

    def _auth_outcome(self, tx: ServerTransaction, result: AuthResult, now: float) -> list[Output]:
        """Count a verified answer in the throttle; AuthThrottled events for blocks it starts."""
        source = tx.flow.host
        if result.ok and result.username is not None:
            self.auth_throttle.success(source, result.username, now)
            return []
        if not result.guessed:
            return []
        log.info("digest authentication failed for %r from %s: %s",
                 result.username, tx.flow.address, result.reason)
        out: list[Output] = []
        for engaged in self.auth_throttle.failure(source, result.username, now):
            log.warning("SIP digest failures: %s %r from %s blocked for %.0f s after %d failures",
                        engaged.scope, engaged.account, source, engaged.blocked_for, engaged.failures)
            out.append(ev.AuthThrottled(tx.flow, tx.request.method, engaged.account, engaged.scope,
                                        engaged.failures, engaged.blocked_for))
        return out

    def _authenticate(self, tx: ServerTransaction, now: float) -> tuple[str | None, list[Output]]:
        """Check Authorization; on failure return the 401 (or the throttle's 403) to send."""
        header = tx.request.headers.get("Authorization")
        refused = self._throttled(tx, header, now)
        if refused is not None:
            return None, refused
        result = self.digest.verify(header, tx.request.method, now)
        notes = self._auth_outcome(tx, result, now)
        if result.ok:
            return result.username, notes
        if header and not result.guessed:
            log.info("digest authentication failed for %r from %s: %s",
                     result.username, tx.flow.address, result.reason)
        extra = [("WWW-Authenticate", c) for c in self.digest.challenges(now, result.stale)]
        return None, notes + self._reject(tx, 401, extra=extra)

    def _on_register(self, tx: ServerTransaction, now: float) -> list[Output]:
        request = tx.request
        aor_uri = request.to.uri
        aor = f"{aor_uri.user}@{aor_uri.host}" if aor_uri.user else aor_uri.host
        if self.config.require_register_auth:
            user, out = self._authenticate(tx, now)
            if user is None:
                return out
            if user != aor_uri.user:
                return self._reject(tx, 403, "Not allowed to register this address")
        header_expires = request.headers.get("Expires")
        default = int(header_expires) if header_expires and header_expires.isdigit() else self.config.default_expires
        contacts = request.contacts
        if any(c.wildcard for c in contacts):
            if len(contacts) != 1 or default != 0:
                return self._reject(tx, 400, "Wildcard Contact requires Expires: 0")
            self.bindings.remove_all(aor)
        for contact in contacts:
            if contact.wildcard:
                continue
            expires_text = contact.params.get("expires")
            expires = int(expires_text) if expires_text and expires_text.isdigit() else default
            if 0 < expires < self.config.min_expires:
                return self._reject(tx, 423, extra=[("Min-Expires", str(self.config.min_expires))])
            expires = min(expires, self.config.max_expires)
            binding = Binding(str(contact.uri), 0.0, request.call_id, request.cseq[0], tx.flow)
            self.bindings.update(aor, binding, expires, now)
        response = self._response(request, 200, to_tag=new_tag(), flow=tx.flow)
        current = self.bindings.lookup(aor, now)
        for binding in current:
            response.headers.add("Contact", f"<{binding.contact}>;expires={int(binding.expires_at - now)}")
        out = self._respond(tx, response)
        if contacts:
            out.append(ev.RegistrationChanged(aor, tuple(b.contact for b in current)))
        return out

    # ------------------------------------------------------------------ INVITE (UAS)

    def _on_invite(self, tx: ServerTransaction, now: float, source: Flow | None = None) -> list[Output]:
        request = tx.request
        authorization = request.headers.get("Authorization")
        refused = self._throttled(tx, authorization, now)
        if refused is not None:
            return refused
        try:
            contact = request.contacts[0]
        except (SipParseError, IndexError):
            return self._reject(tx, 400, "Missing or bad Contact")
        offer: SessionDescription | None = None
        try:
            body = find_body(request, "application/sdp") if request.body else None
        except SipParseError as exc:
            return self._reject(tx, 400, exc.reason)
        if request.body and body is None:
            return self._reject(tx, 415, extra=[("Accept", "application/sdp")])
        if body:
            try:
                offer = SessionDescription.parse(body)
            except SdpError as exc:
                return self._reject(tx, 488, exc.reason)
        se_out = self._check_session_timer(tx)
        if se_out:
            return se_out
        call = Call(
            call_id=request.call_id, local_tag=new_tag(), outgoing=False, flow=tx.flow,
            local_uri=request.headers.get("To") or "", remote_uri=request.headers.get("From") or "",
            remote_target=str(contact.uri), route_set=request.headers.get_all("Record-Route"),
            remote_cseq=request.cseq[0], invite=request, invite_tx=tx, offer=offer,
            late_offer=offer is None, source=source or tx.flow,
        )
        call.local_uri = f"{call.local_uri};tag={call.local_tag}"
        call.peer_allows_update = "UPDATE" in [m.upper() for m in request.headers.get_all("Allow")]
        # A retried INVITE after our 401 carries credentials: remember who it is.
        auth_notes: list[Output] = []
        if authorization:
            result = self.digest.verify(authorization, "INVITE", now)
            auth_notes = self._auth_outcome(tx, result, now)
            if result.ok:
                call.authenticated_user = result.username
        self.calls[call.key] = call
        trying = self._response(request, 100, flow=tx.flow)
        out = auth_notes + self._respond(tx, trying)
        timeout = self.config.answer_timeout
        expires = request.headers.get("Expires")
        if expires and expires.isdigit():
            timeout = min(timeout, float(expires))
        out.append(StartTimer((f"call|{call.key}", "answer"), timeout))
        out.append(ev.IncomingCall(call))
        return out

    def _check_session_timer(self, tx: ServerTransaction) -> list[Output]:
        value = tx.request.headers.get("Session-Expires")
        if value is None:
            return []
        interval = value.split(";")[0].strip()
        if not interval.isdigit():
            return self._reject(tx, 400, "Bad Session-Expires")
        if int(interval) < self.config.min_se:
            return self._reject(tx, 422, extra=[("Min-SE", str(self.config.min_se))])
        return []

    def ring(self, call: Call) -> list[Output]:
        """Send 180 Ringing for an incoming call."""
        if call.state != CallState.INCOMING or not isinstance(call.invite_tx, ServerTransaction):
            return []
        response = self._response(call.invite_tx.request, 180, to_tag=call.local_tag, flow=call.flow)
        response.headers.add("Contact", self._contact(call.flow))
        return self._respond(call.invite_tx, response)

    def challenge(self, call: Call, now: float) -> list[Output]:
        """Answer an incoming INVITE with 401 (the caller retries with credentials)."""
        if not isinstance(call.invite_tx, ServerTransaction):
            return []
        extra = [("WWW-Authenticate", c) for c in self.digest.challenges(now)]
        out = self._reject(call.invite_tx, 401, extra=extra, to_tag=call.local_tag)
        return out + self._end(call, "challenged", 401, notify=False)

    def reject(self, call: Call, status: int = 486, reason: str | None = None) -> list[Output]:
        """Refuse an incoming call with a final error response."""
        if call.state != CallState.INCOMING or not isinstance(call.invite_tx, ServerTransaction):
            return []
        out = self._reject(call.invite_tx, status, reason, to_tag=call.local_tag)
        return out + self._end(call, "rejected", status)

    def answer(self, call: Call, local: LocalMedia, now: float = 0.0) -> list[Output]:
        """Accept an incoming call: negotiate SDP (or offer it for a late-offer INVITE), send 200."""
        if call.state != CallState.INCOMING or not isinstance(call.invite_tx, ServerTransaction):
            return []
        call.local_media = local
        session_id = secrets.randbelow(2**31)
        if call.offer is not None:
            try:
                sdp, streams = answer(call.offer, self.config.policy, local, session_id, call.sdp_version)
            except SdpError as exc:
                return self.reject(call, 488, exc.reason)
            call.streams = streams
        else:
            sdp = create_offer(self.config.policy, local, session_id, call.sdp_version)
        call.local_sdp = sdp
        response = self._ok_with_sdp(call, call.invite_tx.request, sdp)
        self._apply_session_timer_answer(call, call.invite_tx.request, response)
        call.final_response = response
        call.state = CallState.CONNECTING
        out = self._respond(call.invite_tx, response)
        out.append(CancelTimer((f"call|{call.key}", "answer")))
        if not call.flow.reliable:
            out.append(StartTimer((f"call|{call.key}", "2xx"), T1))
        out.append(StartTimer((f"call|{call.key}", "ack"), 64 * T1))
        return out

    def _ok_with_sdp(self, call: Call, request: Request, sdp: SessionDescription | None) -> Response:
        response = self._response(request, 200, to_tag=call.local_tag, flow=call.flow)
        for rr in request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", rr)
        response.headers.add("Contact", self._contact(call.flow))
        self._capabilities(response)
        if sdp is not None:
            response.headers.add("Content-Type", "application/sdp")
            response.body = sdp.serialize()
        return response

    def _apply_session_timer_answer(self, call: Call, request: Request, response: Response) -> None:
        """RFC 4028 §9: pick the interval and refresher and put them in the 2xx."""
        supported = [t.lower() for t in request.headers.get_all("Supported")]
        value = request.headers.get("Session-Expires")
        if value is None and "timer" not in supported:
            return
        if value is not None:
            supported.append("timer")  # whoever sends Session-Expires implements RFC 4028
        interval = self.config.session_expires
        refresher = "uas"
        if value is not None:
            parts = value.split(";")
            interval = int(parts[0].strip())
            for param in parts[1:]:
                key, _, val = param.strip().partition("=")
                if key.lower() == "refresher" and val.strip().lower() in ("uac", "uas"):
                    refresher = val.strip().lower()
            if "refresher=" not in value.replace(" ", "") and "timer" in supported:
                refresher = "uac"
        if "timer" not in supported:
            refresher = "uas"  # a peer without the extension cannot refresh
        call.session_expires = interval
        # ``uac``/``uas`` are relative to the transaction that set them (the INVITE we received).
        call.we_refresh = refresher == "uas"
        response.headers.add("Session-Expires", f"{interval};refresher={refresher}")
        if "timer" in supported:
            response.headers.add("Require", "timer")

    def _session_timer_actions(self, call: Call) -> list[Output]:
        owner = f"call|{call.key}"
        if not call.session_expires:
            return []
        if call.we_refresh:
            return [CancelTimer((owner, "expire")), StartTimer((owner, "refresh"), call.session_expires / 2)]
        grace = min(32.0, call.session_expires / 3)
        return [CancelTimer((owner, "refresh")), StartTimer((owner, "expire"), call.session_expires - grace)]

    def _on_ack(self, request: Request) -> list[Output]:
        call = self.calls.get(f"{request.call_id}|{request.to.tag}")
        if call is None:
            return []
        owner = f"call|{call.key}"
        out: list[Output] = [CancelTimer((owner, "2xx")), CancelTimer((owner, "ack"))]
        if call.state == CallState.CONNECTING:
            call.state = CallState.CONFIRMED
            if call.late_offer:
                body = find_body(request, "application/sdp") if request.body else None
                if not body or call.local_sdp is None:
                    return out + self.hangup(call, "no SDP answer in ACK")
                try:
                    call.streams = negotiate_from_answer(call.local_sdp, SessionDescription.parse(body))
                except SdpError:
                    return out + self.hangup(call, "bad SDP answer in ACK")
            out += self._session_timer_actions(call)
            out.append(ev.CallEstablished(call))
        elif call.reinvite_pending:
            call.reinvite_pending = False
        return out

    def _on_cancel(self, tx: ServerTransaction) -> list[Output]:
        request = tx.request
        invite_key = server_key(Request(request.headers, b"", "INVITE", request.uri))
        invite_tx = self._server_tx.get(invite_key)
        if invite_tx is None:
            return self._reject(tx, 481)
        out = self._respond(tx, self._response(request, 200, to_tag=new_tag(), flow=tx.flow))
        call = next((c for c in self.calls.values() if c.invite_tx is invite_tx), None)
        if call is not None and call.state == CallState.INCOMING:
            out += self._reject(invite_tx, 487, to_tag=call.local_tag)
            out += self._end(call, "cancelled", 487)
        return out

    # ------------------------------------------------------------------ in-dialog requests

    def _in_dialog(self, call: Call, tx: ServerTransaction, now: float) -> list[Output]:
        request = tx.request
        cseq = request.cseq[0]
        if call.remote_cseq is not None and cseq <= call.remote_cseq and request.method != "ACK":
            return self._reject(tx, 500, "CSeq out of order", to_tag=call.local_tag)
        call.remote_cseq = cseq
        method = request.method
        if method == "BYE":
            out = self._respond(tx, self._response(request, 200, to_tag=call.local_tag, flow=tx.flow))
            if isinstance(call.invite_tx, ServerTransaction) and call.state == CallState.INCOMING:
                out += self._reject(call.invite_tx, 487, to_tag=call.local_tag)
            return out + self._end(call, "remote hangup")
        if method in ("INVITE", "UPDATE"):
            return self._on_reoffer(call, tx)
        if method == "INFO":
            return self._on_info(call, tx)
        if method == "OPTIONS":
            return self._on_options(tx)
        return self._reject(tx, 405, extra=[("Allow", ", ".join(ALLOWED_METHODS))], to_tag=call.local_tag)

    def _on_reoffer(self, call: Call, tx: ServerTransaction) -> list[Output]:
        request = tx.request
        if call.state not in (CallState.CONFIRMED, CallState.CONNECTING) and request.method == "INVITE":
            return self._reject(tx, 491, to_tag=call.local_tag)
        if request.method == "INVITE" and (call.reinvite_pending or call.state == CallState.CONNECTING):
            return self._reject(tx, 491, extra=[("Retry-After", "1")], to_tag=call.local_tag)
        se = self._check_session_timer(tx)
        if se:
            return se
        body = find_body(request, "application/sdp") if request.body else None
        sdp: SessionDescription | None = None
        updated = False
        if body:
            if call.local_media is None:
                return self._reject(tx, 488, to_tag=call.local_tag)
            try:
                offer = SessionDescription.parse(body)
                call.sdp_version += 1
                sdp, streams = answer(offer, self.config.policy, call.local_media,
                                      _session_id(call.local_sdp), call.sdp_version)
            except SdpError as exc:
                return self._reject(tx, 488, exc.reason, to_tag=call.local_tag)
            updated = streams != call.streams
            call.streams = streams
            call.local_sdp = sdp
        elif request.method == "INVITE":
            sdp = call.local_sdp  # offer-less re-INVITE: we offer our current session again
        response = self._ok_with_sdp(call, request, sdp)
        self._apply_session_timer_answer(call, request, response)
        if contact := request.headers.get("Contact"):
            try:
                call.remote_target = str(NameAddr.parse(contact).uri)
            except SipParseError:
                pass
        out = self._respond(tx, response)
        if request.method == "INVITE":
            call.reinvite_pending = True
        out += self._session_timer_actions(call)
        if updated:
            out.append(ev.MediaUpdated(call))
        return out

    def _on_info(self, call: Call, tx: ServerTransaction) -> list[Output]:
        request = tx.request
        ctype = request.content_type
        event: ev.Event | None = None
        try:
            if not request.body:
                pass
            elif ctype == info.MEDIA_CONTROL:
                if info.is_fast_update(request.body):
                    event = ev.PictureFastUpdate(call)
            elif ctype in (info.DTMF_RELAY, info.DTMF):
                digit, duration = info.parse_dtmf(ctype, request.body)
                event = ev.DtmfReceived(call, digit, duration)
            else:
                return self._reject(tx, 415, extra=[("Accept", ", ".join(info.INFO_TYPES))],
                                    to_tag=call.local_tag)
        except SipParseError as exc:
            return self._reject(tx, exc.status, exc.reason, to_tag=call.local_tag)
        out = self._respond(tx, self._response(request, 200, to_tag=call.local_tag, flow=tx.flow))
        return out + ([event] if event else [])

    def _server_timeout(self, tx: ServerTransaction) -> list[Output]:
        call = next((c for c in self.calls.values() if c.invite_tx is tx), None)
        if call is not None and call.state != CallState.TERMINATED:
            return self._end(call, "no ACK")
        return []

    # ------------------------------------------------------------------ UAC: requests we send

    def _new_request(self, call: Call, method: str, body: bytes = b"", content_type: str | None = None,
                     cseq: int | None = None, branch: str | None = None) -> Request:
        headers = Headers()
        headers.add("Via", self._via(call.flow, branch or new_branch()))
        for route in call.route_set if call.outgoing else list(reversed(call.route_set)):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", call.local_uri)
        to = call.remote_uri
        if call.remote_tag and ";tag=" not in to:
            to = f"{to};tag={call.remote_tag}"
        headers.add("To", to)
        headers.add("Call-ID", call.call_id)
        if cseq is None:
            call.local_cseq += 1
            cseq = call.local_cseq
        headers.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "UPDATE"):
            headers.add("Contact", self._contact(call.flow))
            headers.add("Allow", ", ".join(ALLOWED_METHODS))
            headers.add("Supported", ", ".join(SUPPORTED_EXTENSIONS))
        headers.add("User-Agent", self.config.user_agent)
        if content_type:
            headers.add("Content-Type", content_type)
        return Request(headers, body, method, call.remote_target)

    def _target_flow(self, call: Call) -> Flow:
        if call.flow.reliable:
            return call.flow
        try:
            uri = SipUri.parse(call.route_set[0] if call.route_set else call.remote_target)
        except SipParseError:
            return call.flow
        if call.route_set:
            try:
                uri = NameAddr.parse(call.route_set[0 if call.outgoing else -1]).uri
            except SipParseError:
                return call.flow
        host, port = uri.address()
        return Flow(call.flow.transport, host, port)

    def invite(self, target: str, local: LocalMedia | None, flow: Flow | None = None,
               credentials: Credentials | None = None, from_user: str | None = None,
               display: str | None = None) -> tuple[Call, list[Output]]:
        """Call ``target`` (a SIP URI). ``local=None`` sends a late-offer INVITE (no SDP)."""
        uri = SipUri.parse(target)
        if flow is None:
            host, port = uri.address()
            flow = Flow(uri.transport, host, port)
        user = from_user or self.config.user
        tag = new_tag()
        name = f'"{display}" ' if display else ""
        call = Call(
            call_id=secrets.token_hex(12), local_tag=tag, outgoing=True, flow=flow,
            local_uri=f"{name}<sip:{user}@{self.config.host}>;tag={tag}", remote_uri=f"<{target}>",
            remote_target=target, state=CallState.CALLING, local_media=local, credentials=credentials,
            local_cseq=0,
        )
        self.calls[call.key] = call
        return call, self._send_invite(call)

    def _send_invite(self, call: Call) -> list[Output]:
        body = b""
        if call.local_media is not None:
            if call.local_sdp is None:
                call.local_sdp = create_offer(self.config.policy, call.local_media,
                                              secrets.randbelow(2**31), call.sdp_version)
            body = call.local_sdp.serialize()
        request = self._new_request(call, "INVITE", body, "application/sdp" if body else None)
        request.headers.add("Session-Expires", str(self.config.session_expires))
        if call.auth_header is not None:
            request.headers.add(*call.auth_header)
        call.invite = request

        def on_response(response: Response) -> list[Output]:
            return self._on_invite_response(call, response)

        def on_timeout() -> list[Output]:
            return self._end(call, "no answer", 408) if call.state != CallState.CONFIRMED else []

        out = self._start_client(request, self._target_flow(call) if call.remote_tag else call.flow,
                                 on_response, on_timeout)
        call.invite_tx = self._client_tx.get(f"c|{request.top_via.branch}|INVITE")
        out.append(StartTimer((f"call|{call.key}", "ring"), self.config.ring_timeout))
        return out

    def _on_invite_response(self, call: Call, response: Response) -> list[Output]:
        status = response.status
        owner = f"call|{call.key}"
        if call.state == CallState.TERMINATED and not 200 <= status < 300:
            return []
        if status < 200:
            if status > 100 and response.to.tag:
                call.remote_tag = response.to.tag
                call.state = CallState.EARLY
            out: list[Output] = [ev.CallProgress(call, status)]
            if call.cancel_requested:
                out += self._send_cancel(call)  # a hangup that came before any response
            return out
        if status < 300:
            return self._on_invite_2xx(call, response)
        out = [CancelTimer((owner, "ring"))]
        if status in (401, 407) and call.credentials and call.auth_attempts < 2 and not call.cancel_requested:
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            challenge = pick_challenge(response.headers.get_all(header))
            if challenge:
                call.auth_attempts += 1
                auth = build_authorization(challenge, "INVITE", call.remote_target, call.credentials)
                call.auth_header = ("Authorization" if status == 401 else "Proxy-Authorization", auth)
                return out + self._send_invite(call)
        if call.reinvite_pending:
            call.reinvite_pending = False
            if status == 491:
                return out + [StartTimer((owner, "retry-reinvite"), 2.1 + secrets.randbelow(2000) / 1000)]
            if status in (408, 481):
                return out + self.hangup(call, f"re-INVITE failed with {status}")
            return out
        return out + self._end(call, "rejected" if not call.cancel_requested else "cancelled", status)

    def _on_invite_2xx(self, call: Call, response: Response) -> list[Output]:
        owner = f"call|{call.key}"
        first = call.state in (CallState.CALLING, CallState.EARLY)
        out: list[Output] = [CancelTimer((owner, "ring"))]
        if first:
            call.remote_tag = response.to.tag
            try:
                call.remote_target = str(response.contacts[0].uri)
            except (SipParseError, IndexError):
                pass
            call.route_set = response.headers.get_all("Record-Route")
            call.remote_cseq = None
            call.peer_allows_update = "UPDATE" in [m.upper() for m in response.headers.get_all("Allow")]
        if call.state == CallState.TERMINATED:
            return self._send_ack(call, response.cseq[0], None) + self._send_bye(call)
        ack_body: SessionDescription | None = None
        body = find_body(response, "application/sdp") if response.body else None
        we_offered = call.invite is not None and bool(call.invite.body)
        if body and (first or call.reinvite_pending):
            try:
                remote = SessionDescription.parse(body)
                if not we_offered and call.local_media is not None:
                    # We sent no offer (late offer): the 2xx carries the offer, the ACK the answer.
                    call.sdp_version += 1
                    ack_body, call.streams = answer(remote, self.config.policy, call.local_media,
                                                    _session_id(call.local_sdp), call.sdp_version)
                    call.local_sdp = ack_body
                elif call.local_sdp is not None:
                    new_streams = negotiate_from_answer(call.local_sdp, remote)
                    if call.reinvite_pending and new_streams != call.streams:
                        out.append(ev.MediaUpdated(call))
                    call.streams = new_streams
            except SdpError:
                out += self._send_ack(call, response.cseq[0], None)
                return out + self.hangup(call, "bad SDP in 2xx")
        out += self._send_ack(call, response.cseq[0], ack_body)
        se = response.headers.get("Session-Expires")
        if se:
            interval = se.split(";")[0].strip()
            if interval.isdigit():
                call.session_expires = int(interval)
                call.we_refresh = "refresher=uas" not in se.replace(" ", "").lower()
        if call.reinvite_pending:
            call.reinvite_pending = False
            return out + self._session_timer_actions(call)
        if first:
            call.state = CallState.CONFIRMED
            if call.cancel_requested:
                return out + self._send_bye(call)
            out += self._session_timer_actions(call)
            out.append(ev.CallEstablished(call))
        return out

    def _send_ack(self, call: Call, cseq: int, sdp: SessionDescription | None) -> list[Output]:
        body = sdp.serialize() if sdp else b""
        request = self._new_request(call, "ACK", body, "application/sdp" if body else None, cseq=cseq)
        call.user_data["last_ack"] = request
        return [Send(self._target_flow(call), request.serialize())]

    def _send_cancel(self, call: Call) -> list[Output]:
        if call.invite is None or call.user_data.get("cancel_sent"):
            return []
        call.user_data["cancel_sent"] = True
        invite = call.invite
        headers = Headers()
        headers.add("Via", invite.headers.get_all("Via")[0])
        for route in invite.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", invite.headers.get("From") or "")
        headers.add("To", invite.headers.get("To") or "")
        headers.add("Call-ID", invite.call_id)
        headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
        cancel = Request(headers, b"", "CANCEL", invite.uri)

        def done(_: Response) -> list[Output]:
            return []

        return self._start_client(cancel, call.flow, done, lambda: self._end(call, "cancel timed out"))

    def _send_bye(self, call: Call) -> list[Output]:
        request = self._new_request(call, "BYE")

        def done(_: Response) -> list[Output]:
            return []

        out = self._start_client(request, self._target_flow(call), done, lambda: [])
        return out + self._end(call, str(call.user_data.get("end_reason", "local hangup")))

    def hangup(self, call: Call, reason: str = "local hangup") -> list[Output]:
        """End a call: CANCEL if not answered, BYE if established, 480/487 if incoming."""
        call.user_data["end_reason"] = reason
        if call.state == CallState.INCOMING:
            return self.reject(call, 480, "Temporarily Unavailable")
        if call.state in (CallState.CALLING, CallState.EARLY):
            call.cancel_requested = True
            if call.state == CallState.EARLY or (
                isinstance(call.invite_tx, ClientTransaction) and call.invite_tx.last_response is not None
            ):
                return self._send_cancel(call)
            return []
        if call.state in (CallState.CONNECTING, CallState.CONFIRMED):
            return self._send_bye(call)
        return []

    def reinvite(self, call: Call, direction: str = "sendrecv") -> list[Output]:
        """Send a re-INVITE with our SDP (``direction='sendonly'`` puts the peer on hold)."""
        if call.state != CallState.CONFIRMED or call.reinvite_pending or call.local_media is None:
            return []
        call.sdp_version += 1
        session_id = _session_id(call.local_sdp)
        sdp = create_offer(self.config.policy, call.local_media, session_id, call.sdp_version, direction)
        call.local_sdp = sdp
        call.reinvite_pending = True
        request = self._new_request(call, "INVITE", sdp.serialize(), "application/sdp")
        if call.session_expires:
            request.headers.add("Session-Expires", f"{call.session_expires};refresher=uac")
        call.invite = request

        def on_response(response: Response) -> list[Output]:
            return self._on_invite_response(call, response)

        def on_timeout() -> list[Output]:
            return self.hangup(call, "re-INVITE timed out")

        return self._start_client(request, self._target_flow(call), on_response, on_timeout)

    def _refresh(self, call: Call) -> list[Output]:
        """Session refresh (RFC 4028): UPDATE without SDP when allowed, else a re-INVITE."""
        if call.state != CallState.CONFIRMED:
            return []
        if not call.peer_allows_update:
            if call.reinvite_pending or call.local_sdp is None:
                return [StartTimer((f"call|{call.key}", "refresh"), 2.0)]
            call.reinvite_pending = True
            call.sdp_version += 1
            call.local_sdp.origin = _bump_origin(call.local_sdp.origin, call.sdp_version)
            request = self._new_request(call, "INVITE", call.local_sdp.serialize(), "application/sdp")
            request.headers.add("Session-Expires", f"{call.session_expires};refresher=uac")
            call.invite = request
            return self._start_client(
                request, self._target_flow(call), lambda r: self._on_invite_response(call, r),
                lambda: self.hangup(call, "session refresh timed out"),
            )
        request = self._new_request(call, "UPDATE")
        request.headers.add("Session-Expires", f"{call.session_expires};refresher=uac")

        def on_response(response: Response) -> list[Output]:
            if 200 <= response.status < 300:
                return self._session_timer_actions(call)
            if response.status in (408, 481):
                return self.hangup(call, "session refresh failed")
            return []

        return self._start_client(request, self._target_flow(call), on_response,
                                  lambda: self.hangup(call, "session refresh timed out"))

    def send_info(self, call: Call, content_type: str, body: bytes) -> list[Output]:
        """Send an INFO in the dialog (picture_fast_update, DTMF)."""
        if call.state != CallState.CONFIRMED:
            return []
        request = self._new_request(call, "INFO", body, content_type)
        return self._start_client(request, self._target_flow(call), lambda r: [], lambda: [])

    def request_fast_update(self, call: Call) -> list[Output]:
        """Ask the peer for a key frame by SIP INFO."""
        return self.send_info(call, info.MEDIA_CONTROL, info.FAST_UPDATE_XML)

    def send_dtmf_info(self, call: Call, digit: str, duration_ms: int = 160) -> list[Output]:
        """Send a DTMF digit by SIP INFO (application/dtmf-relay)."""
        return self.send_info(call, info.DTMF_RELAY, info.dtmf_relay_body(digit, duration_ms))

    def _end(self, call: Call, reason: str, status: int | None = None, notify: bool = True) -> list[Output]:
        if call.state == CallState.TERMINATED:
            return []
        call.state = CallState.TERMINATED
        self.calls.pop(call.key, None)
        owner = f"call|{call.key}"
        out: list[Output] = [
            CancelTimer((owner, name))
            for name in ("answer", "2xx", "ack", "ring", "refresh", "expire", "retry-reinvite")
        ]
        if notify:
            out.append(ev.CallEnded(call, reason, status))
        return out

    # ------------------------------------------------------------------ registration (client)

    def register(self, registrar: str, aor: str, credentials: Credentials | None = None,
                 expires: int = 600, flow: Flow | None = None) -> tuple[ClientRegistration, list[Output]]:
        """Register ``aor`` (``sip:user@domain``) with ``registrar`` and keep refreshing it."""
        uri = SipUri.parse(registrar)
        if flow is None:
            host, port = uri.address()
            flow = Flow(uri.transport, host, port)
        reg = ClientRegistration(registrar, aor, credentials, expires, flow)
        self.registrations[reg.key] = reg
        return reg, self._send_register(reg, None)

    def unregister(self, reg: ClientRegistration) -> list[Output]:
        """Remove our binding (Expires: 0) and stop refreshing."""
        reg.stopping = True
        return [CancelTimer((reg.key, "refresh"))] + self._send_register(reg, None)

    def _send_register(self, reg: ClientRegistration, authorization: tuple[str, str] | None) -> list[Output]:
        reg.cseq += 1
        headers = Headers()
        headers.add("Via", self._via(reg.flow, new_branch()))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{reg.aor}>;tag={reg.tag}")
        headers.add("To", f"<{reg.aor}>")
        headers.add("Call-ID", reg.call_id)
        headers.add("CSeq", f"{reg.cseq} REGISTER")
        headers.add("Contact", self._contact(reg.flow))
        headers.add("Expires", "0" if reg.stopping else str(reg.expires))
        headers.add("User-Agent", self.config.user_agent)
        if authorization:
            headers.add(*authorization)
        request = Request(headers, b"", "REGISTER", reg.registrar)

        def on_response(response: Response) -> list[Output]:
            if response.status < 200:
                return []
            if response.status in (401, 407) and reg.credentials and reg.auth_attempts < 2:
                header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
                challenge = pick_challenge(response.headers.get_all(header))
                if challenge:
                    reg.auth_attempts += 1
                    value = build_authorization(challenge, "REGISTER", reg.registrar, reg.credentials)
                    name = "Authorization" if response.status == 401 else "Proxy-Authorization"
                    return self._send_register(reg, (name, value))
            reg.auth_attempts = 0
            if 200 <= response.status < 300 and not reg.stopping:
                reg.registered = True
                granted = reg.expires
                for contact in response.headers.get_all("Contact"):
                    try:
                        value_text = NameAddr.parse(contact).params.get("expires")
                    except SipParseError:
                        continue
                    if value_text and value_text.isdigit():
                        granted = int(value_text)
                refresh = max(granted * 0.5, min(granted, 5.0))
                return [StartTimer((reg.key, "refresh"), refresh),
                        ev.ClientRegistrationState(reg, True, response.status)]
            reg.registered = False
            self.registrations.pop(reg.key, None)
            return [ev.ClientRegistrationState(reg, False, response.status)]

        def on_timeout() -> list[Output]:
            reg.registered = False
            return [StartTimer((reg.key, "refresh"), 30.0), ev.ClientRegistrationState(reg, False, None)]

        return self._start_client(request, reg.flow, on_response, on_timeout)

    # ------------------------------------------------------------------ OPTIONS qualify

    def options(self, target: str, flow: Flow | None = None, interval: float | None = None) -> list[Output]:
        """Send OPTIONS to ``target``; with ``interval`` keep qualifying periodically."""
        uri = SipUri.parse(target)
        if flow is None:
            host, port = uri.address()
            flow = Flow(uri.transport, host, port)
        headers = Headers()
        headers.add("Via", self._via(flow, new_branch()))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:{self.config.user}@{self.config.host}>;tag={new_tag()}")
        headers.add("To", f"<{target}>")
        headers.add("Call-ID", secrets.token_hex(10))
        headers.add("CSeq", "1 OPTIONS")
        headers.add("Accept", "application/sdp")
        request = Request(headers, b"", "OPTIONS", target)
        out: list[Output] = []
        if interval:
            self._qualify[target] = flow
            out.append(StartTimer((f"opt|{target}", str(interval)), interval))

        def on_response(response: Response) -> list[Output]:
            if response.status < 200:
                return []
            return [ev.QualifyResult(target, True, response.status)]

        return out + self._start_client(request, flow, on_response,
                                        lambda: [ev.QualifyResult(target, False, None)])

    def stop_qualify(self, target: str) -> list[Output]:
        """Stop periodic OPTIONS to ``target``."""
        self._qualify.pop(target, None)
        return []

    # ------------------------------------------------------------------ timers

    def on_timer(self, key: TimerKey, now: float = 0.0) -> list[Output]:
        """A timer requested by a :class:`StartTimer` expired."""
        owner, name = key
        if owner.startswith(("c|", "s|", "s2543|")):
            tx: ClientTransaction | ServerTransaction | None = self._client_tx.get(owner) or self._server_tx.get(owner)
            return self._run(tx.on_timer(name)) if tx else []
        if owner.startswith("call|"):
            call = self.calls.get(owner[5:])
            return self._call_timer(call, name) if call else []
        if owner.startswith("reg|"):
            reg = self.registrations.get(owner)
            if reg and name == "refresh" and not reg.stopping:
                return self._send_register(reg, None)
            return []
        if owner.startswith("opt|"):
            target = owner[4:]
            flow = self._qualify.get(target)
            if flow is not None:
                return self.options(target, flow, float(name))
        return []

    def _call_timer(self, call: Call, name: str) -> list[Output]:
        owner = f"call|{call.key}"
        if name == "answer" and call.state == CallState.INCOMING:
            return self.reject(call, 480, "No answer")
        if name == "2xx" and call.state == CallState.CONNECTING and call.final_response is not None:
            call.retransmit_interval = min(call.retransmit_interval * 2, T2)
            out: list[Output] = [Send(call.flow, call.final_response.serialize())]
            return out + [StartTimer((owner, "2xx"), call.retransmit_interval)]
        if name == "ack" and call.state == CallState.CONNECTING:
            call.user_data["end_reason"] = "no ACK"
            return self._send_bye(call)
        if name == "ring" and call.state in (CallState.CALLING, CallState.EARLY):
            return self.hangup(call, "no answer")
        if name == "refresh":
            return self._refresh(call)
        if name == "expire" and call.state == CallState.CONFIRMED:
            call.user_data["end_reason"] = "session expired"
            return self._send_bye(call)
        if name == "retry-reinvite" and call.state == CallState.CONFIRMED:
            return self.reinvite(call)
        return []

    # ------------------------------------------------------------------ introspection

    def pending_transactions(self) -> int:
        """Number of live transactions (for leak tests and metrics)."""
        return len(self._server_tx) + len(self._client_tx)

    @staticmethod
    def loggable(data: bytes) -> str:
        """Message text safe for logs (credentials redacted)."""
        return redact(data.decode("utf-8", "replace"))


def _session_id(sdp: SessionDescription | None) -> int:
    if sdp is None:
        return 1
    parts = sdp.origin.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1


def _bump_origin(origin: str, version: int) -> str:
    parts = origin.split()
    if len(parts) >= 3:
        parts[2] = str(version)
    return " ".join(parts)
