"""Issue 14, item 4: no charge is lost (or doubled) when Redis blips or a gateway process dies.

A fault run against real `gateway serve` workers and a redis-server of the test's own: a client loop of
paid calls while Redis is frozen, killed, restarted and shut down, and a worker is killed with settlements
it could not get confirmed. At the end every answer the client received is charged exactly once, the
balance is top-ups minus the history's costs, and every reservation is released by the sweeper."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import fake_env
from tests.support.ledger import (
    PREFIX,
    OwnRedis,
    Serve,
    assert_ledger_exact,
    edited_root,
    ledger_state,
    make_holder,
)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


class ClientLoop:
    """`n` clients calling the paid endpoint back to back; remembers the request id of every 200 answer."""

    def __init__(self, base: str, secret: str, n: int = 12) -> None:
        self.base, self.secret, self.n = base, secret, n
        self.delivered: list[str] = []
        self.statuses: dict[int | str, int] = {}
        self.unexpected: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> ClientLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the client loop hangs"

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.secret}"}
        async with httpx.AsyncClient(base_url=self.base, timeout=30, headers=headers) as http:
            await asyncio.gather(*(self._client(http) for _ in range(self.n)))

    async def _client(self, http: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            try:
                r = await http.post("/v1/chat/completions", json=BODY)
            except httpx.HTTPError as exc:  # a worker killed under the request: no answer reached us
                kind: int | str = type(exc).__name__
                await asyncio.sleep(0.05)
            else:
                kind = r.status_code
                if r.status_code == 200:
                    assert r.json()["choices"][0]["message"]["content"]
                    self.delivered.append(r.headers["x-request-id"])
                elif r.status_code == 503:
                    assert r.json()["statusCode"] == 503
                    await asyncio.sleep(0.05)
                else:
                    self.unexpected.append(f"{r.status_code}: {r.text}")
            self.statuses[kind] = self.statuses.get(kind, 0) + 1


def _journaled_bytes(folder: Path) -> int:
    total = 0
    for f in folder.iterdir():
        try:
            total += f.stat().st_size
        except FileNotFoundError:  # adopted and deleted meanwhile
            pass
    return total


def test_every_delivered_answer_is_charged_once_through_redis_and_worker_crashes(tmp_path: Path, fakes) -> None:
    own = OwnRedis(tmp_path / "redis").start()
    data = tmp_path / "data"
    root = edited_root(tmp_path / "root", redis={"connect_timeout_ms": 500, "command_timeout_ms": 1000},
                       billing={"reservation_ttl_s": 2, "sweep_interval_s": 0.5})
    env = fake_env(fakes) | {"REDIS_URL": own.url, "GATEWAY_REDIS_PREFIX": PREFIX, "GATEWAY_DATA_DIR": str(data)}
    fakes["openai"].delay_ms = 150  # calls stay in flight long enough for every fault to catch some
    gw = Serve(root, env, workers=2)
    loop: ClientLoop | None = None
    started = time.monotonic()
    try:
        workers = gw.wait_up()
        holder = make_holder(own.url, usd="100")
        loop = ClientLoop(gw.base, holder.secret).start()
        time.sleep(2)
        own.freeze()          # settlements in flight meet the command deadline: retried, journaled
        time.sleep(2)
        own.thaw()            # ... and the frozen ones Redis runs now are not charged twice
        time.sleep(1.5)
        own.kill()            # settlements on the wire are lost with the server
        time.sleep(1)
        own.start()
        time.sleep(1.5)
        own.kill()
        time.sleep(0.4)       # the settlements this broke are in the worker's journal and nowhere else ...
        os.kill(workers[0], signal.SIGKILL)   # ... when the worker dies too
        time.sleep(0.6)
        own.start()
        gw.wait_up(gone=workers[0])  # the replacement (or the other worker's sweeper) replays the journal
        time.sleep(1)
        own.terminate()       # Redis's own shutdown while calls run
        time.sleep(0.5)
        own.start()
        time.sleep(1.5)
        os.kill(workers[1], signal.SIGKILL)    # Redis up: its calls in flight leave reservations behind,
        time.sleep(0.1)
        loop.stop()                            # and no later call of the account releases them: the sweeper must
        faults_done = time.monotonic()
        assert gw.stop() == 0, gw.log()  # SIGTERM: what is not confirmed is in the journal

        # a fresh start replays whatever is left; its sweeper releases the reservations of killed calls
        again = Serve(root, env, workers=1)
        try:
            again.wait_up()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                state = ledger_state(own.url, holder)
                if state.reserved == 0 and not _journaled_bytes(data / "journal"):
                    break  # every reservation released, every journaled settlement confirmed
                time.sleep(0.25)
        finally:
            assert again.stop() == 0, again.log()
        state = ledger_state(own.url, holder)
        assert not list(data.joinpath("journal").iterdir()), "a clean stop leaves no journal behind"
    finally:
        if loop is not None:
            loop.stop()
        gw.stop(signal.SIGKILL)
        own.stop()

    print(f"answers by status: {loop.statuses}, delivered {len(loop.delivered)}, history {len(state.history)}; "
          f"faults {faults_done - started:.1f} s, settled {time.monotonic() - faults_done:.1f} s")
    assert len(loop.delivered) > 50 and loop.statuses.get(503), loop.statuses
    assert not loop.unexpected, loop.unexpected[:5]
    assert_ledger_exact(state, loop.delivered)
