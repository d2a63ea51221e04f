"""The pure rules of `commandcenter ha promote-remote` (core/db/standby.py), and its refusals
against a fake Patroni that records what it was sent (the real promotion: tests/ha/test_ha_remote_standby.py)."""
from __future__ import annotations

import json

import httpx
import pytest

from commandcenter.cli import main
from core.db.standby import PromoteError, is_standby_config, patroni_base_url, promote_remote, promoted


@pytest.mark.parametrize("text", ["", "10.20.0.11:8008", "ftp://h:8008", "http://", "http://h:99999",
                                  "http://h:8008/config", "http://h:8008/?x=1", "http://h:8008#f", "http://[::1",
                                  "\x00", "http://h:-1"])
def test_bad_urls_are_refused(text: str) -> None:
    with pytest.raises(PromoteError):
        patroni_base_url(text)


def test_good_urls() -> None:
    assert patroni_base_url(" http://10.20.0.11:8008/ ") == "http://10.20.0.11:8008"
    assert patroni_base_url("https://u:p@dr1:8008") == "https://u:p@dr1:8008"


def test_standby_and_primary_recognised() -> None:
    assert is_standby_config({"standby_cluster": {"host": "10.10.0.10", "port": 5000}})
    configs: tuple[object, ...] = ({}, {"standby_cluster": None}, {"standby_cluster": {}}, [], "x", None)
    for config in configs:
        assert not is_standby_config(config)
    assert promoted({"role": "master", "state": "running"})
    assert promoted({"role": "primary", "state": "running"})
    assert not promoted({"role": "standby_leader", "state": "running"})
    assert not promoted({"role": "master", "state": "starting"})
    assert not promoted("master")


def _patroni(config: dict[str, object], roles: list[str]) -> tuple[httpx.Client, list[tuple[str, object]]]:
    sent: list[tuple[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            sent.append(("PATCH", json.loads(request.content)))
            config.pop("standby_cluster", None)
            return httpx.Response(200, json=config)
        if request.url.path == "/config":
            return httpx.Response(200, json=config)
        role = roles.pop(0) if len(roles) > 1 else roles[0]
        return httpx.Response(200, json={"role": role, "state": "running"})

    return httpx.Client(transport=httpx.MockTransport(handler)), sent


def test_promote_patches_then_waits_for_primary() -> None:
    client, sent = _patroni({"standby_cluster": {"host": "h", "port": 5000}, "ttl": 10},
                            ["standby_leader", "standby_leader", "master"])
    now = [0.0]
    took = promote_remote("http://dr1:8008", 60, client=client, clock=lambda: now[0],
                          sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert sent == [("PATCH", {"standby_cluster": None})]
    assert took == 1.0


def test_not_a_standby_changes_nothing() -> None:
    client, sent = _patroni({"ttl": 10}, ["master"])
    with pytest.raises(PromoteError, match="not a standby cluster"):
        promote_remote("http://dr1:8008", client=client)
    assert sent == []


def test_promotion_that_never_completes_is_bounded() -> None:
    client, sent = _patroni({"standby_cluster": {"host": "h"}}, ["standby_leader"])
    now = [0.0]
    with pytest.raises(PromoteError, match="did not run as primary within 5 s"):
        promote_remote("http://dr1:8008", 5, client=client, clock=lambda: now[0],
                       sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert len(sent) == 1


def test_cli_errors_are_clear(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ha", "promote-remote", "--patroni", "http://h:8008/x"]) == 1
    assert "without a path" in capsys.readouterr().err
    # nothing listens there: a clear error, no traceback
    assert main(["ha", "promote-remote", "--patroni", "http://127.0.0.1:9"]) == 1
    assert "did not answer GET /config" in capsys.readouterr().err
