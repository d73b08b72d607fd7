"""Issue 14, item 4: a settlement Redis did not confirm is retried until it is, survives the process on
disk, and is charged exactly once however late it arrives within the late-settlement window.

settle.lua is idempotent per request id: it charges while the request's reservation record exists (open,
or expired and released by the sweep) and deletes it; a replay finds no record and charges nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.errors import UpstreamUnavailable
from gateway.proxy.billing import BillingGate
from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.outcome import Outcome
from gateway.store.connection import async_client
from gateway.store.journal import Settlement
from gateway.store.keys import KeySpace
from gateway.store.ledger import Caller, Ledger
from tests.conftest import fake_env
from tests.support import redis_url
from tests.support.gateway_server import GatewayServer, make_customer
from tests.support.ledger import (
    PREFIX,
    Holder,
    OwnRedis,
    Serve,
    assert_ledger_exact,
    edited_root,
    ledger_state,
    make_holder,
)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
HOUR = 3_600_000
# the scripts' clock is an argument: a month ahead, where no sweep running on the real clock can reach
T0 = int(time.time() * 1000) + 30 * 24 * HOUR


def _ledger_run(prefix: str, steps) -> object:
    async def go() -> object:
        client = async_client(redis_url())
        ledger = Ledger(client, KeySpace(prefix), reservation_ttl_ms=1000)
        try:
            await ledger.connect()
            return await steps(ledger)
        finally:
            await ledger.close()
            await client.aclose()

    return asyncio.run(go())


def test_a_settlement_replayed_after_its_reservation_expired_is_charged_once(gateway) -> None:
    c = make_customer(gateway, usd="5")
    caller, prefix = Caller(c.account_id, c.key_id), gateway.config.settings.redis_prefix
    fields = {"key": c.key_id, "model": "gpt-4o-mini", "status": 200}

    async def steps(ledger: Ledger) -> tuple[bool, bool]:
        assert (await ledger.admit(caller, "req_late", "gpt-4o-mini", "/v1/chat/completions", 5000, T0)).code == 0
        # another call of the account after the TTL: admit.lua's sweep releases req_late's reservation
        assert (await ledger.admit(caller, "req_next", "gpt-4o-mini", "/v1/chat/completions", 7000, T0 + 5000)).code == 0
        first = await ledger.settle(caller, "req_late", 1234, 0, True, fields, T0 + 6000)
        again = await ledger.settle(caller, "req_late", 1234, 0, True, fields, T0 + 6000)
        assert await ledger.settle(caller, "req_next", 10, 0, True, fields, T0 + 6000) is True
        return first, again

    first, again = _ledger_run(prefix, steps)
    assert first is True and again is False
    state = ledger_state(redis_url(), Holder(c.account_id, c.key_id, c.secret), prefix)
    assert [e["cost"] for e in state.history if e["rid"] == "req_late"] == [1234]
    assert state.spent == 1244 and state.reserved == 0 and state.key_reserved == 0 and state.open_reservations == 0


def test_an_expired_reservation_is_remembered_for_a_late_settlement_after_a_day(gateway) -> None:
    """A worker whose settlement sat in its journal over a long outage replays it a day and a half
    later: the expired reservation's record must still be there to charge it (it was dropped after 24 h)."""
    c = make_customer(gateway, usd="5")
    caller, prefix = Caller(c.account_id, c.key_id), gateway.config.settings.redis_prefix
    fields = {"key": c.key_id, "model": "gpt-4o-mini", "status": 200}

    async def steps(ledger: Ledger) -> bool:
        for n, at in enumerate((T0, T0 + 5000, T0 + 30 * HOUR, T0 + 36 * HOUR)):  # each sweeps the ones before
            admitted = await ledger.admit(caller, f"req_{n}", "gpt-4o-mini", "/v1/chat/completions", 1000, at)
            assert admitted.code == 0
        return await ledger.settle(caller, "req_0", 777, 0, True, fields, T0 + 36 * HOUR + 1)

    assert _ledger_run(prefix, steps) is True
    state = ledger_state(redis_url(), Holder(c.account_id, c.key_id, c.secret), prefix)
    assert [e["cost"] for e in state.history if e["rid"] == "req_0"] == [777]
    assert state.spent == 777


def _call(base: str, secret: str) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {secret}"},
                      timeout=60)


def test_a_settlement_lost_with_redis_is_retried_until_redis_confirms(tmp_path: Path, fakes) -> None:
    own = OwnRedis(tmp_path / "redis").start()
    env = fake_env(fakes) | {"REDIS_URL": own.url, "GATEWAY_REDIS_PREFIX": PREFIX,
                             "GATEWAY_DATA_DIR": str(tmp_path / "data")}
    try:
        with GatewayServer(edited_root(tmp_path / "root"), env) as gw:
            holder = make_holder(own.url, usd="10")
            fakes["openai"].delay_ms = 1000
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(_call, gw.base_url, holder.secret)
                time.sleep(0.5)
                own.kill()      # admitted; its settlement will find no Redis
                answered = in_flight.result()
            assert answered.status_code == 200, answered.text
            time.sleep(1.5)
            own.start()
            deadline = time.monotonic() + 20
            while ledger_state(own.url, holder).reserved and time.monotonic() < deadline:
                time.sleep(0.2)
            state = ledger_state(own.url, holder)
    finally:
        own.stop()
    assert_ledger_exact(state, [answered.headers["x-request-id"]])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_settlement_unconfirmed_when_the_process_stops_is_replayed_at_the_next_start(
        tmp_path: Path, fakes, sig: int) -> None:
    own = OwnRedis(tmp_path / "redis").start()
    data = tmp_path / "data"
    root = edited_root(tmp_path / "root", redis={"connect_timeout_ms": 300, "command_timeout_ms": 500})
    env = fake_env(fakes) | {"REDIS_URL": own.url, "GATEWAY_REDIS_PREFIX": PREFIX, "GATEWAY_DATA_DIR": str(data)}
    try:
        gw = Serve(root, env)
        try:
            gw.wait_up()
            holder = make_holder(own.url, usd="10")
            fakes["openai"].delay_ms = 1000
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(_call, gw.base, holder.secret)
                time.sleep(0.5)
                own.kill()
                answered = in_flight.result()
            assert answered.status_code == 200, answered.text
            time.sleep(1)  # past the command deadline: the settlement is in the journal
        finally:
            gw.stop(sig)
        assert list((data / "journal").glob("*.jnl")), "the unconfirmed settlement is not on disk"
        own.start()
        again = Serve(root, env)
        try:
            again.wait_up()
            deadline = time.monotonic() + 20
            while ledger_state(own.url, holder).history == [] and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            assert again.stop() == 0, again.log()
        state = ledger_state(own.url, holder)
        assert not list((data / "journal").glob("*.jnl")), "a replayed journal is removed"
    finally:
        own.stop()
    assert_ledger_exact(state, [answered.headers["x-request-id"]])


def test_paid_calls_are_refused_while_too_many_settlements_wait_for_redis(gateway) -> None:
    """Memory stays bounded without dropping a charge: at the limit, new paid calls get 503 until Redis
    confirms what waits (a settlement needs an admission first, so no new one can pile up)."""
    c = make_customer(gateway, usd="5")
    caller, prefix = Caller(c.account_id, c.key_id), gateway.config.settings.redis_prefix
    app = gateway.app
    decision = app.router.resolve("gpt-4o-mini", ENDPOINTS["chat"])
    raw = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":5}'
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}

    async def go() -> tuple[str, int]:
        client = async_client(redis_url())
        ledger = Ledger(client, KeySpace(prefix), max_unconfirmed=1)
        gate = BillingGate(ledger, app.prices, gateway.config.settings)
        try:
            await ledger.connect()
            waiting = Settlement.of(ledger._keys(caller), [int(time.time() * 1000), "req_never_admitted", 0, "2026-01",
                                                           "2026-01-01", 0, 1000, "1", b"{}"])
            ledger.unconfirmed.add(waiting, "test")
            with pytest.raises(UpstreamUnavailable) as refused:
                gate.admit(caller, decision, body, raw, "req_refused")
            assert await ledger.unconfirmed.drain(10)  # Redis confirms (a no-op: nothing was reserved)
            ticket = await gate.admit(caller, decision, body, raw, "req_after").ticket()
            await gate.settle(ticket, Outcome(status=503, error="test"))
            return refused.value.message, refused.value.status
        finally:
            await ledger.close()
            await client.aclose()

    message, status = asyncio.run(go())
    assert status == 503 and message.startswith("billing is temporarily unavailable")
    state = ledger_state(redis_url(), Holder(c.account_id, c.key_id, c.secret), prefix)
    assert [e["rid"] for e in state.history] == ["req_after"] and state.reserved == 0
