"""A chair at a node's web console, from the test process, inside that node's network namespace.

The node's web console listens on its namespace address (10.0.0.N), which the test process (in
the host namespace) cannot reach. Network namespaces are per thread on Linux, so this client
runs its `httpx.Client` on one worker thread that first joins the node's namespace by
``setns(2)`` (Python 3.11 has no ``os.setns``; ctypes calls libc). It logs in through the real
login form (CSRF cookie + session cookie) and sends the session's CSRF token on writes.
"""
from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

CLONE_NEWNET = 0x40000000


def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NamespacedChair:
    """`call(method, path, json)` → (status, JSON body) as a logged-in chair of ``base_url``."""

    def __init__(self, netns: str, base_url: str, username: str, password: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, initializer=_enter_netns, initargs=(netns,))
        self._base, self._user, self._password = base_url, username, password
        self._client: httpx.Client | None = None
        self._csrf = ""

    def _login(self) -> None:
        client = httpx.Client(base_url=self._base, timeout=20.0)
        page = client.get("/login")
        page.raise_for_status()
        token = page.cookies.get("cc_login_csrf") or ""
        done = client.post("/login", data={"username": self._user, "password": self._password, "next": "/",
                                            "login_csrf": token})
        if done.status_code != 303:
            raise RuntimeError(f"login as {self._user} failed: {done.status_code} {done.text[:300]}")
        me = client.get("/api/me")
        me.raise_for_status()
        self._csrf = me.json()["csrf_token"]
        self._client = client

    def _call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self._client is None:
            self._login()
        assert self._client is not None
        reply = self._client.request(method, path, json=body, headers={"X-CSRF-Token": self._csrf})
        try:
            data = reply.json()
        except ValueError:
            data = reply.text
        return reply.status_code, data

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self._pool.submit(self._call, method, path, body).result(timeout=60)

    def close(self) -> None:
        def shut() -> None:
            if self._client is not None:
                self._client.close()
        self._pool.submit(shut).result(timeout=10)
        self._pool.shutdown(wait=True)
