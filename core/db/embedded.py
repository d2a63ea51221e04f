"""Embedded PostgreSQL from the `pgserver` wheel: the default database a newcomer gets.

The server's data and its unix socket live in one directory (default `var/pg`). Starting is
idempotent: if a server is already running on that directory (another role process on the same
host), pgserver attaches to it instead of starting a second one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# pgserver logs every command it runs at INFO; keep start-up output readable.
logging.getLogger("pgserver").setLevel(logging.WARNING)


class EmbeddedPostgres:
    """A PostgreSQL server owned by this process (or shared with others on the same data dir)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return its connection URL (unix socket)."""
        import pgserver  # lazily: only the embedded mode needs it

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode="stop": the server stops when the last process that uses it exits,
        # so a SIGTERM of `commandcenter up` leaves no postgres behind.
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")  # type: ignore[attr-defined,unused-ignore]
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL at %s", self.data_dir)
        return url

    def stop(self) -> None:
        """Release this process's use of the server (it stops when no user is left)."""
        if self._server is not None:
            try:
                self._server.cleanup()
            finally:
                self._server = None
