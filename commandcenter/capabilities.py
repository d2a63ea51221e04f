"""The capability services a node runs, per role.

Each capability (MCU, SIP/H.323 gateway, recorder, dispatch...) contributes one `CapabilitySpec`:
a name, the roles it runs in, and an async `start(core)` returning an object with `async stop()`.
`commandcenter up --role R` starts every spec whose roles include R (all of them for `all`),
in list order, and stops them in reverse. Routes reach a running capability through
`core.capabilities[name]`. Add a capability by appending one entry to `CAPABILITIES`.
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from core.runtime import CoreServices

log = logging.getLogger(__name__)

ROLES = ("all", "web", "mcu", "recorder")


class Capability(Protocol):
    async def stop(self) -> None: ...


@dataclass(frozen=True)
class CapabilitySpec:
    name: str
    roles: frozenset[str]
    # "package.module:function" of an `async def start(core: CoreServices) -> Capability | None`
    # (None: nothing to run with these settings, e.g. switched off in config).
    entry_point: str

    def resolve(self) -> Callable[[CoreServices], Awaitable[Capability | None]]:
        module, _, function = self.entry_point.partition(":")
        starter: Callable[[CoreServices], Awaitable[Capability | None]] = getattr(
            importlib.import_module(module), function)
        return starter


# Order matters: later capabilities may use earlier ones (e.g. the SIP gateway joins MCU rooms).
CAPABILITIES: list[CapabilitySpec] = [
    CapabilitySpec("mcu", frozenset({"mcu"}), "mcu.conferences:start"),
    CapabilitySpec("sip", frozenset({"mcu"}), "mcu.legs.sip_bridge:start"),
    CapabilitySpec("h323", frozenset({"mcu"}), "mcu.h323_bridge:start"),
    CapabilitySpec("cascade", frozenset({"mcu"}), "mcu.cascade.service:start"),
    CapabilitySpec("recorder", frozenset({"recorder"}), "recorder.capability:start"),
    # needs the MCU and the recorder in one process; listed after both so it stops before them
    CapabilitySpec("conference_recording", frozenset({"mcu", "recorder"}), "recorder.conference_recording:start"),
    CapabilitySpec("dispatch", frozenset({"web"}), "dispatch.capability:start"),
    CapabilitySpec("desk", frozenset({"web"}), "commandcenter.wiring:start_desk"),
    # after "mcu" (and "cascade", the failover it reports channel state to): remote sites and commands
    CapabilitySpec("cascade_control", frozenset({"mcu"}), "mcu.cascade.control_service:start"),
]


async def start_capabilities(core: CoreServices, role: str) -> None:
    """Start the capabilities of `role` into `core.capabilities`; on failure stop those started."""
    try:
        for spec in CAPABILITIES:
            if role != "all" and role not in spec.roles:
                continue
            started = await spec.resolve()(core)
            if started is not None:
                core.capabilities[spec.name] = started
                log.info("started %s", spec.name)
    except BaseException:
        await stop_capabilities(core)
        raise


async def stop_capabilities(core: CoreServices) -> None:
    """Stop running capabilities in reverse start order; one failing stop does not block the rest."""
    for name in reversed(list(core.capabilities)):
        try:
            await core.capabilities.pop(name).stop()
        except Exception:  # noqa: BLE001 - keep stopping the others
            log.exception("stopping %s failed", name)
