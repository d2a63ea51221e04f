"""The UAS: the requests we receive that start or live in a call.

New INVITEs (checks, 100 Trying, :class:`~.events.IncomingCall`), the application's answer
(:meth:`Uas.ring`, :meth:`Uas.answer`, :meth:`Uas.challenge`), ACK, CANCEL, and in-dialog BYE,
re-INVITE/UPDATE (re-offers and session refreshes), INFO and OPTIONS.
"""

from __future__ import annotations

import secrets

from ..rtp.media_description import LocalMedia
from . import events as ev
from . import info
from .actions import T1, CancelTimer, Flow, StartTimer
from .authentication import Authenticator
from .dialog import Call, CallState, new_tag
from .errors import SipParseError
from .message import Request, Response, find_body
from .qualify import answer_options
from .sdp import SdpError, SessionDescription, answer, create_offer
from .sdp import streams_from_answer as negotiate_from_answer
from .session_timer import apply_answer, check_session_expires, timer_actions
from .transaction import ServerTransaction, server_key
from .ua_core import ALLOWED_METHODS, Output, UserAgentCore
from .uac import Uac, session_id_of
from .uri import NameAddr


class Uas:
    """Incoming calls and the requests inside our dialogs."""

    def __init__(self, core: UserAgentCore, auth: Authenticator, uac: Uac) -> None:
        self.core = core
        self.auth = auth
        self.uac = uac  # hangs up (BYE) calls that fail after our 2xx

    def on_invite(self, tx: ServerTransaction, now: float, source: Flow | None = None) -> list[Output]:
        """A new INVITE (outside a dialog): checks, then 100 Trying and IncomingCall."""
        request = tx.request
        authorization = request.headers.get("Authorization")
        refused = self.auth.throttled(tx, authorization, now)
        if refused is not None:
            return refused
        try:
            contact = request.contacts[0]
        except (SipParseError, IndexError):
            return self.core.reject(tx, 400, "Missing or bad Contact")
        offer: SessionDescription | None = None
        try:
            body = find_body(request, "application/sdp") if request.body else None
        except SipParseError as exc:
            return self.core.reject(tx, 400, exc.reason)
        if request.body and body is None:
            return self.core.reject(tx, 415, extra=[("Accept", "application/sdp")])
        if body:
            try:
                offer = SessionDescription.parse(body)
            except SdpError as exc:
                return self.core.reject(tx, 488, exc.reason)
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
            result, auth_notes = self.auth.verify(tx, authorization, now)
            if result.ok:
                call.authenticated_user = result.username
        self.core.calls[call.key] = call
        trying = self.core.response(request, 100, flow=tx.flow)
        out = auth_notes + self.core.respond(tx, trying)
        timeout = self.core.config.answer_timeout
        expires = request.headers.get("Expires")
        if expires and expires.isdigit():
            timeout = min(timeout, float(expires))
        out.append(StartTimer((f"call|{call.key}", "answer"), timeout))
        out.append(ev.IncomingCall(call))
        return out

    def _check_session_timer(self, tx: ServerTransaction) -> list[Output]:
        refusal = check_session_expires(tx.request, self.core.config.min_se)
        if refusal is None:
            return []
        return self.core.reject(tx, refusal.status, refusal.reason, refusal.extra or None)

    def ring(self, call: Call) -> list[Output]:
        """Send 180 Ringing for an incoming call."""
        if call.state != CallState.INCOMING or not isinstance(call.invite_tx, ServerTransaction):
            return []
        response = self.core.response(call.invite_tx.request, 180, to_tag=call.local_tag, flow=call.flow)
        response.headers.add("Contact", self.core.contact(call.flow))
        return self.core.respond(call.invite_tx, response)

    def challenge(self, call: Call, now: float) -> list[Output]:
        """Answer an incoming INVITE with 401 (the caller retries with credentials)."""
        if not isinstance(call.invite_tx, ServerTransaction):
            return []
        out = self.core.reject(call.invite_tx, 401, extra=self.auth.challenges(now), to_tag=call.local_tag)
        return out + self.core.end(call, "challenged", 401, notify=False)

    def answer(self, call: Call, local: LocalMedia, now: float = 0.0) -> list[Output]:
        """Accept an incoming call: negotiate SDP (or offer it for a late-offer INVITE), send 200."""
        if call.state != CallState.INCOMING or not isinstance(call.invite_tx, ServerTransaction):
            return []
        call.local_media = local
        session_id = secrets.randbelow(2**31)
        if call.offer is not None:
            try:
                sdp, streams = answer(call.offer, self.core.config.policy, local, session_id, call.sdp_version)
            except SdpError as exc:
                return self.core.reject_incoming(call, 488, exc.reason)
            call.streams = streams
        else:
            sdp = create_offer(self.core.config.policy, local, session_id, call.sdp_version)
        call.local_sdp = sdp
        response = self._ok_with_sdp(call, call.invite_tx.request, sdp)
        apply_answer(call, call.invite_tx.request, response, self.core.config.session_expires)
        call.final_response = response
        call.state = CallState.CONNECTING
        out = self.core.respond(call.invite_tx, response)
        out.append(CancelTimer((f"call|{call.key}", "answer")))
        if not call.flow.reliable:
            out.append(StartTimer((f"call|{call.key}", "2xx"), T1))
        out.append(StartTimer((f"call|{call.key}", "ack"), 64 * T1))
        return out

    def _ok_with_sdp(self, call: Call, request: Request, sdp: SessionDescription | None) -> Response:
        response = self.core.response(request, 200, to_tag=call.local_tag, flow=call.flow)
        for rr in request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", rr)
        response.headers.add("Contact", self.core.contact(call.flow))
        self.core.add_capabilities(response)
        if sdp is not None:
            response.headers.add("Content-Type", "application/sdp")
            response.body = sdp.serialize()
        return response

    def on_ack(self, request: Request) -> list[Output]:
        """ACK to our 2xx: the call is confirmed (late offer: the ACK carries the answer)."""
        call = self.core.calls.get(f"{request.call_id}|{request.to.tag}")
        if call is None:
            return []
        owner = f"call|{call.key}"
        out: list[Output] = [CancelTimer((owner, "2xx")), CancelTimer((owner, "ack"))]
        if call.state == CallState.CONNECTING:
            call.state = CallState.CONFIRMED
            if call.late_offer:
                body = find_body(request, "application/sdp") if request.body else None
                if not body or call.local_sdp is None:
                    return out + self.uac.hangup(call, "no SDP answer in ACK")
                try:
                    call.streams = negotiate_from_answer(call.local_sdp, SessionDescription.parse(body))
                except SdpError:
                    return out + self.uac.hangup(call, "bad SDP answer in ACK")
            out += timer_actions(call)
            out.append(ev.CallEstablished(call))
        elif call.reinvite_pending:
            call.reinvite_pending = False
        return out

    def on_cancel(self, tx: ServerTransaction) -> list[Output]:
        """CANCEL of a pending INVITE: 200 to the CANCEL, 487 to the INVITE."""
        request = tx.request
        invite_key = server_key(Request(request.headers, b"", "INVITE", request.uri))
        invite_tx = self.core.server_tx.get(invite_key)
        if invite_tx is None:
            return self.core.reject(tx, 481)
        out = self.core.respond(tx, self.core.response(request, 200, to_tag=new_tag(), flow=tx.flow))
        call = next((c for c in self.core.calls.values() if c.invite_tx is invite_tx), None)
        if call is not None and call.state == CallState.INCOMING:
            out += self.core.reject(invite_tx, 487, to_tag=call.local_tag)
            out += self.core.end(call, "cancelled", 487)
        return out

    def in_dialog(self, call: Call, tx: ServerTransaction, now: float) -> list[Output]:
        """A request inside one of our dialogs (BYE, re-INVITE, UPDATE, INFO, OPTIONS)."""
        request = tx.request
        cseq = request.cseq[0]
        if call.remote_cseq is not None and cseq <= call.remote_cseq and request.method != "ACK":
            return self.core.reject(tx, 500, "CSeq out of order", to_tag=call.local_tag)
        call.remote_cseq = cseq
        method = request.method
        if method == "BYE":
            out = self.core.respond(tx, self.core.response(request, 200, to_tag=call.local_tag, flow=tx.flow))
            if isinstance(call.invite_tx, ServerTransaction) and call.state == CallState.INCOMING:
                out += self.core.reject(call.invite_tx, 487, to_tag=call.local_tag)
            return out + self.core.end(call, "remote hangup")
        if method in ("INVITE", "UPDATE"):
            return self._on_reoffer(call, tx)
        if method == "INFO":
            return self._on_info(call, tx)
        if method == "OPTIONS":
            return answer_options(self.core, tx)
        return self.core.reject(tx, 405, extra=[("Allow", ", ".join(ALLOWED_METHODS))], to_tag=call.local_tag)

    def _on_reoffer(self, call: Call, tx: ServerTransaction) -> list[Output]:
        request = tx.request
        if call.state not in (CallState.CONFIRMED, CallState.CONNECTING) and request.method == "INVITE":
            return self.core.reject(tx, 491, to_tag=call.local_tag)
        if request.method == "INVITE" and (call.reinvite_pending or call.state == CallState.CONNECTING):
            return self.core.reject(tx, 491, extra=[("Retry-After", "1")], to_tag=call.local_tag)
        se = self._check_session_timer(tx)
        if se:
            return se
        body = find_body(request, "application/sdp") if request.body else None
        sdp: SessionDescription | None = None
        updated = False
        if body:
            if call.local_media is None:
                return self.core.reject(tx, 488, to_tag=call.local_tag)
            try:
                offer = SessionDescription.parse(body)
                call.sdp_version += 1
                sdp, streams = answer(offer, self.core.config.policy, call.local_media,
                                      session_id_of(call.local_sdp), call.sdp_version)
            except SdpError as exc:
                return self.core.reject(tx, 488, exc.reason, to_tag=call.local_tag)
            updated = streams != call.streams
            call.streams = streams
            call.local_sdp = sdp
        elif request.method == "INVITE":
            sdp = call.local_sdp  # offer-less re-INVITE: we offer our current session again
        response = self._ok_with_sdp(call, request, sdp)
        apply_answer(call, request, response, self.core.config.session_expires)
        if contact := request.headers.get("Contact"):
            try:
                call.remote_target = str(NameAddr.parse(contact).uri)
            except SipParseError:
                pass
        out = self.core.respond(tx, response)
        if request.method == "INVITE":
            call.reinvite_pending = True
        out += timer_actions(call)
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
                return self.core.reject(tx, 415, extra=[("Accept", ", ".join(info.INFO_TYPES))],
                                    to_tag=call.local_tag)
        except SipParseError as exc:
            return self.core.reject(tx, exc.status, exc.reason, to_tag=call.local_tag)
        out = self.core.respond(tx, self.core.response(request, 200, to_tag=call.local_tag, flow=tx.flow))
        return out + ([event] if event else [])

    def server_timeout(self, tx: ServerTransaction) -> list[Output]:
        """Our 2xx to ``tx`` was never ACKed: the call ends."""
        call = next((c for c in self.core.calls.values() if c.invite_tx is tx), None)
        if call is not None and call.state != CallState.TERMINATED:
            return self.core.end(call, "no ACK")
        return []
