"""`gateway serve --workers N` as an operator runs it: every worker takes a share of the client
connections, they bill one balance through Redis, a worker that dies is replaced, SIGTERM stops them all,
and a service that cannot start says so instead of looping."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support import processes
from tests.support.gateway_server import GatewayServer, accounts_call, free_port, make_customer
from tests.support import REPO

MSG = [{"role": "user", "content": "hi"}]


class Served:
    def __init__(self, env: dict[str, str], workers: int = 2) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full = {**os.environ, **env, "GATEWAY_ROOT": str(REPO), "GATEWAY_LOG_LEVEL": "info"}
        self.log = tempfile.TemporaryFile()   # not a pipe: one nobody reads fills and stalls the request log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port), "--workers", str(workers)],
            env=full, stdout=subprocess.DEVNULL, stderr=self.log)

    def wait_up(self, workers: int, timeout: float = 60, gone: int | None = None) -> list[int]:
        """The workers' PIDs once `workers` of them listen (and `gone` is no longer among them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"gateway serve exited: {self.stop()}"
            pids = self.worker_pids()
            if len(pids) == workers and gone not in pids and all(processes.listens(pid, self.port) for pid in pids):
                return pids
            time.sleep(0.1)
        raise AssertionError(f"{workers} workers did not come up: {self.worker_pids()}")

    def worker_pids(self) -> list[int]:
        return processes.workers(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@pytest.fixture(scope="module")
def served(gateway_env: dict[str, str]) -> Iterator[Served]:
    s = Served(gateway_env)
    s.wait_up(2)
    yield s
    s.stop()


def test_two_workers_share_the_connections_and_bill_one_balance(served: Served, gateway: GatewayServer) -> None:
    c = make_customer(gateway, usd="5")
    clients = [openai.OpenAI(base_url=served.base + "/v1", api_key=c.secret, max_retries=0, timeout=20)
               for _ in range(32)]
    try:
        for sdk in clients:  # one keep-alive connection each, held open until close()
            assert sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5).choices
        held = {pid: processes.established(pid, served.port) for pid in served.worker_pids()}
    finally:
        for sdk in clients:
            sdk.close()
    assert sum(held.values()) == 32, held
    # a hash over 32 connections leaves a worker fewer than 4 with probability ~1e-6
    assert min(held.values()) >= 4, f"one worker holds almost every connection: {held}"
    entries = accounts_call(gateway, lambda acc: acc.history(c.account_id, 100))
    account = accounts_call(gateway, lambda acc: acc.account(c.account_id))
    assert len(entries) == 32 and account.reserved == 0
    assert account.spent == sum(e["cost"] for e in entries) > 0


def test_a_worker_that_dies_is_replaced(served: Served, customer) -> None:
    before = served.wait_up(2)
    os.kill(before[0], signal.SIGKILL)
    after = served.wait_up(2, timeout=30, gone=before[0])
    assert before[1] in after
    (new,) = set(after) - set(before)
    headers = {"Authorization": f"Bearer {customer.secret}", "Content-Type": "application/json"}
    body = json.dumps({"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 5})
    conns = [http.client.HTTPConnection("127.0.0.1", served.port, timeout=20) for _ in range(16)]
    try:
        for conn in conns:  # fresh connections, held open: they land on both workers, the new one included
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            r = conn.getresponse()
            assert r.status == 200, r.read()
            r.read()
        # 16 connections hashed over 2 workers leave the new one none with probability ~3e-5
        assert processes.established(new, served.port) >= 1
    finally:
        for conn in conns:
            conn.close()


def test_sigterm_stops_every_worker(gateway_env: dict[str, str]) -> None:
    s = Served(gateway_env)
    pids = s.wait_up(2)
    log = s.stop(signal.SIGTERM)
    assert s.proc.returncode == 0, log
    assert not any(processes.alive(pid) for pid in pids), log


def test_a_worker_that_cannot_start_stops_the_service(gateway_env: dict[str, str]) -> None:
    closed = free_port()  # nothing listens: Redis unreachable, every worker fails its start-up
    s = Served(gateway_env | {"REDIS_URL": f"redis://127.0.0.1:{closed}/0"})
    try:
        s.proc.wait(60)
    finally:
        log = s.stop()
    assert s.proc.returncode == 1
    assert "during start-up; stopping the service" in log


@pytest.mark.parametrize(("theirs", "ours"), [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "0.0.0.0"),
                                             ("0.0.0.0", "127.0.0.1")])
def test_refuses_a_port_something_else_listens_on(gateway_env: dict[str, str], theirs: str, ours: str) -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # would let our workers join it silently
        other.bind((theirs, 0))
        other.listen()
        port = other.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "serve", "--host", ours, "--port", str(port), "--workers", "2"],
            env={**os.environ, **gateway_env, "GATEWAY_ROOT": str(REPO)}, capture_output=True, timeout=60,
            check=False)
    assert proc.returncode == 1
    assert f"cannot listen on {ours}:{port}" in proc.stderr.decode()


def test_a_replacement_that_cannot_start_is_retried_and_the_others_keep_serving(tmp_path: Path) -> None:
    """A worker dies while Redis is down: its replacements fail their start-up, the supervisor keeps the
    other worker serving and tries again, less often, until one starts (tests/fake_worker.py stands in
    for the gateway's worker: it starts when tmp_path/mode says "ok")."""
    (tmp_path / "mode").write_text("ok")
    script = ("import sys; from gateway.http.workers import Supervisor; from tests.support.fake_worker import serve; "
              f"sys.exit(Supervisor(2, serve, '127.0.0.1', {free_port()}).run())")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE,
                            env={**os.environ, "FAKE_WORKER_DIR": str(tmp_path)})
    try:
        first = _wait_ready(tmp_path, proc, 2)
        (tmp_path / "mode").write_text("fail")
        os.kill(first[0], signal.SIGKILL)
        time.sleep(2.5)  # a replacement or two fail their start-up meanwhile
        assert proc.poll() is None, f"the supervisor gave up: {_stderr(proc)}"
        assert processes.alive(first[1])
        (tmp_path / "mode").write_text("ok")
        again = _wait_ready(tmp_path, proc, 2, timeout=30)
        assert first[1] in again and first[0] not in again
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "could not start" in err.decode()


def _stderr(proc: subprocess.Popen) -> str:
    return proc.stderr.read().decode() if proc.stderr else ""


def _wait_ready(folder: Path, proc: subprocess.Popen, n: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, _stderr(proc)
        pids = [int(f.name.split("-")[1]) for f in folder.glob("ready-*")]
        live = [pid for pid in pids if processes.alive(pid)]
        if len(live) == n:
            return sorted(live)
        time.sleep(0.1)
    raise AssertionError(f"{n} fake workers did not get ready")
