"""Issue 18 item 5: every history entry and ledger movement reaches the archive database exactly once, and
the cabinet's history and CSV read what Redis no longer keeps from there. On SQLite always, and on
PostgreSQL when it answers here (a database of the test's own)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import delete

from gateway.account_admin import Money
from gateway.archive.archiver import Archiver
from gateway.archive.database import ArchiveDB, engine_url
from gateway.archive.schema import cursors
from gateway.money import NANO, usd_to_nano
from gateway.store.accounts import Accounts
from gateway.store.connection import async_client
from gateway.store.keys import KeySpace
from gateway.store.ledger import Caller, Ledger
from gateway.web import history as web_history
from tests.support import REDIS_URL
from tests.support.archive_db import archive_url

CALLS = 300_000
WAVE = 2000


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArchiveDB]:
    with archive_url(request.param, tmp_path) as url:
        if url is None:
            pytest.skip("PostgreSQL does not answer here")
        archive = ArchiveDB(engine_url(url, tmp_path))
        yield archive
        archive.close()


def _cost(i: int) -> int:
    return 1_000 + (i * 7919) % 50_000   # nano-USD, all different enough that a lost or doubled one shows


def test_three_hundred_thousand_settlements_archived_once(db: ArchiveDB, redis_env: dict[str, str]) -> None:
    ks = KeySpace(redis_env["GATEWAY_REDIS_PREFIX"] + ":arch" + db.engine.dialect.name)

    async def go() -> dict[str, Any]:
        client = async_client(REDIS_URL)
        acc = Accounts(client, ks, Decimal(95))
        acc.archive = db
        ledger = Ledger(client, ks, history_max=2 * CALLS)
        # keep_ms=0: Redis keeps nothing once archived, so every page and the CSV below read the archive
        archiver = Archiver(client, ks, db, batch=5000, keep_ms=0)
        try:
            a = await acc.create_account("bulk@example.com")
            key = (await acc.create_key(a.id, name="bulk")).key
            await acc.credit(a.id, usd_to_nano("1000"), reason="bulk funds", operation_id="op-1")
            await acc.credit(a.id, -usd_to_nano("1"), kind="correction", reason="bulk correction", operation_id="op-2")
            caller = Caller(a.id, key.id)
            stop = asyncio.Event()

            async def archive_meanwhile() -> None:   # the archiver drains while the writes go on
                while not stop.is_set():
                    await archiver.drain([a.id])
                    await asyncio.sleep(0.05)

            running = asyncio.ensure_future(archive_meanwhile())
            started = time.monotonic()
            for first in range(0, CALLS, WAVE):
                # settle.lua itself, as the paid path sends it (no HTTP): charged, counted, recorded
                done = await asyncio.gather(*(ledger.settle(caller, f"req_{i:024x}", _cost(i), 0, False,
                                                            {"key": key.id, "model": "gpt-4o-mini", "provider": "openai",
                                                             "endpoint": "/v1/chat/completions", "status": 200,
                                                             "in": 10, "out": 5})
                                              for i in range(first, first + WAVE)))
                assert all(done)
            generated_s = time.monotonic() - started
            stop.set()
            await running
            await archiver.drain([a.id])
            midway = db.totals(a.id)
            # the cursors lost (a database restored from an old backup, a second archiver): everything still
            # in Redis is read again, and nothing is archived twice
            with db.engine.begin() as conn:
                conn.execute(delete(cursors))
            await archiver.drain([a.id])
            again = db.totals(a.id)
            # 100 more, newer than the archive, still only in Redis: the pages join the two
            await asyncio.gather(*(ledger.settle(caller, f"req_new_{i:020x}", 777, 0, False,
                                                 {"key": key.id, "model": "gpt-4o-mini", "status": 200})
                                   for i in range(100)))
            view = await acc.account(a.id)
            in_redis = await client.xlen(ks.history(a.id))
            names = {key.id: (key.prefix, key.name)}
            money = Money(Decimal(95), exact=True)
            started = time.monotonic()
            text = "".join([chunk async for chunk in web_history.csv_lines(acc, a.id, web_history.Filter(), money,
                                                                                names)])
            csv_s = time.monotonic() - started
            first_page, _ = await web_history.page(acc, a.id, web_history.Filter(), money, limit=50)
            return {"aid": a.id, "view": view, "midway": midway, "again": again, "in_redis": in_redis, "csv": text,
                    "page": first_page, "generated_s": generated_s, "csv_s": csv_s}
        finally:
            await ledger.close()
            await acc.close()
            await client.aclose()

    r = asyncio.run(go())
    view = r["view"]
    spent_before_new = view.spent - 100 * 777
    assert spent_before_new == sum(_cost(i) for i in range(CALLS))
    n, cost, credited = r["midway"]
    assert n == CALLS and cost == spent_before_new, "Σ archive costs == spend"
    assert credited == view.credited == usd_to_nano("999")
    assert r["again"] == r["midway"], "archived twice after the cursors were lost"
    assert r["in_redis"] == 100, "Redis keeps what is archived (keep_ms=0 trims it) or lost the new ones"
    rows = list(csv.DictReader(io.StringIO(r["csv"])))
    assert len(rows) == CALLS + 100
    ids = [row["request_id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert set(ids) == {f"req_{i:024x}" for i in range(CALLS)} | {f"req_new_{i:020x}" for i in range(100)}
    assert sum(Decimal(row["cost_usd"]) for row in rows) * NANO == view.spent
    assert [p["request_id"] for p in r["page"]] == ids[:50], "the cabinet's first page is the CSV's head"
    print(f"\narchive ({db.engine.dialect.name}): {CALLS:,} settlements generated in {r['generated_s']:.1f} s, "
          f"CSV of {len(rows):,} rows in {r['csv_s']:.1f} s")


def test_gateway_archives_paid_calls_and_top_ups(db: ArchiveDB, redis_env: dict[str, str], fakes: Any,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Through the server: an admission puts the account in the archiver's index, the archiver (one per
    prefix, holding the lease) writes the call and the top-up, and the history page still shows them."""
    import httpx

    from tests.conftest import fake_env
    from tests.support import REPO
    from tests.support.gateway_server import GatewayServer, accounts_call, make_customer

    env = fake_env(fakes) | redis_env | {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL":
                                         db.url.replace("postgresql+psycopg", "postgresql") if not db.sqlite else ""}
    with GatewayServer(REPO, env) as gw:
        archive = gw.app.archive
        assert archive is not None and archive.url == (db.url if not db.sqlite else
                                                       engine_url("", tmp_path / "data"))
        c = make_customer(gw, usd="5")
        r = httpx.post(f"{gw.base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {c.secret}"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
                       timeout=30)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        while archive.totals(c.account_id)[0] < 1 or archive.totals(c.account_id)[2] == 0:
            assert time.monotonic() < deadline, "the archiver did not archive the call within a minute"
            time.sleep(0.5)
        n, cost, credited = archive.totals(c.account_id)
        spent = accounts_call(gw, lambda acc: acc.account(c.account_id))
        assert (n, cost, credited) == (1, spent.spent, usd_to_nano("5"))
    r2 = redis.Redis.from_url(REDIS_URL)
    try:
        assert r2.exists(KeySpace(redis_env["GATEWAY_REDIS_PREFIX"]).archive_index())
    finally:
        r2.close()
    # the operator's reconciliation: `gateway archive check ACCOUNT_ID`
    from gateway.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["--root", str(REPO), "archive", "check", c.account_id]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["history_complete"] and doc["ledger_complete"] and doc["archive"]["history_rows"] == 1


def test_gateway_serve_archives_from_a_process_of_its_own(redis_env: dict[str, str], tmp_path: Path) -> None:
    """`gateway serve` starts the archiver beside its worker (never in the event loop that serves requests),
    a top-up through the admin API reaches the archive, and the archiver stops with the service."""
    from gateway.archive.database import ArchiveDB, engine_url
    from tests.support import processes
    from tests.support.gateway_process import GatewayProcess

    import httpx

    data = tmp_path / "data"
    gw = GatewayProcess(redis_env | {"GATEWAY_DATA_DIR": str(data), "DATABASE_URL": "",
                                     "GATEWAY_ADMIN_TOKEN": "t0ken-for-the-test", "GATEWAY_ARCHIVER": "true"})
    try:
        gw.wait_up()
        children = [p for p in processes.children(gw.proc.pid) if "archive\x00run" in processes.cmdline(p)]
        assert len(children) == 1, [processes.cmdline(p) for p in processes.children(gw.proc.pid)]
        archiver = children[0]
        admin = {"Authorization": "Bearer t0ken-for-the-test"}
        acct = httpx.post(gw.base + "/admin/v1/accounts", json={"login": "archived@example.com"}, headers=admin,
                          timeout=10).json()
        r = httpx.post(gw.base + f"/admin/v1/accounts/{acct['id']}/topup", json={"usd": "2"}, headers=admin,
                       timeout=10)
        assert r.status_code == 200, r.text
        db = ArchiveDB(engine_url("", data))
        try:
            deadline = time.monotonic() + 60
            while db.totals(acct["id"])[2] != usd_to_nano("2"):
                assert time.monotonic() < deadline, "the archiver process did not archive the top-up in a minute"
                time.sleep(0.5)
        finally:
            db.close()
    finally:
        log = gw.stop()
    assert not processes.alive(archiver), log


def test_the_archiver_does_not_outlive_a_killed_gateway_serve(redis_env: dict[str, str], tmp_path: Path) -> None:
    """kill -9 of `gateway serve` leaves no archiver behind (the kernel tells it: PR_SET_PDEATHSIG)."""
    import signal

    from tests.support import processes
    from tests.support.gateway_process import GatewayProcess

    gw = GatewayProcess(redis_env | {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": "",
                                     "GATEWAY_ARCHIVER": "true"})
    try:
        gw.wait_up()
        archiver = next(p for p in processes.children(gw.proc.pid) if "archive\x00run" in processes.cmdline(p))
        gw.proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 15
        while processes.alive(archiver):
            assert time.monotonic() < deadline, "the archiver outlived gateway serve"
            time.sleep(0.1)
    finally:
        gw.stop()
