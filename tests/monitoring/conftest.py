"""Fixtures for monitoring: a node with a real mosquitto (managed by the capability) on a free port."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from commandcenter.node import Node, start_node
from core.runtime import CoreServices
from tests.conftest import free_port, make_settings


@pytest.fixture
async def web_node(seeded_db_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    """The web role's node (dispatch, plans, monitoring) with its own mosquitto on a free port."""
    settings = make_settings(seeded_db_url, tmp_path, monitoring={"broker": "managed", "mqtt_port": free_port()})
    core = await CoreServices.start(settings)
    node = await start_node(core, "web")
    try:
        assert node.monitoring is not None and node.monitoring.broker is not None, (
            node.monitoring and node.monitoring.broker_error)
        assert node.monitoring.ingest is not None
        await node.monitoring.ingest.connected.wait()
        yield node
    finally:
        await node.stop()


class Publisher:
    """A separate MQTT client, as a gauge or a concentrator would be."""

    def __init__(self, client: aiomqtt.Client, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    async def reading(self, gauge: str, value: object, at: float | None = None) -> None:
        body: dict[str, object] = {"value": value}
        if at is not None:
            body["at"] = at
        await self.client.publish(f"{self.prefix}/{gauge}/reading", json.dumps(body), qos=1)

    async def raw(self, topic: str, payload: bytes) -> None:
        await self.client.publish(topic, payload, qos=1)


@pytest.fixture
async def publisher(web_node: Node) -> AsyncIterator[Publisher]:
    settings = web_node.core.settings.monitoring
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port, identifier="test-gauge") as client:
        yield Publisher(client, settings.topic_prefix)
