"""The role check runs before anything reads the body, on every route (issue 13).

The whole route table of the real app (on the embedded PostgreSQL with the demo users) is walked:
every state-changing route, called by a signed-in user whose role the route does not admit with a
body that is not even JSON, must answer 403, not 400/422 (which would tell a stranger what the
body should look like). Also: every route of the console uses `RoleFirstRoute`, and the pure
token bucket behind the anonymous join-page limit.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from commandcenter.node import Node
from config.roles import Role
from core.runtime import CoreServices
from web_console.app import create_app
from web_console.auth import SESSION_COOKIE, RoleFirstRoute, route_roles
from web_console.guards import ApiModel, TokenBucket, nul_path

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
PUBLIC_MUTATING = {("POST", "/login")}  # the only state-changing route open to anyone
GARBAGE = [b"{not json", b"\xff\xfe\x00garbage", b'{"op": 5, "minutes": "many", "name": null}']


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute of an app, also inside included routers (FastAPI keeps those nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_every_mutating_route_checks_the_role_before_the_body(services: CoreServices) -> None:
    app = create_app(Node(services))  # no capability runs: their routes answer 503
    sessions: dict[Role, tuple[str, str]] = {}
    for role in Role:
        user = await services.identity.get_user(role.value)
        assert user is not None, f"demo user {role.value} missing"
        sessions[role] = await services.identity.create_session(user, "127.0.0.1")
    routes = list(api_routes(app.routes))
    assert len(routes) > 60
    checked = 0
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for route in routes:
            assert isinstance(route, RoleFirstRoute), f"{route.path} does not check the role first"
            for method in sorted((route.methods or set()) & MUTATING):
                roles = route_roles(route)
                if roles is None:
                    assert (method, route.path) in PUBLIC_MUTATING, f"{method} {route.path} has no role check"
                    continue
                wrong = [r for r in Role if r is not Role.ADMIN and r not in roles]
                if not wrong:  # any signed-in user (logout): the CSRF check still comes before the body
                    assert (method, route.path) == ("POST", "/logout"), f"{method} {route.path} admits every role"
                    token, _ = sessions[Role.VIEWER]
                    forged = await client.request(method, route.path, content=GARBAGE[0], headers={"Content-Type": "application/json",
                                                           "Cookie": f"{SESSION_COOKIE}={token}"})
                    assert forged.status_code == 403
                    continue
                token, csrf = sessions[wrong[0]]
                for body in GARBAGE:
                    response = await client.request(
                        method, _fill(route.path), content=body,
                        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf,
                                 "Cookie": f"{SESSION_COOKIE}={token}"})
                    assert response.status_code == 403, (method, route.path, wrong[0], response.status_code,
                                                         response.text[:200])
                    checked += 1
                # Anonymous: 401 for the API (pages redirect to the login page), also before the body.
                anonymous = await client.request(method, _fill(route.path), content=GARBAGE[0],
                                                 headers={"Content-Type": "application/json"})
                assert anonymous.status_code in (401, 303), (method, route.path, anonymous.status_code)
    assert checked >= 3 * 50


def test_token_bucket_allows_a_burst_then_refills_per_key() -> None:
    bucket = TokenBucket(rate=0.5, burst=3)
    assert [bucket.take("10.0.0.1", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take("10.0.0.1", 100.0)
    assert wait == pytest.approx(2.0)
    assert TokenBucket.retry_after_header(wait) == "2"
    assert bucket.take("10.0.0.2", 100.0) == 0.0  # another source has its own bucket
    assert bucket.take("10.0.0.1", 101.0) == pytest.approx(1.0)
    assert bucket.take("10.0.0.1", 102.0) == 0.0  # one token back after 2 s
    small = TokenBucket(rate=1.0, burst=1, max_keys=2)
    for i in range(5):
        assert small.take(f"k{i}", 0.0) == 0.0
    assert len(small._buckets) <= 2


def test_request_models_refuse_nul_naming_the_field() -> None:
    class Sample(ApiModel):
        name: str
        sites: list[str] = []
        count: int = 0

    assert nul_path({"a": ["x", "y\x00"]}) == "a[1]"
    assert Sample(name="会议", sites=["a"]).name == "会议"
    for data, field in (({"name": "a\x00b"}, "name"), ({"name": "ok", "sites": ["a", "\x00"]}, "sites[1]")):
        with pytest.raises(ValueError) as caught:
            Sample.model_validate(data)
        assert f"字段 {field} " in str(caught.value)
