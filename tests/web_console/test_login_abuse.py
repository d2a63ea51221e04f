"""Login abuse against a running server: a guesser is slowed, the account is not locked for everyone.

The server does not trust X-Forwarded-For, so the attacker really comes from another loopback
address: its httpx client is bound to 127.0.0.2 (or .3, .4), the call-taker uses 127.0.0.1.
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import ROOT, RunningServer

# A long first delay, so a slow machine cannot let a throttled attempt through by accident.
SERVER_ENV = {"CC_SECURITY__LOGIN_BASE_DELAY_SECONDS": "30"}
PASSWORD = "Desk-Shift-2026"


def client_from(server: RunningServer, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, timeout=30.0, transport=transport)


def attempt(server: RunningServer, address: str, username: str, password: str) -> httpx.Response:
    """One browser-like login (login page for the CSRF cookie, then the form) from `address`."""
    with client_from(server, address) as c:
        page = c.get("/login")
        csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert csrf, page.text
        return c.post("/login", data={"username": username, "password": password, "login_csrf": csrf.group(1)})


def new_user(server: RunningServer, admin: httpx.Client, role: str = "calltaker") -> str:
    name = "ct" + uuid.uuid4().hex[:8]
    created = admin.post("/api/users", json={"username": name, "password": PASSWORD, "role": role})
    assert created.status_code == 201, created.text
    return name


def login_audit(admin: httpx.Client, name: str) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = admin.get("/api/audit", params={"action": "login", "limit": 1000}).json()
    return [e for e in entries if e["target"] == name]


def test_a_guesser_does_not_lock_the_calltaker_out(server: RunningServer) -> None:
    admin = server.login("admin")
    name = new_user(server, admin)
    statuses = [attempt(server, "127.0.0.2", name, f"guess-{i}-x9").status_code for i in range(12)]
    # The call-taker, at the desk, logs in as usual.
    desk = attempt(server, "127.0.0.1", name, PASSWORD)
    assert desk.status_code == 303, desk.status_code
    assert not any(u["locked"] for u in admin.get("/api/users").json() if u["username"] == name)
    # The guesser got 5 tries, then has to wait, even with the right password.
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
    throttled = attempt(server, "127.0.0.2", name, PASSWORD)
    assert throttled.status_code == 429 and 0 < int(throttled.headers["retry-after"]) <= 30
    assert "登录尝试过于频繁" in throttled.text

    entries = login_audit(admin, name)
    by_source = {(e["source"], e["outcome"], e["detail"].get("reason") if isinstance(e["detail"], dict) else None)
                 for e in entries}
    assert ("127.0.0.2", "failed", "bad_credentials") in by_source
    assert ("127.0.0.2", "denied", "throttled") in by_source
    assert ("127.0.0.1", "ok", None) in by_source
    assert sum(1 for e in entries if e["source"] == "127.0.0.2") == 13  # every attempt is audited
    assert all(e["at"] for e in entries) and all(e["actor"] == name for e in entries)

    # An administrator's password reset clears the account's throttling.
    assert admin.patch(f"/api/users/{name}", json={"password": "Fresh-Start-2026"}).status_code == 200
    assert attempt(server, "127.0.0.2", name, "Fresh-Start-2026").status_code == 303


def test_parallel_guesses_are_capped(server: RunningServer) -> None:
    admin = server.login("admin")
    name = new_user(server, admin)
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda i: attempt(server, "127.0.0.3", name, f"parallel-{i}-x9"), range(50)))
    statuses = [r.status_code for r in responses]
    # Only 5 passwords were checked; 45 were refused before hashing.
    assert statuses.count(401) == 5 and statuses.count(429) == 45, statuses
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 429)
    outcomes = [e["outcome"] for e in login_audit(admin, name)]
    assert outcomes.count("failed") == 5 and outcomes.count("denied") == 45


def test_an_admin_locks_and_unlocks_an_account_by_hand(server: RunningServer) -> None:
    admin = server.login("admin")
    name = new_user(server, admin)
    session = server.login(name, PASSWORD)
    assert admin.patch(f"/api/users/{name}", json={"locked": True}).status_code == 200
    assert any(u["locked"] for u in admin.get("/api/users").json() if u["username"] == name)
    assert session.get("/api/me").status_code == 401  # the lock ended the session
    refused = attempt(server, "127.0.0.1", name, PASSWORD)
    assert refused.status_code == 401 and "管理员锁定" in refused.text
    assert admin.patch(f"/api/users/{name}", json={"locked": False}).status_code == 200
    assert attempt(server, "127.0.0.1", name, PASSWORD).status_code == 303
    # The same from the users page.
    assert admin.post(f"/admin/users/{name}", data={"action": "lock"}).status_code == 303
    assert 'value="unlock"' in admin.get("/admin/users").text
    assert attempt(server, "127.0.0.1", name, PASSWORD).status_code == 401
    assert admin.post(f"/admin/users/{name}", data={"action": "unlock"}).status_code == 303
    assert attempt(server, "127.0.0.1", name, PASSWORD).status_code == 303
    assert admin.patch("/api/users/admin", json={"locked": True}).status_code == 400  # not yourself
    actions = [(e["action"], e["actor"], e["source"])
               for e in admin.get("/api/audit", params={"action": "user.", "limit": 1000}).json()
               if e["target"] == name]
    assert actions.count(("user.lock", "admin", "127.0.0.1")) == 2
    assert actions.count(("user.unlock", "admin", "127.0.0.1")) == 2


def test_the_event_loop_answers_during_a_burst_of_logins(server: RunningServer) -> None:
    """40 logins posted at once (each a 64 MiB argon2 check): /readyz keeps answering promptly."""
    latencies: list[float] = []
    done = threading.Event()
    forms = []
    for i in range(40):  # the login pages first, so the burst is the password checks
        c = client_from(server, "127.0.0.4")
        csrf = re.search(r'name="login_csrf" value="([^"]+)"', c.get("/login").text)
        assert csrf
        forms.append((c, {"username": f"nobody{i}", "password": "Burst-Guess-2026", "login_csrf": csrf.group(1)}))

    def probe() -> None:
        with server.client() as c:
            while not done.is_set():
                started = time.perf_counter()
                assert c.get("/readyz").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    time.sleep(0.3)
    try:
        with ThreadPoolExecutor(40) as pool:
            statuses = list(pool.map(lambda form: form[0].post("/login", data=form[1]).status_code, forms))
    finally:
        done.set()
        prober.join(30)
        for c, _ in forms:
            c.close()
    assert set(statuses) <= {401, 429, 503}, statuses
    assert statuses.count(401) >= 2  # passwords were really checked during the burst
    median, worst = statistics.median(latencies), max(latencies)
    print(f"readyz during a burst of 40 logins: median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms, "
          f"{len(latencies)} probes; 401={statuses.count(401)} 429={statuses.count(429)} 503={statuses.count(503)}")
    # One argon2 check takes 0.2-0.5 s here: on the event loop, probes would wait seconds behind them.
    assert median < 0.2 and worst < 1.0, (median, worst)


def test_the_audit_chain_is_intact_after_all_of_this(server: RunningServer, tmp_path: Path) -> None:
    """Hundreds of concurrent audit writes above (logins, throttling, locks): one unbroken chain."""
    env = {**os.environ, "DATABASE_URL": server.db_url, "CC_VAR_DIR": str(tmp_path)}
    verify = subprocess.run([sys.executable, "-m", "commandcenter", "audit", "verify"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=env)
    assert verify.returncode == 0, verify.stderr
    assert "audit log intact" in verify.stdout
