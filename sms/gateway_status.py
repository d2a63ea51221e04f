"""The gateway's state as the SMS console shows it: Kannel's bearerbox ``status.xml``, read.

Pure. ``parse_status(text)`` reads the few figures the console needs from bearerbox's admin
``/status.xml`` (on 127.0.0.1, behind its status password): whether bearerbox runs, whether the
SMSC link is online (``online 12s``; ``re-connecting``, ``connecting``, ``dead`` … are not), and how
many messages Kannel holds (its outgoing SMS queue, the SMSC's queue and its store). It is a line
reader of the tags it needs, not an XML parser (no entities, no DTDs: nothing to expand); input is
bounded (``MAX_STATUS``) and anything it does not find reads as "down" with zero counts: a
``StatusError`` only for input that is too large or not Kannel's status at all.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_STATUS = 256 * 1024
_TAG = re.compile(r"<(status|queued|storesize)>([^<]{0,200})</\1>")


class StatusError(ValueError):
    pass


@dataclass(frozen=True)
class GatewayStatus:
    up: bool  # bearerbox answers and the SMSC link is online
    bearerbox: str  # bearerbox's own status line ("running, uptime …"), or why it is unknown
    smsc: str  # the SMSC link's status ("online 12s", "re-connecting", …), "" when none
    queued: int  # messages Kannel holds for sending (its SMS queue + the SMSC's queue)
    store: int  # messages in Kannel's store file

    def to_json(self) -> dict[str, object]:
        return {"up": self.up, "bearerbox": self.bearerbox, "smsc": self.smsc, "queued": self.queued,
                "store": self.store}


def down(reason: str) -> GatewayStatus:
    return GatewayStatus(False, reason[:200], "", 0, 0)


def _int(s: str) -> int:
    s = s.strip()
    return int(s) if s.isdigit() and len(s) < 12 else 0


def parse_status(text: str) -> GatewayStatus:
    if len(text) > MAX_STATUS:
        raise StatusError("status too large")
    if "<gateway>" not in text:
        raise StatusError("not Kannel's status.xml")
    bearerbox, smsc, queued, store = "", "", 0, 0
    section = text.split("<smscs>", 1)
    head = section[0]
    # bearerbox's own status is the first <status>; the sent SMS queue is <sms><sent><queued>
    for name, value in _TAG.findall(head):
        if name == "status" and not bearerbox:
            bearerbox = value.strip()
        elif name == "storesize":
            store = _int(value)
    sms = head.split("<sms>", 1)
    if len(sms) == 2:
        sent = sms[1].split("<sent>", 1)
        if len(sent) == 2:
            m = re.search(r"<queued>([^<]{0,20})</queued>", sent[1])
            queued += _int(m.group(1)) if m else 0
    online = False
    if len(section) == 2:
        for block in section[1].split("<smsc>")[1:]:
            m = re.search(r"<status>([^<]{0,200})</status>", block)
            st = m.group(1).strip() if m else ""
            smsc = smsc or st
            if st.startswith("online"):
                online, smsc = True, st
            q = re.search(r"<queued>([^<]{0,20})</queued>", block)
            queued += _int(q.group(1)) if q else 0
    return GatewayStatus(bearerbox.startswith("running") and online, bearerbox or "unknown", smsc, queued, store)
