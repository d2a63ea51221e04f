"""`commandcenter user ...` and `db migrate` against the real database; bad input changes nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def cli(db_url: str, var: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "CC_VAR_DIR": str(var)}
    return subprocess.run([sys.executable, "-m", "commandcenter", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, input=stdin, env=env)


async def test_user_commands(fresh_db_url: str, tmp_path: Path) -> None:
    import asyncio

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return cli(fresh_db_url, tmp_path, *args, stdin=stdin)

    migrate = await asyncio.to_thread(run, "db", "migrate")
    assert migrate.returncode == 0, migrate.stderr
    added = await asyncio.to_thread(run, "user", "add", "zhang.wei", "--role", "dispatcher",
                                    "--display-name", "张伟", "--password-stdin", stdin="Dispatch-2026\n")
    assert added.returncode == 0, added.stderr
    listed = await asyncio.to_thread(run, "user", "list")
    assert "zhang.wei" in listed.stdout and "dispatcher" in listed.stdout and "张伟" in listed.stdout

    for args, stdin, words in [
        (("user", "add", "zhang.wei", "--role", "viewer", "--password-stdin"), "Another-2026\n", "already exists"),
        (("user", "add", "li.na", "--role", "emperor", "--password-stdin"), "Another-2026\n", "unknown role"),
        (("user", "add", "li.na", "--role", "viewer", "--password-stdin"), "short\n", "at least 10 characters"),
        (("user", "passwd", "nobody", "--password-stdin"), "Another-2026\n", "no such user"),
    ]:
        result = await asyncio.to_thread(run, *args, stdin=stdin)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr
    after = await asyncio.to_thread(run, "user", "list")
    assert after.stdout == listed.stdout  # nothing changed
