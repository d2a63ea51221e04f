"""The SDP of BFCP streams (RFC 8856) and of the content video stream (RFC 4796), pure functions.

A SIP room system that can present offers, besides its people video, an ``m=application … TCP/BFCP *``
stream (its floor control channel) and a second ``m=video`` with ``a=content:slides`` (the slides). The
MCU is the floor control server; its answer to the BFCP stream is::

    m=application <our TCP port> TCP/BFCP *
    a=floorctrl:s-only          (we are the server; an offer that insists on being server is refused)
    a=confid:<conference id>    (the BFCP Conference ID of the room)
    a=userid:<user id>          (the BFCP User ID we gave this site)
    a=floorid:<floor id> mstrm:<label of the slides stream>
    a=setup:passive             (we listen; the offer must be active or actpass)
    a=connection:new
    a=bfcpver:1

and the slides stream is answered like any video stream plus ``a=content:slides`` and ``a=label:<n>``
(the label the floor refers to). Offers we make to sites that advertise BFCP carry the same lines with
``a=setup:passive`` and ``a=floorctrl:s-only``.

Transports (RFC 8856 §4): ``TCP/BFCP`` as above; ``TCP/TLS/BFCP`` on the TLS port with the same lines
plus ``a=fingerprint:SHA-256 <our certificate's>`` (RFC 8122; we are the TLS server, so
``a=setup:passive``); ``UDP/BFCP`` (RFC 8855 §6.2) with ``a=bfcpver:2`` and no ``a=setup``/``a=connection``
(those are TCP's). DTLS (``UDP/TLS/BFCP``) is refused (port 0 in the answer). An offer that lists a
transport the node does not run (no TLS certificate) is refused the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..sip.sdp import Media

BFCP_PROTOS = ("TCP/BFCP", "TCP/TLS/BFCP", "UDP/BFCP", "UDP/TLS/BFCP")
SUPPORTED_PROTO = "TCP/BFCP"
TLS_PROTO = "TCP/TLS/BFCP"
UDP_PROTO = "UDP/BFCP"
SLIDES = "slides"


@dataclass(frozen=True)
class BfcpOffer:
    """What a peer's BFCP m-line asks for (index: its position among the offer's m-lines)."""

    index: int
    proto: str
    port: int
    floorctrl: tuple[str, ...]
    setup: str
    host: str | None


@dataclass(frozen=True)
class BfcpAnswer:
    """Our side of one site's BFCP stream."""

    port: int
    conference_id: int
    user_id: int
    floor_id: int
    label: str
    proto: str = SUPPORTED_PROTO
    fingerprint: str = ""  # "SHA-256 AA:BB:.." for TCP/TLS/BFCP
    setup: str = "passive"  # "actpass" in an offer of ours


def is_bfcp(media: Media) -> bool:
    return media.kind == "application" and media.proto.upper() in BFCP_PROTOS


def is_slides(media: Media) -> bool:
    return media.kind == "video" and any(v.strip() and SLIDES in v.split(",") for v in media.attrs("content"))


def find_bfcp(offer_media: list[Media]) -> BfcpOffer | None:
    """The first BFCP stream of an offer (None: the site cannot present over BFCP)."""
    for index, media in enumerate(offer_media):
        if is_bfcp(media) and media.port:
            floorctrl = tuple((media.attr("floorctrl") or "c-only").split())
            return BfcpOffer(index, media.proto.upper(), media.port, floorctrl,
                             (media.attr("setup") or "active").strip().lower(), media.connection)
    return None


def slides_index(offer_media: list[Media]) -> int | None:
    """Index of the offer's ``a=content:slides`` video stream."""
    return next((i for i, m in enumerate(offer_media) if is_slides(m) and m.port), None)


def acceptable(offer: BfcpOffer, transports: tuple[str, ...] = (SUPPORTED_PROTO, UDP_PROTO)) -> str | None:
    """Why we cannot be this BFCP stream's server (None: we can); ``transports``: those the node runs."""
    if offer.proto not in transports:
        return f"BFCP transport {offer.proto} not supported (we run {', '.join(transports)})"
    if not ({"c-only", "c-s"} & set(offer.floorctrl)):
        return "the peer wants to be the floor control server"
    if offer.proto != UDP_PROTO and offer.setup not in ("active", "actpass"):
        return f"a=setup:{offer.setup}: we only listen"
    return None


def bfcp_media(ours: BfcpAnswer) -> Media:
    """Our BFCP m-line (an answer, or an offer of ours with ``setup="actpass"``)."""
    media = Media("application", ours.port, ours.proto, ["*"])
    media.attributes += [("floorctrl", "s-only"), ("confid", str(ours.conference_id)),
                         ("userid", str(ours.user_id)), ("floorid", f"{ours.floor_id} mstrm:{ours.label}")]
    if ours.proto == UDP_PROTO:
        media.attributes.append(("bfcpver", "2"))
        return media
    media.attributes += [("setup", ours.setup), ("connection", "new")]
    if ours.proto == TLS_PROTO and ours.fingerprint:
        media.attributes.append(("fingerprint", ours.fingerprint))
    media.attributes.append(("bfcpver", "1"))
    return media


def mark_slides(media: Media, label: str) -> Media:
    """Add ``a=content:slides`` and ``a=label`` to a (video) m-line of ours."""
    media.attributes = [(k, v) for k, v in media.attributes if k not in ("content", "label")]
    media.attributes[0:0] = [("content", SLIDES), ("label", label)]
    return media


def rejected(media: Media) -> Media:
    """The answer's m-line for a stream we refuse (RFC 3264 §6: port 0, same media and proto)."""
    return Media(media.kind, 0, media.proto, media.formats[:1] or ["*"])
