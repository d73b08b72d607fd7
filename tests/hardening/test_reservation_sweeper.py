"""Issue 14, item 14 (part): reservations of a process that died are released by a sweeper in every
gateway process, without waiting for the same account to call again; a late settlement of one of them
is still charged exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.store.connection import async_client
from gateway.store.keys import KeySpace
from gateway.store.ledger import Caller, Ledger
from tests.support import redis_url
from tests.support.gateway_server import GatewayServer, make_customer
from tests.support.ledger import Holder, edited_root, ledger_state


def test_reservations_of_a_dead_process_are_released_everywhere(tmp_path: Path, gateway_env) -> None:
    root = edited_root(tmp_path / "root", billing={"reservation_ttl_s": 1, "sweep_interval_s": 0.3})
    prefix = gateway_env["GATEWAY_REDIS_PREFIX"]
    with GatewayServer(root, gateway_env) as gw:
        c = make_customer(gw, usd="5")
        holder = Holder(c.account_id, c.key_id, c.secret)
        caller = Caller(c.account_id, c.key_id)

        async def dead_process(steps):
            """A ledger like a worker's, with the same TTL, that admits and then 'dies' (never settles)."""
            client = async_client(redis_url())
            ledger = Ledger(client, KeySpace(prefix), reservation_ttl_ms=1000)
            try:
                await ledger.connect()
                return await steps(ledger)
            finally:
                await ledger.close()
                await client.aclose()

        async def admit(ledger: Ledger) -> None:
            for n in range(3):
                a = await ledger.admit(caller, f"req_dead{n}", "gpt-4o-mini", "/v1/chat/completions", 1000 + n)
                assert a.code == 0

        asyncio.run(dead_process(admit))
        assert ledger_state(redis_url(), holder, prefix).reserved == 3003
        deadline = time.monotonic() + 20
        while ledger_state(redis_url(), holder, prefix).reserved and time.monotonic() < deadline:
            time.sleep(0.2)
        state = ledger_state(redis_url(), holder, prefix)
        assert state.reserved == 0 and state.key_reserved == 0 and state.open_reservations == 0, state
        assert state.history == []

        async def late(ledger: Ledger) -> tuple[bool, bool]:
            fields = {"key": c.key_id, "model": "gpt-4o-mini", "status": 200}
            return (await ledger.settle(caller, "req_dead1", 555, 0, True, fields),
                    await ledger.settle(caller, "req_dead1", 555, 0, True, fields))

        assert asyncio.run(dead_process(late)) == (True, False)
        state = ledger_state(redis_url(), holder, prefix)
        assert state.spent == 555 and state.reserved == 0 and [e["rid"] for e in state.history] == ["req_dead1"]
