"""Graceful shutdown of `gateway serve` (issue 17 item 5): SIGTERM while a stream runs. /readyz turns 503 at
once; within `server.shutdown_grace_s` the stream completes, is settled and recorded, and the process exits 0;
past the grace period the stream is closed with an error event and billed for what it produced. The embedded
redis-server stops with the gateway, even when the gateway is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import fake_env
from tests.support import REPO
from tests.support.gateway_server import free_port
from tests.support.ledger import Holder, Serve, ledger_state, make_holder

WORDS = " ".join(f"w{i}" for i in range(40))


class StreamReader:
    """Reads one SSE answer in a thread; `first` is set once the first event is in."""

    def __init__(self, base: str, secret: str) -> None:
        self.events: list[str] = []
        self.first = threading.Event()
        self.request_id = ""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(base, secret), daemon=True)
        self._thread.start()

    def _run(self, base: str, secret: str) -> None:
        body = {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 200,
                "messages": [{"role": "user", "content": "count"}]}
        try:
            with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=60,
                              headers={"Authorization": f"Bearer {secret}"}) as r:
                self.request_id = r.headers["x-request-id"]
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line[6:])
                        self.first.set()
        except Exception as exc:  # noqa: BLE001  (the test reads it)
            self.error = exc
        finally:
            self.first.set()

    def join(self, timeout: float = 60) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream never ended"
        assert self.error is None, self.error

    def text(self) -> str:
        out = ""
        for e in self.events:
            if e != "[DONE]":
                doc = json.loads(e)
                if doc.get("choices"):
                    out += doc["choices"][0]["delta"].get("content") or ""
        return out


def _start(tmp_path: Path, fakes, redis_env, grace: float, usd: str = "5") -> tuple[Serve, Holder, int]:
    metrics_port = free_port()
    env = fake_env(fakes) | redis_env | {"GATEWAY_DATA_DIR": str(tmp_path / "data"),
                                         "GATEWAY_SHUTDOWN_GRACE_S": str(grace),
                                         "GATEWAY_METRICS_PORT": str(metrics_port)}
    holder = make_holder(redis_env["REDIS_URL"], usd, redis_env["GATEWAY_REDIS_PREFIX"])
    gw = Serve(REPO, env, workers=1)
    gw.wait_up()
    return gw, holder, metrics_port


def _ready(port: int) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_sigterm_lets_a_stream_finish(tmp_path: Path, fakes, redis_env) -> None:
    gw, holder, metrics_port = _start(tmp_path, fakes, redis_env, grace=30)
    try:
        assert _ready(metrics_port) == 200
        fakes["anthropic"].reply(text=WORDS, chunk_delay_ms=300)   # ~10 events over ~3 s
        reader = StreamReader(gw.base, holder.secret)
        assert reader.first.wait(20) and not reader.error
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert _ready(metrics_port) == 503, "readyz must turn 503 at once"
        with pytest.raises(httpx.ConnectError):   # no new connections
            httpx.get(gw.base + "/healthz", timeout=5)
        reader.join()
        assert gw.proc.wait(40) == 0
        assert time.monotonic() - started < 25
    finally:
        gw.stop()
    assert reader.events[-1] == "[DONE]"
    assert reader.text() == WORDS, "the stream was cut"
    state = ledger_state(redis_env["REDIS_URL"], holder, redis_env["GATEWAY_REDIS_PREFIX"])
    [entry] = [e for e in state.history if e["rid"] == reader.request_id]
    assert entry["status"] == 200 and entry["cost"] > 0 and "cut" not in entry and "error" not in entry
    assert state.spent == entry["cost"] and state.reserved == 0 and state.open_reservations == 0
    log = gw.log()
    assert "shutting down" in log


def test_past_the_grace_period_the_stream_is_closed_and_billed(tmp_path: Path, fakes, redis_env) -> None:
    gw, holder, _ = _start(tmp_path, fakes, redis_env, grace=1)
    try:
        fakes["anthropic"].reply(text=WORDS, chunk_delay_ms=1200)   # ~12 s: longer than the grace
        reader = StreamReader(gw.base, holder.secret)
        assert reader.first.wait(20) and not reader.error
        deadline = time.monotonic() + 20
        while not reader.text() and time.monotonic() < deadline:   # some text produced
            time.sleep(0.05)
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        reader.join()
        assert gw.proc.wait(40) == 0
        elapsed = time.monotonic() - started
    finally:
        gw.stop()
    assert elapsed < 6, "the stream must be closed once the grace period is over"
    last = json.loads(reader.events[-1])
    assert "shutting down" in last["error"]["message"]
    produced = reader.text()
    assert produced and produced != WORDS
    state = ledger_state(redis_env["REDIS_URL"], holder, redis_env["GATEWAY_REDIS_PREFIX"])
    [entry] = [e for e in state.history if e["rid"] == reader.request_id]
    assert entry["cut"] == 1 and "shutting down" in entry["error"]
    assert entry["cost"] > 0 and entry["out"] > 0, "billed for what was produced"
    assert state.spent == entry["cost"] and state.reserved == 0 and state.open_reservations == 0
    lines = [json.loads(x) for x in gw.log().splitlines() if x.startswith("{")]
    [line] = [x for x in lines if x.get("request_id") == reader.request_id]
    assert line["cut"] == "shutdown" and line["error_type"] == "gateway_shutdown"


def test_embedded_redis_dies_with_a_killed_gateway(tmp_path: Path, fakes) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | fake_env(fakes) | {
        "GATEWAY_ROOT": str(REPO), "GATEWAY_DATA_DIR": str(data)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "gateway serve did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        redis_pid = int((data / "redis.pid").read_text().strip())
        proc.kill()   # no chance to clean up
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _alive(redis_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(redis_pid), "kill -9 of the gateway left the embedded redis-server running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
