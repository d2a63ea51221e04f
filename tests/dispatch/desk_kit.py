"""A call-taking desk behind a real SIP endpoint and the emergency trunk, for the SIPp tests.

One builder for the three test modules that drive the desk over SIP (call-taking, training mode,
trunk security): the dispatch side, the desk, a SIP endpoint on a free loopback port and the trunk,
stopped in reverse order.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from core.runtime import CoreServices
from dispatch.calltaking.acd import AcdConfig
from dispatch.calltaking.service import DeskConfig, DeskService
from dispatch.calltaking.trunk import EmergencyTrunk, TrunkConfig
from dispatch.calltaking.trunk_trust import TrunkPeer
from dispatch.service import DispatchService
from mcu.call_rooms import CallRooms
from recorder.call_recordings import CallRecordingLogService
from recorder.pg_storage import PgLogStorage
from recorder.signing import KeyStore
from recorder.transparency_log import TransparencyLog
from sip_gateway.aio.sip_endpoint import SipEndpoint
from sip_gateway.sip.invite_router import with_route
from sip_gateway.sip.useragent import UserAgentConfig
from tests.conftest import make_settings
from tests.dispatch.calltaking_samples import free_port


@dataclass
class Desk:
    core: CoreServices
    dispatch: DispatchService
    desk: DeskService
    endpoint: SipEndpoint
    trunk: EmergencyTrunk
    log: TransparencyLog | None = None

    @property
    def sealed_log(self) -> TransparencyLog:
        """The transparency log recordings are sealed into (built with `with_log=True`)."""
        assert self.log is not None, "running_desk(..., with_log=True) builds the log"
        return self.log


@contextlib.asynccontextmanager
async def running_desk(db_url: str, tmp_path: Path, *, training: bool = False,
                       retention_days: int | None = None, with_log: bool = False,
                       peers: tuple[TrunkPeer, ...] | None = None, audited: bool = False) -> AsyncIterator[Desk]:
    """The desk on a fresh database; `with_log` seals recordings into a real transparency log."""
    core = await CoreServices.start(make_settings(db_url, tmp_path), seed=False)
    dispatch = DispatchService(core)
    await dispatch.start()
    await dispatch.set_training(training, "test")
    acd = AcdConfig(answer_timeout_s=20, wrap_up_s=0)
    config = DeskConfig(acd=acd) if retention_days is None else DeskConfig(
        acd=acd, recording_retention_days=retention_days)
    service = DeskService(core, dispatch, config)
    log = None
    if with_log:
        log = TransparencyLog(PgLogStorage(core.db), KeyStore(tmp_path / "keys"))
        await log.open()
        service.recording_log = CallRecordingLogService(log)
    await service.start()
    endpoint = SipEndpoint(UserAgentConfig(host="127.0.0.1", port=free_port()))
    await endpoint.start(tcp=False)
    trunk_config = TrunkConfig(recordings_dir=tmp_path / "calls")
    if peers is not None:
        trunk_config = TrunkConfig(recordings_dir=tmp_path / "calls", peers=peers)
    trunk = EmergencyTrunk(endpoint, service, trunk_config, media=CallRooms(), audit=core.audit if audited else None)
    endpoint.router = with_route(endpoint.router, trunk.route)
    try:
        yield Desk(core, dispatch, service, endpoint, trunk, log)
    finally:
        await trunk.close()
        await endpoint.close()
        await service.stop()
        await dispatch.stop()
        await core.stop()


async def wait_until(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Poll `predicate` every 50 ms until it is true; TimeoutError after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)
