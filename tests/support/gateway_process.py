"""`gateway serve` (one worker) in a process of its own, as an operator runs it: for tests that need two
gateway processes sharing one Redis, or one they can kill."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from tests.support import REPO
from tests.support.gateway_server import free_port


class GatewayProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port)],
                                     env={**os.environ, **env, "GATEWAY_ROOT": str(REPO)},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

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
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode()[-3000:]
