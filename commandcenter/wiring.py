"""Composition of capabilities that must not import one another (DESIGN.md: mcu, dispatch and
recorder do not import each other): the consumer declares a Protocol, this module passes the provider.
"""
from __future__ import annotations

from typing import Any

from core.runtime import CoreServices


async def start_desk(core: CoreServices) -> Any:
    """The call-taking desk, given the running recorder's transparency log for call recordings."""
    from dispatch.calltaking import capability as desk

    recorder = core.capabilities.get("recorder")
    recording_log = None
    if recorder is not None:
        from recorder.call_recordings import CallRecordingLogService

        recording_log = CallRecordingLogService(recorder.service.log)
    from mcu.call_rooms import CallRooms

    mcu = core.capabilities.get("mcu")
    has_mcu = mcu is not None and getattr(mcu, "webrtc", None) is not None
    rooms = CallRooms(mcu, core.capabilities.get("sip")) if has_mcu else CallRooms()
    return await desk.start(core, recording_log, callers=rooms, bridge=rooms if has_mcu else None)


async def start_conference_recording(core: CoreServices) -> Any:
    """Conference recording, given the running MCU's conferences as its live source."""
    from recorder import conference_recording
    from recorder.live_source import LiveSource

    mcu = core.capabilities.get("mcu")
    live: LiveSource | None = None
    if mcu is not None:
        from mcu.recording_tap import RecordingTap

        live = RecordingTap(mcu.conferences)
    return await conference_recording.start(core, live)
