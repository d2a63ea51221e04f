"""Sans-I/O far-end camera control over one H.224 channel: we steer the far end's camera.

One :class:`FeccSession` per call that negotiated H.224 (SIP RFC 4573 or the H.323 H.224 data
channel). It is told the H.224 payloads that arrive and the chair's commands, each with the time
``now`` (seconds, any monotonic origin); it answers with the payloads to send and what it learnt.
It reads no clock and does no I/O.

Rules:

* **Start-up** (:meth:`FeccSession.start`): we send our Client List (CME and H.281; H.281 with
  extra capabilities only when :attr:`FeccRules.camera` says we are a camera, which the MCU is
  not: test peers are), those capabilities, a Client List command and an Extra Capabilities
  command for H.281. Until the far end answers, :meth:`FeccSession.poll` repeats the two
  commands every :attr:`FeccRules.retry_seconds`, at most :attr:`FeccRules.retries` times.
* **The far end's CME**: its Client List command gets our list; its Extra Capabilities command
  gets :attr:`FeccRules.camera` (for the MCU an empty set: 0 presets, no sources); its Client List tells whether it
  has H.281 at all (:attr:`FeccSession.far_has_h281`); its H.281 extra capabilities become
  :attr:`FeccSession.capabilities` (:class:`Learned`).
* **Steering**: press = Start Action with :attr:`FeccRules.timeout_ms`; while the chair holds,
  the console repeats :meth:`FeccSession.continue_action` (about every 400 ms): a Continue when
  the same action was started or continued less than the timeout ago, else a new Start (the far
  end has stopped by itself meanwhile); release = Stop Action for what is held. Presets and
  video source selection are single messages. Whether a far end *can* do a movement is the
  caller's question (:meth:`FeccSession.supports`): unknown capabilities allow everything.
* **Garbage**: a payload that is not an H.224 frame, a CME or H.281 message we cannot read, a
  broken segmentation: dropped and counted in :attr:`FeccSession.dropped`, never raised. H.281
  messages *to us* (the far end steering the MCU, which has no camera) are reported as
  :class:`FarEndRequest` and otherwise ignored; other clients' data is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cme import (
    ClientList,
    ClientListCommand,
    ExtraCapabilities,
    ExtraCapabilitiesCommand,
    FeccCapabilities,
    encode_cme,
    encode_fecc_capabilities,
    parse_cme,
    parse_fecc_capabilities,
)
from .frame import CLIENT_CME, CLIENT_H281, ClientId, H224Error, Reassembler, parse_frame, segment
from .h281 import (
    DEFAULT_TIMEOUT_MS,
    Action,
    ActionMessage,
    H281Code,
    H281Message,
    PresetMessage,
    VideoSourceMessage,
    encode_h281,
    parse_h281,
)

__all__ = ["FarEndRequest", "FeccRules", "FeccSession", "Learned", "Send"]

CME = ClientId(CLIENT_CME)
H281 = ClientId(CLIENT_H281)


@dataclass(frozen=True)
class FeccRules:
    """How the session behaves."""

    timeout_ms: int = DEFAULT_TIMEOUT_MS  # in every Start Action
    retry_seconds: float = 2.0
    retries: int = 5
    terminal: int = 0  # our terminal address (point to point: 0)
    camera: FeccCapabilities | None = None  # what we announce as a camera (the MCU: None, it has none)


@dataclass(frozen=True)
class Send:
    """An H.224 payload to send (one RTP packet)."""

    payload: bytes


@dataclass(frozen=True)
class Learned:
    """The far end told us what its camera can do."""

    capabilities: FeccCapabilities


@dataclass(frozen=True)
class FarEndRequest:
    """The far end sent us an H.281 message (we have no camera: nothing happens)."""

    message: H281Message


Output = Send | Learned | FarEndRequest


@dataclass
class FeccSession:
    """Far-end camera control on one call (see the module docstring for the rules)."""

    rules: FeccRules = field(default_factory=FeccRules)
    capabilities: FeccCapabilities | None = None
    far_has_h281: bool | None = None  # None until the far end's Client List arrives
    dropped: int = 0
    received: int = 0
    sent: int = 0
    _reassembler: Reassembler = field(default_factory=Reassembler)
    _held: frozenset[Action] = frozenset()
    _held_since: float = 0.0  # when the last Start/Continue for _held went out
    _asked_at: float | None = None
    _asks: int = 0

    # ------------------------------------------------------------------ start-up

    def start(self, now: float) -> list[bytes]:
        """Our client list and the commands asking for the far end's."""
        self._asked_at, self._asks = now, 1
        frames = self._frames(CME, self._client_list())
        if self.rules.camera is not None:
            frames += self._frames(CME, self._own_capabilities())
        return frames + self._ask()

    def _client_list(self) -> bytes:
        return encode_cme(ClientList(((CME, False), (H281, self.rules.camera is not None))))

    def _own_capabilities(self) -> bytes:
        return encode_cme(ExtraCapabilities(H281, encode_fecc_capabilities(self.rules.camera or FeccCapabilities())))

    def _ask(self) -> list[bytes]:
        return self._frames(CME, encode_cme(ClientListCommand())) \
            + self._frames(CME, encode_cme(ExtraCapabilitiesCommand(H281)))

    def poll(self, now: float) -> list[bytes]:
        """Repeat the commands while the far end has not answered (call at :meth:`next_poll`)."""
        due = self.next_poll()
        if due is None or now < due:
            return []
        self._asked_at, self._asks = now, self._asks + 1
        return self._ask()

    def next_poll(self) -> float | None:
        """When :meth:`poll` has something to do, or None."""
        if self._asked_at is None or self.capabilities is not None or self._asks > self.rules.retries:
            return None
        return self._asked_at + self.rules.retry_seconds

    # ------------------------------------------------------------------ receiving

    def receive(self, payload: bytes, now: float) -> list[Output]:
        """One H.224 payload from the far end."""
        try:
            frame = parse_frame(payload)
        except H224Error:
            self.dropped += 1
            return []
        before = self._reassembler.dropped
        message = self._reassembler.push(frame)
        self.dropped += self._reassembler.dropped - before
        if message is None:
            return []
        self.received += 1
        try:
            if frame.client == CME:
                return self._on_cme(message)
            if frame.client == H281:
                return [FarEndRequest(parse_h281(message))]
        except H224Error:
            self.dropped += 1
        return []

    def _on_cme(self, data: bytes) -> list[Output]:
        cme = parse_cme(data)
        if isinstance(cme, ClientListCommand):
            return [Send(f) for f in self._frames(CME, self._client_list())]
        if isinstance(cme, ExtraCapabilitiesCommand):
            if cme.client != H281:
                return []
            return [Send(f) for f in self._frames(CME, self._own_capabilities())]
        if isinstance(cme, ClientList):
            self.far_has_h281 = any(client == H281 for client, _ in cme.clients)
            return []
        if isinstance(cme, ExtraCapabilities) and cme.client == H281:
            self.capabilities = parse_fecc_capabilities(cme.data)
            self.far_has_h281 = True
            return [Learned(self.capabilities)]
        return []

    # ------------------------------------------------------------------ steering

    def supports(self, action: Action) -> bool:
        """False only when the far end said it cannot (no H.281, or no source with that axis)."""
        if self.far_has_h281 is False:
            return False
        return self.capabilities is None or not self.capabilities.sources or self.capabilities.can(action.axis)

    def preset_count(self) -> int | None:
        """Presets the far end announced (None: not known)."""
        return None if self.capabilities is None else self.capabilities.presets

    def start_action(self, action: Action, now: float) -> list[bytes]:
        """The chair pressed a button: Start Action."""
        self._held, self._held_since = frozenset((action,)), now
        return self._h281(ActionMessage(H281Code.START_ACTION, self._held, self.rules.timeout_ms))

    def continue_action(self, action: Action, now: float) -> list[bytes]:
        """The chair still holds it: Continue, or a new Start if the far end has timed out."""
        if self._held != frozenset((action,)) or now - self._held_since >= self.rules.timeout_ms / 1000:
            return self.start_action(action, now)
        self._held_since = now
        return self._h281(ActionMessage(H281Code.CONTINUE_ACTION, self._held))

    def stop_action(self, action: Action, now: float) -> list[bytes]:
        """The chair released: Stop Action (for ``action`` even if nothing is held: stop is always safe)."""
        self._held = frozenset()
        return self._h281(ActionMessage(H281Code.STOP_ACTION, frozenset((action,))))

    def activate_preset(self, preset: int, now: float) -> list[bytes]:
        """Activate Preset ``preset`` (0..15)."""
        return self._h281(PresetMessage(H281Code.ACTIVATE_PRESET, preset))

    def store_preset(self, preset: int, now: float) -> list[bytes]:
        """Store the camera's position as preset ``preset`` (0..15)."""
        return self._h281(PresetMessage(H281Code.STORE_PRESET, preset))

    def select_video_source(self, source: int, now: float, mode: int = 0) -> list[bytes]:
        """Select Video Source ``source`` (0..15) in ``mode`` (0 motion video)."""
        return self._h281(VideoSourceMessage(H281Code.SELECT_VIDEO_SOURCE, source, mode))

    def _h281(self, message: H281Message) -> list[bytes]:
        return self._frames(H281, encode_h281(message))

    def _frames(self, client: ClientId, data: bytes) -> list[bytes]:
        frames = segment(client, data, destination=0, source=self.rules.terminal)
        self.sent += len(frames)
        return frames
