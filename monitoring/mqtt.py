"""MQTT ingest: subscribe to the gauges' topics and hand each message to the service.

Topics and payloads are those of monitoring/payload.py: ``<prefix>/<gauge_id>/reading`` (one
reading) and ``<prefix>/batch`` (``{"readings": [...]}``, for concentrators sending many at once).
Subscribed with QoS 1 in a persistent session (``clean_session=False``, one client id for the life
of this object). A bad message is counted and logged by the service, never raised; a lost
connection (or a broker that breaks MQTT, `ProtocolError`) is retried with a growing pause (1 s up
to 10 s).

**The client is ours**: the sans-I/O MQTT 3.1.1 core of monitoring/mqtt_protocol.py under a thin
``asyncio.Protocol``. Profiling `python -m bench monitoring` showed that with aiomqtt over paho-mqtt
the cost of a one-reading message was the client's (about 110 µs of CPU per message: paho's
pure-Python packet handling, its callbacks and locks, aiomqtt's futures), not parsing (JSON, a few
µs), evaluation or the COPY; the ingest stopped near 1,100 readings/s. Here a chunk of bytes from
the socket is parsed in one `receive_data` call, each PUBLISH is handed to `handle` on the spot
(no task, no queue per message) and the PUBACKs of the whole chunk leave in one write, after
their readings were taken (`handle` submits synchronously: an acknowledged reading is in the
service's buffer, never dropped). aiomqtt stays the demo publisher's client and the tests'
independent peer.

**Back-pressure, not loss.** When the service is `saturated` (the database has been away long
enough for `max_buffer` readings to wait) the ingest disconnects. The broker keeps the persistent
session's subscriptions and queues the QoS 1 messages for it (mosquitto: up to
``max_queued_messages``); the ingest reconnects once the service has room and receives them.
Messages already read when it decided are still handled: nothing taken is dropped; what the broker
sent but we did not acknowledge is sent again.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from core.tasks import cancel_and_wait
from monitoring.mqtt_protocol import ClientConnection, ConnAck, Event, ProtocolError, Publish, SubAck
from monitoring.payload import Reading, Rejected, parse_batch, parse_mqtt
from monitoring.service import MonitoringService

log = logging.getLogger(__name__)
KEEPALIVE_S = 30


class MqttError(Exception):
    """The broker could not be reached, refused us, or the connection was lost."""


class _Link(asyncio.Protocol):
    """The asyncio adapter of one `ClientConnection`: PUBLISH events go to `on_publish` as they are
    parsed, the other events to `control`; what the core queues is written after each chunk."""

    def __init__(self, conn: ClientConnection, on_publish: Callable[[str, bytes], None]) -> None:
        self.conn = conn
        self.on_publish = on_publish
        self.control: asyncio.Queue[Event] = asyncio.Queue()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data, time.monotonic())
        except ProtocolError as exc:
            self._end(MqttError(f"the broker broke MQTT: {exc}"))
            return
        on_publish = self.on_publish
        for event in events:
            if type(event) is Publish:
                on_publish(event.topic, event.payload)
            else:
                self.control.put_nowait(event)
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send(time.monotonic())
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_exception(MqttError(f"connection lost: {exc or 'closed by the broker'}"))

    def _end(self, error: MqttError) -> None:
        if not self.lost.done():
            self.lost.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    async def expect(self, kind: type[ConnAck] | type[SubAck], within: float) -> Event:
        """The next control event, which must be of `kind` (PINGRESP and PUBACK are skipped)."""
        async def next_of_kind() -> Event:
            while True:
                event = await self.control.get()
                if isinstance(event, kind):
                    return event
        getter = asyncio.ensure_future(asyncio.wait_for(next_of_kind(), within))
        waits: list[asyncio.Future[Any]] = [getter, self.lost]
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            await cancel_and_wait([getter], swallow_errors=True)
            self.lost.result()  # raises MqttError
        try:
            return getter.result()
        except TimeoutError:
            raise MqttError(f"no {kind.__name__} within {within:.0f} s") from None

    async def keepalive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if not self.conn.poll(time.monotonic()):
                self._end(MqttError("the broker was silent past the keep-alive"))
                return
            self.flush()


class MqttIngest:
    def __init__(self, service: MonitoringService, host: str, port: int, prefix: str, *, username: str = "",
                 password: str = "", clock: Callable[[], float] = time.time, identifier: str = "") -> None:
        self.service = service
        self.host, self.port, self.prefix = host, port, prefix.rstrip("/")
        self.batch_topic = f"{self.prefix}/batch"
        self.username, self.password = username or None, password or None
        self.identifier = identifier or f"commandcenter-ingest-{os.getpid()}-{id(self):x}"
        self.clock = clock
        self.connected = asyncio.Event()
        self.messages = 0
        self.pauses = 0  # times the ingest left the broker because the service was saturated
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="monitoring-mqtt")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], swallow_errors=True)
            self._task = None

    async def _run(self) -> None:
        pause = 1.0
        while True:
            await self.service.wait_for_room()
            try:
                await self._session()
                pause = 1.0
                self.pauses += 1
                log.warning("monitoring: MQTT ingest paused: the service is saturated; the broker queues "
                            "for session %s", self.identifier)
            except (MqttError, OSError, TimeoutError) as exc:
                self.connected.clear()
                log.warning("monitoring: MQTT broker %s:%d: %s; retrying in %.0f s", self.host, self.port, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)

    async def _session(self) -> None:
        """One connection: returns when the service saturates; raises MqttError when it is lost first."""
        conn = ClientConnection(self.identifier, keepalive=KEEPALIVE_S, clean_session=False,
                                username=self.username, password=self.password)
        loop = asyncio.get_running_loop()
        transport, link = await asyncio.wait_for(
            loop.create_connection(lambda: _Link(conn, self.handle), self.host, self.port), 10)
        keepalive: asyncio.Task[None] | None = None
        try:
            conn.connect(time.monotonic())
            link.flush()
            ack = await link.expect(ConnAck, 10)
            assert isinstance(ack, ConnAck)
            if ack.code:
                raise MqttError(f"the broker refused the connection: {ack.reason}")
            conn.subscribe([(f"{self.prefix}/+/reading", 1), (self.batch_topic, 1)])
            link.flush()
            sub = await link.expect(SubAck, 10)
            assert isinstance(sub, SubAck)
            if 0x80 in sub.granted:
                raise MqttError(f"the broker refused the subscription to {self.prefix}/")
            keepalive = asyncio.create_task(link.keepalive())
            self.connected.set()
            log.info("monitoring: MQTT ingest subscribed on %s:%d under %s/", self.host, self.port, self.prefix)
            saturated = asyncio.ensure_future(self.service.wait_saturated())
            either: list[asyncio.Future[Any]] = [saturated, link.lost]
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait([saturated], swallow_errors=True)
            if link.lost.done():
                link.lost.result()  # raises MqttError
            conn.disconnect()  # a clean leave: the broker keeps the session and queues for it
            link.flush()
        finally:
            self.connected.clear()
            if keepalive is not None:
                await cancel_and_wait([keepalive], swallow_errors=True)
            transport.close()
            if not link.lost.done():
                link.lost.cancel()
            elif not link.lost.cancelled():
                link.lost.exception()  # retrieved: raised above, or the session ended first

    def handle(self, topic: str, payload: bytes) -> None:
        """One message: readings submitted, rejections counted (never raises)."""
        self.messages += 1
        try:
            now = self.clock()
            if topic == self.batch_topic:
                for r in parse_batch(payload, self.service.gauges, now):
                    if isinstance(r, Reading):
                        self.service.submit(r)
                    else:
                        self.service.reject(r, "mqtt")
                return
            one = parse_mqtt(topic, payload, self.service.gauges, now, self.prefix)
            if isinstance(one, Reading):
                self.service.submit(one)
            else:
                assert isinstance(one, Rejected)
                self.service.reject(one, "mqtt")
        except Exception:  # noqa: BLE001 - one message never stops the ingest
            log.exception("monitoring: MQTT message on %r could not be handled", topic[:100])
