"""OPTIONS: answering them, and qualifying a peer (is it there?) once or periodically.

Periodic qualifying uses the timer ``("opt|<target>", "<interval>")``.
"""

from __future__ import annotations

import secrets

from . import events as ev
from .actions import Flow, StartTimer
from .dialog import new_branch, new_tag
from .message import Headers, Request, Response
from .transaction import ServerTransaction
from .ua_core import Output, UserAgentCore
from .uri import SipUri


def answer_options(core: UserAgentCore, tx: ServerTransaction) -> list[Output]:
    """200 with what we can do (Allow, Accept, Supported)."""
    response = core.response(tx.request, 200, to_tag=new_tag(), flow=tx.flow)
    core.add_capabilities(response)
    return core.respond(tx, response)


class Qualifier:
    """Sends OPTIONS to targets and reports :class:`~.events.QualifyResult`."""

    def __init__(self, core: UserAgentCore) -> None:
        self.core = core
        self._targets: dict[str, Flow] = {}

    def options(self, target: str, flow: Flow | None = None, interval: float | None = None) -> list[Output]:
        """Send OPTIONS to ``target``; with ``interval`` keep qualifying periodically."""
        config = self.core.config
        uri = SipUri.parse(target)
        if flow is None:
            host, port = uri.address()
            flow = Flow(uri.transport, host, port)
        headers = Headers()
        headers.add("Via", self.core.via(flow, new_branch()))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:{config.user}@{config.host}>;tag={new_tag()}")
        headers.add("To", f"<{target}>")
        headers.add("Call-ID", secrets.token_hex(10))
        headers.add("CSeq", "1 OPTIONS")
        headers.add("Accept", "application/sdp")
        request = Request(headers, b"", "OPTIONS", target)
        out: list[Output] = []
        if interval:
            self._targets[target] = flow
            out.append(StartTimer((f"opt|{target}", str(interval)), interval))

        def on_response(response: Response) -> list[Output]:
            if response.status < 200:
                return []
            return [ev.QualifyResult(target, True, response.status)]

        return out + self.core.start_client(request, flow, on_response,
                                            lambda: [ev.QualifyResult(target, False, None)])

    def stop(self, target: str) -> list[Output]:
        """Stop periodic OPTIONS to ``target``."""
        self._targets.pop(target, None)
        return []

    def on_timer(self, target: str, name: str) -> list[Output]:
        """The periodic timer for ``target`` expired (``name`` is the interval)."""
        flow = self._targets.get(target)
        if flow is not None:
            return self.options(target, flow, float(name))
        return []
