"""SIP message model, parser and serialiser (RFC 3261 §7, §20).

The parser is strict where it matters for safety (size limits, start line, the headers every
request needs, CSeq/Content-Length syntax) and lenient where real endpoints differ (bare LF line
ends, header folding, compact names, case). Every problem raises :class:`SipParseError` with the
reason a UAS puts in its 400 response; :func:`parse_message` attaches whatever it could read of
the message so the caller can still address that response.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import MessageTooLarge, SipParseError
from .uri import NameAddr, SipUri, Via, split_header_values

MAX_MESSAGE_SIZE = 65_535
MAX_HEADERS = 128
MAX_HEADER_LINE = 8192

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_SPECIAL_CASE = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "min-se": "Min-SE",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
}

# Headers whose value may be a comma-separated list (RFC 3261 §7.3.1). Auth headers are not.
LIST_HEADERS = frozenset(
    {
        "Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
        "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
        "Allow-Events", "Content-Encoding",
    }
)

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_STATUS_RE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)$")
_VERSION = "SIP/2.0"


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a header name (expands compact forms)."""
    name = name.strip()
    if len(name) == 1:
        return COMPACT_FORMS.get(name.lower(), name.upper())
    lower = name.lower()
    if lower in _SPECIAL_CASE:
        return _SPECIAL_CASE[lower]
    return "-".join(p[:1].upper() + p[1:] for p in lower.split("-"))


class Headers:
    """An ordered multi-map of header fields with canonical names."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(k), v) for k, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k == canonical_name(name) for k, _ in self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name`` or ``default``."""
        name = canonical_name(name)
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """All values of ``name``; list headers are split on commas."""
        name = canonical_name(name)
        values: list[str] = []
        for key, value in self._items:
            if key == name:
                values.extend(split_header_values(value) if name in LIST_HEADERS else [value])
        return values

    def add(self, name: str, value: str) -> None:
        """Append a header field."""
        self._items.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` with one value (in place of the first)."""
        name = canonical_name(name)
        for i, (key, _) in enumerate(self._items):
            if key == name:
                self._items[i] = (name, value)
                self._items = [kv for j, kv in enumerate(self._items) if j <= i or kv[0] != name]
                return
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        """Remove every field called ``name``."""
        name = canonical_name(name)
        self._items = [kv for kv in self._items if kv[0] != name]

    def copy(self) -> Headers:
        """A shallow copy."""
        return Headers(self._items)


@dataclass
class SipMessage:
    """Fields common to requests and responses."""

    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def call_id(self) -> str:
        """The Call-ID value."""
        value = self.headers.get("Call-ID")
        if not value:
            raise SipParseError("Missing Call-ID")
        return value.strip()

    @property
    def cseq(self) -> tuple[int, str]:
        """CSeq number and method."""
        return parse_cseq(self.headers.get("CSeq"))

    @property
    def vias(self) -> list[Via]:
        """All Via values, top first."""
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        """The topmost Via."""
        vias = self.headers.get_all("Via")
        if not vias:
            raise SipParseError("Missing Via")
        return Via.parse(vias[0])

    @property
    def from_(self) -> NameAddr:
        """The From header."""
        return NameAddr.parse(_required(self.headers, "From"))

    @property
    def to(self) -> NameAddr:
        """The To header."""
        return NameAddr.parse(_required(self.headers, "To"))

    @property
    def content_type(self) -> str:
        """Media type of the body, lower case, without parameters (empty if none)."""
        value = self.headers.get("Content-Type") or ""
        return value.split(";")[0].strip().lower()

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values."""
        return [NameAddr.parse(v) for v in self.headers.get_all("Contact")]

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class Request(SipMessage):
    """A SIP request."""

    method: str = "OPTIONS"
    uri: str = "sip:invalid"

    def serialize(self) -> bytes:
        """Wire form with a correct Content-Length."""
        return self._serialize(f"{self.method} {self.uri} {_VERSION}")

    @property
    def request_uri(self) -> SipUri:
        """The parsed Request-URI."""
        return SipUri.parse(self.uri)


@dataclass
class Response(SipMessage):
    """A SIP response."""

    status: int = 200
    reason: str = "OK"

    def serialize(self) -> bytes:
        """Wire form with a correct Content-Length."""
        return self._serialize(f"{_VERSION} {self.status} {self.reason}")


Message = Request | Response


class IncompleteMessage(SipParseError):
    """A request that failed validation; ``partial`` holds what was parsed (for the 400)."""

    def __init__(self, reason: str, status: int, partial: Request | None) -> None:
        super().__init__(reason, status)
        self.partial = partial


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None or not value.strip():
        raise SipParseError(f"Missing {name} header")
    return value


def parse_cseq(value: str | None) -> tuple[int, str]:
    """Parse ``"<number> <METHOD>"``."""
    if value is None:
        raise SipParseError("Missing CSeq header")
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
        raise SipParseError("Bad CSeq")
    number = int(parts[0])
    if number >= 2**31 or not _TOKEN_RE.match(parts[1]):
        raise SipParseError("Bad CSeq")
    return number, parts[1]


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep) :]
    return data, b""


def _unfold(head: str) -> list[str]:
    """Split the header block into logical lines, joining folded continuations."""
    lines: list[str] = []
    for raw in head.replace("\r\n", "\n").split("\n"):
        if raw[:1] in (" ", "\t"):
            if not lines:
                raise SipParseError("Continuation line before first header")
            lines[-1] = lines[-1] + " " + raw.strip()
        else:
            lines.append(raw)
    return lines


def _parse_headers(lines: list[str]) -> tuple[Headers, SipParseError | None]:
    """Parse header lines; bad lines are skipped and the first problem is returned."""
    if len(lines) > MAX_HEADERS:
        raise SipParseError("Too many header fields")
    headers = Headers()
    error: SipParseError | None = None
    for line in lines:
        if not line:
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if len(line) > MAX_HEADER_LINE:
            error = error or SipParseError("Header line too long")
        elif not colon or not name or not _TOKEN_RE.match(name):
            error = error or SipParseError(f"Malformed header line {line[:40]!r}")
        else:
            headers.add(name, value.strip())
    return headers, error


def parse_message(data: bytes, max_size: int = MAX_MESSAGE_SIZE, stream: bool = False) -> Message:
    """Parse one SIP message from ``data``.

    ``stream`` means ``data`` was framed by Content-Length on TCP/TLS (so the length is exact).
    Raises :class:`MessageTooLarge` (drop it), :class:`IncompleteMessage` for a request whose
    start line parsed (answer ``status``/``reason``), or :class:`SipParseError` otherwise.
    """
    if len(data) > max_size:
        raise MessageTooLarge(len(data), max_size)
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("Empty message")
    raw_head, body = _split_head(data)
    try:
        head = raw_head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("Header section is not UTF-8") from exc
    if "\x00" in head:
        raise SipParseError("NUL byte in header section")
    lines = _unfold(head)
    start = lines[0].strip()
    status_match = _STATUS_RE.match(start)
    headers, header_error = _parse_headers(lines[1:])
    message: Message
    if status_match:
        message = Response(headers, b"", int(status_match.group(1)), status_match.group(2).strip())
        if header_error:
            raise header_error
        _check_common(message, body, stream)
        return message
    parts = start.split(" ")
    if len(parts) != 3 or not parts[2].upper().startswith("SIP/"):
        raise SipParseError("Bad start line")
    method, uri = parts[0], parts[1]
    if not _TOKEN_RE.match(method):
        raise SipParseError("Bad method")
    request = Request(headers, b"", method, uri)
    try:
        if parts[2] != _VERSION:
            raise SipParseError("Version Not Supported", 505)
        if header_error:
            raise header_error
        _check_common(request, body, stream)
        cseq_method = request.cseq[1]
        if cseq_method != method:
            raise SipParseError("CSeq method does not match request method")
        request.request_uri  # noqa: B018 - validation (416 for tel: and friends)
        mf = headers.get("Max-Forwards")
        if mf is not None and (not mf.strip().isdigit() or int(mf) > 255):
            raise SipParseError("Bad Max-Forwards")
    except SipParseError as exc:
        raise IncompleteMessage(exc.reason, exc.status, request) from exc
    return request


def _check_common(message: Message, body: bytes, stream: bool) -> None:
    """Validate the headers every message needs and fix the body length."""
    headers = message.headers
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        _required(headers, name)
    message.cseq  # noqa: B018 - validation
    message.from_  # noqa: B018
    message.to  # noqa: B018
    for via in headers.get_all("Via"):
        Via.parse(via)
    length_text = headers.get("Content-Length")
    if length_text is not None:
        length_text = length_text.strip()
        if not length_text.isdigit() or len(length_text) > 9:
            raise SipParseError("Bad Content-Length")
        length = int(length_text)
        if length > len(body):
            raise SipParseError("Body shorter than Content-Length")
        body = body[:length]
    elif stream:
        raise SipParseError("Missing Content-Length on a stream transport")
    message.body = body


# --- stream framing -------------------------------------------------------------------


class StreamFramer:
    """Split a TCP/TLS byte stream into messages by Content-Length (RFC 3261 §18.3)."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self.max_size = max_size

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete frames. Raises :class:`SipParseError` on bad framing."""
        self._buffer.extend(data)
        frames: list[bytes] = []
        while True:
            # Keep-alive CRLFs between messages (RFC 5626) are skipped.
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self.max_size:
                    raise MessageTooLarge(len(self._buffer), self.max_size)
                return frames
            head = bytes(self._buffer[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() in (b"content-length", b"l"):
                    text = value.strip()
                    if not text.isdigit() or len(text) > 9:
                        raise SipParseError("Bad Content-Length")
                    length = int(text)
            total = end + 4 + length
            if total > self.max_size:
                raise MessageTooLarge(total, self.max_size)
            if len(self._buffer) < total:
                return frames
            frames.append(bytes(self._buffer[:total]))
            del self._buffer[:total]


# --- multipart bodies -----------------------------------------------------------------


@dataclass
class BodyPart:
    """One part of a multipart body."""

    content_type: str
    body: bytes
    headers: Headers = field(default_factory=Headers)


def _boundary(content_type_header: str) -> str:
    for param in content_type_header.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"')
    raise SipParseError("multipart body without boundary", 400)


def parse_multipart(content_type_header: str, body: bytes) -> list[BodyPart]:
    """Split a ``multipart/*`` body (RFC 2046) into parts."""
    boundary = _boundary(content_type_header).encode()
    if not boundary:
        raise SipParseError("Empty multipart boundary")
    delimiter = b"--" + boundary
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise SipParseError("Malformed multipart body")
    parts: list[BodyPart] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, content = b"", chunk.lstrip(b"\r\n")
        try:
            headers = _parse_headers(_unfold(head.decode("utf-8")))[0] if head else Headers()
        except UnicodeDecodeError as exc:
            raise SipParseError("Multipart headers are not UTF-8") from exc
        ctype = (headers.get("Content-Type") or "text/plain").split(";")[0].strip().lower()
        parts.append(BodyPart(ctype, content, headers))
    return parts


def build_multipart(parts: list[BodyPart], boundary: str = "cc-boundary-7f3a") -> tuple[str, bytes]:
    """Build a ``multipart/mixed`` body; returns (Content-Type value, body)."""
    out = bytearray()
    for part in parts:
        out += f"--{boundary}\r\nContent-Type: {part.content_type}\r\n\r\n".encode()
        out += part.body + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/mixed;boundary={boundary}", bytes(out)


def find_body(message: SipMessage, content_type: str) -> bytes | None:
    """The body of the given type, looking inside multipart bodies too."""
    if message.content_type == content_type:
        return message.body
    if message.content_type.startswith("multipart/"):
        for part in parse_multipart(message.headers.get("Content-Type") or "", message.body):
            if part.content_type == content_type:
                return part.body
    return None
