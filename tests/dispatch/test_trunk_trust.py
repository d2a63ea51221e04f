"""The trunk's trust decisions (pure) and what the settings make of them (issue 13)."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.errors import ConfigError
from config.settings import Settings, load_settings
from dispatch.calltaking.capability import trunk_config
from dispatch.calltaking.trunk_trust import TrunkPeer, TrunkTrust, certificate_identities
from mcu.legs.sip_config import user_agent_config
from sip_gateway.sip import events as ev
from sip_gateway.sip.actions import Flow
from sip_gateway.sip.useragent import UserAgent, UserAgentConfig
from tests.sip_gateway.sip_testlib import SDP_OFFER, Harness, request


def cert_der(cn: str, sans: list[x509.GeneralName] | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_no_peers_trusts_nobody() -> None:
    trust = TrunkTrust(())
    assert trust.match("127.0.0.1", "udp") is None and not trust.address_allowed("127.0.0.1")
    assert trust.why_refused("127.0.0.1", "udp") == "no trunk peers configured"


def test_address_and_network_peers() -> None:
    sbc = TrunkPeer("10.20.0.0/28", name="sbc")
    trust = TrunkTrust((sbc,))
    assert trust.match("10.20.0.5", "udp") is sbc and trust.match("10.20.0.15", "tcp") is sbc
    assert trust.match("10.20.0.16", "udp") is None and trust.match("not-an-ip", "udp") is None
    assert trust.match("::ffff:10.20.0.5", "udp") is sbc  # IPv4-mapped IPv6 on a dual-stack socket
    assert trust.why_refused("10.20.0.16", "udp") == "source address is not a trunk peer"


def test_tls_identity_needs_tls_and_a_matching_certificate() -> None:
    sbc = TrunkPeer("10.20.0.5", tls_identity="sbc.operator.cn")
    trust = TrunkTrust((sbc,))
    good = cert_der("ignored-cn", [x509.DNSName("sbc.operator.cn")])
    assert trust.match("10.20.0.5", "tls", good) is sbc
    assert trust.match("10.20.0.5", "udp", good) is None  # right address, but not over TLS
    assert trust.why_refused("10.20.0.5", "udp") == "trunk peer requires TLS"
    assert trust.match("10.20.0.5", "tls", None) is None  # no client certificate
    assert trust.match("10.20.0.5", "tls", cert_der("x", [x509.DNSName("evil.example")])) is None
    # The SAN rules; the CN counts only when there is no SAN at all (RFC 6125).
    assert trust.match("10.20.0.5", "tls", cert_der("sbc.operator.cn", [x509.DNSName("other.cn")])) is None
    assert trust.match("10.20.0.5", "tls", cert_der("SBC.operator.cn")) is sbc
    assert trust.match("10.20.0.6", "tls", good) is None  # right certificate, wrong address
    assert certificate_identities(b"garbage") == set()
    uri = cert_der("x", [x509.UniformResourceIdentifier("sip:sbc.operator.cn")])
    assert certificate_identities(uri) == {"sip:sbc.operator.cn"}


def test_trusted_peers_skip_the_per_source_invite_limit_others_do_not() -> None:
    sbc = Flow("udp", "10.20.0.5", 5060)
    stranger = Flow("udp", "10.99.0.1", 5060)
    h = Harness(UserAgent(UserAgentConfig(port=5060, rate=2.0, burst=5.0)))
    h.ua.invite_rate_exempt = TrunkTrust((TrunkPeer("10.20.0.5"),)).address_allowed
    for i in range(50):
        h.receive(request(call_id=f"s{i}", branch=f"z9hG4bKsbc{i}", body=SDP_OFFER), sbc)
        h.receive(request(call_id=f"x{i}", branch=f"z9hG4bKx{i}", body=SDP_OFFER), stranger)
    calls = h.events_of(ev.IncomingCall)
    assert sum(1 for c in calls if c.call.source == sbc) == 50  # the SBC carries every emergency call
    assert sum(1 for c in calls if c.call.source == stranger) == 5  # the burst, then 503 / dropped


def test_call_source_is_the_packet_source_not_the_via() -> None:
    """A spoofer's Via (no rport) names a trunk address; the trust decision uses where the packet came from."""
    h = Harness(UserAgent(UserAgentConfig(port=5060)))
    data = request(body=SDP_OFFER).replace(b"Via: SIP/2.0/UDP 127.0.0.1:5099", b"Via: SIP/2.0/UDP 10.20.0.5:5060")
    h.receive(data, Flow("udp", "10.99.0.1", 40000))
    call = h.events_of(ev.IncomingCall)[-1].call
    # Responses go to the packet's source address too (RFC 3261 §18.2.2: the `received` address),
    # never to a host the Via claims.
    assert call.flow.host == "10.99.0.1"
    assert call.source == Flow("udp", "10.99.0.1", 40000)


def test_settings_peers_default_loopback_empty_refuses_and_rate_is_a_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    default = Settings()
    assert [p.address for p in default.emergency.trunk.peers] == ["127.0.0.1/32", "::1/128"]
    f = tmp_path / "cc.toml"
    f.write_text('[sip]\ninvite_rate_per_source = 50\ninvite_burst_per_source = 100\n'
                 '[emergency.trunk]\npeers = ["10.20.0.5", {address = "10.30.0.0/24", tls_identity = "sbc.cn", '
                 'trust_identity = false, name = "pbx"}]\ntls_ca = "ca.pem"\n')
    s = load_settings(f)
    peers = s.emergency.trunk.peers
    assert [(p.address, p.tls_identity, p.trust_identity) for p in peers] == [
        ("10.20.0.5/32", "", True), ("10.30.0.0/24", "sbc.cn", False)]
    config = user_agent_config(s.sip)
    assert (config.rate, config.burst) == (50.0, 100.0)

    class Core:
        settings = s
    assert trunk_config(Core()).peers == (TrunkPeer("10.20.0.5/32"),  # type: ignore[arg-type]
                                          TrunkPeer("10.30.0.0/24", "sbc.cn", False, "pbx"))
    f.write_text("[emergency.trunk]\npeers = []\n")
    assert load_settings(f).emergency.trunk.peers == []
    f.write_text('[emergency.trunk]\npeers = ["sbc.operator.cn"]\n')
    with pytest.raises(ConfigError, match="peers.*not an IP address"):
        load_settings(f)
    f.write_text('[emergency.trunk]\npeers = [{address = "10.0.0.1", tls_identity = "sbc.cn"}]\n')
    with pytest.raises(ConfigError, match="tls_ca must be set"):
        load_settings(f)


def test_unusable_trunk_ca_is_a_config_error_naming_the_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from config.settings import SipSettings
    from mcu.legs.sip_config import tls_context

    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"emergency\.trunk\.tls_ca: cannot load"):
        tls_context(SipSettings(), tmp_path / "var", client_ca=bad)
    context, _ = tls_context(SipSettings(), tmp_path / "var")  # without a trunk CA: no client certificates asked
    import ssl
    assert context.verify_mode == ssl.CERT_NONE
