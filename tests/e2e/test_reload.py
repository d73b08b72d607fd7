"""`gateway reload` and SIGHUP on `gateway serve --workers 2`, as an operator runs them: a price change is
in force in every worker at once, the history records the version each call was admitted under, an invalid
config is refused with its errors while the old one keeps serving, and the server survives the signal."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import processes
from tests.support.gateway_server import GatewayServer, accounts_call, copy_root, free_port, make_customer

MSG = [{"role": "user", "content": "hi"}]
ADMIN = "admin-secret-for-reload-tests"


class Served:
    def __init__(self, root: Path, env: dict[str, str], workers: int = 2) -> None:
        self.root = root
        self.workers = workers
        self.port = free_port()
        self.env = {**os.environ, **env, "GATEWAY_ROOT": str(root), "GATEWAY_ADMIN_TOKEN": ADMIN}
        self.log = root / "serve.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port),
                                      "--workers", str(workers)], env=self.env, stdout=subprocess.DEVNULL, stderr=self._log)

    def wait_up(self, timeout: float = 60) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            if self.workers == 1:
                if processes.listens(self.proc.pid, self.port):
                    return [self.proc.pid]
                time.sleep(0.1)
                continue
            pids = processes.workers(self.proc.pid)
            if len(pids) == 2 and all(processes.listens(p, self.port) for p in pids):
                return pids
            time.sleep(0.1)
        raise AssertionError(self.log.read_text())

    def reload(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "reload", "--root", str(self.root)],
                              env=self.env, capture_output=True, text=True, timeout=120, check=False)

    def admin_config(self) -> dict:
        r = httpx.get(f"http://127.0.0.1:{self.port}/admin/v1/config", timeout=20,
                      headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self) -> None:
        processes.stop(self.proc, 40)
        self._log.close()


@pytest.fixture()
def served(tmp_path: Path, gateway_env: dict[str, str]) -> Iterator[Served]:
    s = Served(copy_root(tmp_path), gateway_env)
    try:
        s.wait_up()
        yield s
    finally:
        s.stop()


def calls(served: Served, secret: str, n: int = 12) -> None:
    """n calls, each on a fresh connection (so both workers serve some)."""
    body = json.dumps({"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 5})
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=20)
        try:
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            r = conn.getresponse()
            assert r.status == 200, r.read()
            r.read()
        finally:
            conn.close()


def set_price(root: Path, factor: int) -> None:
    path = root / "pricing.d" / "openai.yaml"
    doc = yaml.safe_load(path.read_text())
    spec = doc["models"]["gpt-4o-mini"]
    spec["input"], spec["output"] = str(Decimal("0.15") * factor), str(Decimal("0.6") * factor)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def entries(gateway: GatewayServer, account: str) -> list[dict]:
    return accounts_call(gateway, lambda acc: acc.history(account, 200))


def test_reload_switches_every_worker_and_bills_the_version_admitted_under(served: Served,
                                                                           gateway: GatewayServer, fakes) -> None:
    pids = served.wait_up()
    c = make_customer(gateway, usd="50")
    v1 = served.admin_config()["version"]
    calls(served, c.secret)
    before = entries(gateway, c.account_id)
    assert {e.get("cfg") for e in before} == {v1}
    old_costs = {e["cost"] for e in before}

    set_price(served.root, 10)
    fakes["openai"].reply(delay_ms=6000)  # a call in flight across the reload
    slow = threading.Thread(target=calls, args=(served, c.secret, 1))
    slow.start()
    time.sleep(1)
    done = served.reload()
    slow.join(30)
    in_flight = entries(gateway, c.account_id)
    in_flight = in_flight[: len(in_flight) - len(before)]
    assert len(in_flight) == 1 and in_flight[0]["cfg"] == v1 and in_flight[0]["cost"] in old_costs, \
        "a call finishes on the config it started with, and pays its price"
    before = entries(gateway, c.account_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("reloaded: version "), done.stdout
    status = served.admin_config()
    v2 = status["version"]
    assert v2 != v1 and status["previous"] == v1 and status["last_reload"]["ok"] is True
    assert status["loaded_at"].endswith("Z")
    time.sleep(1.5)  # the switch instant is 1 s after the commit
    calls(served, c.secret)
    after = entries(gateway, c.account_id)
    after = after[: len(after) - len(before)]
    assert len(after) == 12 and {e.get("cfg") for e in after} == {v2}, [e.get("cfg") for e in after]
    new_costs = {e["cost"] for e in after}
    assert min(new_costs) > 5 * max(old_costs), (old_costs, new_costs)  # every worker charges the new price
    assert served.wait_up() == pids, "a reload restarts no worker"


def test_invalid_config_is_refused_and_the_old_one_keeps_serving(served: Served, gateway: GatewayServer) -> None:
    c = make_customer(gateway, usd="50")
    v1 = served.admin_config()["version"]
    (served.root / "config" / "routing.yaml").write_text(
        (served.root / "config" / "routing.yaml").read_text().replace("primary: xai", "primary: xia"))
    done = served.reload()
    assert done.returncode == 1
    assert "refused: the configuration is invalid" in done.stderr
    assert "config/routing.yaml: routes[3].primary: no provider 'xia' in providers.d/ — did you mean 'xai'?" \
        in done.stderr
    status = served.admin_config()
    assert status["version"] == v1 and status["last_reload"]["ok"] is False
    assert any("no provider 'xia'" in e for e in status["last_reload"]["errors"])
    calls(served, c.secret, 4)
    assert {e.get("cfg") for e in entries(gateway, c.account_id)} == {v1}
    assert "no provider 'xia'" in served.log.read_text(), "the refusal is logged with its errors"


def test_sighup_to_the_supervisor_reloads_and_does_not_stop_it(served: Served, gateway: GatewayServer) -> None:
    pids = served.wait_up()
    v1 = served.admin_config()["version"]
    set_price(served.root, 3)
    os.kill(served.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while served.admin_config()["version"] == v1:
        assert time.monotonic() < deadline, served.log.read_text()
        time.sleep(0.2)
    assert served.proc.poll() is None and served.wait_up() == pids
    assert "SIGHUP: reloading the configuration" in served.log.read_text()


def test_a_replaced_worker_does_not_bill_files_edited_but_not_reloaded(served: Served,
                                                                      gateway: GatewayServer) -> None:
    """A worker that died was replaced by one that read the edited files while the other kept the old ones:
    the same call billed at two prices. The replacement now refuses to start until `gateway reload`."""
    pids = served.wait_up()
    c = make_customer(gateway, usd="50")
    v1 = served.admin_config()["version"]
    set_price(served.root, 10)  # edited, not reloaded
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "differ from version" not in served.log.read_text():
        assert time.monotonic() < deadline, served.log.read_text()
        time.sleep(0.2)
    calls(served, c.secret, 6)
    assert {e.get("cfg") for e in entries(gateway, c.account_id)} == {v1}, "only the old version bills"
    done = served.reload()
    assert done.returncode == 0, done.stdout + done.stderr
    served.wait_up(timeout=90)  # the replacement starts on its next try, on the version now in force
    time.sleep(1.5)
    before = len(entries(gateway, c.account_id))
    calls(served, c.secret, 8)
    latest = entries(gateway, c.account_id)[: len(entries(gateway, c.account_id)) - before]
    assert {e.get("cfg") for e in latest} == {served.admin_config()["version"]} != {v1}


def test_sighup_reloads_a_single_process_server(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    served = Served(copy_root(tmp_path), gateway_env, workers=1)
    try:
        served.wait_up()
        v1 = served.admin_config()["version"]
        set_price(served.root, 4)
        os.kill(served.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while served.admin_config()["version"] == v1:
            assert time.monotonic() < deadline, served.log.read_text()
            time.sleep(0.2)
        assert served.proc.poll() is None
        done = served.reload()  # the same files again: nothing to switch
        assert done.returncode == 0 and "unchanged" in done.stdout, done.stdout + done.stderr
    finally:
        served.stop()
