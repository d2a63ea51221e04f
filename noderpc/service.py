"""Start a node's RPC end: register and heartbeat (always), serve and call (with a node secret)."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from core.runtime import CoreServices

from .pinning import LivenessRule
from .registry import HostedItems, Registry
from .transport import NodeRpc, RpcService


@dataclass
class RpcCapability:
    """The running RPC end of this node: its registry (pins) and its transport."""

    registry: Registry
    rpc: NodeRpc

    @property
    def node_id(self) -> str:
        return self.registry.node_id

    @property
    def enabled(self) -> bool:
        """True when a node secret is configured (calls can be made and served)."""
        return bool(self.rpc.secret)

    def host(self, items: HostedItems) -> None:
        self.registry.add_source(items)

    def serve(self, service: RpcService, prefix: str = "") -> None:
        self.rpc.serve(service, prefix)

    async def stop(self) -> None:
        await self.rpc.stop()
        await self.registry.stop()


async def start(core: CoreServices, role: str) -> RpcCapability:
    """Register this process as a node of `role` (id: node name, role and a random suffix) and listen."""
    settings = core.settings.nodes
    node_id = f"{core.settings.node_name}/{role}/{secrets.token_hex(3)}"
    rule = LivenessRule(settings.heartbeat_seconds, settings.dead_after_seconds)
    registry = Registry(core.db, node_id, role, core.settings.base_url if role in ("all", "web") else "", rule,
                        predecessor=_succeed(core.settings.var_dir / f"node-id.{role}", node_id))
    secret = settings.secret.get_secret_value().encode() if settings.secret is not None else b""
    rpc = NodeRpc(core.db, registry, secret, default_timeout=settings.rpc_timeout_seconds)
    await registry.start()
    try:
        await rpc.start()
    except BaseException:
        await registry.stop()
        raise
    return RpcCapability(registry, rpc)


def _succeed(record: Path, node_id: str) -> str | None:
    """Record `node_id` as this var dir's node and return the id of the run before it, if any.

    Two live processes never share a var dir, so the id found there belongs to a run that ended
    (cleanly or in a crash)."""
    try:
        previous = record.read_text().strip() or None
    except (FileNotFoundError, UnicodeDecodeError):
        previous = None
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(node_id + "\n")
    return previous
