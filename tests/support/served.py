"""`gateway serve` (one worker) on a config root of a test's own, its stderr in a file, its memory read from
/proc: for the hardening tests that measure what a request costs the serving process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import processes
from tests.support.gateway_server import free_port


class Served:
    """`gateway serve` (one worker) on a config root of the test's own."""

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()   # not a pipe: one nobody reads fills and stalls the request log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port), "--workers", "1"],
            env={**os.environ, **env, "GATEWAY_ROOT": str(root), "GATEWAY_LOG_LEVEL": "warning"},
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "gateway serve did not start"
                time.sleep(0.1)

    def rss(self, field: str = "VmRSS") -> int:
        """Bytes of the process's resident set (VmRSS) or its peak so far (VmHWM)."""
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(field)

    def close(self) -> None:
        processes.stop(self.proc, 30)
