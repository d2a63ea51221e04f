"""Promote the remote ("different-city") standby cluster: `commandcenter ha promote-remote`.

The remote site is a Patroni *standby cluster* (deploy/ha/remote-site/patroni.yml): its leader
replays the city's WAL and refuses writes while the cluster's dynamic configuration holds a
`standby_cluster` section. Removing that section is the promotion; Patroni does the rest (it
promotes its PostgreSQL within one loop). We send exactly that change through Patroni's REST API
(`PATCH /config` with `{"standby_cluster": null}`: null removes a key), which is the same change as
`patronictl -c <config> edit-config --force -s standby_cluster=null`. We wrote this by hand because
it is one HTTP request plus checks around it; the replication and promotion are Patroni's.

Rules (pure, tested): `patroni_base_url` accepts only an http(s) URL with a host and no path, query
or fragment (a typo must not PATCH some other server); `is_standby_config` says whether a cluster
is still a standby cluster (anything else is refused before any change: promoting twice, or
promoting the city cluster by mistake, changes nothing); `promoted` reads `GET /patroni`.
`promote_remote` does GET /config, PATCH /config, then waits (bounded) until the node runs as
primary. Credentials of `restapi.authentication`, if set, go in the URL (`http://user:pw@host:8008`).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

PRIMARY_ROLES = ("master", "primary", "leader")


class PromoteError(RuntimeError):
    """The remote site could not be promoted (the message says why; nothing changed unless it says so)."""


def patroni_base_url(text: str) -> str:
    """`http(s)://host:port` of a Patroni REST API, or PromoteError."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise PromoteError(f"not a Patroni REST URL: {text!r} (e.g. http://10.20.0.11:8008)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PromoteError(f"not a Patroni REST URL: {text!r} (e.g. http://10.20.0.11:8008)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise PromoteError(f"give the Patroni REST API's address only, without a path: {text!r}")
    del port
    return f"{parts.scheme}://{parts.netloc}"


def is_standby_config(config: Any) -> bool:
    """True when Patroni's dynamic configuration (`GET /config`) makes it a standby cluster."""
    if not isinstance(config, dict):
        return False
    section = config.get("standby_cluster")
    return isinstance(section, dict) and bool(section.get("host") or section.get("restore_command"))


def promoted(status: Any) -> bool:
    """True when `GET /patroni` says this node runs as a primary that takes writes."""
    return (isinstance(status, dict) and status.get("role") in PRIMARY_ROLES
            and status.get("state") == "running")


def promote_remote(url: str, wait_seconds: float = 60.0, *, client: httpx.Client | None = None,
                   clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> float:
    """Remove `standby_cluster` from the remote site's configuration and wait until its node is a
    primary. Returns the seconds it took; PromoteError otherwise."""
    base = patroni_base_url(url)
    http = client or httpx.Client(timeout=10.0)
    try:
        try:
            current = http.get(f"{base}/config")
            current.raise_for_status()
            config = current.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PromoteError(f"the Patroni REST API at {base} did not answer GET /config: {exc}") from None
        if not is_standby_config(config):
            raise PromoteError(f"{base} is not a standby cluster (no standby_cluster in its configuration; "
                               "already promoted, or the wrong site?): nothing changed")
        started = clock()
        try:
            answer = http.patch(f"{base}/config", json={"standby_cluster": None})
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            raise PromoteError(f"Patroni at {base} refused PATCH /config: {exc}") from None
        while clock() - started < wait_seconds:
            try:
                if promoted(http.get(f"{base}/patroni").json()):
                    return clock() - started
            except (httpx.HTTPError, ValueError):
                pass
            sleep(0.5)
        raise PromoteError(f"standby_cluster was removed at {base}, but the node did not run as primary within "
                           f"{wait_seconds:g} s: check `patronictl list` there")
    finally:
        if client is None:
            http.close()
