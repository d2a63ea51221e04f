"""Starting SMS on a node: Kannel (bearerbox + smsbox, and fakesmsc as the operator when
``sms.smsc = "fake"``) from a generated config, the delivery-report listener, the Kannel client and
the ``SmsService`` with its sender task. Off unless ``sms.enabled``; a missing Kannel fails the start
naming the package.
"""
from __future__ import annotations

import logging
import secrets
from pathlib import Path

from core.runtime import CoreServices
from sms.dlr import Report
from sms.gateway import DlrListener, KannelClient
from sms.kannel import Kannel, SmscConfig
from sms.meeting import MeetingSms
from sms.service import DutyDirectory, SmsService

log = logging.getLogger(__name__)


def _dlr_key(run_dir: Path) -> bytes:
    """The key of the delivery-report tags; kept so reports of messages Kannel stored across a
    restart still verify."""
    path = run_dir / "dlr.key"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return bytes.fromhex(path.read_text().strip())


class SmsCapability:
    def __init__(self, service: SmsService, kannel: Kannel, listener: DlrListener, client: KannelClient) -> None:
        self.service = service
        # meeting notices (会议通知): the MeetingNotifier the conference schedule declares
        self.meetings = MeetingSms(service, {r.id: (r.name, tuple(r.contacts)) for r in service.core.plan.meeting_rooms})
        self.kannel = kannel
        self.listener = listener
        self.client = client

    async def gateway(self) -> dict[str, object]:
        """The gateway's state for the console: Kannel's own status (up/down, what it holds) and
        the recipients waiting in our queue."""
        return {**(await self.kannel.status()).to_json(), "waiting": await self.service.queue_length()}

    async def stop(self) -> None:
        await self.service.stop()
        await self.listener.stop()
        await self.client.close()
        await self.kannel.stop()


async def start(core: CoreServices, duty: DutyDirectory | None = None) -> SmsCapability | None:
    s = core.settings.sms
    if not s.enabled:
        return None
    run_dir = core.settings.var_dir / "sms"
    smsc = SmscConfig(kind=s.smsc, throughput=s.throughput, host=s.smpp_host, port=s.smpp_port,
                      system_id=s.smpp_system_id,
                      password=s.smpp_password.get_secret_value() if s.smpp_password else "",
                      system_type=s.smpp_system_type, sender=s.sender)
    kannel = Kannel(run_dir, smsc, kannel_bin=s.kannel_bin, fakesmsc=s.fakesmsc, base_port=s.base_port,
                    queue_limit=s.queue_limit, max_parts=s.max_parts)
    key = _dlr_key(run_dir)
    holder: list[SmsService] = []

    async def on_report(report: Report) -> None:
        await holder[0].on_report(report)

    listener = DlrListener(key, on_report, s.dlr_port)
    await listener.start()
    try:
        await kannel.start()
    except BaseException:
        await listener.stop()
        raise
    client = KannelClient(kannel.sendsms_url, kannel.username, kannel.password, s.sender, listener.base_url, key)
    service = SmsService(core, client, duty)
    holder.append(service)
    service.start()
    log.info("sms: sending through Kannel at %s (%s operator, %g parts/s)", kannel.sendsms_url, s.smsc, s.throughput)
    return SmsCapability(service, kannel, listener, client)
