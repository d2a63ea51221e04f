"""The UAC: calls we make, and the requests we send inside any call.

INVITE (with or without an offer, answering digest challenges), its responses and ACK,
CANCEL, BYE, re-INVITE (hold, retry after 491), session refreshes (UPDATE or re-INVITE, RFC 4028)
and INFO (fast update, DTMF). :meth:`Uac.hangup` ends a call whatever its state.
"""

from __future__ import annotations

import secrets

from ..rtp.media_description import LocalMedia
from . import events as ev
from . import info
from .actions import CancelTimer, Flow, Send, StartTimer
from .dialog import Call, CallState, new_branch, new_tag
from .digest import Credentials, build_authorization, pick_challenge
from .errors import SipParseError
from .imageattr import recv_imageattr
from .message import Headers, Request, Response, find_body
from .sdp import SdpError, SessionDescription, answer, create_offer
from .sdp import streams_from_answer as negotiate_from_answer
from .session_timer import apply_2xx, timer_actions
from .transaction import ClientTransaction, same_hop_request
from .ua_core import ALLOWED_METHODS, SUPPORTED_EXTENSIONS, Output, UserAgentCore
from .uri import NameAddr, SipUri

_NOT_PICTURES = {"TELEPHONE-EVENT", "RTX", "RED", "ULPFEC", "FLEXFEC"}  # payload types imageattr is not for


class Uac:
    """Requests we send: new calls and everything inside a dialog."""

    def __init__(self, core: UserAgentCore) -> None:
        self.core = core

    def _new_request(self, call: Call, method: str, body: bytes = b"", content_type: str | None = None,
                     cseq: int | None = None, branch: str | None = None) -> Request:
        headers = Headers()
        headers.add("Via", self.core.via(call.flow, branch or new_branch()))
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
            headers.add("Contact", self.core.contact(call.flow))
            headers.add("Allow", ", ".join(ALLOWED_METHODS))
            headers.add("Supported", ", ".join(SUPPORTED_EXTENSIONS))
        headers.add("User-Agent", self.core.config.user_agent)
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
        user = from_user or self.core.config.user
        tag = new_tag()
        name = f'"{display}" ' if display else ""
        call = Call(
            call_id=secrets.token_hex(12), local_tag=tag, outgoing=True, flow=flow,
            local_uri=f"{name}<sip:{user}@{self.core.config.host}>;tag={tag}", remote_uri=f"<{target}>",
            remote_target=target, state=CallState.CALLING, local_media=local, credentials=credentials,
            local_cseq=0,
        )
        self.core.calls[call.key] = call
        return call, self._send_invite(call)

    def _send_invite(self, call: Call) -> list[Output]:
        body = b""
        if call.local_media is not None:
            if call.local_sdp is None:
                call.local_sdp = create_offer(self.core.config.policy, call.local_media,
                                              secrets.randbelow(2**31), call.sdp_version)
            body = call.local_sdp.serialize()
        request = self._new_request(call, "INVITE", body, "application/sdp" if body else None)
        request.headers.add("Session-Expires", str(self.core.config.session_expires))
        if call.auth_header is not None:
            request.headers.add(*call.auth_header)
        call.invite = request

        def on_response(response: Response) -> list[Output]:
            return self._on_invite_response(call, response)

        def on_timeout() -> list[Output]:
            return self.core.end(call, "no answer", 408) if call.state != CallState.CONFIRMED else []

        out = self.core.start_client(request, self._target_flow(call) if call.remote_tag else call.flow,
                                 on_response, on_timeout)
        call.invite_tx = self.core.client_tx.get(f"c|{request.top_via.branch}|INVITE")
        out.append(StartTimer((f"call|{call.key}", "ring"), self.core.config.ring_timeout))
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
        return out + self.core.end(call, "rejected" if not call.cancel_requested else "cancelled", status)

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
            return self.send_ack(call, response.cseq[0], None) + self.send_bye(call)
        ack_body: SessionDescription | None = None
        body = find_body(response, "application/sdp") if response.body else None
        we_offered = call.invite is not None and bool(call.invite.body)
        if body and (first or call.reinvite_pending):
            try:
                remote = SessionDescription.parse(body)
                if not we_offered and call.local_media is not None:
                    # We sent no offer (late offer): the 2xx carries the offer, the ACK the answer.
                    call.sdp_version += 1
                    ack_body, call.streams = answer(remote, self.core.config.policy, call.local_media,
                                                    session_id_of(call.local_sdp), call.sdp_version)
                    call.local_sdp = ack_body
                elif call.local_sdp is not None:
                    call.remote_answer = remote
                    new_streams = negotiate_from_answer(call.local_sdp, remote)
                    if call.reinvite_pending and new_streams != call.streams:
                        out.append(ev.MediaUpdated(call))
                    call.streams = new_streams
            except SdpError:
                out += self.send_ack(call, response.cseq[0], None)
                return out + self.hangup(call, "bad SDP in 2xx")
        out += self.send_ack(call, response.cseq[0], ack_body)
        apply_2xx(call, response)
        if call.reinvite_pending:
            call.reinvite_pending = False
            return out + timer_actions(call)
        if first:
            call.state = CallState.CONFIRMED
            if call.cancel_requested:
                return out + self.send_bye(call)
            out += timer_actions(call)
            out.append(ev.CallEstablished(call))
        return out

    def send_ack(self, call: Call, cseq: int, sdp: SessionDescription | None) -> list[Output]:
        body = sdp.serialize() if sdp else b""
        request = self._new_request(call, "ACK", body, "application/sdp" if body else None, cseq=cseq)
        call.user_data["last_ack"] = request
        return [Send(self._target_flow(call), request.serialize())]

    def _send_cancel(self, call: Call) -> list[Output]:
        if call.invite is None or call.user_data.get("cancel_sent"):
            return []
        call.user_data["cancel_sent"] = True
        invite = call.invite
        cancel = same_hop_request(invite, "CANCEL", invite.headers.get("To") or "")

        def done(_: Response) -> list[Output]:
            return []

        return self.core.start_client(cancel, call.flow, done, lambda: self.core.end(call, "cancel timed out"))

    def send_bye(self, call: Call) -> list[Output]:
        request = self._new_request(call, "BYE")

        def done(_: Response) -> list[Output]:
            return []

        out = self.core.start_client(request, self._target_flow(call), done, lambda: [])
        return out + self.core.end(call, str(call.user_data.get("end_reason", "local hangup")))

    def hangup(self, call: Call, reason: str = "local hangup") -> list[Output]:
        """End a call: CANCEL if not answered, BYE if established, 480/487 if incoming."""
        call.user_data["end_reason"] = reason
        if call.state == CallState.INCOMING:
            return self.core.reject_incoming(call, 480, "Temporarily Unavailable")
        if call.state in (CallState.CALLING, CallState.EARLY):
            call.cancel_requested = True
            if call.state == CallState.EARLY or (
                isinstance(call.invite_tx, ClientTransaction) and call.invite_tx.last_response is not None
            ):
                return self._send_cancel(call)
            return []
        if call.state in (CallState.CONNECTING, CallState.CONFIRMED):
            return self.send_bye(call)
        return []

    def reinvite(self, call: Call, direction: str = "sendrecv",
                 receive_size: tuple[int, int] | None = None) -> list[Output]:
        """Send a re-INVITE with our SDP (``direction='sendonly'`` puts the peer on hold).

        ``receive_size``: ask the peer to send video of that size (RFC 6236 ``a=imageattr``
        for each video payload type we offer)."""
        if call.state != CallState.CONFIRMED or call.reinvite_pending or call.local_media is None:
            return []
        call.sdp_version += 1
        session_id = session_id_of(call.local_sdp)
        sdp = create_offer(self.core.config.policy, call.local_media, session_id, call.sdp_version, direction)
        extra_ports = {e.port for e in call.local_media.extra if e.port}  # a link's slides: not a pane
        for media in sdp.media if receive_size is not None else ():
            if media.kind == "video" and media.port and media.port not in extra_ports:
                assert receive_size is not None
                media.attributes += [("imageattr", recv_imageattr(pt, *receive_size))
                                     for pt, (name, _, _) in media.rtpmap().items() if name not in _NOT_PICTURES]
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

        return self.core.start_client(request, self._target_flow(call), on_response, on_timeout)

    def refresh(self, call: Call) -> list[Output]:
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
            return self.core.start_client(
                request, self._target_flow(call), lambda r: self._on_invite_response(call, r),
                lambda: self.hangup(call, "session refresh timed out"),
            )
        request = self._new_request(call, "UPDATE")
        request.headers.add("Session-Expires", f"{call.session_expires};refresher=uac")

        def on_response(response: Response) -> list[Output]:
            if 200 <= response.status < 300:
                return timer_actions(call)
            if response.status in (408, 481):
                return self.hangup(call, "session refresh failed")
            return []

        return self.core.start_client(request, self._target_flow(call), on_response,
                                  lambda: self.hangup(call, "session refresh timed out"))

    def send_info(self, call: Call, content_type: str, body: bytes) -> list[Output]:
        """Send an INFO in the dialog (picture_fast_update, DTMF)."""
        if call.state != CallState.CONFIRMED:
            return []
        request = self._new_request(call, "INFO", body, content_type)
        return self.core.start_client(request, self._target_flow(call), lambda r: [], lambda: [])

    def request_fast_update(self, call: Call) -> list[Output]:
        """Ask the peer for a key frame by SIP INFO."""
        return self.send_info(call, info.MEDIA_CONTROL, info.FAST_UPDATE_XML)

    def send_dtmf_info(self, call: Call, digit: str, duration_ms: int = 160) -> list[Output]:
        """Send a DTMF digit by SIP INFO (application/dtmf-relay)."""
        return self.send_info(call, info.DTMF_RELAY, info.dtmf_relay_body(digit, duration_ms))


def session_id_of(sdp: SessionDescription | None) -> int:
    """The session id of our SDP's origin line (1 without SDP)."""
    if sdp is None:
        return 1
    parts = sdp.origin.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1


def _bump_origin(origin: str, version: int) -> str:
    parts = origin.split()
    if len(parts) >= 3:
        parts[2] = str(version)
    return " ".join(parts)
