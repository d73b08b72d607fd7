"""`gateway serve` (one worker) in a process of its own, as an operator runs it: for tests that need two
gateway processes sharing one Redis, or one they can kill."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import httpx

from tests.support import REPO
from tests.support import processes
from tests.support.gateway_server import free_port


class GatewayProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # stderr to a file, not a pipe nobody reads while the test runs: a full pipe would stall the
        # gateway's request log (one line per request) and with it the gateway
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port)],
                                     env={**os.environ, **env, "GATEWAY_ROOT": str(REPO)},
                                     stdout=subprocess.DEVNULL, stderr=self._log)

    def wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stop()
            try:
                if httpx.get(self.base + "/v1", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway serve did not come up: {self.stop()}")

    def stop(self) -> str:
        """SIGTERM (by PID), then the tail of its log."""
        processes.stop(self.proc, 30)
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-3000:]
