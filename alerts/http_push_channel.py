"""The HTTP push channel: each sent CAP message is POSTed to every configured endpoint.

For the national early-warning release system (国家突发事件预警信息发布系统) and other departments'
systems that take CAP by push. Configured in ``[[warnings.push]]`` (``config.settings``): a name,
a URL, optionally a bearer token and extra headers.

Rules:

* **What is sent**: the CAP 1.2 document exactly as sent and stored (validated against the OASIS
  XSD before it was stored), ``POST`` with ``Content-Type: application/cap+xml; charset=utf-8``,
  for Alert, Update and Cancel. An Expired warning sends nothing (CAP receivers expire on their own).
* **Per endpoint, one recipient** (its configured name): ``pending`` while it is being tried (the
  detail says which attempt failed and why), then ``delivered`` (detail ``HTTP 2xx``) or ``failed``
  with the reason.
* **Retries**: a 5xx, a 408/429, a timeout or a connection error is retried, at most ``retries``
  times, after ``retry_delay(attempt)`` = ``base * 2**(attempt-1)`` capped at ``max_delay``
  seconds; any other answer (3xx, 4xx) fails at once (the endpoint refused this document; sending it
  again would not help). Each attempt is bounded by ``timeout`` seconds.
* **In order per endpoint**: a message to an endpoint waits until the previous message's attempts
  on that endpoint are over (delivered or failed), so a receiver gets Alert, Update, Cancel in the
  order they were sent. Endpoints are independent of one another, and of the other channels (the
  service runs each channel in its own task).
* **Kept across a restart**: a message is ``pending`` for an endpoint from the moment it is handed
  to the channel (also while it waits for an earlier message on that endpoint), and stays so in the
  deliveries (PostgreSQL) if the node stops before its attempts are over. At the next start the
  service hands this channel its ``pending`` deliveries (``resume``) with the CAP documents as
  stored; they are sent again, per endpoint in the order they were first sent (``sent``, then
  identifier) and before any new message, with the same retry rules (a fresh count of attempts). A
  delivery to an endpoint no longer configured is marked ``failed`` ("endpoint … is no longer
  configured"). A receiver may thus get a document twice if the node stopped between its answer
  and the stored ``delivered``; CAP identifiers let it drop the repeat.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from alerts.channels import Delivery, DeliverySink, DeliveryStatus, Outgoing

log = logging.getLogger(__name__)

CAP_CONTENT_TYPE = "application/cap+xml; charset=utf-8"
SENT_TYPES = frozenset({"Alert", "Update", "Cancel"})
RETRY_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class PushEndpoint:
    name: str
    url: str
    bearer_token: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


def retry_delay(attempt: int, base: float, max_delay: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return float(min(max_delay, base * 2 ** max(0, attempt - 1)))


def retryable(status: int) -> bool:
    return status >= 500 or status in RETRY_STATUS


def _finish(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class HttpPushChannel:
    name = "http_push"

    def __init__(self, endpoints: Sequence[PushEndpoint], *, timeout: float = 10.0, retries: int = 5,
                 retry_base: float = 2.0, max_delay: float = 60.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 client: httpx.AsyncClient | None = None) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.retries = retries
        self.retry_base = retry_base
        self.max_delay = max_delay
        self.sleep = sleep
        self._client = client
        # per endpoint, the future the last message handed to it completes when its attempts are over
        self._tails: dict[str, asyncio.Future[None]] = {}

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, message: Outgoing, report: DeliverySink) -> None:
        if message.msg_type not in SENT_TYPES or not self.endpoints:
            return
        if not message.cap_xml:
            for e in self.endpoints:
                await report(message, self.name, Delivery(e.name, DeliveryStatus.FAILED, "no CAP document"))
            return
        await asyncio.gather(*(self._ordered(e, message, report) for e in self.endpoints))

    async def resume(self, pending: Sequence[tuple[Outgoing, str]], report: DeliverySink) -> None:
        """Send again what was ``pending`` when the node stopped: (message, endpoint name) pairs in
        the order they were first sent. Must be called before any new ``send``."""
        by_name = {e.name: e for e in self.endpoints}
        runs: list[Awaitable[None]] = []  # the resends first: each takes its queue place when it starts
        refusals: list[Awaitable[None]] = []
        for message, recipient in pending:
            endpoint = by_name.get(recipient)
            if endpoint is None:
                refusals.append(report(message, self.name, Delivery(
                    recipient, DeliveryStatus.FAILED,
                    f"endpoint {recipient!r} is no longer configured ([[warnings.push]]); not resent after the restart"[:300])))
            elif not message.cap_xml or message.msg_type not in SENT_TYPES:
                refusals.append(report(message, self.name, Delivery(recipient, DeliveryStatus.FAILED, "no CAP document")))
            else:
                runs.append(self._ordered(endpoint, message, report, resumed=True))
        await asyncio.gather(*runs, *refusals)

    async def _ordered(self, endpoint: PushEndpoint, message: Outgoing, report: DeliverySink,
                       resumed: bool = False) -> None:
        # take this message's place in the endpoint's queue before the first await (the order of sends)
        previous = self._tails.get(endpoint.name)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[endpoint.name] = done
        try:
            await report(message, self.name, Delivery(
                endpoint.name, DeliveryStatus.PENDING, "resent after a restart" if resumed else ""))
            if previous is not None:
                await asyncio.shield(previous)
            delivery = await self._push(endpoint, message, report, " after a restart" if resumed else "")
            await report(message, self.name, delivery)
        finally:
            if previous is not None and not previous.done():  # cancelled while waiting: keep the order
                previous.add_done_callback(lambda _: _finish(done))
            else:
                _finish(done)

    async def _push(self, endpoint: PushEndpoint, message: Outgoing, report: DeliverySink, note: str = "") -> Delivery:
        headers = {**endpoint.headers, "Content-Type": CAP_CONTENT_TYPE}
        if endpoint.bearer_token:
            headers["Authorization"] = f"Bearer {endpoint.bearer_token}"
        body = message.cap_xml.encode("utf-8")
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http().post(endpoint.url, content=body, headers=headers, timeout=self.timeout)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            else:
                if 200 <= response.status_code < 300:
                    return Delivery(endpoint.name, DeliveryStatus.DELIVERED,
                                    f"HTTP {response.status_code}" + (f" after {attempt} attempts" if attempt > 1 else ""))
                reason = f"HTTP {response.status_code} {response.text[:120]}".strip()
                if not retryable(response.status_code):
                    log.warning("CAP push %s to %s refused: %s", message.identifier, endpoint.name, reason)
                    return Delivery(endpoint.name, DeliveryStatus.FAILED, reason[:300])
            if attempt > self.retries:
                log.warning("CAP push %s to %s failed after %d attempts: %s", message.identifier, endpoint.name,
                            attempt, reason)
                return Delivery(endpoint.name, DeliveryStatus.FAILED, f"{reason} (after {attempt} attempts)"[:300])
            delay = retry_delay(attempt, self.retry_base, self.max_delay)
            await report(message, self.name, Delivery(
                endpoint.name, DeliveryStatus.PENDING, f"attempt {attempt}{note}: {reason}; retry in {delay:g} s"[:300]))
            await self.sleep(delay)


__all__ = ["HttpPushChannel", "PushEndpoint", "retry_delay", "retryable"]
