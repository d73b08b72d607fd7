"""The operator's CLI: `gateway accounts|keys|fx|history`, in-process (fast) and as real processes,
against the test Redis under a private key prefix, and once on the embedded Redis (AOF across processes)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gateway.cli_accounts
from gateway.cli import main
from gateway.config import load_config
from gateway.money import usd_to_nano
from gateway.store.accounts import TOKEN_RE
from gateway.store.connection import EmbeddedRedis, async_client
from gateway.store.keys import KeySpace
from gateway.store.ledger import Caller, Ledger
from tests.support import REPO, private_redis_prefix, redis_url

_configs: dict[tuple[str, ...], Any] = {}


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    """A key prefix of this module's own (the rate is global per prefix); deleted afterwards."""
    with private_redis_prefix() as p:
        yield p


@pytest.fixture(autouse=True)
def cli_env(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url())
    monkeypatch.setenv("GATEWAY_REDIS_PREFIX", prefix)
    monkeypatch.setenv("GATEWAY_ROOT", str(REPO))

    # Loading the config root takes ~0.7 s of YAML parsing; in-process runs share one load per environment
    # (the subprocess tests below load it for real).
    def cached(root: str) -> Any:
        names = ("REDIS_URL", "GATEWAY_REDIS_PREFIX", "GATEWAY_DATA_DIR")
        key = (root, *(os.environ.get(v, "\0") for v in names))
        if key not in _configs:
            _configs[key] = load_config(root)
        return _configs[key]

    monkeypatch.setattr(gateway.cli_accounts, "_load_config", cached)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc, out, err = run(capsys, *argv)
    assert rc == 0, err
    assert err == ""
    return out


def js(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    return json.loads(ok(capsys, *argv, "--json"))


def fail(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc, out, err = run(capsys, *argv)
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def new_account(capsys: pytest.CaptureFixture[str]) -> str:
    out = ok(capsys, "accounts", "create", "--login", f"{secrets.token_hex(5)}@example.com")
    assert re.fullmatch(r"acct_\w+\n", out)
    return out.strip()


def test_create_topup_in_rub_is_exact_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert ok(capsys, "fx", "set", "--usd-rub", "95") == "1 USD = 95 RUB\n"
    assert js(capsys, "fx", "show") == {"usd_rub": "95"}
    login = f"{secrets.token_hex(5)}@Example.com"
    created = js(capsys, "accounts", "create", "--login", login, "--admin")
    assert created["login"] == login.lower() and created["role"] == "admin" and created["status"] == "ACTIVE"
    assert created["balance_usd"] == "0" and created["balance_rub"] == "0.00"
    aid = created["id"]

    doc = js(capsys, "accounts", "topup", aid, "--rub", "950", "--reason", "invoice 7")
    assert doc["applied"] is True
    assert (doc["amount_usd"], doc["amount_rub"], doc["usd_rub_rate"]) == ("10", "950.00", "95")
    assert doc["account"]["balance_usd"] == "10" and doc["account"]["balance_rub"] == "950.00"
    out = ok(capsys, "accounts", "topup", aid, "--usd", "0.000000001")
    assert "credited 0.000000001 USD (0.00 RUB)" in out and "balance: 10.000000001 USD" in out

    show = js(capsys, "accounts", "show", aid)
    assert show["credited_usd"] == "10.000000001" and show["spent_usd"] == "0" and show["keys"] == 0
    text = ok(capsys, "accounts", "show", aid)
    assert "balance:" in text and "10.000000001 USD (950.00 RUB)" in text and "keys:" in text

    [small, rub] = js(capsys, "accounts", "ledger", aid)
    assert rub["kind"] == "topup" and rub["amount_usd"] == "10" and rub["actor"] == "cli"
    assert rub["reason"] == "invoice 7 (950 RUB at 95 RUB/USD)"
    assert small["amount_usd"] == "0.000000001"


def test_topup_with_an_operation_id_credits_once(capsys: pytest.CaptureFixture[str]) -> None:
    aid = new_account(capsys)
    first = js(capsys, "accounts", "topup", aid, "--usd", "5.25", "--operation-id", "pay-1")
    again = js(capsys, "accounts", "topup", aid, "--usd", "5.25", "--operation-id", "pay-1")
    assert first["applied"] is True and again["applied"] is False
    assert again["account"]["balance_usd"] == "5.25"
    out = ok(capsys, "accounts", "topup", aid, "--usd", "5.25", "--operation-id", "pay-1")
    assert "already applied" in out
    assert len(js(capsys, "accounts", "ledger", aid)) == 1


def test_correction_is_signed_and_needs_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    aid = new_account(capsys)
    ok(capsys, "accounts", "topup", aid, "--usd", "3")
    with pytest.raises(SystemExit) as exc:  # argparse: --reason is required
        main(["accounts", "correct", aid, "--usd", "1"])
    assert exc.value.code == 2
    assert "needs a reason" in fail(capsys, "accounts", "correct", aid, "--usd=-1", "--reason", "  ")
    out = ok(capsys, "accounts", "correct", aid, "--usd=-1.25", "--reason", "double charge refunded twice")
    assert f"corrected {aid}" in out and "-1.25 USD" in out and "balance: 1.75 USD" in out
    [corr, _] = js(capsys, "accounts", "ledger", aid)
    assert corr["kind"] == "correction" and corr["amount_usd"] == "-1.25"


def test_block_unblock_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    aid = new_account(capsys)
    assert ok(capsys, "accounts", "block", aid).endswith("is BLOCKED\n")
    assert js(capsys, "accounts", "show", aid)["status"] == "BLOCKED"
    assert js(capsys, "accounts", "unblock", aid)["status"] == "ACTIVE"
    login = js(capsys, "accounts", "show", aid)["login"]
    listed = js(capsys, "accounts", "list", "--query", login[:8])
    assert [a["id"] for a in listed] == [aid]
    table = ok(capsys, "accounts", "list", "--query", login[:8])
    assert table.splitlines()[0].split()[:3] == ["ID", "LOGIN", "STATUS"] and aid in table
    assert table.rstrip().endswith("1 account")


def test_keys_show_the_secret_once_and_never_again(capsys: pytest.CaptureFixture[str]) -> None:
    aid = new_account(capsys)
    text = ok(capsys, "keys", "create", aid, "--name", "ci", "--monthly-limit-usd", "12.5",
              "--models", "gpt-4o-mini,claude-*", "--rpm", "30", "--tpm", "10000")
    [secret] = re.findall(r"bt_\w+", text)
    assert TOKEN_RE.match(secret.encode()) and text.count(secret) == 1
    created = js(capsys, "keys", "create", aid)
    assert TOKEN_RE.match(created["key"].encode()) and created["key"].startswith(f"bt_{created['prefix']}_")

    keys = js(capsys, "keys", "list", aid)
    assert len(keys) == 2 and keys[0]["id"] == created["id"]  # newest first
    first = keys[1]
    assert (first["name"], first["monthly_limit_usd"], first["models"], first["rpm"], first["tpm"]) == \
        ("ci", "12.5", ["gpt-4o-mini", "claude-*"], 30, 10000)
    assert first["month_spent_usd"] == "0" and first["status"] == "ACTIVE"

    updated = js(capsys, "keys", "update", first["id"], "--no-monthly-limit", "--models", "", "--rpm", "0")
    assert (updated["monthly_limit_usd"], updated["models"], updated["rpm"], updated["tpm"]) == \
        (None, [], 0, 10000)
    assert "model pattern" in fail(capsys, "keys", "update", first["id"], "--models", "gpt 4")
    revoked = js(capsys, "keys", "revoke", created["id"])
    assert revoked["status"] == "REVOKED"

    outputs = [ok(capsys, *cmd) for cmd in (
        ("keys", "list", aid), ("keys", "list", aid, "--json"), ("accounts", "show", aid),
        ("accounts", "show", aid, "--json"), ("accounts", "list", "--json"), ("history", aid, "--json"),
        ("keys", "revoke", first["id"]), ("keys", "revoke", first["id"], "--json"))]
    for out in outputs:
        assert secret not in out and created["key"] not in out
    assert "REVOKED" in outputs[0] and "12.5" not in outputs[0]
    assert js(capsys, "accounts", "show", aid)["keys"] == 2


def test_history_table_and_json(capsys: pytest.CaptureFixture[str], prefix: str) -> None:
    aid = new_account(capsys)
    ok(capsys, "accounts", "topup", aid, "--usd", "1")
    kid = js(capsys, "keys", "create", aid)["id"]

    async def record() -> None:  # what the gateway's settle step writes for two requests
        client = async_client(redis_url())
        ledger = Ledger(client, KeySpace(prefix))
        for i, cost in enumerate((usd_to_nano("0.0012"), usd_to_nano("0.000345"))):
            rid = f"req_{i}"
            await ledger.admit(Caller(aid, kid), rid, "gpt-4o-mini", "/v1/chat/completions", 2 * cost)
            await ledger.settle(Caller(aid, kid), rid, cost, 30, True, {
                "key": kid, "model": "gpt-4o-mini", "provider": "openai", "endpoint": "/v1/chat/completions",
                "status": 200, "in": 12 + i, "cached": 0, "out": 18, "reasoning": 0, "ms": 345})
        await client.aclose()

    asyncio.run(record())
    rows = js(capsys, "history", aid)
    assert [r["cost_usd"] for r in rows] == ["0.000345", "0.0012"]
    newest = rows[0]
    assert (newest["model"], newest["provider"], newest["status"], newest["tokens_in"], newest["tokens_out"],
            newest["latency_ms"], newest["key"], newest["request_id"]) == \
        ("gpt-4o-mini", "openai", 200, 13, 18, 345, kid, "req_1")
    assert js(capsys, "history", aid, "--limit", "1", "--before", newest["id"]) == [rows[1]]
    table = ok(capsys, "history", aid).splitlines()
    assert table[0].split() == ["TIME", "(UTC)", "KEY", "MODEL", "PROVIDER", "ENDPOINT", "STATUS", "IN",
                                "OUT", "COST", "USD", "MS"]
    assert table[1].split()[2:] == [kid, "gpt-4o-mini", "openai", "/v1/chat/completions", "200", "13", "18",
                                    "0.000345", "345"]
    assert js(capsys, "accounts", "show", aid)["spent_usd"] == "0.001545"


def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    aid = new_account(capsys)
    login = js(capsys, "accounts", "show", aid)["login"]
    assert "already exists" in fail(capsys, "accounts", "create", "--login", login.upper())
    assert "email" in fail(capsys, "accounts", "create", "--login", "not-an-email")
    assert "no account acct_nope" in fail(capsys, "accounts", "show", "acct_nope")
    assert "no account" in fail(capsys, "accounts", "topup", "acct_nope", "--usd", "1")
    assert "no account" in fail(capsys, "keys", "create", "acct_nope")
    assert "no key" in fail(capsys, "keys", "revoke", "key_nope")
    assert "9 decimal places" in fail(capsys, "accounts", "topup", aid, "--usd", "1.0000000001")
    assert "positive" in fail(capsys, "accounts", "topup", aid, "--usd", "-1")
    assert "not a number" in fail(capsys, "accounts", "topup", aid, "--rub", "ten")
    assert "finite" in fail(capsys, "accounts", "topup", aid, "--usd", "Infinity")
    assert "positive" in fail(capsys, "fx", "set", "--usd-rub", "0")
    assert "model pattern" in fail(capsys, "keys", "create", aid, "--models", "gpt-4o,bad pattern")
    assert js(capsys, "accounts", "show", aid)["credited_usd"] == "0"
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    assert fail(capsys, "fx", "show").startswith("error: Redis: ")


def test_embedded_redis_persists_between_processes(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No REDIS_URL: the commands use the embedded redis-server. One already running (as under `gateway
    serve`) is used and left running; otherwise a command starts its own and stops it when done. The
    balance survives the restarts in the AOF."""
    data = tmp_path / "data"
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(data))
    server = EmbeddedRedis(data).start()
    try:
        aid = new_account(capsys)
        ok(capsys, "accounts", "topup", aid, "--usd", "4.2", "--operation-id", "op-1")
        assert server._alive()
    finally:
        server.stop()
    assert not EmbeddedRedis(data)._alive() and (data / "appendonly.aof").stat().st_size > 0

    # a new process, a new redis-server reading the AOF back; the one real `python -m gateway.cli` run
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "GATEWAY_ROOT")}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "--root", str(REPO), "accounts", "topup", aid,
                           "--usd", "4.2", "--operation-id", "op-1", "--json"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["applied"] is False and doc["account"]["balance_usd"] == "4.2"
    assert not EmbeddedRedis(data)._alive()  # the command stopped the server it started
