"""The dispatch capability service (started by commandcenter/node.py): the ``DispatchService``
plus, while training mode is on, the 演练 simulator. Routes reach it as ``Node.dispatch.service``.

Configuration beside the site plan file (or named in the ``[dispatch]`` settings), both optional:

* ``response_plans.toml`` (``dispatch.response_plans``): run cards; the built-in defaults
  (``dispatch/response_plans_default.toml``) otherwise;
* ``roads.geojson`` (``dispatch.roads``): a road network (LineStrings with ``speed_kmh``) for
  ETAs; great-circle × detour ÷ speed otherwise, with the assumption shown in the console;
* ``resources.toml``: the emergency resources (depots and supplies, teams, experts, shelters,
  hospitals; ``dispatch/resources/model.py``), seeded at start (live stock is kept); none otherwise.
  Routes reach them as ``Node.dispatch.resources``.

Command conferences go to the ``ConferenceStarter`` the composition root passes (the MCU's, when
one runs in this process); without one they are only asked for on the bus.
"""
from __future__ import annotations

import logging
from pathlib import Path

from core.runtime import CoreServices
from dispatch.conference import ConferenceStarter
from dispatch.crews import CrewRoster
from dispatch.plans.service import PlanService, SmsNotifier
from dispatch.plans.setup import start_plans
from dispatch.resources.model import load_catalogue
from dispatch.resources.service import ResourceService
from dispatch.response_plans import ResponsePlans
from dispatch.service import DispatchService
from dispatch.training_runner import TrainingDesk, TrainingRunner
from gis.routing import EtaEstimator, RoadNetwork

log = logging.getLogger(__name__)


def _configured(core: CoreServices, configured: Path | None, name: str) -> Path | None:
    if configured is not None:
        return configured
    beside = core.settings.site_plan.resolve().parent / name
    return beside if beside.is_file() else None


class DispatchCapability:
    def __init__(self, service: DispatchService, resources: ResourceService, plans: PlanService) -> None:
        self.service = service
        self.resources = resources
        self.plans = plans  # response plans (预案) and their activations
        self.crews = CrewRoster(service.db)  # field responders' logins → their unit (issue 20)
        self.runner = TrainingRunner(service)
        service.on_training_change.append(self._training_changed)

    def attach_desk(self, desk: TrainingDesk | None) -> None:
        """The call-taking desk of this node (or None when it stops): the drill also rings training
        calls to its positions in training mode."""
        self.runner.desk = desk

    async def _training_changed(self, enabled: bool) -> None:
        if enabled:
            self.runner.start()
        else:
            await self.runner.stop()

    async def stop(self) -> None:
        await self.runner.stop()
        await self.resources.stop()
        await self.service.stop()


async def start(core: CoreServices, conference: ConferenceStarter | None = None,
                sms: SmsNotifier | None = None) -> DispatchCapability:
    """Seed stations and units, load state, start the simulator when training mode is on.

    `conference` starts command conferences (``dispatch.conference.McuConferenceStarter`` on this
    node's MCU); None: they are requested on the bus for an MCU elsewhere."""
    settings = core.settings.dispatch
    plans_path = _configured(core, settings.response_plans, "response_plans.toml")
    roads_path = _configured(core, settings.roads, "roads.geojson")
    plans = ResponsePlans.load(plans_path) if plans_path else None  # PlanError names file:line: field
    eta = EtaEstimator(RoadNetwork.from_geojson(roads_path)) if roads_path else EtaEstimator()
    log.info("dispatch: run cards %s, ETA %s", plans_path or "built-in", roads_path or "great-circle")
    resources_path = _configured(core, None, "resources.toml")
    catalogue = load_catalogue(resources_path) if resources_path else []  # CatalogueError names the field
    service = DispatchService(core, plans=plans, eta=eta, conference=conference)
    await service.start()
    resources = ResourceService(core, eta, catalogue, clock=service.clock)
    await resources.start()
    log.info("dispatch: %d resources from %s", len(catalogue), resources_path or "nowhere")
    capability = DispatchCapability(service, resources, await start_plans(core, service, sms))
    await capability.crews.seed((u.username, u.unit) for u in core.plan.users if u.unit)
    if service.training:
        capability.runner.start()
    return capability
