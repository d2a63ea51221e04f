"""The CAP feed: every sent CAP message as one entry of an Atom feed (RFC 4287), as bytes.

A pure function: the messages, the URLs and the time come in as arguments; nothing is read from
a clock, a database or the network. Built with the standard library's ``xml.etree``.

Rules:

* **One entry per sent CAP message** (Alert, Update, Cancel), newest first: by ``sent`` (whole
  seconds), then by identifier: the service numbers the messages of one second
  ``<sender>_<time>_<n>`` with n = 0..9 in the order they were sent, so a message sent in the same
  second as another is listed above it. Drafts, pending and rejected proposals never reach the caller's
  list: only rows of ``warning_messages`` (written when an approved message is sent) are fed in.
* **Entry id** ``urn:cap:<sender>:<identifier>``: the CAP identifier, unique with its sender (CAP 1.2
  §3.2.1), as a URN; it never changes, so a reader sees each message exactly once.
* **Entry title** ``<event> <kind>：<headline>`` (``: `` in a language other than Chinese) with the kind (首次发布 / 更新 / 解除) in the caller's
  language (``kinds``), event and headline read from the CAP document itself (the headline as it
  was in that message, not as the warning reads now).
* **updated** and **published** = the message's ``sent``; **link rel=alternate** to its CAP XML
  (``type="application/cap+xml"``); **content** the CAP ``<alert>`` inline
  (``type="application/cap+xml"``, an XML media type, so the element itself is the content, RFC 4287
  §4.1.3.3); **category** the msgType (scheme ``urn:oasis:names:tc:emergency:cap:1.2:msgType``).
* **Feed**: id ``urn:cap:<sender>:feed``, title, author (the sender's name), ``updated`` = the newest
  entry's ``sent``, or ``now`` for an empty feed; link rel=self to the feed's own URL.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

ATOM = "http://www.w3.org/2005/Atom"
CAP = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_TYPE = "application/cap+xml"
MSG_TYPE_SCHEME = f"{CAP}:msgType"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

ET.register_namespace("cap", CAP)  # the inlined CAP keeps a readable prefix; Atom is the default namespace


@dataclass(frozen=True)
class FeedMessage:
    """One sent CAP message as stored (``warning_messages``)."""

    identifier: str
    sender: str
    warning_id: str
    seq: int
    msg_type: str  # Alert | Update | Cancel
    sent: datetime  # timezone-aware
    references: str
    xml: str  # the CAP 1.2 document exactly as sent


@dataclass(frozen=True)
class FeedMeta:
    sender: str  # CAP sender code: the feed's and each entry's id
    title: str
    author: str
    self_url: str  # this feed's URL
    language: str = "zh-CN"


def entry_id(sender: str, identifier: str) -> str:
    return f"urn:cap:{sender}:{identifier}"


def _q(tag: str) -> str:
    # Atom elements are written unqualified under the root's ``xmlns`` (ElementTree's
    # ``default_namespace`` refuses unqualified attributes such as ``rel``)
    return tag


def _text(parent: ET.Element, tag: str, text: str, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, _q(tag), attrib)
    el.text = text
    return el


def _cap_info(alert: ET.Element) -> tuple[str, str]:
    """The first info block's event and headline."""
    info = alert.find(f"{{{CAP}}}info")
    if info is None:
        return "", ""
    return (info.findtext(f"{{{CAP}}}event", "") or "", info.findtext(f"{{{CAP}}}headline", "") or "")


def build_feed(messages: Sequence[FeedMessage], meta: FeedMeta, cap_url: str, now: datetime,
               kinds: Mapping[str, str]) -> bytes:
    """The Atom feed of ``messages`` (any order; sorted newest first here). ``cap_url`` has one
    ``{identifier}`` placeholder: where each message's CAP XML is served. ``kinds``: msgType -> its
    word in the feed's language. ``now`` (aware) is the feed's ``updated`` only when it is empty."""
    if now.tzinfo is None:
        raise ValueError("now must carry a timezone")
    ordered = sorted(messages, key=lambda m: (m.sent, m.identifier), reverse=True)
    feed = ET.Element(_q("feed"), {"xmlns": ATOM, XML_LANG: meta.language})
    _text(feed, "id", entry_id(meta.sender, "feed"))
    _text(feed, "title", meta.title)
    _text(feed, "updated", (ordered[0].sent if ordered else now).isoformat())
    author = ET.SubElement(feed, _q("author"))
    _text(author, "name", meta.author)
    ET.SubElement(feed, _q("link"), {"rel": "self", "href": meta.self_url, "type": "application/atom+xml"})
    _text(feed, "generator", "commandcenter")
    for m in ordered:
        alert = ET.fromstring(m.xml)
        event, headline = _cap_info(alert)
        entry = ET.SubElement(feed, _q("entry"))
        _text(entry, "id", entry_id(m.sender, m.identifier))
        kind = kinds.get(m.msg_type, m.msg_type)
        sep = "：" if meta.language.startswith("zh") else ": "
        _text(entry, "title", f"{event} {kind}{sep}{headline}" if event else f"{kind}{sep}{headline}")
        _text(entry, "updated", m.sent.isoformat())
        _text(entry, "published", m.sent.isoformat())
        ET.SubElement(entry, _q("link"), {"rel": "alternate", "type": CAP_TYPE,
                                          "href": cap_url.format(identifier=m.identifier)})
        ET.SubElement(entry, _q("category"), {"scheme": MSG_TYPE_SCHEME, "term": m.msg_type})
        _text(entry, "summary", headline or m.identifier)
        content = ET.SubElement(entry, _q("content"), {"type": CAP_TYPE})
        content.append(alert)
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True, default_namespace=None)
    return body


__all__ = ["ATOM", "CAP_TYPE", "FeedMessage", "FeedMeta", "build_feed", "entry_id"]
