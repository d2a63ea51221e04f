"""schemathesis against `/openapi.json` of a running system, once per role and anonymously (issue 13).

For each role with that role's session: no 5xx, and no answer that lets the role do what the role
matrix forbids (security/api_fuzz.py says exactly what is judged); anonymously every operation
except the public ones is 401. Bounded for CI: a fixed number of derandomized examples per
operation (positive and negative), about two minutes on a quiet machine. The long run is
`python -m security.schemathesis_run` (figures in security/results/schemathesis.json).
"""
from __future__ import annotations

import pytest

from security.api_fuzz import ROLES, describe, run_role, summary
from tests.conftest import RunningServer

SERVER_ENV = {"CC_SMS__ENABLED": "true"}  # the SMS routes (issue 20) run for real: Kannel + fakesmsc
MAX_EXAMPLES = 4  # per operation and role: ~80 operations x 8 callers x 4 = ~2,500 requests


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_schemathesis_per_role_finds_no_5xx_and_no_role_violation(server: RunningServer) -> None:
    sessions = {role: server.login(role) for role in ROLES}
    schema = sessions["admin"].get("/openapi.json").json()
    assert server.client().get("/openapi.json").status_code == 401  # the document itself is for admins
    operations = [(path, op) for path, ops in schema["paths"].items() for op in ops.values()]
    public = sorted(path for path, op in operations if "x-roles" not in op)
    assert public == ["/healthz", "/readyz"]  # every other operation publishes the roles it admits
    runs = []
    for role in (*ROLES, None):
        headers = {} if role is None else {"Cookie": f"cc_session={sessions[role].cookies['cc_session']}",
                                           "X-CSRF-Token": sessions[role].headers["X-CSRF-Token"]}
        runs.append(run_role(schema, server.url, role, headers, MAX_EXAMPLES))
    totals = summary(runs)
    print(describe(runs))
    assert totals["run_errors"] == 0, describe(runs)
    assert totals["requests"] >= 8 * 70 * 2, describe(runs)  # every operation really was exercised
    assert totals["server_errors"] == 0, describe(runs)
    assert totals["violations"] == 0, describe(runs)
    # the anonymous run saw 401 everywhere except the public health checks
    anonymous = runs[-1]
    assert set(anonymous.statuses) <= {200, 401, 503} and anonymous.statuses[401] >= 70 * 2
