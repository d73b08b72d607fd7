"""`gateway serve` raises its open-files limit at start (issue 14 item 3): with the usual soft limit of
1,024 (here 256) a thousand idle connections would leave no socket for anyone else."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

from tests.support import processes
from tests.support.gateway_server import free_port
from tests.support import REPO


def _open_files_limit(pid: int) -> int:
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files line")


def test_serve_raises_the_soft_open_files_limit_to_the_hard_one(gateway_env: dict[str, str]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        import pytest
        pytest.skip(f"the hard limit here is {hard}: nothing to raise")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, **gateway_env, "GATEWAY_ROOT": str(REPO)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            workers = [p for p in processes.children(proc.pid) if processes.listens(p, port)]
            if len(workers) == 2:
                break
            time.sleep(0.1)
        assert len(workers) == 2
        for pid in [proc.pid, *workers]:
            assert _open_files_limit(pid) > 256, f"process {pid} kept the soft limit of 256"
    finally:
        proc.terminate()
        proc.communicate(timeout=40)
