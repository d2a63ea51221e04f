"""SIP URIs, name-addr values (From/To/Contact/Route) and Via headers (RFC 3261 §19, §20.42)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SipParseError

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)$")
SUPPORTED_SCHEMES = ("sip", "sips")


def _parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;a=b;c`` (leading ``;`` already stripped or not) into an ordered dict."""
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not name or not _TOKEN_RE.match(name):
            raise SipParseError(f"Bad parameter {part!r}")
        params[name.lower()] = value.strip() if sep else None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("Bad IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError("Bad host:port")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
    if not host or not _HOST_RE.match(host):
        raise SipParseError(f"Bad host {host!r}")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
            raise SipParseError(f"Bad port {port_text!r}")
        port = int(port_text)
    return host, port


@dataclass
class SipUri:
    """A ``sip:``/``sips:`` URI. ``tel:`` and other schemes are rejected with 416."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a SIP URI; raises :class:`SipParseError` (416 for an unsupported scheme)."""
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        if not sep or not scheme:
            raise SipParseError(f"Bad URI {text[:80]!r}")
        scheme = scheme.lower()
        if scheme not in SUPPORTED_SCHEMES:
            raise SipParseError(f"Unsupported URI scheme {scheme[:20]!r}", 416)
        rest, _, headers = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            hostpart, userinfo = rest, ""
        user: str | None = None
        password: str | None = None
        if at:
            user, colon, pw = userinfo.partition(":")
            password = pw if colon else None
            if not user or any(c in user for c in " \t<>\"") :
                raise SipParseError("Bad user part in URI")
        hostport, _, ptext = hostpart.partition(";")
        host, port = _split_hostport(hostport)
        return cls(host.lower(), user, password, port, scheme, _parse_params(ptext), headers)

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        hdrs = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{_format_params(self.params)}{hdrs}"

    @property
    def transport(self) -> str:
        """The transport the URI asks for (``udp`` unless ``transport=`` or ``sips:`` says otherwise)."""
        value = self.params.get("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    def address(self, default_port: int = 5060) -> tuple[str, int]:
        """Host and port to send to (no DNS SRV: our peers are addressed by IP or plain name)."""
        host = self.host.strip("[]")
        return host, self.port or (5061 if self.scheme == "sips" else default_port)


def _split_quoted(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes and angle brackets."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise SipParseError("Unterminated quoted string")
    parts.append(text[start:])
    return parts


def split_header_values(text: str) -> list[str]:
    """Split a comma-separated header value list (commas in quotes or <> are kept)."""
    return [p.strip() for p in _split_quoted(text, ",") if p.strip()]


@dataclass
class NameAddr:
    """``"Display" <uri>;params`` as used by From, To, Contact, Route and Record-Route."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse name-addr or addr-spec with header parameters (``*`` is a wildcard Contact)."""
        text = text.strip()
        if text == "*":
            return cls(SipUri("invalid"), wildcard=True)
        display: str | None = None
        if "<" in text:
            lt = text.index("<")
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError("Missing '>' in name-addr")
            display_text = text[:lt].strip()
            if display_text.startswith('"'):
                if len(display_text) < 2 or not display_text.endswith('"'):
                    raise SipParseError("Bad quoted display name")
                display = display_text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            elif display_text:
                display = display_text
            uri = SipUri.parse(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise SipParseError("Junk after name-addr")
            params = _parse_params(rest)
        else:
            # addr-spec form: parameters after the URI belong to the header, not the URI.
            uri_text, _, ptext = text.partition(";")
            if "?" in uri_text:
                raise SipParseError("URI headers require <> form")
            uri = SipUri.parse(uri_text)
            params = _parse_params(ptext)
        return cls(uri, display, params)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (dialog identification)."""
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        display = ""
        if self.display:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{_format_params(self.params)}"


@dataclass
class Via:
    """One Via header value: ``SIP/2.0/UDP host:port;branch=...;rport;received=...``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse a single Via value (split a multi-value header first)."""
        text = text.strip()
        proto, _, rest = text.partition(" ")
        pieces = [p.strip() for p in proto.split("/")]
        if len(pieces) != 3 or pieces[0].upper() != "SIP" or pieces[1] != "2.0" or not pieces[2]:
            raise SipParseError("Bad Via protocol")
        sent_by, _, ptext = rest.strip().partition(";")
        host, port = _split_hostport(sent_by.strip())
        return cls(pieces[2].upper(), host, port, _parse_params(ptext))

    @property
    def branch(self) -> str | None:
        """The branch parameter (transaction id)."""
        return self.params.get("branch")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{_format_params(self.params)}"

    def response_address(self, source: tuple[str, int]) -> tuple[str, int]:
        """Where to send responses (RFC 3261 §18.2.2 with RFC 3581 rport).

        Always the packet's source address: §18.2.2 sends to the ``received`` address, which the
        server sets to the source whenever sent-by differs. A ``received`` or sent-by host in the
        request itself is the sender's claim, so it must not pick the destination (reflection) nor
        the address that per-source limits, back-offs and audit entries are keyed by.
        """
        if "rport" in self.params:
            return source
        return source[0], self.port or 5060
