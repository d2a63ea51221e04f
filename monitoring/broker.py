"""The managed MQTT broker: Debian's mosquitto as a subprocess on 127.0.0.1, started and stopped
with the node (``[monitoring] broker = "managed"``, the `make run` default).

It listens on ``mqtt_host:mqtt_port`` only, keeps nothing on disk (``persistence false``) and
admits anonymous clients: it is reachable from this host alone. A site whose gauges are elsewhere
runs its own broker with authentication and TLS and sets ``broker = "external"``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from core.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker could not be started (not installed, port taken, bad configuration)."""


class ManagedBroker:
    def __init__(self, host: str, port: int, var_dir: Path) -> None:
        self.host, self.port = host, port
        self.dir = var_dir / "mosquitto"
        self.process: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    def config_text(self) -> str:
        return "\n".join([
            f"listener {self.port} {self.host}", "allow_anonymous true", "persistence false",
            "max_queued_messages 100000", "max_inflight_messages 1000", "log_dest stdout",
            "log_type error", "log_type warning", "log_type notice", ""])

    async def start(self, wait_s: float = 10.0) -> None:
        exe = shutil.which("mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
        if exe is None:
            raise BrokerError("mosquitto is not installed (Debian package 'mosquitto'; `make run` installs it)")
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(self.config_text(), encoding="utf-8")
        conf.chmod(0o644)
        self.process = await asyncio.create_subprocess_exec(
            exe, "-c", str(conf), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read())
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            if self.process.returncode is not None:
                await asyncio.sleep(0.1)
                raise BrokerError(f"mosquitto exited ({self.process.returncode}) on {self.host}:{self.port}: "
                                  + " | ".join(self.output[-5:]))
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                log.info("monitoring: mosquitto listening on %s:%d (pid %d)", self.host, self.port, self.process.pid)
                return
            except OSError:
                await asyncio.sleep(0.05)
        await self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {wait_s:.0f} s")

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.output = [*self.output[-50:], line]
            log.debug("mosquitto: %s", line)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await cancel_and_wait([self._reader], swallow_errors=True)
            self._reader = None
