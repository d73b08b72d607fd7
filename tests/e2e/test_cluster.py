"""Issue 18 items 1-3: a Redis Cluster (3 masters, 1 replica each, on loopback) behind REDIS_URL works for
everything: the hot path's scripts and redirects, the paid path of every provider, concurrency on a small
balance, revocation, rate limits across two gateway processes, top-ups once, the CLI, the admin API and the
cabinet. Every Lua script runs on the cluster and would fail there on CROSSSLOT."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import redis
from redis.crc import key_slot

import gateway.cli_accounts
from gateway.cli import main
from gateway.config import load_config
from gateway.money import NANO, usd_to_nano
from gateway.proxy.endpoints import ENDPOINTS
from gateway.store.accounts import Accounts
from gateway.store.connection import async_client
from gateway.store.keys import KeySpace
from gateway.store.ledger import Caller, Ledger
from gateway.store.resp import RespError
from gateway.store.scripts import NAMES
from gateway.web.passwords import Passwords
from tests.conftest import fake_env
from tests.support import REPO, chat_model_for, redis_url
from tests.support.cluster import LocalCluster, move_slot_begin, move_slot_end, move_slot_keys
from tests.support.fake_payments import FakePayments
from tests.support.gateway_process import GatewayProcess
from tests.support.gateway_server import GatewayServer, accounts_call, make_customer
from tests.support.web import PASSWORD, Cabinet, create_key, usd_of

MSG = [{"role": "user", "content": "Привет"}]
ADMIN_TOKEN = "adm_" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def prefix() -> str:
    return "c" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def payments() -> Iterator[FakePayments]:
    fake = FakePayments()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def env(redis_cluster: LocalCluster, fakes: Any, payments: FakePayments, prefix: str) -> dict[str, str]:
    # REDIS_URL names a replica: any node will do, the clients learn the masters from it
    return fake_env(fakes) | payments.env() | {
        "REDIS_URL": redis_cluster.nodes[-1].url, "GATEWAY_REDIS_PREFIX": prefix, "GATEWAY_COOKIE_SECURE": "false",
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture(scope="module")
def gw(env: dict[str, str], payments: FakePayments) -> Iterator[GatewayServer]:
    with GatewayServer(REPO, env) as server:
        payments.webhook_url = server.base_url + "/payments/webhook/yookassa"
        yield server


def sdk(gw: GatewayServer, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=secret, max_retries=0, timeout=30)


def state(cluster: LocalCluster, prefix: str, aid: str) -> dict[str, Any]:
    """One account's ledger, read straight from the cluster."""
    k = KeySpace(prefix)
    r = redis.RedisCluster.from_url(cluster.url)
    try:
        acct = {f.decode(): int(v) for f, v in r.hgetall(k.account(aid)).items()
                if f in (b"credited", b"spent", b"reserved")}
        history = [{"rid": f[b"rid"].decode(), "cost": int(f[b"cost"]), **orjson.loads(f[b"d"])}
                   for _, f in r.xrange(k.history(aid))]
        open_resv = sum(1 for v in r.hvals(k.reservations(aid)) if v.endswith(b"|open"))
    finally:
        r.close()
    return {"credited": acct.get("credited", 0), "spent": acct.get("spent", 0), "reserved": acct.get("reserved", 0),
            "history": history, "open": open_resv}


def assert_exact(s: dict[str, Any]) -> None:
    rids = [e["rid"] for e in s["history"]]
    assert len(rids) == len(set(rids)), "a request recorded twice"
    assert s["spent"] == sum(e["cost"] for e in s["history"])
    assert s["reserved"] == 0 and s["open"] == 0, s


# -- the clients ---------------------------------------------------------------------------------------


def test_a_node_url_or_the_cluster_form_gives_cluster_clients(redis_cluster: LocalCluster) -> None:
    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    plain = redis_cluster.url                                    # any node, as the operator wrote it
    explicit = plain.replace("redis://", "redis+cluster://")     # no probe
    for url in (plain, explicit, redis_cluster.nodes[-1].url):   # a replica's address works too
        assert isinstance(async_client(url), AsyncCluster), url
    with pytest.raises(ValueError, match="database 0 only"):
        async_client(plain + "/3")
    assert not isinstance(async_client(redis_url()), AsyncCluster)


async def _holder(acc: Accounts, usd: str = "10", **key: Any) -> Caller:
    a = await acc.create_account(f"{secrets.token_hex(5)}@example.com")
    await acc.credit(a.id, usd_to_nano(usd), reason="test funds")
    k = await acc.create_key(a.id, **key)
    return Caller(a.id, k.key.id)


def test_every_script_runs_on_the_cluster_and_stays_in_one_slot(redis_cluster: LocalCluster, prefix: str) -> None:
    """admit (with its release of an expired reservation, which names the key hash from the record),
    settle, credit, sweep and unindex, each through the code that calls it, on the cluster; and the same
    batcher refusing a settlement whose keys span two accounts (CROSSSLOT): the check is real."""
    ks = KeySpace(prefix)
    seen: set[str] = set()

    async def go() -> None:
        client = async_client(redis_cluster.url)
        acc = Accounts(client, ks, Decimal(95))
        ledger = Ledger(client, ks, reservation_ttl_ms=300, late_settlement_window_ms=60_000)
        for scripts in (acc._scripts, ledger._scripts):  # record which scripts ran
            batcher = scripts._batcher
            submit = batcher.submit

            def spy(name: str, keys: list[str], args: list[Any], now: bool = False, _submit: Any = submit) -> Any:
                seen.add(name)
                return _submit(name, keys, args, now)

            batcher.submit = spy  # type: ignore[method-assign]
        # a credit goes with its WAIT on one connection of the account's master (gateway.store.replicated)
        pipeline_for = acc._scripts._batcher.pipeline_for

        async def spy_pipeline(key: str, commands: list[list[Any]]) -> list[Any]:
            if commands[0][0] == "EVAL" and commands[0][1] == acc._scripts._sources["credit"]:
                seen.add("credit")
            return await pipeline_for(key, commands)

        acc._scripts._batcher.pipeline_for = spy_pipeline  # type: ignore[method-assign,union-attr]
        try:
            await ledger.connect()
            c = await _holder(acc)                                               # credit.lua
            other = await _holder(acc)
            assert key_slot(ks.account(c.account_id).encode()) != key_slot(ks.account(other.account_id).encode())
            t0 = int(time.time() * 1000)
            first = await ledger.admit(c, "req_a", "gpt-4o-mini", "/v1/chat/completions", 1000, t0)   # admit.lua
            assert first.code == 0
            # req_a dies with its process; the next admission, after the reservation ttl, releases it
            second = await ledger.admit(c, "req_b", "gpt-4o-mini", "/v1/chat/completions", 1000, t0 + 1000)
            assert second.code == 0
            assert await ledger.settle(c, "req_b", 700, 10, True, {"key": c.key_id, "status": 200}, t0 + 1100)
            # a reservation nobody settles, found by the sweeper through the global index
            third = await ledger.admit(c, "req_c", "gpt-4o-mini", "/v1/chat/completions", 500, t0 + 1200)
            assert third.code == 0
            released = await ledger.sweep_due(t0 + 5000)                        # sweep.lua + unindex.lua
            assert released == 1
            # a late settlement of the released req_a is still charged once
            assert await ledger.settle(c, "req_a", 300, 0, True, {"key": c.key_id, "status": 200}, t0 + 1300)
            assert not await ledger.settle(c, "req_a", 300, 0, True, {"key": c.key_id, "status": 200}, t0 + 1400)
            # keys of two accounts in one script: the cluster refuses it
            mixed = ledger._keys(c)[:6] + [ledger._keys(other)[6]]
            with pytest.raises(RespError, match="CROSSSLOT"):
                await ledger._scripts.settle(mixed, [t0, "req_x", 1, "2025-01", "2025-01-01", 0, 100, "0", b"{}"])
        finally:
            await ledger.close()
            await acc.close()
            await client.aclose()
        s = state(redis_cluster, prefix, c.account_id)
        assert s["spent"] == 1000 and s["credited"] == usd_to_nano("10")
        assert_exact(s)

    asyncio.run(go())
    assert seen == set(NAMES), f"not run on the cluster: {set(NAMES) - seen}"


def test_the_hot_path_follows_a_slot_that_moves_ask_tryagain_moved(redis_cluster: LocalCluster, prefix: str) -> None:
    """A slot resharded under load: while it moves, single-key commands follow ASK to the target, the
    scripts (several keys, some of which do not exist, so never all on one side) get TRYAGAIN and are
    sent again; once it has moved, the old owner answers MOVED and the client learns the new map. Nothing
    is lost or charged twice."""
    ks = KeySpace(prefix)

    async def go() -> tuple[Caller, dict[str, int]]:
        client = async_client(redis_cluster.url)
        acc = Accounts(client, ks, Decimal(95))
        ledger = Ledger(client, ks)
        loop = asyncio.get_running_loop()
        try:
            await ledger.connect()
            c = await _holder(acc)
            n = 0

            async def call() -> None:
                nonlocal n
                n += 1
                rid = f"req_{n}"
                a = await ledger.admit(c, rid, "gpt-4o-mini", "/v1/chat/completions", 1000)
                assert a.code == 0
                assert await ledger.settle(c, rid, 400, 0, True, {"key": c.key_id, "status": 200})

            await call()
            slot = key_slot(ks.account(c.account_id).encode())
            source = redis_cluster.master_of(ks.account(c.account_id))
            target = next(m for m in redis_cluster.masters_now() if m is not source)
            await loop.run_in_executor(None, move_slot_begin, redis_cluster, slot, source, target)
            assert await loop.run_in_executor(None, move_slot_keys, slot, source, target) > 0
            # the account hash now lives on the target: a one-key read is redirected with ASK
            credited = await ledger._scripts.send(["HGET", ks.account(c.account_id), "credited"])
            assert int(credited) == usd_to_nano("10")
            # a script now gets TRYAGAIN until the move completes (while it runs, a moment later)
            finish = loop.run_in_executor(None, _later, 0.3, move_slot_end, redis_cluster, slot, target)
            await asyncio.gather(call(), call(), call())
            await finish
            for _ in range(3):
                await call()                                     # MOVED once, then straight to the target
            assert redis_cluster.master_of(ks.account(c.account_id)) is target
            return c, dict(ledger.resp.redirects)
        finally:
            await ledger.close()
            await acc.close()
            await client.aclose()

    c, redirects = asyncio.run(go())
    assert redirects.get("ASK", 0) >= 1 and redirects.get("TRYAGAIN", 0) >= 1 and redirects.get("MOVED", 0) >= 1, \
        redirects
    s = state(redis_cluster, prefix, c.account_id)
    assert len(s["history"]) == 7 and s["spent"] == 7 * 400
    assert_exact(s)


def _later(delay: float, fn: Any, *args: Any) -> None:
    time.sleep(delay)
    fn(*args)


# -- through the gateway ----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "xai"])
def test_paid_path_of_every_provider(provider: str, gw: GatewayServer, redis_cluster: LocalCluster,
                                     prefix: str) -> None:
    c = make_customer(gw, usd="5")
    model = chat_model_for(provider)
    client = sdk(gw, c.secret)
    resp = client.chat.completions.create(model=model, messages=MSG, max_tokens=40)
    assert resp.choices[0].message.content
    chunks = list(client.chat.completions.create(model=model, messages=MSG, max_tokens=40, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    s = state(redis_cluster, prefix, c.account_id)
    assert [e["status"] for e in s["history"]] == [200, 200] and all(e["cost"] > 0 for e in s["history"])
    assert {e["provider"] for e in s["history"]} == {provider}
    assert s["credited"] - s["spent"] == usd_to_nano("5") - sum(e["cost"] for e in s["history"])
    assert_exact(s)
    bal = httpx.get(f"{gw.base_url}/v1/balance", headers={"Authorization": f"Bearer {c.secret}"}).json()
    assert Decimal(str(bal["spend_total_usd"])) == Decimal(s["spent"]) / NANO


def test_two_hundred_concurrent_requests_never_overspend(gw: GatewayServer, fakes: Any, redis_cluster: LocalCluster,
                                                          prefix: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 200}
    raw = orjson.dumps(body)
    reserve = gw.app.billing.reservation(gw.app.router.resolve("gpt-4o-mini", ENDPOINTS["chat"]), body, raw)
    c = make_customer(gw, usd=str(Decimal(reserve * 50) / NANO))
    fakes["openai"].delay_ms = 1500

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gw.base_url, limits=httpx.Limits(max_connections=200),
                                     timeout=60) as http:
            h = {"Authorization": f"Bearer {c.secret}", "Content-Type": "application/json"}
            return await asyncio.gather(*(http.post("/v1/chat/completions", content=raw, headers=h)
                                          for _ in range(200)))

    try:
        codes = [r.status_code for r in asyncio.run(fire())]
    finally:
        fakes["openai"].delay_ms = 0
    ok = codes.count(200)
    assert 1 <= ok <= 50 and codes.count(403) == 200 - ok, codes
    s = state(redis_cluster, prefix, c.account_id)
    assert len(s["history"]) == 200
    assert s["credited"] - s["spent"] == reserve * 50 - sum(e["cost"] for e in s["history"]) >= 0
    assert_exact(s)


def test_revocation_bites_on_the_next_request(gw: GatewayServer) -> None:
    c = make_customer(gw, usd="1")
    client = sdk(gw, c.secret)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    accounts_call(gw, lambda acc: acc.revoke_key(c.key_id))
    with pytest.raises(openai.AuthenticationError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    assert exc.value.response.json() == {"statusCode": 401, "error": "Unauthorized", "message": "token revoked"}


def test_large_body_precheck(gw: GatewayServer) -> None:
    """Before a large body is parsed, one pipelined read of the key and the account (gateway.store.precheck)."""
    from gateway.proxy.large_bodies import INLINE_PARSE_BYTES

    big = {"model": "gpt-4o-mini", "max_tokens": 5,
           "messages": [{"role": "user", "content": "x" * (INLINE_PARSE_BYTES + 1000)}]}
    for usd, status in (("0", 403), ("50", 200)):
        c = make_customer(gw, usd=usd)
        r = httpx.post(f"{gw.base_url}/v1/chat/completions", json=big,
                       headers={"Authorization": f"Bearer {c.secret}"}, timeout=60)
        assert r.status_code == status, r.text


def test_rate_limit_is_exact_across_two_gateway_processes(gw: GatewayServer, env: dict[str, str],
                                                         tmp_path: Path) -> None:
    rpm = 12
    c = make_customer(gw, usd="5", rpm=rpm)
    servers = [GatewayProcess(env | {"GATEWAY_DATA_DIR": str(tmp_path / str(i))}) for i in range(2)]
    try:
        for s in servers:
            s.wait_up()
        if time.time() % 60 > 55:          # one minute's window: a burst that straddles two would get more
            time.sleep(61 - time.time() % 60)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as http:
                h = {"Authorization": f"Bearer {c.secret}"}
                body = {"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 5}
                rs = await asyncio.gather(*(http.post(servers[i % 2].base + "/v1/chat/completions", json=body,
                                                      headers=h) for i in range(3 * rpm)))
                return [r.status_code for r in rs]

        codes = asyncio.run(burst())
    finally:
        errors = [s.stop() for s in servers]
    assert codes.count(200) == rpm and codes.count(429) == 2 * rpm, (codes, errors)
    history = accounts_call(gw, lambda acc: acc.history(c.account_id, 100))
    assert sorted(e["status"] for e in history) == [200] * rpm + [429] * 2 * rpm


def test_cli_accounts_and_keys(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's first command (`gateway accounts create` → MOVED) and the rest of the operator's day."""
    for name in ("REDIS_URL", "GATEWAY_REDIS_PREFIX"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("GATEWAY_ROOT", str(REPO))
    config = load_config(str(REPO))
    monkeypatch.setattr(gateway.cli_accounts, "_load_config", lambda root: config)

    def ok(*argv: str) -> Any:
        capsys.readouterr()
        rc = main([*argv, "--json"])
        out, err = capsys.readouterr()
        assert rc == 0, err
        return json.loads(out)

    login = f"{secrets.token_hex(5)}@example.com"
    aid = ok("accounts", "create", "--login", login)["id"]
    assert ok("accounts", "topup", aid, "--usd", "7.5", "--operation-id", "inv-1")["applied"] is True
    assert ok("accounts", "topup", aid, "--usd", "7.5", "--operation-id", "inv-1")["applied"] is False
    assert ok("accounts", "show", aid)["credited_usd"] == "7.5"
    assert aid in [a["id"] for a in ok("accounts", "list")]
    key = ok("keys", "create", aid, "--name", "laptop", "--rpm", "60")
    assert key["key"].startswith("bt_") and ok("keys", "list", aid)[0]["name"] == "laptop"
    assert len(ok("accounts", "ledger", aid)) == 1


def test_admin_api(gw: GatewayServer) -> None:
    with httpx.Client(base_url=gw.base_url + "/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                      timeout=20) as api:
        a = api.post("/accounts", json={"login": f"{secrets.token_hex(5)}@example.com"}).json()
        body = {"usd": "3", "operation_id": "pay-7"}

        async def race() -> list[dict[str, Any]]:
            async with httpx.AsyncClient(base_url=api.base_url, headers=dict(api.headers), timeout=20) as client:
                rs = await asyncio.gather(*(client.post(f"/accounts/{a['id']}/topup", json=body) for _ in range(20)))
                return [r.json() for r in rs]

        assert sum(r["applied"] for r in asyncio.run(race())) == 1
        key = api.post(f"/accounts/{a['id']}/keys", json={"name": "ci"})
        assert key.status_code == 201
        sdk(gw, key.json()["key"]).chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
        shown = api.get(f"/accounts/{a['id']}").json()
        assert shown["credited_usd"] == 3.0 and shown["requests"] == 1 and shown["reserved_usd"] == 0.0
        [row] = api.get(f"/accounts/{a['id']}/history").json()["data"]
        assert row["status"] == 200 and row["cost_usd"] == pytest.approx(shown["spent_usd"], abs=1e-9)
        assert len(api.get(f"/accounts/{a['id']}/ledger").json()["data"]) == 1
        assert a["id"] in [x["id"] for x in api.get("/accounts", params={"limit": 1000}).json()["data"]]
        assert api.post(f"/keys/{key.json()['id']}/revoke").json()["status"] == "REVOKED"


def test_cabinet_and_console_journey(gw: GatewayServer, payments: FakePayments) -> None:
    """Sign up, top up through the payment provider (webhook twice, credited once), make a key, call,
    see it in the history and the CSV, log out and in again; an operator sees the account in the console."""
    payments.deliveries = 2
    email = f"{secrets.token_hex(5)}@example.com"
    with Cabinet(gw.base_url) as c:
        assert c.signup(email).status_code == 303
        resp = c.post("/billing/topup", {"provider": "yookassa", "amount": "950"})
        assert resp.status_code == 303, resp.text
        paid = httpx.post(resp.headers["location"] + "/pay", follow_redirects=False)
        assert paid.status_code == 303
        assert [json.loads(d.body)["applied"] for d in payments.last().deliveries] == [True, False]
        assert usd_of(c.get("/billing").text, "balance") == "10"
        _, secret = create_key(c, "journey")
        sdk(gw, secret).chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
        assert c.get("/history").text.count("data-request-id=") == 1
        [row] = list(csv.DictReader(io.StringIO(c.get("/history.csv").text)))
        assert row["key_name"] == "journey" and Decimal(row["cost_usd"]) > 0
        assert Decimal(usd_of(c.get("/").text, "balance")) == 10 - Decimal(row["cost_usd"])
        assert c.post("/logout").status_code == 303
        assert c.get("/").status_code == 303
        assert c.login(email).status_code == 303 and c.account_id
    admin_email = make_admin_on(gw)
    with Cabinet(gw.base_url) as admin:
        assert admin.login(admin_email).status_code == 303
        assert email in admin.get("/console", params={"query": email}).text


def make_admin_on(gw: GatewayServer) -> str:
    """An operator with a password, made through the service (as `gateway accounts create --admin`)."""
    email = f"{secrets.token_hex(5)}@example.com"

    async def go(acc: Accounts) -> None:
        view = await acc.create_account(email, "admin")
        await Passwords(acc.r, acc.k).set(view.id, PASSWORD)

    accounts_call(gw, go)
    return email


def test_keys_spread_over_every_master(redis_cluster: LocalCluster, prefix: str) -> None:
    """The tests above did touch every shard (else they would prove little about a cluster)."""
    r = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        for node in redis_cluster.masters_now():
            with node.client() as c:
                assert c.dbsize() > 0, node.port
    finally:
        r.close()


def test_hot_path_reconnects_after_a_node_restarts(redis_cluster: LocalCluster, prefix: str) -> None:
    """The master of an account's slot restarts (SIGTERM, AOF flushed, back within the node timeout, so
    no failover): its calls in between fail at once or are kept, the other masters' accounts go on, and
    the hot path reconnects on its own."""
    ks = KeySpace(prefix)

    async def go() -> Caller:
        client = async_client(redis_cluster.url)
        acc = Accounts(client, ks, Decimal(95))
        ledger = Ledger(client, ks, command_timeout_ms=1000)
        loop = asyncio.get_running_loop()
        try:
            await ledger.connect()
            c = await _holder(acc)
            assert (await ledger.admit(c, "req_1", "m", "/v1/chat/completions", 100)).code == 0
            assert await ledger.settle(c, "req_1", 100, 0, True, {"status": 200})
            node = redis_cluster.master_of(ks.account(c.account_id))
            other = c
            while redis_cluster.master_of(ks.account(other.account_id)) is node:
                other = await _holder(acc)
            await loop.run_in_executor(None, node.stop)
            with pytest.raises(ConnectionError):  # the node is down: an admission fails, a settlement is kept
                await ledger.admit(c, "req_2", "m", "/v1/chat/completions", 100)
            assert await ledger.settle(c, "req_x", 50, 0, False, {"status": 200})   # kept, sent again later
            # the other masters' accounts go on meanwhile
            assert (await ledger.admit(other, "req_o", "m", "/v1/chat/completions", 100)).code == 0
            assert await ledger.settle(other, "req_o", 100, 0, True, {"status": 200})
            await loop.run_in_executor(None, node.start, redis_cluster.binary)
            await loop.run_in_executor(None, node.wait_up)
            deadline = time.monotonic() + 20
            while True:
                try:
                    a = await ledger.admit(c, "req_3", "m", "/v1/chat/completions", 100)
                    break
                except (ConnectionError, RespError):  # refused, then CLUSTERDOWN while it rejoins
                    assert time.monotonic() < deadline, "no recovery after the node came back"
                    await asyncio.sleep(0.2)
            assert a.code == 0
            assert await ledger.settle(c, "req_3", 100, 0, True, {"status": 200})
            assert await ledger.unconfirmed.drain(10)
            return c
        finally:
            await ledger.close()
            await acc.close()
            await client.aclose()

    c = asyncio.run(go())
    redis_cluster.wait_healthy()
    s = state(redis_cluster, prefix, c.account_id)
    assert sorted(e["rid"] for e in s["history"]) == ["req_1", "req_3", "req_x"]
    assert s["spent"] == 250
    assert_exact(s)
