"""schemathesis against the console's `/openapi.json`, once per role and once anonymously.

For every operation of the OpenAPI document, schemathesis (on Hypothesis) generates requests —
valid ones and deliberately invalid ones — and sends them with one role's session (cookie plus
CSRF header, as a browser would). Each answer is judged:

* **server error**: any 5xx;
* **violation**: an answer that lets a caller do what the role matrix forbids, or that does not
  refuse as it must:
  - anonymous: every operation except the public ones (no ``x-roles``) must answer 401;
  - a signed-in role the operation does not list in ``x-roles`` must get 403;
  - and, independently of ``x-roles``, a role must never succeed (< 400) outside its consoles
    (:data:`FAMILIES`, the README's role table): chair/operator → conference, calltaker → desk
    and dispatch (call-takers open incidents), dispatcher → dispatch and desk, inspector →
    inspect, leader → command (and reading dispatch, plans, resources), viewer → nothing but
    ``/api/me``; ``identity`` and ``audit`` are admins' only.

Used by the bounded CI test (tests/security/test_schemathesis.py) and by the long run
(`python -m security.schemathesis_run`), which writes its figures as JSON.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

ROLES: tuple[str, ...] = ("admin", "chair", "operator", "calltaker", "dispatcher", "inspector", "viewer", "leader")
# The consoles (OpenAPI tags) each role works in: the README's role table, written down here on
# its own so the check does not just trust the x-roles the app declares.
FAMILIES: dict[str, frozenset[str]] = {
    "chair": frozenset({"conference", "resources", "plans", "dispatch", "command"}),  # resources, dispatch: read-only (issue 19)
    "operator": frozenset({"conference"}),
    "calltaker": frozenset({"desk", "dispatch", "resources"}),
    "dispatcher": frozenset({"dispatch", "desk", "resources", "plans"}),
    "inspector": frozenset({"inspect"}),
    "viewer": frozenset(),
    # the leader (issue 19): the command view, and reading the dispatch map, resources and plans
    "leader": frozenset({"command", "dispatch", "resources", "plans"}),
}
# public warnings (issue 20): dispatchers draft, the leader on duty or the chair approves; the CAP Atom
# feed (/api/warnings/feed.atom) and CAP XML are read by the same family (and by systems with a feed token)
for _role in ("dispatcher", "chair", "leader"):
    FAMILIES[_role] = FAMILIES[_role] | {"warnings"}
# monitoring (issue 20): gauges, charts and alarms are watched by dispatchers (who acknowledge),
# the chair and the leader; readings are pushed by admins or by a system's token
for _role in ("dispatcher", "chair", "leader"):
    FAMILIES[_role] = FAMILIES[_role] | {"monitoring"}
# live streaming (issue 18): viewers, chairs and operators watch (tag "watch")
FAMILIES.update({role: FAMILIES[role] | {"watch"} for role in ("viewer", "chair", "operator")})
# SMS (issue 20): dispatchers, leaders and chairs send bulletins, command messages and meeting notices
for _role in ("dispatcher", "leader", "chair"):
    FAMILIES[_role] = FAMILIES[_role] | {"sms"}
# the SMS console (/sms, its gateway state and retry routes, tag "sms"): the same family; retrying is
# the dispatchers' (x-roles say so), the leader reads
# content (issue 18): the content token, raised hands and the chair's slide deck; a leader chairing a
# meeting does what the chair does with content (tag "content")
for _role in ("chair", "operator", "leader"):
    FAMILIES[_role] = FAMILIES[_role] | {"content"}
# far-end camera control (issue 18): chairs, operators and the leader steer a room system's camera
for _role in ("chair", "operator", "leader"):
    FAMILIES[_role] = FAMILIES[_role] | {"camera"}
# field responders (issue 20): the crew of one unit on the phone page (tag "field"); nothing else
# replaying recorded conferences (issue 18): chairs and operators replay and grant, viewers replay what they were granted
FAMILIES.update({role: FAMILIES[role] | {"replay"} for role in ("viewer", "chair", "operator")})
ROLES = (*ROLES, "responder")
FAMILIES["responder"] = frozenset({"field"})
EVERY_ROLE_PATHS = frozenset({"/api/me"})
# Single operations a role may use outside its consoles: inspectors export emergency-call
# recordings as evidence (the desk's recording export).
EXTRA: frozenset[tuple[str, str, str]] = frozenset({
    ("inspector", "POST", "/api/desk/calls/{call_id}/recording/export"),
})


@dataclass
class Finding:
    role: str
    method: str
    path: str
    status: int
    why: str
    curl: str

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class RoleRun:
    role: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[Finding] = field(default_factory=list)
    violations: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the run itself failing (connection refused, ...)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "requests": self.requests, "seconds": round(self.seconds, 1),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "server_errors": len(self.server_errors), "violations": len(self.violations),
                "first_server_errors": [f.to_json() for f in self.server_errors[:20]],
                "first_violations": [f.to_json() for f in self.violations[:20]], "errors": self.errors[:20]}


def judge(role: str | None, method: str, path: str, operation: dict[str, Any], status: int) -> str | None:
    """Why this answer breaks the role matrix, or None when it is fine (5xx are counted apart)."""
    roles = operation.get("x-roles")
    if roles is None:
        return None  # public: /healthz, /readyz
    if role is None:
        return None if status == 401 else f"anonymous got {status}, not 401"
    tags = frozenset(operation.get("tags", ()))
    if role != "admin":
        family_ok = (path in EVERY_ROLE_PATHS or (role, method, path) in EXTRA
                     or bool(tags & FAMILIES.get(role, frozenset())))
        if not family_ok and status < 400:
            return f"{role} succeeded ({status}) outside its consoles ({sorted(tags)})"
    if role not in roles and status != 403:
        return f"{role} is not in x-roles {roles} but got {status}, not 403"
    return None


def operations(schema_raw: dict[str, Any], only: Iterable[str] = ()) -> list[Any]:
    """The schemathesis operations of the document (optionally only paths starting with `only`)."""
    schema = schemathesis.openapi.from_dict(schema_raw)
    prefixes = tuple(only)
    found = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise RuntimeError(f"the OpenAPI document has a broken operation: {result.err()}")
        operation = result.ok()
        if not prefixes or operation.path.startswith(prefixes):
            found.append(operation)
    return found


def run_role(schema_raw: dict[str, Any], base_url: str, role: str | None, headers: dict[str, str],
             max_examples: int, *, seed: int = 13, only: Iterable[str] = (), timeout: float = 15.0) -> RoleRun:
    """Fuzz every operation with one role's credentials (None: anonymous); deterministic for a seed."""
    run = RoleRun(role or "anonymous")
    started = time.monotonic()
    for operation in operations(schema_raw, only):
        raw = schema_raw["paths"][operation.path][operation.method.lower()]
        try:
            _fuzz_operation(run, role, operation, raw, base_url, headers, max_examples, seed, timeout)
        except Exception as exc:  # generation trouble for one operation must not hide the others
            run.errors.append(f"{operation.method.upper()} {operation.path}: {type(exc).__name__}: {str(exc)[:300]}")
    run.seconds = time.monotonic() - started
    return run


def _fuzz_operation(run: RoleRun, role: str | None, operation: Any, raw: dict[str, Any], base_url: str,
                    headers: dict[str, str], max_examples: int, seed: int, timeout: float) -> None:
    method, path = operation.method.upper(), operation.path
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))
    hidden = {"Cookie": "<session>", "X-CSRF-Token": "<csrf>"} if headers else {}

    @hypothesis.settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                         suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
                         print_blob=False)
    @hypothesis.seed(seed)
    @given(case=strategy)
    def exercise(case: Any) -> None:
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=timeout, allow_redirects=False)
        except Exception as exc:  # the server did not answer at all: that is a finding too
            run.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            return
        run.requests += 1
        status = int(response.status_code)
        run.statuses[status] += 1
        if status >= 500:
            run.server_errors.append(Finding(run.role, method, path, status, response.text[:300],
                                             case.as_curl_command(headers=hidden)))
        why = judge(role, method, path, raw, status)
        if why is not None:
            run.violations.append(Finding(run.role, method, path, status, why, case.as_curl_command(headers=hidden)))

    exercise()


def summary(runs: list[RoleRun]) -> dict[str, Any]:
    return {"requests": sum(r.requests for r in runs), "server_errors": sum(len(r.server_errors) for r in runs),
            "violations": sum(len(r.violations) for r in runs), "run_errors": sum(len(r.errors) for r in runs),
            "roles": [r.to_json() for r in runs]}


def describe(runs: list[RoleRun]) -> str:
    lines = [f"{'role':<11} {'requests':>8} {'5xx':>5} {'violations':>10} {'seconds':>8}"]
    for r in runs:
        lines.append(f"{r.role:<11} {r.requests:>8} {len(r.server_errors):>5} {len(r.violations):>10} {r.seconds:>8.1f}")
    total = summary(runs)
    lines.append(f"{'total':<11} {total['requests']:>8} {total['server_errors']:>5} {total['violations']:>10}")
    for r in runs:
        for f in (r.server_errors + r.violations)[:5]:
            lines.append(f"  {f.role} {f.method} {f.path} -> {f.status}: {f.why[:160]}")
        for e in r.errors[:3]:
            lines.append(f"  {r.role} run error: {e[:200]}")
    return "\n".join(lines)


def dump(path: Any, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
