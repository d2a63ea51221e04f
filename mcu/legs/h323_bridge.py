"""The H.323 capability: one endpoint, its gatekeeper mode, and its calls as conference sites.

:class:`H323Bridge` owns one :class:`~sip_gateway.aio.h323_endpoint.H323Endpoint` (TCP 1720 by default):

* **dial-in** goes to :class:`mcu.legs.h323_dial_in.DialIn` (by number/alias, or by IP through
  the IVR; the one admission policy decides who enters);
* **dial-out**: :meth:`H323Bridge.invite` calls a site for the console's invite/redial button
  (by address, or by alias through the gatekeeper), :meth:`H323Bridge.hangup` releases it;
  :class:`H323SiteDialer` is that API as the conference service's dialer for ``h323`` sites;
* **gatekeeper modes**: none, client (:class:`RegistrationKeeper`, registering our aliases and
  every dial-in conference id) or server (:class:`LocalGatekeeper`, our own RAS gatekeeper).

With the conferences' content service (``content``), the endpoint announces H.239 (presentation
role, :data:`CONTENT_FORMATS`) and every call gets an RTP port pair for the content channel
(session 3) from the same port manager.

Each call is an :class:`mcu.legs.h323.H323Site`. Site status (calling/joined/failed/left) and
statistics (streams, round-trip delay, flow-control cap) go to the console like SIP sites.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from config.site_plan import SitePlan
from mcu.conferences import ConferenceError, ConferenceService, DialError, RunningConference
from mcu.legs.h323 import H323Site, formats_for_line
from mcu.legs.h323_content_media import ContentHub
from mcu.legs.h323_dial_in import DialIn
from mcu.legs.h323_settings import BridgeSettings, parse_address, parse_target
from mcu.legs.prompts import BEEPS
from mcu.room import RoomError
from sip_gateway.aio.h224_channel import H224Channel
from sip_gateway.aio.h323_endpoint import AdmissionRefused, CallHandle, H323Endpoint
from sip_gateway.aio.h323_gatekeeping import LocalGatekeeper, RegistrationKeeper
from sip_gateway.aio.h323_media import H323MediaLeg, sent_formats
from sip_gateway.aio.ports import RtpPortManager
from sip_gateway.aio.rtp_leg import DscpMarking
from sip_gateway.h323.call import EndpointConfig
from sip_gateway.h323.capabilities import (
    AUDIO_SESSION,
    DEFAULT_FORMATS,
    H224_SESSION,
    VIDEO_SESSION,
    Codec,
    MediaFormat,
)
from sip_gateway.h323.events import MediaAddress
from sip_gateway.h323.h239 import CONTENT_SESSION
from sip_gateway.h323.q931 import Cause
from sip_gateway.h323.ras import RAS_PORT, Gatekeeper
from sip_gateway.rtp.codecs import Pcm

if TYPE_CHECKING:
    pass

__all__ = ["H323Bridge", "H323Capability", "H323SiteDialer"]

log = logging.getLogger(__name__)

# What we receive on an H.239 content channel (we decode any size; H.264 level 4 = 1080p).
CONTENT_FORMATS: tuple[MediaFormat, ...] = (
    MediaFormat(Codec.H264, max_bitrate=19200, h264_level=85),
    MediaFormat(Codec.H263, max_bitrate=19200, mpi=(("cifMPI", 1), ("cif4MPI", 2))),
)


class H323Bridge:
    """H.323 calls ↔ conference sites. Python API for the console: :meth:`invite`, :meth:`hangup`."""

    def __init__(self, conferences: ConferenceService, settings: BridgeSettings | None = None,
                 config: EndpointConfig | None = None, prompts: Mapping[str, Pcm] | None = None,
                 content: ContentHub | None = None) -> None:
        self.conferences = conferences
        self.content = content
        self.prompts: Mapping[str, Pcm] = prompts or BEEPS  # spoken (PromptLibrary) or the beeps
        self.settings = settings or BridgeSettings()
        self.config = config or EndpointConfig(
            h323_id="commandcenter MCU", display="commandcenter MCU", is_mcu=True,
            signalling_host=self.settings.host, media_host=self.settings.host,
            round_trip_interval=self.settings.round_trip_interval, transmit_formats=sent_formats(DEFAULT_FORMATS),
            content_formats=CONTENT_FORMATS if content is not None else (), h224=True)
        sessions = (AUDIO_SESSION, VIDEO_SESSION) + ((CONTENT_SESSION,) if self.config.content_formats else ()) \
            + ((H224_SESSION,) if self.config.h224 else ())
        self.ports = RtpPortManager(self.config.media_host, self.settings.rtp_first, self.settings.rtp_last,
                                    sessions=sessions)
        self.dial_in = DialIn(self)
        self.endpoint = H323Endpoint(self.config, on_incoming=self.dial_in.on_incoming, ports=self.ports)
        self.sites: set[H323Site] = set()
        self._last_call: dict[tuple[str, str], tuple[str, str | None, str]] = {}  # for redial
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: MediaAddress | None = None
        self.registration: RegistrationKeeper | None = None  # gatekeeper = "client"
        self.local_gatekeeper: LocalGatekeeper | None = None  # gatekeeper = "server"
        self._conference_ids: frozenset[str] = frozenset()  # known conference ids (server mode lookups)

    async def start(self) -> MediaAddress:
        """Listen for calls and start the gatekeeper mode; returns the bound address."""
        self.address = await self.endpoint.listen(self.settings.host, self.settings.port)
        mode = self.settings.gatekeeper
        ras_host = self.settings.ras_host or self.settings.host
        if mode == "client":
            self.registration = RegistrationKeeper(
                self.endpoint, parse_address(self.settings.gatekeeper_address, RAS_PORT), self._registered_aliases,
                ras_host=ras_host, ras_port=self.settings.ras_port, time_to_live=self.settings.time_to_live,
                retry_delay=self.settings.gatekeeper_retry, alias_check_interval=self.settings.alias_check_interval)
            await self.registration.start()
        elif mode == "server":
            await self._registered_aliases()  # fills the conference ids the gatekeeper answers for
            gatekeeper = Gatekeeper(identifier="commandcenter-gk", time_to_live=self.settings.time_to_live,
                                    local_aliases=self._local_alias, accounts=dict(self.settings.gatekeeper_accounts))
            self.local_gatekeeper = LocalGatekeeper(gatekeeper, ras_host, self.settings.ras_port)
            await self.local_gatekeeper.start()
        elif mode != "none":
            raise ValueError(f"unknown gatekeeper mode {mode!r}")
        return self.address

    async def _registered_aliases(self) -> tuple[str, ...]:
        """Our aliases: the configured ones plus every scheduled or running conference id
        (E.164 digits), so terminals can dial a conference by number through the gatekeeper."""
        # Never the room of an emergency call: no dial-in reaches it, so no gatekeeper knows it.
        ids = [r.id for r in await self.conferences.list_conferences(include_ended=False) if r.dial_in]
        ids += [c.id for c in self.conferences.running_conferences() if c.record.dial_in]
        self._conference_ids = frozenset(ids)
        return tuple(dict.fromkeys([*self.settings.aliases, *sorted(set(ids))]))

    def _local_alias(self, alias: str) -> MediaAddress | None:
        """Server mode: aliases our own call-signalling address answers (ARQ from a terminal)."""
        running = self.conferences.running(alias)
        if alias in self.settings.aliases or alias in self._conference_ids or (
                running is not None and running.record.dial_in):
            return self.address
        return None

    async def stop(self) -> None:
        """Hang up every call, unregister from the gatekeeper and stop listening."""
        for site in list(self.sites):
            site.handle.release(Cause.NORMAL_CALL_CLEARING)
        for site in list(self.sites):  # DRQs go out while still registered
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(site.released), 2)
        if self.registration is not None:
            await self.registration.stop()
        if self.local_gatekeeper is not None:
            self.local_gatekeeper.close()
        await self.endpoint.close()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 3)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task that :meth:`stop` waits for."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def new_site(self, handle: CallHandle, dial_out: bool) -> H323Site:
        """A site for ``handle`` with its media bound, following the call's events."""
        media = await H323MediaLeg.adopt(self.ports, handle.call.media_ports, self.config.media_host,
                                         fast_update=handle.request_fast_update,
                                         dscp=DscpMarking(self.settings.dscp_audio, self.settings.dscp_video))
        site = H323Site(self, handle, media, dial_out=dial_out)
        self.sites.add(site)
        self.spawn(site.pump())
        return site

    def site_ended(self, site: H323Site) -> None:
        """A released call's media is closed: its ports go back, the site is forgotten."""
        self.ports.release(site.handle.call.media_ports)
        self.sites.discard(site)

    def find(self, conference_id: str, site_id: str) -> H323Site | None:
        """The live (not yet released) call of a site."""
        return next((s for s in self.sites if s.site_id == site_id and s.conference is not None
                     and s.conference.id == conference_id and not s.released.done()), None)

    def camera(self, conference_id: str, site_id: str) -> H224Channel | None:
        """The site's far-end camera control (mcu.legs.fecc.CameraProvider), when it opened H.224."""
        site = self.find(conference_id, site_id)
        return site.camera if site is not None else None

    # ------------------------------------------------------------------ dial-out (console)
    async def invite(self, conference_id: str, site_id: str, address: str | None = None, alias: str | None = None,
                     name: str = "") -> H323Site:
        """Call a site into a running conference (invite and redial). ValueError for bad input.

        ``address`` is ``[alias@]host[:port]`` (None: the site plan's H.323 endpoint of the
        meeting room ``site_id``); ``alias`` the E.164 number or H.323 alias to call there.
        Returns at once; the site list shows calling → joined (or failed with the cause).
        """
        conf = self.conferences.running(conference_id)
        if conf is None:
            raise ValueError(f"会议未在进行: {conference_id}")
        if not site_id or not re.fullmatch(r"[0-9A-Za-z_.\-]{1,64}", site_id):
            raise ValueError(f"无效的会场标识: {site_id!r}")
        if site_id in conf.room.participants or self.find(conference_id, site_id) is not None:
            raise ValueError(f"会场已在会议中: {site_id}")
        if not address:
            planned = self.plan_address(site_id)
            if planned is None:
                raise ValueError("缺少 H.323 地址")
            address, name = planned[1], name or planned[0]
        target_alias, target = parse_target(address)
        alias = alias or target_alias
        display = name or (conf.sites[site_id].name if site_id in conf.sites else site_id)
        self._last_call[(conference_id, site_id)] = (address, alias, display)
        where = f"{target.host}:{target.port}" if target is not None else "网守"
        await conf.set_site_status(site_id, "calling", f"h323:{alias or ''}@{where}", name=display, protocol="h323")
        try:
            target = self._resolve(alias, target)
            # A stated line: our capability set asks for no more video than it carries beside audio.
            config = replace(self.config, formats=formats_for_line(self.config.formats, self.line_kbps(site_id))) \
                if self.line_known(site_id) else None
            handle = await self.endpoint.dial(target, alias, config=config)
        except AdmissionRefused as exc:
            text = (f"别名 {alias} 未在网守注册" if exc.reason == "calledPartyNotRegistered"
                    else f"网守拒绝呼叫（{exc.reason}）")
            if exc.reason == "callerNotRegistered" and self.registration is not None:
                self.registration.forget("ARJ callerNotRegistered")
            await conf.set_site_status(site_id, "failed", text, name=display, protocol="h323")
            raise ConnectionError(text) from exc
        except LookupError as exc:
            await conf.set_site_status(site_id, "failed", str(exc.args[0]), name=display, protocol="h323")
            raise ConnectionError(str(exc.args[0])) from exc
        except (OSError, TimeoutError) as exc:
            await conf.set_site_status(site_id, "failed", f"连接失败: {exc}", name=display, protocol="h323")
            raise ConnectionError(f"无法连接 {where}: {exc}") from exc
        site = await self.new_site(handle, dial_out=True)
        site.conference, site.site_id = conf, site_id
        self.spawn(self._outgoing(site, conf, site_id, display))
        return site

    def _resolve(self, alias: str | None, target: MediaAddress | None) -> MediaAddress | None:
        """Where to call: the address, or the alias's registration in our gatekeeper (server
        mode). None: the registered client asks its gatekeeper (ARQ). LookupError (zh-CN) when
        the alias cannot be resolved."""
        if target is not None:
            return target
        if self.local_gatekeeper is not None:
            found = self.local_gatekeeper.lookup(alias or "")
            if found is None:
                raise LookupError(f"别名 {alias} 未在本机网守注册")
            return found
        if self.registration is not None:
            if self.endpoint.gatekeeper is None:
                raise LookupError(f"尚未注册到网守，无法按别名 {alias} 呼叫")
            return None
        raise LookupError(f"未配置网守，无法按别名 {alias} 呼叫（请填写 IP 地址）")

    async def _outgoing(self, site: H323Site, conf: RunningConference, site_id: str, name: str) -> None:
        try:
            async with asyncio.timeout(self.settings.answer_timeout):
                await site.settled.wait()
            if site.released.done():
                return  # finish() reported the failure
            await site.join(conf, site_id, name)
        except TimeoutError:
            site.handle.release(Cause.NO_ANSWER)
        except RoomError as exc:
            log.info("H.323 site %s refused by the room: %s", site_id, exc)
            site.handle.release(Cause.CALL_REJECTED)
        except Exception:  # a bug or the database: log it, release the call, keep serving others
            log.exception("H.323 site %s failed while joining", site_id)
            site.handle.release(Cause.TEMPORARY_FAILURE)

    def line_kbps(self, site_id: str) -> int:
        """The line of a site: its plan meeting room's H.323 endpoint, else ``lines.h323`` (the
        site plan's default; 2048 without a plan)."""
        plan = getattr(self.conferences.core, "plan", None)
        return plan.line_kbps("h323", room_id=site_id) if isinstance(plan, SitePlan) else 2048

    def line_known(self, site_id: str) -> bool:
        """Does the site plan state the site's line (its meeting room's H.323 endpoint's ``line_kbps``)?
        Otherwise the H.323 default stands in and the site's video starts low (mcu.legs.rate_budget)."""
        plan = getattr(self.conferences.core, "plan", None)
        return isinstance(plan, SitePlan) and plan.configured_line_kbps("h323", room_id=site_id) is not None

    def plan_address(self, site_id: str) -> tuple[str, str] | None:
        """(name, ``[alias@]host[:port]``) of a site-plan meeting room's H.323 endpoint."""
        plan = getattr(self.conferences.core, "plan", None)
        for room in getattr(plan, "meeting_rooms", ()):
            if room.id == site_id:
                ep = next((e for e in room.endpoints if e.protocol == "h323" and e.address), None)
                return (room.name, ep.address) if ep is not None else None
        return None

    async def redial(self, conference_id: str, site_id: str) -> H323Site:
        """Hang up the site's call if it is still up, then call its last (or planned) address."""
        last = self._last_call.get((conference_id, site_id))
        if last is None and self.plan_address(site_id) is None:
            raise ValueError(f"会场没有可重拨的地址: {site_id}")
        await self.hangup(conference_id, site_id)
        conf = self.conferences.running(conference_id)
        if conf is not None and site_id in conf.room.participants:
            await conf.leave(site_id, "redial")
        if last is None:
            return await self.invite(conference_id, site_id, None)
        address, alias, name = last
        return await self.invite(conference_id, site_id, address, alias, name)

    async def hangup(self, conference_id: str, site_id: str) -> bool:
        """Release a site's H.323 call (False when there is none)."""
        site = self.find(conference_id, site_id)
        if site is None:
            return False
        site.handle.release(Cause.NORMAL_CALL_CLEARING)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(site.released), 5)
        return True

    def gatekeeper_status(self) -> dict[str, Any]:
        """The gatekeeper mode and its state (for the console or a health page)."""
        out: dict[str, Any] = {"mode": self.settings.gatekeeper}
        keeper = self.registration
        if keeper is not None:
            protocol = keeper.protocol
            out.update(gatekeeper=f"{keeper.gatekeeper.host}:{keeper.gatekeeper.port}",
                       registered=keeper.registered.is_set(), registrations=keeper.registrations,
                       last_error=keeper.last_error,
                       gatekeeper_id=protocol.client.gatekeeper_id if protocol else None,
                       endpoint_id=protocol.client.endpoint_id if protocol else None,
                       aliases=list(protocol.client.config.aliases) if protocol else [])
        if self.local_gatekeeper is not None:
            gk = self.local_gatekeeper.gatekeeper
            gk.expire(asyncio.get_running_loop().time())
            out.update(ras_address=f"{gk.ras_address.host}:{gk.ras_address.port}", terminals=[
                {"endpoint_id": r.endpoint_id, "aliases": list(r.aliases),
                 "address": f"{r.call_signal.host}:{r.call_signal.port}"} for r in gk.registrations.values()])
        return out

    def statistics(self) -> list[dict[str, Any]]:
        """Every H.323 call: site, conference, state and figures."""
        out = []
        for site in self.sites:
            out.append({"site_id": site.site_id, "conference_id": site.conference.id if site.conference else None,
                        "dial_out": site.dial_out, "joined": site.site is not None,
                        **(site.site.statistics() if site.site is not None else {})})
        return out



class H323SiteDialer:
    """The chair console's invite/redial/hang-up buttons (`ConferenceService.dial`) for H.323 sites."""

    def __init__(self, bridge: H323Bridge) -> None:
        self.bridge = bridge

    async def invite(self, conference: RunningConference, site_id: str, actor: str) -> None:
        try:
            await self.bridge.invite(conference.id, site_id)
        except (ValueError, ConnectionError) as exc:
            raise ConferenceError(str(exc)) from None

    async def redial(self, conference: RunningConference, site_id: str, actor: str) -> None:
        try:
            await self.bridge.redial(conference.id, site_id)
        except (ValueError, ConnectionError) as exc:
            raise ConferenceError(str(exc)) from None

    async def hangup(self, conference: RunningConference, site_id: str, actor: str) -> None:
        if not await self.bridge.hangup(conference.id, site_id):
            raise ConferenceError(f"会场不在通话中：{site_id}")

    async def invite_address(self, conference: RunningConference, address: str, name: str, actor: str) -> str:
        """The console's "add a site by address": ``h323:``/alias/number/IP; returns the new site id."""
        target = address.removeprefix("h323:")
        site_id = "h323-" + re.sub(r"[^0-9A-Za-z_.-]", "_", target)[:58]
        try:
            await self.bridge.invite(conference.id, site_id, address=target, name=name or target)
        except ValueError as exc:
            raise DialError("bad_address", str(exc)) from None
        except ConnectionError as exc:  # the site list shows it failed, with the reason
            raise DialError("unavailable", str(exc)) from None
        return site_id


@dataclass
class H323Capability:
    """What ``Node.h323`` holds."""

    bridge: H323Bridge

    async def stop(self) -> None:
        await self.bridge.stop()
