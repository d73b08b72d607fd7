"""The admin HTTP API (/admin/v1) on the real gateway under uvicorn, against the test Redis under a
private key prefix, with a fake OpenAI upstream for the requests whose history and charges it shows."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.store.accounts import TOKEN_RE
from tests.conftest import fake_env
from tests.support import REPO, config_env, private_redis_prefix, redis_url
from tests.support.gateway_server import GatewayServer

TOKEN = "adm_" + secrets.token_hex(16)
MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def redis_vars() -> Iterator[dict[str, str]]:
    """A key prefix of this module's own (the rate is global per prefix); deleted afterwards."""
    with private_redis_prefix() as prefix:
        yield {"REDIS_URL": redis_url(), "GATEWAY_REDIS_PREFIX": prefix}


@pytest.fixture(scope="module")
def server(fakes, redis_vars: dict[str, str]) -> Iterator[GatewayServer]:
    with GatewayServer(REPO, fake_env(fakes) | redis_vars | {"GATEWAY_ADMIN_TOKEN": TOKEN}) as gw:
        yield gw


@pytest.fixture(scope="module")
def api(server: GatewayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url + "/admin/v1", headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=20) as client:
        yield client


def seed_error(resp: httpx.Response, status: int, fragment: str = "") -> str:
    """Assert the seed's error shape; returns the message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"statusCode", "error", "message"}
    assert body["statusCode"] == status and body["error"] == httpx.codes.get_reason_phrase(status)
    assert fragment.lower() in body["message"].lower(), body["message"]
    return body["message"]


def new_account(api: httpx.Client, usd: str | None = None) -> dict[str, Any]:
    resp = api.post("/accounts", json={"login": f"{secrets.token_hex(5)}@example.com"})
    assert resp.status_code == 201, resp.text
    account = resp.json()
    if usd:
        assert api.post(f"/accounts/{account['id']}/topup", json={"usd": usd}).status_code == 200
    return account


def test_token_guard(server: GatewayServer, api: httpx.Client) -> None:
    url = server.base_url + "/admin/v1/accounts"
    seed_error(httpx.get(url), 401, "missing admin token")
    seed_error(httpx.get(url, headers={"Authorization": "Bearer wrong"}), 401, "invalid admin token")
    seed_error(httpx.get(url, headers={"Authorization": f"Basic {TOKEN}"}), 401, "invalid admin token")
    seed_error(httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}x"}), 401)
    # a stranger learns nothing: not which paths exist, not whether the body would parse
    seed_error(httpx.get(server.base_url + "/admin/v1/nothing"), 401)
    seed_error(httpx.post(url, content=b"{not json", headers={"Authorization": "Bearer x"}), 401)
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    # the admin token is no customer key: the /v1 API does not take it
    seed_error(httpx.get(server.base_url + "/v1/me", headers={"Authorization": f"Bearer {TOKEN}"}), 401)


def test_disabled_without_a_configured_token(redis_vars: dict[str, str]) -> None:
    with GatewayServer(REPO, config_env() | redis_vars) as gw:
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Bearer {TOKEN}"}):
            seed_error(httpx.get(gw.base_url + "/admin/v1/fx", headers=headers), 403,
                       "admin API disabled: set GATEWAY_ADMIN_TOKEN")


def test_create_and_top_up_in_usd_and_rub_exactly(api: httpx.Client) -> None:
    assert api.post("/fx", json={"usd_rub": "95"}).json() == {"usd_rub": 95.0}
    assert api.get("/fx").json() == {"usd_rub": 95.0}
    login = f"{secrets.token_hex(5)}@Example.COM"
    resp = api.post("/accounts", json={"login": login, "role": "admin"})
    assert resp.status_code == 201
    a = resp.json()
    assert (a["login"], a["role"], a["status"], a["balance_usd"], a["balance_rub"]) == \
        (login.lower(), "admin", "ACTIVE", 0.0, 0.0)

    rub = api.post(f"/accounts/{a['id']}/topup", json={"rub": 950, "reason": "invoice 12"}).json()
    assert rub["applied"] is True and (rub["amount_usd"], rub["amount_rub"]) == (10.0, 950.0)
    assert rub["account"]["balance_usd"] == 10.0 and rub["account"]["balance_rub"] == 950.0
    usd = api.post(f"/accounts/{a['id']}/topup", json={"usd": "0.1"}).json()
    assert usd["account"]["balance_usd"] == 10.1 and usd["account"]["balance_rub"] == 959.5
    usd = api.post(f"/accounts/{a['id']}/topup", json={"usd": 0.2}).json()  # a JSON number, read via its text
    assert usd["amount_usd"] == 0.2 and usd["account"]["credited_usd"] == 10.3

    shown = api.get(f"/accounts/{a['id']}").json()
    assert (shown["balance_usd"], shown["balance_rub"], shown["spent_usd"], shown["keys"]) == \
        (10.3, 978.5, 0.0, 0)
    ledger = api.get(f"/accounts/{a['id']}/ledger").json()["data"]
    assert [e["amount_usd"] for e in ledger] == [0.2, 0.1, 10.0]
    assert ledger[2]["reason"] == "invoice 12 (950 RUB at 95 RUB/USD)" and ledger[2]["actor"] == "admin-api"
    assert ledger[0]["credited_after_usd"] == 10.3

    listed = api.get("/accounts", params={"query": login.lower()[:10]}).json()
    assert listed["total"] == 1 and [x["id"] for x in listed["data"]] == [a["id"]]
    assert api.get("/accounts", params={"limit": 1, "offset": 0}).json()["data"].__len__() == 1


def test_duplicate_login_is_409(api: httpx.Client) -> None:
    login = new_account(api)["login"]
    seed_error(api.post("/accounts", json={"login": login.upper()}), 409, "already exists")
    seed_error(api.post("/accounts", json={"login": "nobody"}), 400, "email")
    seed_error(api.post("/accounts", json={"login": "x@example.com", "role": "root"}), 400, "role")


def test_topup_with_an_operation_id_credits_once_even_concurrently(api: httpx.Client) -> None:
    aid = new_account(api)["id"]
    body = {"usd": "3", "operation_id": "pay-42"}
    first = api.post(f"/accounts/{aid}/topup", json=body).json()
    again = api.post(f"/accounts/{aid}/topup", json=body).json()
    assert (first["applied"], again["applied"], again["account"]["balance_usd"]) == (True, False, 3.0)

    async def race() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=api.base_url, headers=dict(api.headers), timeout=20) as client:
            race = {"usd": "1", "operation_id": "race"}
            rs = await asyncio.gather(*(client.post(f"/accounts/{aid}/topup", json=race) for _ in range(20)))
            return [r.json() for r in rs]

    results = asyncio.run(race())
    assert sum(r["applied"] for r in results) == 1
    assert api.get(f"/accounts/{aid}").json()["balance_usd"] == 4.0
    assert len(api.get(f"/accounts/{aid}/ledger").json()["data"]) == 2


def test_corrections_need_a_reason_and_may_be_negative(api: httpx.Client) -> None:
    aid = new_account(api, usd="5")["id"]
    seed_error(api.post(f"/accounts/{aid}/corrections", json={"usd": "-1"}), 400, "reason")
    seed_error(api.post(f"/accounts/{aid}/corrections", json={"usd": "-1", "reason": "  "}), 400,
               "needs a reason")
    seed_error(api.post(f"/accounts/{aid}/corrections", json={"usd": "0", "reason": "noop"}), 400, "zero")
    done = api.post(f"/accounts/{aid}/corrections", json={"usd": "-1.5", "reason": "refund reversed"}).json()
    assert done["applied"] and done["amount_usd"] == -1.5 and done["account"]["balance_usd"] == 3.5
    assert api.get(f"/accounts/{aid}/ledger").json()["data"][0]["kind"] == "correction"
    seed_error(api.post(f"/accounts/{aid}/topup", json={"usd": "-1"}), 400, "positive")
    seed_error(api.post(f"/accounts/{aid}/topup", json={"usd": "1", "rub": "95"}), 400, "exactly one")
    seed_error(api.post(f"/accounts/{aid}/topup", json={}), 400, "exactly one")
    assert api.get(f"/accounts/{aid}").json()["balance_usd"] == 3.5


def test_keys_show_the_secret_once_then_limits_and_revocation(server: GatewayServer,
                                                              api: httpx.Client) -> None:
    aid = new_account(api, usd="2")["id"]
    resp = api.post(f"/accounts/{aid}/keys", json={"name": "ci", "monthly_limit_usd": "1.5",
                                                   "models": ["gpt-4o-mini", "claude-*"], "rpm": 60})
    assert resp.status_code == 201
    key = resp.json()
    secret = key["key"]
    assert TOKEN_RE.match(secret.encode()) and secret.startswith(f"bt_{key['prefix']}_")
    assert (key["name"], key["monthly_limit_usd"], key["models"], key["rpm"], key["tpm"], key["status"]) == \
        ("ci", 1.5, ["gpt-4o-mini", "claude-*"], 60, 0, "ACTIVE")
    me = httpx.get(server.base_url + "/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["token"]["id"] == key["id"]

    patched = api.patch(f"/keys/{key['id']}", json={"monthly_limit_usd": 2, "tpm": 1000}).json()
    assert (patched["monthly_limit_usd"], patched["tpm"], patched["rpm"], patched["models"]) == \
        (2.0, 1000, 60, ["gpt-4o-mini", "claude-*"])
    patched = api.patch(f"/keys/{key['id']}", json={"monthly_limit_usd": None, "models": []}).json()
    assert (patched["monthly_limit_usd"], patched["models"], patched["tpm"]) == (None, [], 1000)
    assert api.patch(f"/keys/{key['id']}", json={}).json() == patched
    seed_error(api.patch(f"/keys/{key['id']}", json={"rpm": -1}), 400, "rpm")
    seed_error(api.patch(f"/keys/{key['id']}", json={"rpm": "5"}), 400, "rpm")
    seed_error(api.patch(f"/keys/{key['id']}", json={"models": ["gpt 4"]}), 400, "model pattern")
    seed_error(api.patch(f"/keys/{key['id']}", json={"monthly_limit_usd": "-1"}), 400, "negative")

    revoked = api.post(f"/keys/{key['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "REVOKED"
    me = httpx.get(server.base_url + "/v1/me", headers={"Authorization": f"Bearer {secret}"})
    seed_error(me, 401, "revoked")
    listed = api.get(f"/accounts/{aid}/keys")
    assert [k["status"] for k in listed.json()["data"]] == ["REVOKED"]

    pages = [listed, revoked, api.get(f"/accounts/{aid}"), api.get(f"/accounts/{aid}/ledger"),
             api.get(f"/accounts/{aid}/history"), api.get("/accounts", params={"limit": 1000})]
    for page in pages:
        assert page.status_code == 200
        assert secret not in page.text and secret.split("_")[2] not in page.text
    assert api.get(f"/accounts/{aid}").json()["keys"] == 1


def test_history_and_charges_of_a_real_request(server: GatewayServer, api: httpx.Client, fakes) -> None:
    aid = new_account(api, usd="1")["id"]
    secret = api.post(f"/accounts/{aid}/keys", json={}).json()["key"]
    sdk = openai.OpenAI(base_url=server.base_url + "/v1", api_key=secret, max_retries=0, timeout=20)
    for _ in range(2):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=20)

    history = api.get(f"/accounts/{aid}/history").json()
    rows = history["data"]
    assert len(rows) == 2 and history["next_before"] is None
    row = rows[0]
    assert (row["model"], row["provider"], row["endpoint"], row["status"]) == \
        ("gpt-4o-mini", "openai", "/v1/chat/completions", 200)
    assert row["tokens_in"] > 0 and row["tokens_out"] > 0 and row["cost_usd"] > 0 and row["latency_ms"] >= 0
    assert row["cost_rub"] == pytest.approx(row["cost_usd"] * 95, abs=0.01)
    account = api.get(f"/accounts/{aid}").json()
    assert account["spent_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-9)
    assert account["requests"] == 2 and account["reserved_usd"] == 0.0
    assert api.get(f"/accounts/{aid}/keys").json()["data"][0]["requests"] == 2

    page = api.get(f"/accounts/{aid}/history", params={"limit": 1}).json()
    assert [r["id"] for r in page["data"]] == [rows[0]["id"]] and page["next_before"] == rows[0]["id"]
    older = api.get(f"/accounts/{aid}/history", params={"limit": 1, "before": page["next_before"]}).json()
    assert [r["id"] for r in older["data"]] == [rows[1]["id"]]

    assert api.post(f"/accounts/{aid}/block").json()["status"] == "BLOCKED"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=20)
    seed_error(refused.value.response, 403, "account is blocked")
    assert api.post(f"/accounts/{aid}/unblock").json()["status"] == "ACTIVE"
    sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=20)
    rows = api.get(f"/accounts/{aid}/history").json()["data"]
    assert [r["status"] for r in rows] == [200, 403, 200, 200]
    assert rows[1]["rejected"] == "account is blocked" and rows[1]["cost_usd"] == 0.0


def test_bad_input_is_400_in_the_seed_shape(api: httpx.Client) -> None:
    aid = new_account(api)["id"]
    json_headers = {"Content-Type": "application/json"}
    seed_error(api.post("/accounts", content=b'{"login": ', headers=json_headers), 400, "malformed JSON")
    seed_error(api.post("/accounts", content=b"[1, 2]", headers=json_headers), 400, "JSON object")
    seed_error(api.post("/accounts"), 400, "body is required")
    seed_error(api.post("/accounts", json={"login": 5}), 400, "login")
    seed_error(api.post("/accounts", json={"email": "a@b.c"}), 400, "login: Field required")
    seed_error(api.post(f"/accounts/{aid}/topup", json={"usd": "1", "amount": "1"}), 400, "amount")
    seed_error(api.post(f"/accounts/{aid}/topup", json={"usd": True}), 400, "usd")
    seed_error(api.post(f"/accounts/{aid}/topup", json={"usd": [1]}), 400, "usd")
    seed_error(api.post(f"/accounts/{aid}/topup", json={"usd": "ten"}), 400, "not a number")
    seed_error(api.post(f"/accounts/{aid}/topup", json={"usd": "NaN"}), 400, "finite")
    seed_error(api.post(f"/accounts/{aid}/topup", content=b'{"usd": Infinity}', headers=json_headers), 400,
               "finite")
    seed_error(api.post(f"/accounts/{aid}/topup", json={"usd": "0.0000000001"}), 400, "9 decimal")
    seed_error(api.post(f"/accounts/{aid}/topup", json={"usd": "1e12"}), 400, "at most")
    seed_error(api.post(f"/accounts/{aid}/keys", json={"rpm": 1.5}), 400, "rpm")
    seed_error(api.post(f"/accounts/{aid}/keys", json={"models": "gpt-4o"}), 400, "models")
    seed_error(api.post("/fx", json={"usd_rub": 0}), 400, "positive")
    seed_error(api.post("/fx", json={"usd_rub": "-95"}), 400, "positive")
    seed_error(api.get("/accounts", params={"limit": 0}), 400, "limit")
    seed_error(api.get(f"/accounts/{aid}/history", params={"before": "x"}), 400, "before")
    seed_error(api.delete(f"/accounts/{aid}"), 405)
    assert api.get(f"/accounts/{aid}").json()["credited_usd"] == 0.0
    assert api.get("/fx").json() == {"usd_rub": 95.0}


def test_unknown_things_are_404_in_the_seed_shape(api: httpx.Client) -> None:
    seed_error(api.get("/accounts/acct_000000000000"), 404, "no account acct_000000000000")
    seed_error(api.post("/accounts/acct_000000000000/topup", json={"usd": "1"}), 404, "no account")
    seed_error(api.post("/accounts/acct_000000000000/corrections", json={"usd": "1", "reason": "x"}), 404)
    seed_error(api.post("/accounts/acct_000000000000/block"), 404)
    seed_error(api.get("/accounts/acct_000000000000/keys"), 404)
    seed_error(api.post("/accounts/acct_000000000000/keys", json={}), 404)
    seed_error(api.get("/accounts/acct_000000000000/history"), 404)
    seed_error(api.get("/accounts/acct_000000000000/ledger"), 404)
    seed_error(api.get("/accounts/acct%7Bx%7D"), 404, "no account")
    seed_error(api.post("/keys/key_000000000000/revoke"), 404, "no key")
    seed_error(api.patch("/keys/key_000000000000", json={"rpm": 1}), 404, "no key")
    seed_error(api.get("/nothing/here"), 404, "no such endpoint")
