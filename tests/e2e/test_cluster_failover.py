"""Issue 18 item 4: a master of the Redis Cluster dies (kill -9) under a steady load of paid calls from two
gateway processes, and its replica is promoted. What must hold, and what is measured:

- the calls of the accounts on the dead master get 503 in the seed's shape, each within the deadline (no
  hang), for a window that is measured (the node timeout, the election, the gateways' map refresh);
- the accounts on the other masters see no error at all;
- money that enters during the failover (top-ups through the admin API, each with an operation id, sent
  again after a 503) is credited exactly once, none lost: a top-up is acknowledged only after WAIT;
- after recovery every account's ledger is exact (spent == Σ history costs, nothing reserved, no request
  twice), and the charges lost to asynchronous replication are within the documented bound: at most those
  the dead master confirmed in the last moment before it died.

The cluster is this module's own (it is left with a promoted replica and a restarted old master)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from gateway.money import usd_to_nano
from gateway.store.accounts import Accounts
from gateway.store.connection import async_client
from gateway.store.keys import KeySpace
from tests.conftest import fake_env
from tests.support.cluster import LocalCluster
from tests.support.gateway_process import GatewayProcess

ADMIN = "adm_" + secrets.token_hex(16)
MSG = [{"role": "user", "content": "Привет"}]
DEADLINE_S = 10.0         # no call may take longer: the command deadline is 2 s, the upstream's is 8 s
STEADY_S = 3.0            # load before the kill
RECOVERED_S = 3.0         # the dead master's accounts answered 200 this long again: the failover is over
TOPUP_USD = Decimal("0.01")


@dataclass
class Call:
    account: str
    started: float
    ended: float
    status: int
    body: bytes


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster().start()
    yield c
    c.stop()


def _customers(cluster: LocalCluster, prefix: str) -> tuple[dict[str, str], str]:
    """account id → bt_ secret: one account on each master at least (two on the master that will die);
    and the victim account."""
    ks = KeySpace(prefix)

    async def go() -> tuple[dict[str, str], str]:
        client = async_client(cluster.url)
        acc = Accounts(client, ks, Decimal(95))
        out: dict[str, str] = {}
        per_master: dict[int, list[str]] = {}
        try:
            while len(per_master) < cluster.masters or min(len(v) for v in per_master.values()) < 2:
                a = await acc.create_account(f"{secrets.token_hex(5)}@example.com")
                await acc.credit(a.id, usd_to_nano("100"), reason="test funds")
                out[a.id] = (await acc.create_key(a.id, name="load")).secret
                per_master.setdefault(cluster.master_of(ks.account(a.id)).port, []).append(a.id)
        finally:
            await acc.close()
            await client.aclose()
        return out, next(iter(per_master.values()))[0]

    return asyncio.run(go())


def _ledger(cluster: LocalCluster, prefix: str, aid: str) -> dict[str, Any]:
    k = KeySpace(prefix)
    r = redis.RedisCluster.from_url(next(n.url for n in cluster.nodes if n.proc is not None))   # a node that runs
    try:
        acct = {f.decode(): int(v) for f, v in r.hgetall(k.account(aid)).items()
                if f in (b"credited", b"spent", b"reserved")}
        history = [{"rid": f[b"rid"].decode(), "cost": int(f[b"cost"]), **orjson.loads(f[b"d"])}
                   for _, f in r.xrange(k.history(aid))]
        ledger = [int(f[b"amount"]) for _, f in r.xrange(k.ledger(aid))]
        open_resv = sum(1 for v in r.hvals(k.reservations(aid)) if v.endswith(b"|open"))
    finally:
        r.close()
    return {**acct, "history": history, "ledger": ledger, "open": open_resv}


def _exact(s: dict[str, Any]) -> bool:
    rids = [e["rid"] for e in s["history"]]
    return (len(rids) == len(set(rids)) and s["spent"] == sum(e["cost"] for e in s["history"])
            and s["reserved"] == 0 and s["open"] == 0 and s["credited"] == sum(s["ledger"]))


def test_a_master_dies_under_load(cluster: LocalCluster, fakes: Any, tmp_path: Path) -> None:
    prefix = "f" + secrets.token_hex(4)
    customers, victim = _customers(cluster, prefix)
    ks = KeySpace(prefix)
    doomed = cluster.master_of(ks.account(victim))
    on_doomed = {a for a in customers if cluster.master_of(ks.account(a)) is doomed}
    env = fake_env(fakes) | {"REDIS_URL": cluster.url if cluster.nodes[0] is not doomed else cluster.nodes[1].url,
                             "GATEWAY_REDIS_PREFIX": prefix, "GATEWAY_ADMIN_TOKEN": ADMIN}
    gateways = [GatewayProcess(env | {"GATEWAY_DATA_DIR": str(tmp_path / str(i))}) for i in range(2)]
    calls: list[Call] = []
    topups: dict[str, int] = {}          # operation id → last status
    first_try: list[int] = []            # each top-up's first status
    killed_at = 0.0
    try:
        for g in gateways:
            g.wait_up()

        async def load(http: httpx.AsyncClient, n: int, stop: asyncio.Event) -> None:
            ids = list(customers)
            i = n
            while not stop.is_set():
                aid = ids[i % len(ids)]
                gw = gateways[i % 2]
                i += 1
                t0 = time.monotonic()
                try:
                    r = await http.post(gw.base + "/v1/chat/completions",
                                        json={"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 5},
                                        headers={"Authorization": f"Bearer {customers[aid]}"})
                    calls.append(Call(aid, t0, time.monotonic(), r.status_code, r.content))
                except httpx.HTTPError as exc:  # a hang or a dropped connection: recorded as such
                    calls.append(Call(aid, t0, time.monotonic(), 0, repr(exc).encode()))

        async def money(http: httpx.AsyncClient, stop: asyncio.Event) -> None:
            """A top-up every 50 ms to the victim; a 503 is sent again later with the same operation id."""
            n = 0
            while not stop.is_set():
                op = f"t{n}"
                n += 1
                topups[op] = await _topup(http, gateways[n % 2], victim, op)
                first_try.append(topups[op])
                await asyncio.sleep(0.05)

        async def run() -> None:
            nonlocal killed_at
            stop = asyncio.Event()
            async with httpx.AsyncClient(timeout=DEADLINE_S + 20) as http:
                workers = [asyncio.ensure_future(load(http, n, stop)) for n in range(8)]
                workers.append(asyncio.ensure_future(money(http, stop)))
                await asyncio.sleep(STEADY_S)
                killed_at = time.monotonic()
                doomed.stop(signal.SIGKILL)
                deadline = killed_at + 60
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    recent = [c for c in calls if c.account in on_doomed and c.started > time.monotonic() - RECOVERED_S]
                    if (time.monotonic() - killed_at > RECOVERED_S + 1 and recent
                            and all(c.status == 200 for c in recent)):
                        break
                stop.set()
                await asyncio.gather(*workers)
                # what got a 503 is sent again, with the same operation id, now that the cluster answers
                for op, status in list(topups.items()):
                    while status != 200:
                        status = topups[op] = await _topup(http, gateways[0], victim, op)
                        if status != 200:
                            await asyncio.sleep(0.5)

        asyncio.run(asyncio.wait_for(run(), 180))
        # the gateways send what Redis did not confirm again until it does (idempotent per request id)
        deadline = time.monotonic() + 60
        while not all(_exact(_ledger(cluster, prefix, a)) for a in customers) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        logs = [g.stop() for g in gateways]
    # the old master comes back as a replica of the promoted one
    doomed.start(cluster.binary)
    cluster.wait_healthy()

    victims = [c for c in calls if c.account in on_doomed]
    others = [c for c in calls if c.account not in on_doomed]
    errors = [c for c in victims if c.status != 200]
    assert errors, "the failover went unnoticed: the test proves nothing"
    assert {c.status for c in errors} == {503}, [(c.status, c.body[:200]) for c in errors if c.status != 503]
    for c in errors:
        body = orjson.loads(c.body)
        assert set(body) == {"statusCode", "error", "message"} and body["statusCode"] == 503, body
    slowest = max(c.ended - c.started for c in calls)
    assert slowest < DEADLINE_S, f"a call took {slowest:.1f} s"
    assert [c for c in others if c.status != 200] == [], "an account on a living master got an error"
    window = max(c.ended for c in errors) - min(c.started for c in errors)
    print(f"\nfailover: {len(calls)} calls, {len(errors)} errors (all 503) over {window:.1f} s on the dead "
          f"master's accounts, slowest call {slowest:.2f} s, 0 errors on the others; "
          f"{len(topups)} top-ups, {first_try.count(200)} acknowledged at once, the others 503 and sent again")

    # after recovery: every account exact; money in: every top-up once
    for aid in customers:
        s = _ledger(cluster, prefix, aid)
        assert _exact(s), (aid, {k: v for k, v in s.items() if k not in ("history", "ledger")})
    v = _ledger(cluster, prefix, victim)
    assert v["credited"] == usd_to_nano("100") + len(topups) * usd_to_nano(TOPUP_USD), "a top-up lost or doubled"
    # charges lost: answered 200 but not in the history; only those the dead master confirmed just before it died
    lost = 0
    for aid in on_doomed:
        charged = {e["rid"] for e in _ledger(cluster, prefix, aid)["history"] if e["status"] == 200}
        answered = [c for c in victims if c.account == aid and c.status == 200]
        assert len(answered) - len(charged) <= sum(1 for c in answered if killed_at - 1.0 <= c.ended <= killed_at + 0.1)
        lost += len(answered) - len(charged)
    print(f"charges lost to asynchronous replication: {lost}")
    assert all("Traceback" not in log for log in logs), logs


async def _topup(http: httpx.AsyncClient, gw: GatewayProcess, aid: str, op: str) -> int:
    try:
        r = await http.post(f"{gw.base}/admin/v1/accounts/{aid}/topup", headers={"Authorization": f"Bearer {ADMIN}"},
                            json={"usd": str(TOPUP_USD), "reason": "failover test", "operation_id": op})
    except httpx.HTTPError:
        return 0
    if r.status_code != 200:
        assert r.status_code == 503 and set(r.json()) == {"statusCode", "error", "message"}, r.text
    return r.status_code


def test_money_in_waits_for_a_replica(cluster: LocalCluster, redis_env: dict[str, str]) -> None:
    """On the cluster a credit is answered once a replica has it; on a Redis without replicas at once (auto),
    or refused (503, applied once all the same) when the operator insists on a replica."""
    from gateway.store.replicated import NotReplicated, ReplicaAcks

    async def credit(url: str, prefix: str, acks: ReplicaAcks, op: str) -> tuple[bool, int]:
        client = async_client(url)
        acc = Accounts(client, KeySpace(prefix), Decimal(95), replica_acks=acks)
        try:
            a = await acc.account_by_login("money@example.com") if op.endswith("again") else \
                await acc.create_account("money@example.com")
            applied, view = await acc.credit(a.id, 1000, reason="t", operation_id=op.removesuffix("-again"))
            return applied, view.credited
        finally:
            await acc.close()
            await client.aclose()

    prefix = "w" + secrets.token_hex(4)
    assert asyncio.run(credit(cluster.url, prefix, ReplicaAcks(1, 1000), "op1")) == (True, 1000)
    plain = redis_env["REDIS_URL"]
    plain_prefix = redis_env["GATEWAY_REDIS_PREFIX"] + ":w" + secrets.token_hex(3)
    assert asyncio.run(credit(plain, plain_prefix, ReplicaAcks(), "op1")) == (True, 1000)
    with pytest.raises(NotReplicated):
        asyncio.run(credit(plain, plain_prefix, ReplicaAcks(1, 100), "op2-again"))
    # sent again with the same operation id (the operator relaxed the rule): applied once, not twice
    assert asyncio.run(credit(plain, plain_prefix, ReplicaAcks(), "op2-again")) == (False, 2000)
