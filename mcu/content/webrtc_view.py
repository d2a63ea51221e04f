"""The content as a second stream to a browser: one send-only peer connection per watching site,
all fed by the room's one shared content encoder (``mcu.room.CONTENT_VIEW``, 1920x1080 at a low
frame rate). While it watches, the site's main stream is the broadcast without the content
(``PEOPLE_VIEW``), so it does not get the content twice.

As for the camera connection, nothing is encoded per receiver: the encoder's packets are handed
to aiortc, which only packetizes them (:class:`mcu.legs.webrtc_aiortc.EncodedVideoTrack`); the
browser's PLI/FIR reach the shared encoder (rate-limited there). The key-frame hook uses the
same aiortc internal as the camera leg and is checked the same way.
"""
from __future__ import annotations

import contextlib
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from mcu.legs.webrtc_aiortc import EncodedVideoTrack, negotiated_video_codec, prefer_codecs
from mcu.room import CONTENT_SIZE, CONTENT_VIEW, Room, Subscription
from sip_gateway.rtp.media_primitives import EncodedPacket


class ContentViewLeg:
    """Sends the conference's content to one site on its own peer connection."""

    def __init__(self, room: Room, participant_id: str, configuration: RTCConfiguration,
                 codecs: tuple[str, ...] = ("h264", "vp8")) -> None:
        self.room = room
        self.participant_id = participant_id
        self.codecs = codecs
        self.pc = RTCPeerConnection(configuration)
        self.track = EncodedVideoTrack()
        self.subscription: Subscription | None = None
        self.codec: str | None = None
        self.closed = False

    async def answer(self, offer_sdp: str) -> str:
        """Answer a receive-only video offer (ValueError: unusable; the connection is closed)."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            transceivers = self.pc.getTransceivers()
            if len(transceivers) != 1 or transceivers[0].kind != "video":
                raise ValueError("a content view offer carries exactly one video transceiver")
            transceiver = transceivers[0]
            prefer_codecs(transceiver, self.codecs)
            transceiver.sender.replaceTrack(self.track)
            transceiver.direction = "sendonly"
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            self.codec = negotiated_video_codec(self.pc.localDescription.sdp)
            if self.codec is None:
                raise ValueError("no common video codec (H.264 or VP8)")
            sender: Any = transceiver.sender
            if not hasattr(sender, "_send_keyframe"):
                raise RuntimeError("aiortc internals changed: cannot route key-frame requests to the shared encoder")
            sender._send_keyframe = self._on_keyframe_request
            self.subscription = self.room.subscribe_view(CONTENT_VIEW, self._offer, self.codec, *CONTENT_SIZE)
            self.room.content_receivers.add(self.participant_id)
        except Exception as exc:
            await self.close()
            raise ValueError(f"无法使用的内容观看请求: {str(exc)[:160]}") from None
        return str(self.pc.localDescription.sdp)

    def _offer(self, packet: EncodedPacket) -> None:
        sub = self.subscription
        self.track.offer(packet, sub.key if sub is not None else None)

    def _on_keyframe_request(self) -> None:
        if self.subscription is not None:
            self.subscription.request_keyframe()

    async def close(self) -> None:
        """Stop sending (idempotent); the site's main stream goes back to the broadcast."""
        if self.closed:
            return
        self.closed = True
        self.room.content_receivers.discard(self.participant_id)
        if self.subscription is not None:
            self.subscription.close()
        self.track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
