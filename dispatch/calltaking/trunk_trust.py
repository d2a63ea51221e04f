"""Who may deliver emergency calls, and whose identity claims we believe (RFC 3325 trust domain).

Pure: given where an INVITE came from (address, transport, the TLS client certificate if any) it
answers which configured trunk peer sent it, or None. The emergency trunk refuses INVITEs from
anyone else (403, audited) and takes ``P-Asserted-Identity``, ``From`` and a PIDF-LO body as
verified only from a peer with ``trust_identity``.

A peer is an address or CIDR network, optionally with a TLS identity: then the INVITE must also
arrive over TLS with a client certificate (already verified against ``emergency.trunk.tls_ca`` by
the TLS layer) whose subjectAltName (DNS or URI) or, lacking any, subject CN equals the identity.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrunkPeer:
    """One allowed source of emergency INVITEs."""

    address: str  # IP address or CIDR network
    tls_identity: str = ""
    trust_identity: bool = True
    name: str = ""

    @property
    def network(self) -> Network:
        return ipaddress.ip_network(self.address, strict=False)

    @property
    def label(self) -> str:
        return self.name or self.address


LOOPBACK_PEERS = (TrunkPeer("127.0.0.1/32", name="loopback"), TrunkPeer("::1/128", name="loopback"))


def certificate_identities(der: bytes | None) -> set[str]:
    """The names a certificate vouches for: SAN DNS names and URIs, else the subject CN (lower case)."""
    if not der:
        return set()
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return set()
    names: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names |= {n.lower() for n in san.get_values_for_type(x509.DNSName)}
        names |= {n.lower() for n in san.get_values_for_type(x509.UniformResourceIdentifier)}
    except x509.ExtensionNotFound:
        pass
    if not names:
        names |= {str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    return names


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrunkTrust:
    """The configured trunk peers; an empty list trusts nobody (every emergency INVITE is refused)."""

    def __init__(self, peers: Iterable[TrunkPeer]) -> None:
        self.peers = tuple(peers)
        self._networks = [(p, p.network) for p in self.peers]

    def address_allowed(self, host: str) -> bool:
        """Is ``host`` inside some peer's network (the INVITE rate-limit exemption)?"""
        address = _address(host)
        return address is not None and any(address in net for _, net in self._networks)

    def match(self, host: str, transport: str, certificate: bytes | None = None) -> TrunkPeer | None:
        """The peer that sent an INVITE from ``host`` over ``transport``, or None (refuse it)."""
        address = _address(host)
        if address is None:
            return None
        identities: set[str] | None = None
        for peer, net in self._networks:
            if address not in net:
                continue
            if not peer.tls_identity:
                return peer
            if transport != "tls":
                continue
            if identities is None:
                identities = certificate_identities(certificate)
            if peer.tls_identity.lower() in identities:
                return peer
        return None

    def why_refused(self, host: str, transport: str) -> str:
        """A short reason for the audit log (which check failed)."""
        address = _address(host)
        if not self.peers:
            return "no trunk peers configured"
        if address is None or not any(address in net for _, net in self._networks):
            return "source address is not a trunk peer"
        if transport != "tls":
            return "trunk peer requires TLS"
        return "TLS certificate does not match the trunk peer's identity"
