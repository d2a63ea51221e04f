"""Fast start (H.323 8.1.7.1): media channels proposed in Setup and accepted in the answer.

The caller proposes, per session (audio, video) and direction, OpenLogicalChannel structures in
order of preference (:func:`proposals`); the callee picks one per session and direction and
returns them with its addresses (:func:`select`); the caller turns the answer into logical
channels (:func:`accept_reply`). The H.245 session only numbers and records the channels.
Pure: the :class:`~.call.Call` feeds it decoded Setup/answer fields and reports the results.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .asn1 import Asn1Error, decode_olc, encode_olc
from .capabilities import (
    AUDIO_SESSION,
    VIDEO_PREFERENCE,
    VIDEO_SESSION,
    Codec,
    MediaFormat,
    data_type_from_format,
    format_from_data_type,
    media_packetization,
    with_channel_parameters,
)
from .capabilities import _merge as merge_formats
from .events import ChannelOpened, Event, LogicalChannel, MediaAddress, ProtocolErrorLogged
from .h245 import H245Session, media_address_from, transport_address

__all__ = ["FastStartAnswer", "FastStartOffer", "accept_reply", "proposals", "select"]


@dataclass
class FastStartOffer:
    """One OpenLogicalChannel of a fast-start proposal, decoded."""

    raw: dict[str, Any]
    fmt: MediaFormat
    session_id: int
    transmit: bool  # True: the proposer will transmit on it (forward parameters)
    params: dict[str, Any]


@dataclass
class FastStartAnswer:
    """The callee's choice: the OLCs to return, the channels they open, proposals skipped."""

    reply: list[bytes] = field(default_factory=list)
    channels: list[LogicalChannel] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def select(offers: list[bytes], receive_formats: Sequence[MediaFormat], transmit_formats: Sequence[MediaFormat],
           h245: Callable[[], H245Session]) -> FastStartAnswer:
    """Callee side of fast start (H.323 8.1.7.1): one proposal per session and direction.

    ``h245`` gives the call's H.245 session (created when the first proposal is accepted).
    """
    result = FastStartAnswer()
    parsed: list[FastStartOffer] = []
    for raw_bytes in offers:
        try:
            offer = parse_offer(decode_olc(raw_bytes))
        except Asn1Error as exc:
            result.errors.append(f"fast start proposal skipped: {exc}")
            continue
        if offer is not None:
            parsed.append(offer)
    proposed_numbers = frozenset(int(o.raw["forwardLogicalChannelNumber"]) for o in parsed)
    for session_id in (AUDIO_SESSION, VIDEO_SESSION):
        for transmit in (True, False):
            candidates = [o for o in parsed if o.session_id == session_id and o.transmit == transmit]
            # The caller transmits: we receive it (our capabilities); else we transmit.
            local = receive_formats if transmit else transmit_formats
            choice = best_offer(candidates, local, video=session_id == VIDEO_SESSION)
            if choice is None:
                continue
            offer, fmt = choice
            olc, channel = accept_offer(h245(), offer, fmt, proposed_numbers)
            result.reply.append(encode_olc(olc))
            result.channels.append(channel)
    return result


def parse_offer(olc: dict[str, Any]) -> FastStartOffer | None:
    """A proposal's format, session and direction; None for what we cannot use."""
    forward = olc["forwardLogicalChannelParameters"]
    reverse = olc.get("reverseLogicalChannelParameters")
    if forward["dataType"][0] != "nullData":
        params_choice = forward["multiplexParameters"]
        transmit, data_type = True, forward["dataType"]
    elif reverse is not None:
        params_choice = reverse.get("multiplexParameters")
        transmit, data_type = False, reverse["dataType"]
    else:
        return None
    fmt = format_from_data_type(data_type)
    if fmt is None or not isinstance(params_choice, tuple) or params_choice[0] != "h2250LogicalChannelParameters":
        return None
    params = params_choice[1]
    fmt = with_channel_parameters(fmt, params)
    return FastStartOffer(olc, fmt, int(params.get("sessionID", fmt.session_id)) or fmt.session_id,
                          transmit, params)


def best_offer(candidates: list[FastStartOffer], formats: Sequence[MediaFormat],
               video: bool) -> tuple[FastStartOffer, MediaFormat] | None:
    """The first of our ``formats`` (video by preference) that a candidate proposal matches."""
    local = [f for f in formats if f.codec.is_video == video]
    if video:
        local.sort(key=lambda f: VIDEO_PREFERENCE.index(f.codec))
    for mine in local:
        for offer in candidates:
            merged = merge_formats(mine, offer.fmt)
            if merged is not None:
                if merged.codec is Codec.H264:
                    merged = replace(merged, packetization_modes=offer.fmt.packetization_modes,
                                     payload_type=offer.fmt.payload_type)
                elif merged.codec is Codec.H263:  # the proposal's payload format (RFC 2190 or 4629)
                    merged = replace(merged, h263_rfc4629=offer.fmt.h263_rfc4629,
                                     payload_type=offer.fmt.payload_type)
                return offer, merged
    return None


def accept_offer(h245: H245Session, offer: FastStartOffer, fmt: MediaFormat,
                 proposed_numbers: frozenset[int]) -> tuple[dict[str, Any], LogicalChannel]:
    """The answer to one accepted proposal (H.323 8.1.7.1), and the channel it opens.

    A proposal the caller transmits on keeps the caller's channel number and gets our
    mediaChannel (where to send RTP) and mediaControlChannel (our RTCP). A reverse proposal
    (the caller receives, we transmit) carries the caller's own addresses: its mediaChannel
    is where we send, its mediaControlChannel the caller's RTCP. Our answer numbers that
    channel ourselves, puts our RTCP address in mediaControlChannel and leaves
    mediaChannel out: echoing the caller's addresses back would point its RTCP at itself.
    """
    olc = dict(offer.raw)
    payload_type = fmt.rtp_payload_type
    local_rtp = h245.config.local_rtp(offer.session_id)
    local_rtcp = h245.config.local_rtcp(offer.session_id)
    if offer.transmit:
        number = int(olc["forwardLogicalChannelNumber"])
        # The caller will send to us: give it our RTP/RTCP addresses.
        params = dict(offer.params)
        params["mediaChannel"] = transport_address(local_rtp)
        params["mediaControlChannel"] = transport_address(local_rtcp)
        forward = dict(olc["forwardLogicalChannelParameters"])
        forward["multiplexParameters"] = ("h2250LogicalChannelParameters", params)
        olc["forwardLogicalChannelParameters"] = forward
        channel = LogicalChannel(number, False, fmt, offer.session_id, payload_type,
                                 local_rtp=local_rtp, local_rtcp=local_rtcp,
                                 remote_rtcp=media_address_from(offer.params.get("mediaControlChannel")),
                                 fast_start=True)
    else:
        number = h245.allocate_channel_number(avoid=proposed_numbers)
        olc["forwardLogicalChannelNumber"] = number
        params = {k: v for k, v in offer.params.items() if k != "mediaChannel"}
        params["mediaControlChannel"] = transport_address(local_rtcp)
        reverse = dict(olc["reverseLogicalChannelParameters"])
        reverse["multiplexParameters"] = ("h2250LogicalChannelParameters", params)
        olc["reverseLogicalChannelParameters"] = reverse
        channel = LogicalChannel(number, True, fmt, offer.session_id, payload_type,
                                 local_rtp=local_rtp, local_rtcp=local_rtcp,
                                 remote_rtp=media_address_from(offer.params.get("mediaChannel")),
                                 remote_rtcp=media_address_from(offer.params.get("mediaControlChannel")),
                                 fast_start=True)
    h245.register_fast_start_channel(channel)
    return olc, channel


def proposals(h245: H245Session, receive_formats: Sequence[MediaFormat],
              transmit_formats: Sequence[MediaFormat]) -> tuple[list[FastStartOffer], list[bytes]]:
    """Caller side of fast start: for each session, transmit and receive proposals in
    order of preference (H.323 8.1.7.1); decoded and encoded."""
    offers: list[FastStartOffer] = []
    encoded: list[bytes] = []
    number = 1
    for session_id, video in ((AUDIO_SESSION, False), (VIDEO_SESSION, True)):
        for transmit in (True, False):
            formats = [f for f in (transmit_formats if transmit else receive_formats)
                       if f.codec.is_video == video]
            if video:
                formats.sort(key=lambda f: VIDEO_PREFERENCE.index(f.codec))
            for fmt in formats:
                params: dict[str, Any] = {
                    "sessionID": session_id,
                    "mediaControlChannel": transport_address(h245.config.local_rtcp(session_id)),
                }
                if not transmit:
                    params = {"sessionID": session_id,
                              "mediaChannel": transport_address(h245.config.local_rtp(session_id)),
                              "mediaControlChannel": transport_address(h245.config.local_rtcp(session_id))}
                packetization = media_packetization(fmt)
                if packetization is not None:  # dynamic payload formats (H.264, H263-1998)
                    params["dynamicRTPPayloadType"] = fmt.rtp_payload_type
                    params["mediaPacketization"] = packetization
                mux = ("h2250LogicalChannelParameters", params)
                if transmit:
                    olc: dict[str, Any] = {
                        "forwardLogicalChannelNumber": number,
                        "forwardLogicalChannelParameters": {"dataType": data_type_from_format(fmt),
                                                            "multiplexParameters": mux}}
                else:
                    olc = {
                        "forwardLogicalChannelNumber": number,
                        "forwardLogicalChannelParameters": {"dataType": ("nullData", 0),
                                                            "multiplexParameters": ("none", 0)},
                        "reverseLogicalChannelParameters": {"dataType": data_type_from_format(fmt),
                                                            "multiplexParameters": mux}}
                offers.append(FastStartOffer(olc, fmt, session_id, transmit, params))
                encoded.append(encode_olc(olc))
                number += 1
    return offers, encoded


def accept_reply(olcs: list[bytes], h245: H245Session) -> list[Event]:
    """Caller side: the channels the callee's answer opens (ChannelOpened, after any
    ProtocolErrorLogged for parts of the answer we skipped)."""
    events: list[Event] = []
    remote_rtcp: dict[int, MediaAddress | None] = {}
    opened: list[LogicalChannel] = []
    for raw in olcs:
        try:
            olc = decode_olc(raw)
        except Asn1Error as exc:
            events.append(ProtocolErrorLogged(f"fast start answer skipped: {exc}"))
            continue
        number = int(olc["forwardLogicalChannelNumber"])
        forward = olc["forwardLogicalChannelParameters"]
        reverse = olc.get("reverseLogicalChannelParameters")
        if forward["dataType"][0] != "nullData":
            fmt = format_from_data_type(forward["dataType"])
            params = forward["multiplexParameters"][1]
            if fmt is None:
                continue
            # Our transmit proposal, accepted: the callee told us where to send.
            fmt = with_channel_parameters(fmt, params)
            pt = fmt.rtp_payload_type
            session_id = int(params.get("sessionID", fmt.session_id)) or fmt.session_id
            remote_rtcp[session_id] = media_address_from(params.get("mediaControlChannel"))
            opened.append(LogicalChannel(
                number, True, fmt, session_id, pt,
                local_rtp=h245.config.local_rtp(session_id), local_rtcp=h245.config.local_rtcp(session_id),
                remote_rtp=media_address_from(params.get("mediaChannel")),
                remote_rtcp=remote_rtcp[session_id], fast_start=True))
        elif reverse is not None:
            # Our receive proposal, accepted: the callee numbered the channel and put its
            # RTCP address in mediaControlChannel (H.323 8.1.7.1).
            fmt = format_from_data_type(reverse["dataType"])
            params = reverse["multiplexParameters"][1]
            if fmt is None:
                continue
            fmt = with_channel_parameters(fmt, params)
            pt = fmt.rtp_payload_type
            session_id = int(params.get("sessionID", fmt.session_id)) or fmt.session_id
            local_rtcp = h245.config.local_rtcp(session_id)
            their_rtcp = media_address_from(params.get("mediaControlChannel"))
            if their_rtcp == local_rtcp:
                their_rtcp = None  # a callee that echoed our proposal: not an address of theirs
            if any(not c.outgoing and c.number == number for c in opened):
                events.append(ProtocolErrorLogged(f"fast start answer numbers two reverse channels {number}"))
            opened.append(LogicalChannel(
                number, False, fmt, session_id, pt,
                local_rtp=h245.config.local_rtp(session_id), local_rtcp=local_rtcp,
                remote_rtcp=their_rtcp, fast_start=True))
    for channel in opened:
        if not channel.outgoing and channel.remote_rtcp is None:
            channel = replace(channel, remote_rtcp=remote_rtcp.get(channel.session_id))
        h245.register_fast_start_channel(channel)
        events.append(ChannelOpened(channel))
    return events
