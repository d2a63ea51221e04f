"""The monitoring capability (started by commandcenter/node.py): the service, the managed broker,
the MQTT ingest and the demo publisher. Routes reach it as ``Node.monitoring``.

Settings ``[monitoring]`` (config/settings.py): ``broker`` managed (the default under `make run`: a
mosquitto on 127.0.0.1:1883), external (``mqtt_host``/``mqtt_port``, with username and password) or
none (HTTP push only; the default under the test suite). A managed broker that cannot start (not
installed, port taken) is logged and the capability runs without MQTT: HTTP push still works.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os

from core.runtime import CoreServices
from monitoring.broker import BrokerError, ManagedBroker
from monitoring.demo_publisher import DemoPublisher
from monitoring.gauges import load_gauges
from monitoring.mqtt import MqttIngest
from monitoring.response import FloodResponse
from monitoring.service import MonitoringService

log = logging.getLogger(__name__)


class MonitoringCapability:
    def __init__(self, service: MonitoringService, push_tokens: dict[str, str]) -> None:
        self.service = service
        self.broker: ManagedBroker | None = None
        self.ingest: MqttIngest | None = None
        self.publisher: DemoPublisher | None = None
        self.broker_error = ""
        self._push_tokens = push_tokens

    def push_system(self, token: str) -> str | None:
        """The system whose HTTP push token this is (compared as SHA-256, in constant time), or None."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        found = None
        for name, expected in self._push_tokens.items():
            if hmac.compare_digest(digest, expected):
                found = name
        return found

    async def stop(self) -> None:
        for part in (self.publisher, self.ingest):
            if part is not None:
                await part.stop()
        await self.service.stop()
        if self.broker is not None:
            await self.broker.stop()


async def start(core: CoreServices, response: FloodResponse | None) -> MonitoringCapability | None:
    """The capability with the plan's gauges (ConfigError naming the field on a bad one, including a
    ``plan`` the responder does not know); None when switched off."""
    settings = core.settings.monitoring
    if not settings.enabled:
        return None
    gauges = load_gauges(core.plan, await response.plan_keys() if response is not None else None)
    service = MonitoringService(core, gauges, response)
    await service.start()
    capability = MonitoringCapability(service, settings.push_tokens)
    try:
        testing = bool(os.environ.get("CC_TESTING"))
        mode = settings.broker or ("none" if testing else "managed")
        if mode == "managed":
            broker = ManagedBroker(settings.mqtt_host, settings.mqtt_port, core.settings.var_dir)
            try:
                await broker.start()
                capability.broker = broker
            except BrokerError as exc:
                capability.broker_error = str(exc)
                log.warning("monitoring: no managed MQTT broker (%s); HTTP push only", exc)
        if mode == "external" or capability.broker is not None:
            capability.ingest = MqttIngest(service, settings.mqtt_host, settings.mqtt_port, settings.topic_prefix,
                                           username=settings.mqtt_username, password=settings.mqtt_password)
            capability.ingest.start()
            demo = settings.demo_publisher if settings.demo_publisher is not None else (
                core.settings.demo.enabled and not testing)
            if demo:
                capability.publisher = DemoPublisher(gauges, settings.mqtt_host, settings.mqtt_port,
                                                     settings.topic_prefix, settings.demo_rise_minutes)
                capability.publisher.start()
        log.info("monitoring: %d gauges, MQTT %s, demo publisher %s", len(gauges), mode if capability.ingest else "off",
                 "on" if capability.publisher else "off")
    except BaseException:
        await capability.stop()
        raise
    return capability
