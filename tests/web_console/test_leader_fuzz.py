"""schemathesis with the leader's session (issue 19) on the routes the leader reads and those next to
them (dispatch, plans, resources, the command view): no 5xx, and no answer that lets the leader do
what the role matrix forbids (security/api_fuzz.py judges: every change is refused). Bounded for CI:
a few derandomized examples per operation. The full per-role run is tests/security/test_schemathesis.py."""
from __future__ import annotations

import pytest

from security.api_fuzz import describe, run_role, summary
from tests.conftest import RunningServer

MAX_EXAMPLES = 3
PREFIXES = ("/api/command", "/api/dispatch", "/api/incidents", "/api/units", "/api/plans", "/api/plan-",
            "/api/duty", "/api/resource", "/api/agency-desks", "/api/cap", "/api/avl", "/api/eido")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_leader_fuzzed_gets_no_5xx_and_changes_nothing(server: RunningServer) -> None:
    admin, leader = server.login("admin"), server.login("leader")
    schema = admin.get("/openapi.json").json()
    command = schema["paths"]["/api/command/summary"]["get"]
    assert command["x-roles"] == ["admin", "chair", "leader"] and command["tags"] == ["command"]
    headers = {"Cookie": f"cc_session={leader.cookies['cc_session']}", "X-CSRF-Token": leader.headers["X-CSRF-Token"]}
    run = run_role(schema, server.url, "leader", headers, MAX_EXAMPLES, only=PREFIXES)
    totals = summary([run])
    assert totals["run_errors"] == 0, describe([run])
    assert totals["requests"] >= 30 * 2, describe([run])
    assert totals["server_errors"] == 0, describe([run])
    assert totals["violations"] == 0, describe([run])
    assert run.statuses[403] > 0 and run.statuses[200] > 0, describe([run])
