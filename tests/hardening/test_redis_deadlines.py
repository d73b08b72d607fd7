"""Issue 14, item 6: every Redis call has a deadline, and a circuit breaker answers 503 at once while
Redis is down, then recovers on its own.

Before: with Redis frozen (SIGSTOP) every paid call hung for as long as Redis did."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

import httpx
import pytest

from gateway.store.resp import RespClient, RespConnectionError
from tests.conftest import fake_env
from tests.support.gateway_server import GatewayServer
from tests.support.ledger import (
    PREFIX,
    OwnRedis,
    assert_ledger_exact,
    edited_root,
    ledger_state,
    make_holder,
)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


def _call(base: str, secret: str) -> tuple[int, float, httpx.Response]:
    started = time.monotonic()
    r = httpx.post(f"{base}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {secret}"},
                   timeout=60)
    return r.status_code, time.monotonic() - started, r


def test_frozen_redis_answers_503_at_the_deadline_and_recovers_without_a_restart(tmp_path: Path, fakes) -> None:
    own = OwnRedis(tmp_path / "redis").start()
    root = edited_root(tmp_path / "root", redis={"connect_timeout_ms": 1000, "command_timeout_ms": 2000})
    env = fake_env(fakes) | {"REDIS_URL": own.url, "GATEWAY_REDIS_PREFIX": PREFIX,
                             "GATEWAY_DATA_DIR": str(tmp_path / "data")}
    try:
        with GatewayServer(root, env) as gw:
            holder = make_holder(own.url, usd="10")
            stranger = make_holder(own.url, usd="10")   # its token is not in the gateway's cache yet
            status, _, first = _call(gw.base_url, holder.secret)
            assert status == 200
            delivered = [first.headers["x-request-id"]]

            # a call admitted before the freeze whose answer comes while Redis is frozen: its settlement
            # cannot be confirmed, the answer still goes out, and the charge must not be lost
            fakes["openai"].delay_ms = 1500
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(_call, gw.base_url, holder.secret)
                time.sleep(0.7)
                own.freeze()
                try:
                    frozen = [_call(gw.base_url, holder.secret) for _ in range(5)]
                    unknown_token = _call(gw.base_url, stranger.secret)
                    status, _, answered = in_flight.result()
                finally:
                    fakes["openai"].delay_ms = 0
                    time.sleep(1)
                    own.thaw()
            assert status == 200
            delivered.append(answered.headers["x-request-id"])

            for code, elapsed, r in frozen + [unknown_token]:
                assert code == 503, r.text
                body = r.json()
                assert body["statusCode"] == 503 and body["error"] == "Service Unavailable"
                assert "temporarily unavailable" in body["message"] or "right now" in body["message"], body
                assert elapsed < 5, f"a call waited {elapsed:.1f} s for a frozen Redis (deadline 2 s)"
            # once the breaker is open, calls do not wait for a deadline at all
            later = [elapsed for _, elapsed, _ in frozen[1:]] + [unknown_token[1]]
            assert max(later) < 1.0, later

            # Redis is back: the gateway recovers on its own
            deadline = time.monotonic() + 20
            while True:
                status, _, r = _call(gw.base_url, holder.secret)
                if status == 200:
                    delivered.append(r.headers["x-request-id"])
                    break
                assert time.monotonic() < deadline, f"no recovery after SIGCONT: {r.text}"
                time.sleep(0.2)
            for _ in range(3):
                status, _, r = _call(gw.base_url, holder.secret)
                assert status == 200
                delivered.append(r.headers["x-request-id"])
            deadline = time.monotonic() + 20
            while ledger_state(own.url, holder).reserved and time.monotonic() < deadline:
                time.sleep(0.2)
            state = ledger_state(own.url, holder)
    finally:
        own.stop()
    assert_ledger_exact(state, delivered)


class _SilentServer:
    """A TCP server that accepts and reads, and never answers: Redis hung, or a partition."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0

    async def __aenter__(self) -> Self:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            while await reader.read(65536):
                pass
            writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()


def test_resp_client_fails_a_command_at_its_deadline_and_then_fast() -> None:
    async def go() -> tuple[float, float, int]:
        async with _SilentServer() as silent:
            client = RespClient(f"redis://127.0.0.1:{silent.port}/0", connections=1,
                                connect_timeout_ms=500, command_timeout_ms=600)
            try:
                started = time.monotonic()
                with pytest.raises(RespConnectionError):
                    await asyncio.wait_for(client.pipeline([["PING"]]), 10)
                first = time.monotonic() - started
                started = time.monotonic()
                with pytest.raises(RespConnectionError):
                    await asyncio.wait_for(client.pipeline([["PING"]]), 10)
                second = time.monotonic() - started
                return first, second, silent.accepted
            finally:
                await client.close()

    first, second, accepted = asyncio.run(go())
    assert 0.5 < first < 5, f"the deadline is 600 ms; the command failed after {first:.2f} s"
    assert second < first / 2, "the breaker is open: the next call fails without waiting again"
    assert accepted >= 1

