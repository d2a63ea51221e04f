"""The sans-I/O SIP user agent: one object that composes the UAS, UAC, registrar, client
registrations and OPTIONS (:mod:`.uas`, :mod:`.uac`, :mod:`.registrar`, :mod:`.registration`,
:mod:`.qualify`, over the shared :mod:`.ua_core`), and routes what arrives to them.

Feed it datagrams/stream frames (:meth:`UserAgent.receive`) and timer expiries
(:meth:`UserAgent.on_timer`); it returns :class:`~.actions.Send`, timer requests and
application events (:mod:`.events`). The application decides on incoming calls by calling
:meth:`UserAgent.answer` / :meth:`~UserAgent.reject` / :meth:`~UserAgent.challenge` after an
:class:`~.events.IncomingCall` event; that is where conference rooms plug in.
``now`` (seconds, any monotonic origin) is passed in wherever time matters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..rtp.media_description import LocalMedia
from . import events as ev
from .actions import T2, Flow, Send, StartTimer, TimerKey
from .authentication import Authenticator
from .authguard import AuthThrottle
from .dialog import Call, CallState, ClientRegistration, new_tag
from .digest import Credentials, DigestServer, redact
from .errors import MessageTooLarge, SipParseError
from .message import IncompleteMessage, Request, Response, parse_message
from .qualify import Qualifier, answer_options
from .ratelimit import RateLimiter
from .registrar import Registrar
from .registration import RegistrationClient
from .transaction import ClientTransaction, ServerTransaction, server_key
from .ua_core import (
    ALLOWED_METHODS,
    KNOWN_METHODS,
    REASONS,
    SUPPORTED_EXTENSIONS,
    Output,
    UserAgentConfig,
    UserAgentCore,
)
from .uac import Uac
from .uas import Uas

__all__ = ["Output", "UserAgent", "UserAgentConfig"]

log = logging.getLogger(__name__)


class UserAgent:
    """Sans-I/O SIP user agent (UAC + UAS + registrar)."""

    def __init__(self, config: UserAgentConfig | None = None) -> None:
        self.config = config or UserAgentConfig()
        self.core = UserAgentCore(self.config, server_timeout=lambda tx: self.uas.server_timeout(tx))
        self.calls: dict[str, Call] = self.core.calls
        self.digest = DigestServer(
            self.config.realm, self.config.accounts.get, algorithms=self.config.auth_algorithms
        )
        self.limiter = RateLimiter(self.config.rate, self.config.burst)
        # Sources whose INVITEs skip the per-source limit (the emergency trunk's peers); pure predicate.
        self.invite_rate_exempt: Callable[[str], bool] | None = None
        # False: OPTIONS are answered 503 (a standby desk, so a proxy's probing sends it nothing)
        self.available: Callable[[], bool] | None = None
        self.auth_throttle = AuthThrottle(self.config.auth_throttle)
        auth = Authenticator(self.core, self.digest, self.auth_throttle)
        self.registrar = Registrar(self.core, auth)
        self.bindings = self.registrar.bindings
        self.uac = Uac(self.core)
        self.uas = Uas(self.core, auth, self.uac)
        self.registration = RegistrationClient(self.core)
        self.registrations: dict[str, ClientRegistration] = self.registration.registrations
        self.qualifier = Qualifier(self.core)

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
        response = self.core.response(partial, exc.status, exc.reason, new_tag(), flow)
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
        tx = self.core.client_tx.get(f"c|{branch}|{'INVITE' if method == 'ACK' else method}")
        if tx is None:
            return self._stray_response(response)
        return self.core.run(tx.on_response(response))

    def _stray_response(self, response: Response) -> list[Output]:
        # A retransmitted 2xx to our INVITE after the transaction ended: ACK it again.
        if 200 <= response.status < 300 and response.cseq[1] == "INVITE":
            call = self.calls.get(f"{response.call_id}|{response.from_.tag}")
            if call is not None and call.state == CallState.CONFIRMED:
                return self.uac.send_ack(call, response.cseq[0], None)
        return []

    def _on_request(self, request: Request, flow: Flow, now: float) -> list[Output]:
        # Retransmissions and non-2xx ACKs go to their server transaction.
        key = server_key(request)
        tx = self.core.server_tx.get(key)
        if tx is not None:
            return self.core.run(tx.on_request(request))
        if request.method == "ACK":
            return self.uas.on_ack(request)
        method = request.method
        exempt = method == "INVITE" and self.invite_rate_exempt is not None and self.invite_rate_exempt(flow.host)
        if method in ("INVITE", "REGISTER") and not exempt:
            source = flow.host
            if not self.limiter.allow(f"{method}|{source}", now):
                if self.limiter.should_reply(f"{method}|{source}", now):
                    tx = self.core.new_server_tx(request, flow)
                    out = self.core.reject(tx, 503, "Rate limit exceeded", [("Retry-After", "5")])
                    return out
                return [ev.MessageDropped(flow, "rate limited")]
        tx = self.core.new_server_tx(request, flow)
        if method == "CANCEL":
            return self.uas.on_cancel(tx)
        if method not in ALLOWED_METHODS:
            if method in KNOWN_METHODS:
                return self.core.reject(tx, 405, extra=[("Allow", ", ".join(ALLOWED_METHODS))])
            return self.core.reject(tx, 501, extra=[("Allow", ", ".join(ALLOWED_METHODS))])
        unsupported = [
            tag for tag in request.headers.get_all("Require") if tag.lower() not in SUPPORTED_EXTENSIONS
        ]
        if unsupported and method not in ("CANCEL", "ACK"):
            return self.core.reject(tx, 420, extra=[("Unsupported", ", ".join(unsupported))])
        to_tag = request.to.tag
        if to_tag and method != "OPTIONS":
            call = self.calls.get(f"{request.call_id}|{to_tag}")
            if call is None or call.state == CallState.TERMINATED:
                return self.core.reject(tx, 481, to_tag=to_tag)
            return self.uas.in_dialog(call, tx, now)
        if method == "INVITE":
            return self.uas.on_invite(tx, now, flow)
        if method == "OPTIONS":
            if self.available is not None and not self.available():
                return self.core.reject(tx, 503)
            return answer_options(self.core, tx)
        if method == "REGISTER":
            return self.registrar.on_register(tx, now)
        return self.core.reject(tx, 481)  # BYE/INFO/UPDATE outside a dialog

    # ------------------------------------------------------------------ the application's commands

    def ring(self, call: Call) -> list[Output]:
        """Send 180 Ringing for an incoming call."""
        return self.uas.ring(call)

    def challenge(self, call: Call, now: float) -> list[Output]:
        """Answer an incoming INVITE with 401 (the caller retries with credentials)."""
        return self.uas.challenge(call, now)

    def reject(self, call: Call, status: int = 486, reason: str | None = None) -> list[Output]:
        """Refuse an incoming call with a final error response."""
        return self.core.reject_incoming(call, status, reason)

    def answer(self, call: Call, local: LocalMedia, now: float = 0.0) -> list[Output]:
        """Accept an incoming call: negotiate SDP (or offer it for a late-offer INVITE), send 200."""
        return self.uas.answer(call, local, now)

    def invite(self, target: str, local: LocalMedia | None, flow: Flow | None = None,
               credentials: Credentials | None = None, from_user: str | None = None,
               display: str | None = None) -> tuple[Call, list[Output]]:
        """Call ``target`` (a SIP URI). ``local=None`` sends a late-offer INVITE (no SDP)."""
        return self.uac.invite(target, local, flow, credentials, from_user, display)

    def hangup(self, call: Call, reason: str = "local hangup") -> list[Output]:
        """End a call: CANCEL if not answered, BYE if established, 480/487 if incoming."""
        return self.uac.hangup(call, reason)

    def reinvite(self, call: Call, direction: str = "sendrecv",
                 receive_size: tuple[int, int] | None = None) -> list[Output]:
        """Send a re-INVITE with our SDP (``direction='sendonly'`` puts the peer on hold;
        ``receive_size``: the video size we ask the peer for, RFC 6236 imageattr)."""
        return self.uac.reinvite(call, direction, receive_size)

    def send_info(self, call: Call, content_type: str, body: bytes) -> list[Output]:
        """Send an INFO in the dialog (picture_fast_update, DTMF)."""
        return self.uac.send_info(call, content_type, body)

    def request_fast_update(self, call: Call) -> list[Output]:
        """Ask the peer for a key frame by SIP INFO."""
        return self.uac.request_fast_update(call)

    def send_dtmf_info(self, call: Call, digit: str, duration_ms: int = 160) -> list[Output]:
        """Send a DTMF digit by SIP INFO (application/dtmf-relay)."""
        return self.uac.send_dtmf_info(call, digit, duration_ms)

    def register(self, registrar: str, aor: str, credentials: Credentials | None = None,
                 expires: int = 600, flow: Flow | None = None) -> tuple[ClientRegistration, list[Output]]:
        """Register ``aor`` (``sip:user@domain``) with ``registrar`` and keep refreshing it."""
        return self.registration.register(registrar, aor, credentials, expires, flow)

    def unregister(self, reg: ClientRegistration) -> list[Output]:
        """Remove our binding (Expires: 0) and stop refreshing."""
        return self.registration.unregister(reg)

    def options(self, target: str, flow: Flow | None = None, interval: float | None = None) -> list[Output]:
        """Send OPTIONS to ``target``; with ``interval`` keep qualifying periodically."""
        return self.qualifier.options(target, flow, interval)

    def stop_qualify(self, target: str) -> list[Output]:
        """Stop periodic OPTIONS to ``target``."""
        return self.qualifier.stop(target)

    # ------------------------------------------------------------------ timers

    def on_timer(self, key: TimerKey, now: float = 0.0) -> list[Output]:
        """A timer requested by a :class:`StartTimer` expired."""
        owner, name = key
        if owner.startswith(("c|", "s|", "s2543|")):
            tx: ClientTransaction | ServerTransaction | None = self.core.client_tx.get(owner) or self.core.server_tx.get(owner)
            return self.core.run(tx.on_timer(name)) if tx else []
        if owner.startswith("call|"):
            call = self.calls.get(owner[5:])
            return self._call_timer(call, name) if call else []
        if owner.startswith("reg|"):
            return self.registration.on_timer(owner, name)
        if owner.startswith("opt|"):
            return self.qualifier.on_timer(owner[4:], name)
        return []

    def _call_timer(self, call: Call, name: str) -> list[Output]:
        owner = f"call|{call.key}"
        if name == "answer" and call.state == CallState.INCOMING:
            return self.core.reject_incoming(call, 480, "No answer")
        if name == "2xx" and call.state == CallState.CONNECTING and call.final_response is not None:
            call.retransmit_interval = min(call.retransmit_interval * 2, T2)
            out: list[Output] = [Send(call.flow, call.final_response.serialize())]
            return out + [StartTimer((owner, "2xx"), call.retransmit_interval)]
        if name == "ack" and call.state == CallState.CONNECTING:
            call.user_data["end_reason"] = "no ACK"
            return self.uac.send_bye(call)
        if name == "ring" and call.state in (CallState.CALLING, CallState.EARLY):
            return self.uac.hangup(call, "no answer")
        if name == "refresh":
            return self.uac.refresh(call)
        if name == "expire" and call.state == CallState.CONFIRMED:
            call.user_data["end_reason"] = "session expired"
            return self.uac.send_bye(call)
        if name == "retry-reinvite" and call.state == CallState.CONFIRMED:
            return self.uac.reinvite(call)
        return []

    # ------------------------------------------------------------------ introspection

    def pending_transactions(self) -> int:
        """Number of live transactions (for leak tests and metrics)."""
        return len(self.core.server_tx) + len(self.core.client_tx)

    @staticmethod
    def loggable(data: bytes) -> str:
        """Message text safe for logs (credentials redacted)."""
        return redact(data.decode("utf-8", "replace"))
