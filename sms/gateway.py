"""The asyncio side of Kannel: submissions over smsbox's sendsms HTTP interface (httpx) and the
delivery-report listener on 127.0.0.1 that Kannel's dlr-url calls.

A submission's answer from smsbox decides what happens to the recipient:
- 202 ``0: Accepted for delivery`` / ``3: Queued for later delivery`` → submitted (Kannel owns it
  now, keeps it in its store file and retries the SMSC itself);
- 4xx (bad parameters, not routable, authentication) → a permanent failure: failed, with the answer;
- 5xx, a timeout or a refused connection (Kannel down) → a temporary failure: retried with backoff.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from sms.dlr import MAX_HEAD, DlrError, Report, dlr_url, parse_request
from sms.flow import DLR_MASK
from sms.text import Planned

log = logging.getLogger(__name__)

SUBMIT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Submitted:
    ok: bool
    temporary: bool  # not ok: try again later
    answer: str


class KannelClient:
    def __init__(self, sendsms_url: str, username: str, password: str, sender: str, dlr_base: str,
                 dlr_key: bytes) -> None:
        self.url = sendsms_url
        self.username = username
        self.password = password
        self.sender = sender
        self.dlr_base = dlr_base
        self.dlr_key = dlr_key
        self.http = httpx.AsyncClient(timeout=SUBMIT_TIMEOUT)

    async def submit(self, recipient_id: int, number: str, text: str, planned: Planned) -> Submitted:
        params = {"username": self.username, "password": self.password, "from": self.sender, "to": number,
                  "text": text, "charset": "UTF-8", "coding": str(planned.coding),
                  "dlr-mask": str(DLR_MASK), "dlr-url": dlr_url(self.dlr_base, self.dlr_key, recipient_id)}
        try:
            r = await self.http.get(self.url, params=params)
        except httpx.HTTPError as e:
            return Submitted(False, True, f"Kannel unreachable: {type(e).__name__}")
        answer = r.text.strip()[:200]
        if r.status_code == 202 or (r.status_code == 200 and answer[:2] in ("0:", "3:")):
            return Submitted(True, False, answer)
        return Submitted(False, r.status_code >= 500, f"{r.status_code} {answer}")

    async def close(self) -> None:
        await self.http.aclose()


class DlrListener:
    """Kannel's delivery reports: ``GET /dlr?...`` on 127.0.0.1; each valid one goes to ``on_report``."""

    def __init__(self, key: bytes, on_report: Callable[[Report], Awaitable[None]], port: int = 0) -> None:
        self.key = key
        self.on_report = on_report
        self.port = port
        self.server: asyncio.Server | None = None
        self.rejected = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, limit=MAX_HEAD + 2)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status = b"400 Bad Request"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            report = parse_request(head, self.key)
            await self.on_report(report)
            status = b"200 OK"
        except DlrError as e:
            self.rejected += 1
            log.warning("sms: delivery report refused: %s", e)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            self.rejected += 1
        except Exception:  # noqa: BLE001 - a report we cannot store is answered 500; Kannel retries it
            log.exception("sms: storing a delivery report failed")
            status = b"500 Internal Server Error"
        try:
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
