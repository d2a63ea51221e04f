"""Digest-failure throttling (issue 13): the pure policy and the user agent on a virtual clock.

A password guesser gets 5 wrong answers per (source, account), then 403 with Retry-After, with
blocks doubling up to 15 minutes; while blocked even the right password is refused. A device
that authenticated from its usual address keeps registering while an attacker elsewhere guesses.
"""

from __future__ import annotations

from sip_gateway.sip import events as ev
from sip_gateway.sip.actions import Flow
from sip_gateway.sip.authguard import AuthThrottle, AuthThrottlePolicy, ThrottleTier
from sip_gateway.sip.digest import Credentials, build_authorization
from sip_gateway.sip.message import Response
from sip_gateway.sip.useragent import UserAgent, UserAgentConfig
from tests.sip_gateway.sip_testlib import SDP_OFFER, Harness, request

PASSWORD = "Alice-Device-Pass-77"
DEVICE = Flow("udp", "10.1.1.10", 5060)
ATTACKER = Flow("udp", "203.0.113.66", 5060)
_counter = 0


def make() -> Harness:
    return Harness(UserAgent(UserAgentConfig(port=5060, accounts={"alice": PASSWORD}, rate=1e6, burst=1e6,
                                             auth_algorithms=("MD5",))))


def invite(h: Harness, flow: Flow, user: str, password: str) -> Response:
    """INVITE, the application challenges (as for a no-guest conference), INVITE again with
    credentials; the application challenges again unless they were accepted. The last final
    response (or the 100 Trying of an authenticated call)."""
    global _counter
    _counter += 1
    uri = "sip:80000001@127.0.0.1"

    def send(cseq: int, branch: str, extra: str = "") -> Response:
        calls = len(h.events_of(ev.IncomingCall))
        before = len(h.responses())
        h.receive(request("INVITE", call_id=f"i{_counter}", cseq=cseq, branch=branch, body=SDP_OFFER,
                          extra=extra), flow)
        new_calls = h.events_of(ev.IncomingCall)[calls:]
        if new_calls and new_calls[0].call.authenticated_user is None:
            h.run(h.ua.challenge(new_calls[0].call, h.now))
        return h.responses()[before:][-1]

    challenge = send(1, f"z9hG4bKi{_counter}")
    assert challenge.status == 401, challenge.status
    auth = build_authorization(challenge.headers.get("WWW-Authenticate") or "", "INVITE", uri,
                               Credentials(user, password))
    return send(2, f"z9hG4bKj{_counter}", f"Authorization: {auth}")


def register(h: Harness, flow: Flow, user: str, password: str) -> Response:
    """REGISTER as ``user`` (To/From carry the user, as a real device sends them)."""
    global _counter
    _counter += 1
    aor = f"sip:{user}@127.0.0.1"
    call_id = f"r{_counter}"

    def req(cseq: int, branch: str, extra: str = "") -> bytes:
        text = request("REGISTER", call_id=call_id, cseq=cseq, branch=branch, extra=extra,
                       uri="sip:127.0.0.1").decode()
        text = text.replace("<sip:80000001@127.0.0.1>", f"<{aor}>")
        return text.encode()

    h.receive(req(1, f"z9hG4bKr{_counter}"), flow)
    challenge = h.last_response()
    assert challenge.status == 401, challenge.status
    auth = build_authorization(challenge.headers.get("WWW-Authenticate") or "", "REGISTER", "sip:127.0.0.1",
                               Credentials(user, password))
    h.receive(req(2, f"z9hG4bKs{_counter}", f"Authorization: {auth}"), flow)
    return h.last_response()


# ------------------------------------------------------------------ the pure policy


def test_policy_blocks_a_pair_after_five_failures_doubling_to_the_cap() -> None:
    throttle = AuthThrottle()
    now = 1000.0
    for _ in range(4):
        assert throttle.check("a", "alice", now).allowed
        assert throttle.failure("a", "alice", now) == []
    assert throttle.check("a", "alice", now).allowed
    engaged = throttle.failure("a", "alice", now)
    assert [(e.scope, e.failures, e.blocked_for) for e in engaged] == [("source+account", 5, 2.0)]
    verdict = throttle.check("a", "alice", now + 1)
    assert not verdict.allowed and verdict.scope == "source+account" and verdict.retry_after == 1.0
    assert throttle.check("a", "alice", now + 2.01).allowed
    blocks = [throttle.failure("a", "alice", now + 10 * i)[0].blocked_for for i in range(1, 12)]
    assert blocks[:5] == [4.0, 8.0, 16.0, 32.0, 64.0] and blocks[-1] == 900.0
    # Another address for the same account and the same address for another account are free.
    assert throttle.check("b", "alice", now + 120).allowed
    assert throttle.check("a", "bob", now + 120).allowed
    # An hour without failures: the count starts again.
    later = now + 120 + 900 + 3601
    assert throttle.check("a", "alice", later).allowed
    assert throttle.failure("a", "alice", later) == []


def test_policy_account_tier_spares_a_trusted_source_and_source_tier_brakes_a_spray() -> None:
    policy = AuthThrottlePolicy()
    throttle = AuthThrottle(policy)
    throttle.success("device", "alice", 0.0)
    started = []
    for i in range(policy.per_account.allowed_failures):
        started += throttle.failure(f"bot{i}", "alice", 10.0)
    assert [e.scope for e in started] == ["account"]
    blocked = throttle.check("newcomer", "alice", 10.5)
    assert not blocked.allowed and blocked.scope == "account" and blocked.retry_after <= 60
    assert throttle.check("device", "alice", 10.5).allowed  # authenticated from here before
    # One address spraying many usernames once each.
    spray = []
    for i in range(policy.per_source.allowed_failures):
        spray += throttle.failure("sprayer", f"user{i}", 20.0)
    assert [e.scope for e in spray] == ["source"]
    assert throttle.check("sprayer", "someone-else", 20.5).scope == "source"
    assert throttle.check("sprayer", None, 20.5).scope == "source"
    # A phone that authenticated from that (NAT) address before is spared by the source tier.
    throttle.success("sprayer", "phone-7", 1.0)
    assert throttle.check("sprayer", "phone-7", 20.5).allowed


def test_policy_tables_are_bounded() -> None:
    throttle = AuthThrottle(AuthThrottlePolicy(per_source_account=ThrottleTier(1, 1.0, 10.0), max_keys=100))
    for i in range(1000):
        throttle.failure(f"10.0.{i // 256}.{i % 256}", f"u{i}", 0.0)
        throttle.success("10.9.9.9", f"u{i}", 0.0)
    assert len(throttle._pair.rows) == len(throttle._source.rows) == len(throttle._account.rows) == 100
    assert len(throttle._trusted) == 100


# ------------------------------------------------------------------ the user agent


def test_register_guessing_is_throttled_and_the_device_keeps_registering() -> None:
    h = make()
    assert register(h, DEVICE, "alice", PASSWORD).status == 200
    statuses = [register(h, ATTACKER, "alice", f"guess-{i}").status for i in range(8)]
    assert statuses == [401] * 5 + [403] * 3, statuses
    refused = register(h, ATTACKER, "alice", PASSWORD)  # the right password, still blocked
    assert refused.status == 403 and refused.reason == "Too many failed authentications"
    assert int(refused.headers.get("Retry-After") or 0) >= 1
    assert h.ua.bindings.lookup("alice@127.0.0.1", h.now)[0].flow.host == DEVICE.host
    throttled = h.events_of(ev.AuthThrottled)
    assert throttled and throttled[0].scope == "source+account" and throttled[0].username == "alice"
    assert throttled[0].failures == 5 and throttled[0].flow.host == ATTACKER.host
    # The device refreshes from its usual address: not affected.
    assert register(h, DEVICE, "alice", PASSWORD).status == 200
    # After the window the right password works again from that address.
    h.advance(3.0)
    assert register(h, ATTACKER, "alice", PASSWORD).status == 200


def test_unknown_and_known_usernames_get_the_same_answers() -> None:
    h = make()
    known = [register(h, ATTACKER, "alice", f"g{i}").status for i in range(7)]
    other = Flow("udp", "203.0.113.67", 5060)
    unknown = [register(h, other, "nobody", f"g{i}").status for i in range(7)]
    assert known == unknown == [401] * 5 + [403] * 2


def test_invite_guessing_is_throttled_before_the_application_sees_it() -> None:
    h = make()
    statuses = [invite(h, ATTACKER, "alice", f"guess-{i}").status for i in range(5)]
    assert statuses == [401] * 5
    assert [e.scope for e in h.events_of(ev.AuthThrottled)] == ["source+account"]
    assert all(e.method == "INVITE" for e in h.events_of(ev.AuthThrottled))
    calls = len(h.events_of(ev.IncomingCall))
    blocked = invite(h, ATTACKER, "alice", PASSWORD)  # right password, still blocked
    assert blocked.status == 403 and blocked.headers.get("Retry-After")
    assert len(h.events_of(ev.IncomingCall)) == calls + 1  # only the first, unauthenticated INVITE
    ok = invite(h, DEVICE, "alice", PASSWORD)
    assert ok.status == 100 and h.events_of(ev.IncomingCall)[-1].call.authenticated_user == "alice"
