"""Session timers (RFC 4028): which side refreshes a call, how often, and when it expires.

Pure rules; the UAS applies them to the INVITEs it answers (:mod:`.uas`), the UAC to the 2xx
it receives and sends the refreshes (:mod:`.uac`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .actions import CancelTimer, StartTimer
from .dialog import Call
from .message import Request, Response
from .ua_core import Output


@dataclass(frozen=True)
class Refusal:
    """The error response a request's Session-Expires calls for."""

    status: int
    reason: str | None = None
    extra: list[tuple[str, str]] = field(default_factory=list)


def check_session_expires(request: Request, min_se: int) -> Refusal | None:
    """400 for an unreadable Session-Expires, 422 (with our Min-SE) for one below ``min_se``."""
    value = request.headers.get("Session-Expires")
    if value is None:
        return None
    interval = value.split(";")[0].strip()
    if not interval.isdigit():
        return Refusal(400, "Bad Session-Expires")
    if int(interval) < min_se:
        return Refusal(422, extra=[("Min-SE", str(min_se))])
    return None


def apply_answer(call: Call, request: Request, response: Response, default_interval: int) -> None:
    """RFC 4028 §9: pick the interval and refresher and put them in the 2xx."""
    supported = [t.lower() for t in request.headers.get_all("Supported")]
    value = request.headers.get("Session-Expires")
    if value is None and "timer" not in supported:
        return
    if value is not None:
        supported.append("timer")  # whoever sends Session-Expires implements RFC 4028
    interval = default_interval
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


def apply_2xx(call: Call, response: Response) -> None:
    """Take the interval and refresher from the 2xx to our INVITE (we refresh unless told ``uas``)."""
    se = response.headers.get("Session-Expires")
    if se:
        interval = se.split(";")[0].strip()
        if interval.isdigit():
            call.session_expires = int(interval)
            call.we_refresh = "refresher=uas" not in se.replace(" ", "").lower()


def timer_actions(call: Call) -> list[Output]:
    """(Re)arm the call's refresh timer (we refresh) or its expiry timer (the peer refreshes)."""
    owner = f"call|{call.key}"
    if not call.session_expires:
        return []
    if call.we_refresh:
        return [CancelTimer((owner, "expire")), StartTimer((owner, "refresh"), call.session_expires / 2)]
    grace = min(32.0, call.session_expires / 3)
    return [CancelTimer((owner, "refresh")), StartTimer((owner, "expire"), call.session_expires - grace)]
