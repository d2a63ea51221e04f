"""The dispatch capability service (see commandcenter/capabilities.py): the ``DispatchService``
plus, while training mode is on, the 演练 simulator. Routes reach it as
``core.capabilities["dispatch"].service``."""
from __future__ import annotations

from core.runtime import CoreServices
from dispatch.service import DispatchService
from dispatch.training_runner import TrainingRunner


class DispatchCapability:
    def __init__(self, service: DispatchService) -> None:
        self.service = service
        self.runner = TrainingRunner(service)
        service.on_training_change.append(self._training_changed)

    async def _training_changed(self, enabled: bool) -> None:
        if enabled:
            self.runner.start()
        else:
            await self.runner.stop()

    async def stop(self) -> None:
        await self.runner.stop()
        await self.service.stop()


async def start(core: CoreServices) -> DispatchCapability:
    """Seed stations and units, load state, start the simulator when training mode is on."""
    service = DispatchService(core)
    await service.start()
    capability = DispatchCapability(service)
    if service.training:
        capability.runner.start()
    return capability
