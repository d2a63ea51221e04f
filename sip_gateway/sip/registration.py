"""Client registrations: we register an address-of-record with a registrar and keep it fresh.

:class:`RegistrationClient` sends REGISTER (answering a digest challenge once or twice with
the registration's credentials), refreshes at half the granted expiry and removes the binding
on :meth:`~RegistrationClient.unregister`. Its timers are ``(reg.key, "refresh")``.
"""

from __future__ import annotations

from . import events as ev
from .actions import CancelTimer, Flow, StartTimer
from .dialog import ClientRegistration, new_branch
from .digest import Credentials, build_authorization, pick_challenge
from .errors import SipParseError
from .message import Headers, Request, Response
from .ua_core import Output, UserAgentCore
from .uri import NameAddr, SipUri


class RegistrationClient:
    """Our registrations with other registrars, by :attr:`ClientRegistration.key`."""

    def __init__(self, core: UserAgentCore) -> None:
        self.core = core
        self.registrations: dict[str, ClientRegistration] = {}

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

    def on_timer(self, owner: str, name: str) -> list[Output]:
        """A registration's refresh timer expired."""
        reg = self.registrations.get(owner)
        if reg and name == "refresh" and not reg.stopping:
            return self._send_register(reg, None)
        return []

    def _send_register(self, reg: ClientRegistration, authorization: tuple[str, str] | None) -> list[Output]:
        config = self.core.config
        reg.cseq += 1
        headers = Headers()
        headers.add("Via", self.core.via(reg.flow, new_branch()))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{reg.aor}>;tag={reg.tag}")
        headers.add("To", f"<{reg.aor}>")
        headers.add("Call-ID", reg.call_id)
        headers.add("CSeq", f"{reg.cseq} REGISTER")
        headers.add("Contact", self.core.contact(reg.flow))
        headers.add("Expires", "0" if reg.stopping else str(reg.expires))
        headers.add("User-Agent", config.user_agent)
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

        return self.core.start_client(request, reg.flow, on_response, on_timeout)
