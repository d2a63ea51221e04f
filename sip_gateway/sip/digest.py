"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 8760 SHA-256).

Server side: :class:`DigestServer` issues stateless, time-limited nonces (HMAC-signed, so no
per-challenge state can leak) and verifies ``Authorization``/``Proxy-Authorization`` answers.
Client side: :func:`build_authorization` answers a challenge. The current time is always passed
in. Nothing here logs; :func:`redact` removes credentials from message text meant for logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import SipParseError

ALGORITHMS: dict[str, Callable[..., Any]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}
NONCE_LIFETIME = 300.0
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9\-_]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


def _h(algorithm: str, text: str) -> str:
    digest: str = ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()
    return digest


def parse_digest(value: str) -> dict[str, str]:
    """Parse ``Digest a=b, c="d"`` into a dict with lower-case keys."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError("Unsupported authentication scheme")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM_RE.match(rest, pos)
        if not match or match.end() == pos:
            raise SipParseError("Malformed Digest parameters")
        raw = match.group(2)
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[match.group(1).lower()] = raw
        pos = match.end()
    return params


def compute_response(
    algorithm: str, username: str, realm: str, password: str, method: str, uri: str,
    nonce: str, qop: str | None = None, nc: str = "", cnonce: str = "",
) -> str:
    """The Digest ``response`` value (qop ``auth`` or none)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


@dataclass(frozen=True)
class Credentials:
    """Username and password for a trunk or a test client."""

    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(username={self.username!r}, password='***')"


def build_authorization(
    challenge: str, method: str, uri: str, credentials: Credentials, nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """Answer a ``WWW-Authenticate``/``Proxy-Authenticate`` challenge (client side)."""
    params = parse_digest(challenge)
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in ALGORITHMS:
        raise SipParseError(f"Unsupported digest algorithm {algorithm[:20]}")
    realm = params.get("realm", "")
    nonce = params.get("nonce", "")
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    nc_text = f"{nc:08x}"
    cnonce = cnonce or secrets.token_hex(8)
    response = compute_response(
        algorithm, credentials.username, realm, credentials.password, method, uri, nonce,
        qop, nc_text, cnonce,
    )
    parts = [
        f'username="{credentials.username}"', f'realm="{realm}"', f'nonce="{nonce}"',
        f'uri="{uri}"', f'response="{response}"', f"algorithm={algorithm}",
    ]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    if "opaque" in params:
        parts.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(parts)


def pick_challenge(values: list[str]) -> str | None:
    """Choose the strongest challenge we support among several (RFC 8760 §2.4)."""
    best: tuple[int, str] | None = None
    for value in values:
        try:
            algorithm = parse_digest(value).get("algorithm", "MD5").upper()
        except SipParseError:
            continue
        if algorithm in ALGORITHMS:
            rank = list(ALGORITHMS).index(algorithm)
            if best is None or rank > best[0]:
                best = (rank, value)
    return best[1] if best else None


def claimed_username(header: str | None) -> str | None:
    """The ``username`` an Authorization header claims (None when absent or unparsable)."""
    if not header:
        return None
    try:
        return parse_digest(header).get("username")
    except SipParseError:
        return None


@dataclass(frozen=True)
class AuthResult:
    """Outcome of checking an Authorization header."""

    ok: bool
    username: str | None = None
    stale: bool = False
    reason: str = ""
    guessed: bool = False  # a response was checked against a password and was wrong (counts as a guess)


class DigestServer:
    """Issue challenges and verify answers for one realm.

    ``lookup(username)`` returns the password or ``None``. Nonces embed their issue time and an
    HMAC, so verification needs no stored state; ``now`` is always supplied by the caller.
    """

    def __init__(
        self, realm: str, lookup: Callable[[str], str | None], secret: bytes | None = None,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"), nonce_lifetime: float = NONCE_LIFETIME,
    ) -> None:
        self.realm = realm
        self.lookup = lookup
        self.secret = secret or secrets.token_bytes(32)
        self.algorithms = algorithms
        self.nonce_lifetime = nonce_lifetime
        self._used_nc: dict[tuple[str, str], int] = {}
        self._decoy = secrets.token_urlsafe(16)

    def make_nonce(self, now: float) -> str:
        """A signed nonce carrying its issue time."""
        stamp = struct.pack(">d", now) + secrets.token_bytes(8)
        mac = hmac.new(self.secret, stamp, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + mac).decode().rstrip("=")

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 32:
            return None
        stamp, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, hmac.new(self.secret, stamp, hashlib.sha256).digest()[:16]):
            return None
        issued: float = struct.unpack(">d", stamp[:8])[0]
        return now - issued

    def challenges(self, now: float, stale: bool = False) -> list[str]:
        """Header values for a 401/407: one per algorithm, preferred first (RFC 8760)."""
        nonce = self.make_nonce(now)
        out = []
        for algorithm in self.algorithms:
            value = f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={algorithm}, qop="auth"'
            if stale:
                value += ", stale=true"
            out.append(value)
        return out

    def verify(self, header: str | None, method: str, now: float) -> AuthResult:
        """Check one Authorization header value for ``method``."""
        if not header:
            return AuthResult(False, reason="no credentials")
        try:
            params = parse_digest(header)
        except SipParseError as exc:
            return AuthResult(False, reason=exc.reason)
        username = params.get("username", "")
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in self.algorithms or params.get("realm") != self.realm:
            return AuthResult(False, username, reason="wrong realm or algorithm")
        nonce = params.get("nonce", "")
        age = self._nonce_age(nonce, now)
        if age is None or age < -1:
            return AuthResult(False, username, reason="bad nonce")
        qop = params.get("qop")
        if qop not in (None, "auth"):
            return AuthResult(False, username, reason="unsupported qop")
        password = self.lookup(username)
        # An unknown user costs the same work and gets the same answer as a wrong password,
        # so neither the reply nor its timing tells which usernames exist.
        expected = compute_response(
            algorithm, username, self.realm, password if password is not None else self._decoy, method,
            params.get("uri", ""), nonce, qop, params.get("nc", ""), params.get("cnonce", ""),
        )
        matches = hmac.compare_digest(expected, params.get("response", ""))
        if password is None:
            return AuthResult(False, username, reason="unknown user", guessed=True)
        if not matches:
            return AuthResult(False, username, reason="wrong password", guessed=True)
        if age > self.nonce_lifetime:
            return AuthResult(False, username, stale=True, reason="stale nonce")
        if qop:
            # Replay protection: nc must increase per nonce.
            try:
                nc = int(params.get("nc", "0"), 16)
            except ValueError:
                return AuthResult(False, username, reason="bad nc")
            key = (nonce, params.get("cnonce", ""))
            if nc <= self._used_nc.get(key, 0):
                return AuthResult(False, username, reason="replayed nc")
            if len(self._used_nc) > 10_000:
                self._used_nc.clear()
            self._used_nc[key] = nc
        return AuthResult(True, username)


_CRED_RE = re.compile(
    r"^((?:Proxy-)?Authorization\s*:).*$", re.IGNORECASE | re.MULTILINE
)


def redact(text: str) -> str:
    """Replace the value of every Authorization/Proxy-Authorization header with ``<redacted>``."""
    return _CRED_RE.sub(r"\1 <redacted>", text)
