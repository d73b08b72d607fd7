"""Paid path end to end: keys, admission, exact charges, history, limits, errors (seed §1, §2, §12, §14)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import httpx
import openai
import orjson
import pytest
import redis
import yaml

from gateway.money import NANO, usd_to_nano
from gateway.proxy.endpoints import ENDPOINTS
from gateway.store.keys import KeySpace
from gateway.usage import Usage
from tests.support import REPO, chat_model_for
from tests.support.gateway_server import GatewayServer, accounts_call, make_customer

MSG = [{"role": "user", "content": "Привет, как дела?"}]


def sdk(gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0, timeout=30)


def history(gateway, account_id: str, limit: int = 1000) -> list[dict]:
    return accounts_call(gateway, lambda acc: acc.history(account_id, limit))


def account(gateway, account_id: str):
    return accounts_call(gateway, lambda acc: acc.account(account_id))


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "xai"])
def test_charge_is_the_price_of_reported_usage(provider: str, gateway, fakes) -> None:
    c = make_customer(gateway, usd="5")
    model = chat_model_for(provider)
    resp = sdk(gateway, c.secret).chat.completions.create(model=model, messages=MSG, max_tokens=40)
    u = resp.usage
    expected = gateway.app.prices.cost(model, Usage(
        input_tokens=u.prompt_tokens, output_tokens=u.completion_tokens,
        cached_input_tokens=(u.prompt_tokens_details.cached_tokens or 0) if u.prompt_tokens_details else 0,
        reasoning_tokens=(u.completion_tokens_details.reasoning_tokens or 0) if u.completion_tokens_details else 0))
    assert expected > 0
    [entry] = history(gateway, c.account_id)
    assert entry["cost"] == expected
    assert entry["status"] == 200 and entry["model"] == model and entry["provider"] == provider
    assert entry["in"] == u.prompt_tokens and entry["out"] == u.completion_tokens
    assert entry["key"] == c.key_id and entry["endpoint"] == "/v1/chat/completions"
    assert entry["ms"] >= 0 and entry["rid"].startswith("req_")
    a = account(gateway, c.account_id)
    assert a.credited - a.spent == usd_to_nano("5") - expected
    assert a.reserved == 0


def test_balance_me_usage_fields(gateway, fakes) -> None:
    c = make_customer(gateway, usd="10", monthly_limit=usd_to_nano("50"))
    client = sdk(gateway, c.secret)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=20)
    spent = sum(e["cost"] for e in history(gateway, c.account_id))
    h = {"Authorization": f"Bearer {c.secret}"}
    bal = httpx.get(f"{gateway.base_url}/v1/balance", headers=h).json()
    rate = Decimal(str(bal["usd_rub_rate"]))
    assert bal["account_balance_usd"] == 10.0
    assert Decimal(str(bal["account_balance_rub"])) == 10 * rate
    assert Decimal(str(bal["spend_total_usd"])) == Decimal(spent) / NANO
    assert Decimal(str(bal["remaining_balance_usd"])) == Decimal(usd_to_nano("10") - spent) / NANO
    assert bal["monthly_limit_usd"] == 50.0
    assert Decimal(str(bal["spend_month_usd"])) == Decimal(spent) / NANO
    assert Decimal(str(bal["remaining_month_usd"])) == Decimal(usd_to_nano("50") - spent) / NANO
    me = httpx.get(f"{gateway.base_url}/v1/me", headers=h).json()
    assert me["user"]["id"] == c.account_id and me["user"]["status"] == "ACTIVE" and "@" in me["user"]["login"]
    assert me["token"]["id"] == c.key_id and me["token"]["prefix"] == c.secret[3:11] and me["token"]["status"] == "ACTIVE"
    assert me["usage"] == {"requestsTotal": 3, "spendTotalUsd": float(Decimal(spent) / NANO),
                           "spendMonthUsd": float(Decimal(spent) / NANO)}
    usage = httpx.get(f"{gateway.base_url}/v1/usage", headers=h).json()
    assert usage["total"]["requests"] == 3 and usage["month"]["requests"] == 3
    today = usage["period"]["to"]
    period = httpx.get(f"{gateway.base_url}/v1/usage", params={"from": today, "to": today}, headers=h).json()
    assert period["period"]["days"] == [{"date": today, "requests": 3, "spend_usd": float(Decimal(spent) / NANO),
                                         "spend_rub": pytest.approx(float(Decimal(spent) / NANO * rate), abs=0.01)}]
    bad = httpx.get(f"{gateway.base_url}/v1/usage", params={"from": "yesterday"}, headers=h)
    assert bad.status_code == 400 and bad.json()["statusCode"] == 400


@pytest.mark.parametrize("header, message", [
    (None, "missing token"),
    ("Bearer nope", "invalid token"),
    ("Basic bt_abcdefgh_" + "a" * 32, "invalid token"),
    ("Bearer bt_abcdefgh_" + "a" * 32, "invalid token"),
])
def test_401_for_missing_or_unknown_token(gateway, fakes, header, message) -> None:
    headers = {"Authorization": header} if header else {}
    r = httpx.post(f"{gateway.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                   headers=headers)
    assert r.status_code == 401
    assert r.json()["statusCode"] == 401 and r.json()["error"] == "Unauthorized"
    assert message in r.json()["message"]
    assert not fakes["openai"].requests


def test_revoked_key_gets_401_at_once(gateway, fakes) -> None:
    c = make_customer(gateway, usd="1")
    client = sdk(gateway, c.secret)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10)
    accounts_call(gateway, lambda acc: acc.revoke_key(c.key_id))
    with pytest.raises(openai.AuthenticationError) as exc:  # well within the 2 s cache TTL
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10)
    assert exc.value.response.json()["message"] == "token revoked"
    r = httpx.get(f"{gateway.base_url}/v1/balance", headers={"Authorization": f"Bearer {c.secret}"})
    assert r.status_code == 401
    assert len(fakes["openai"].requests) == 1


def test_insufficient_balance_is_403_and_charges_nothing(gateway, fakes) -> None:
    c = make_customer(gateway, usd="0")
    with pytest.raises(openai.PermissionDeniedError) as exc:
        sdk(gateway, c.secret).chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10)
    assert exc.value.response.json() == {"statusCode": 403, "error": "Forbidden",
                                         "message": "insufficient balance: top up your account"}
    assert not fakes["openai"].requests
    [entry] = history(gateway, c.account_id)
    assert entry["status"] == 403 and entry["cost"] == 0


@pytest.mark.parametrize("stream", [False, True])
def test_request_the_provider_cannot_take_releases_its_reservation(gateway, fakes, stream: bool) -> None:
    """The upstream request is prepared while Redis runs the admission: a request that cannot be
    translated (Anthropic takes no n > 1) is admitted, then recorded as a 400 at no cost, and what it
    reserved is released at once."""
    c = make_customer(gateway, usd="2")
    with pytest.raises(openai.BadRequestError) as exc:
        sdk(gateway, c.secret).chat.completions.create(model=chat_model_for("anthropic"), n=2, messages=MSG,
                                                       max_tokens=5, stream=stream)
    assert "n > 1" in exc.value.response.json()["message"]
    assert not fakes["anthropic"].requests
    [entry] = history(gateway, c.account_id)
    assert entry["status"] == 400 and entry["cost"] == 0 and "n > 1" in entry["error"]
    a = account(gateway, c.account_id)
    assert a.spent == 0 and a.reserved == 0


def test_refused_admission_wins_over_a_request_the_provider_cannot_take(gateway, fakes) -> None:
    c = make_customer(gateway, usd="0")
    with pytest.raises(openai.PermissionDeniedError) as exc:
        sdk(gateway, c.secret).chat.completions.create(model=chat_model_for("anthropic"), n=2, messages=MSG,
                                                       max_tokens=5)
    assert exc.value.response.json()["message"] == "insufficient balance: top up your account"
    [entry] = history(gateway, c.account_id)
    assert entry["status"] == 403 and entry["cost"] == 0
    assert account(gateway, c.account_id).reserved == 0


def test_monthly_limit_crossing(gateway, fakes) -> None:
    body = {"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 10}
    raw = orjson.dumps(body)
    reserve = gateway.app.billing.reservation(gateway.app.router.resolve("gpt-4o-mini", ENDPOINTS["chat"]), body, raw)
    c = make_customer(gateway, usd="5", monthly_limit=reserve)  # room for exactly one request's maximum
    h = {"Authorization": f"Bearer {c.secret}", "Content-Type": "application/json"}
    first = httpx.post(f"{gateway.base_url}/v1/chat/completions", content=raw, headers=h)
    assert first.status_code == 200
    second = httpx.post(f"{gateway.base_url}/v1/chat/completions", content=raw, headers=h)
    assert second.status_code == 403
    assert second.json()["message"] == "monthly limit exceeded for this key"
    assert len(fakes["openai"].requests) == 1


def test_model_allow_list(gateway, fakes) -> None:
    c = make_customer(gateway, usd="5", models=["gpt-4o*", "gemini-2.5-flash"])
    client = sdk(gateway, c.secret)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5).choices
    assert client.chat.completions.create(model="gemini-2.5-flash", messages=MSG, max_tokens=5).choices
    for model in ("claude-sonnet-4-5", "gemini-2.5-pro", "gpt-4.1"):
        with pytest.raises(openai.PermissionDeniedError) as exc:
            client.chat.completions.create(model=model, messages=MSG, max_tokens=5)
        assert exc.value.response.json()["message"] == f"model '{model}' is not allowed for this key"


def test_rate_limit_429_with_headers(gateway, fakes) -> None:
    c = make_customer(gateway, usd="5", rpm=2, tpm=100000)
    client = sdk(gateway, c.secret)
    ok = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    assert ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"
    assert ok.headers["x-ratelimit-limit-tokens"] == "100000"
    assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    r = exc.value.response
    assert r.json()["statusCode"] == 429 and "requests per minute" in r.json()["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(fakes["openai"].requests) == 2


def test_limit_set_on_a_key_in_use_counts_from_then(gateway, fakes) -> None:
    """A key without limits keeps no rate window; when the operator sets one, it counts from then on."""
    c = make_customer(gateway, usd="5")
    client = sdk(gateway, c.secret)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    accounts_call(gateway, lambda acc: acc.update_key_limits(c.key_id, rpm=2))
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)


def test_tokens_per_minute_limit(gateway, fakes) -> None:
    c = make_customer(gateway, usd="5", tpm=1)
    client = sdk(gateway, c.secret)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)  # uses > 1 token
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    assert "tokens per minute" in exc.value.response.json()["message"]


def test_failed_upstream_costs_nothing_and_is_recorded(gateway, fakes) -> None:
    c = make_customer(gateway, usd="2")
    fakes["anthropic"].fail(500)
    with pytest.raises(openai.InternalServerError):
        sdk(gateway, c.secret).chat.completions.create(model=chat_model_for("anthropic"), messages=MSG, max_tokens=5)
    [entry] = history(gateway, c.account_id)
    assert entry["status"] == 503 and entry["cost"] == 0 and "answered HTTP 500" in entry["error"]
    a = account(gateway, c.account_id)
    assert a.spent == 0 and a.reserved == 0 and a.requests == 1


def test_rub_and_usd_after_fx_set(gateway, fakes) -> None:
    c = make_customer(gateway, usd="12.5")
    old = accounts_call(gateway, lambda acc: acc.usd_rub())
    try:
        accounts_call(gateway, lambda acc: acc.set_usd_rub(Decimal("101.25")))
        bal = httpx.get(f"{gateway.base_url}/v1/balance", headers={"Authorization": f"Bearer {c.secret}"}).json()
        assert bal["account_balance_usd"] == 12.5
        assert bal["account_balance_rub"] == 1265.63  # 12.5 × 101.25 = 1265.625 → to the kopeck
        assert bal["usd_rub_rate"] == 101.25
    finally:
        accounts_call(gateway, lambda acc: acc.set_usd_rub(old))


def test_concurrent_requests_never_overspend(gateway, fakes) -> None:
    """200 concurrent requests on a balance that covers 50 maximum-cost requests."""
    body = {"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 200}
    raw = orjson.dumps(body)
    reserve = gateway.app.billing.reservation(gateway.app.router.resolve("gpt-4o-mini", ENDPOINTS["chat"]), body, raw)
    c = make_customer(gateway, usd=str(Decimal(reserve * 50) / NANO))
    fakes["openai"].delay_ms = 1500  # every admission happens while the first 50 are in flight

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=gateway.base_url, limits=limits, timeout=60) as http:
            h = {"Authorization": f"Bearer {c.secret}", "Content-Type": "application/json"}
            return await asyncio.gather(*(http.post("/v1/chat/completions", content=raw, headers=h) for _ in range(200)))

    responses = asyncio.run(fire())
    codes = [r.status_code for r in responses]
    ok = codes.count(200)
    assert 1 <= ok <= 50
    assert codes.count(403) == 200 - ok
    assert all(r.json()["message"] == "insufficient balance: top up your account" for r in responses if r.status_code == 403)
    entries = history(gateway, c.account_id)
    assert len(entries) == 200
    a = account(gateway, c.account_id)
    assert a.reserved == 0
    assert a.spent == sum(e["cost"] for e in entries)
    assert a.credited - a.spent == reserve * 50 - sum(e["cost"] for e in entries)
    assert a.credited - a.spent >= 0
    assert len(fakes["openai"].requests) == ok


def test_secrets_never_reach_logs_or_history(gateway, fakes, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    c = make_customer(gateway, usd="1")
    client = sdk(gateway, c.secret)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    fakes["openai"].fail(500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    fakes["anthropic"].reply(raw=b"not json at all")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=chat_model_for("anthropic"), messages=MSG, max_tokens=5)
    stored = orjson.dumps(history(gateway, c.account_id)).decode()
    for secret in (c.secret, c.secret[12:], fakes["openai"].api_key):
        assert secret not in caplog.text
        assert secret not in stored


def test_free_model_is_admitted_and_settled_at_zero(gateway, fakes) -> None:
    """A model priced `free: true` reserves 0 and costs 0 (a zero that Lua must not write as '-0')."""
    free = next(m.name for m in gateway.config.enabled_models
                if gateway.app.prices.rate(m.name).free and m.kind == "chat")
    c = make_customer(gateway, usd="0")
    resp = sdk(gateway, c.secret).chat.completions.create(model=free, messages=MSG, max_tokens=5)
    assert resp.choices[0].message.content
    [entry] = history(gateway, c.account_id)
    assert entry["status"] == 200 and entry["cost"] == 0
    a = account(gateway, c.account_id)
    assert a.spent == 0 and a.reserved == 0 and a.requests == 1


@pytest.mark.parametrize("stream", [False, True])
def test_the_charge_is_in_redis_before_the_answer_leaves(stream: bool, gateway_env) -> None:
    """The answer does not wait for Redis to confirm its settlement, but the settlement is written
    first: when the last bytes of the answer are handed to the server, a Redis read on another connection
    (made from inside that send, blocking the worker on purpose) already sees the charge."""
    seen: list[tuple[int, int]] = []
    watched: dict[str, str] = {}

    def watch(app):
        async def wrapped(scope, receive, send):
            async def spy(message):
                if (scope["type"] == "http" and scope["path"] == "/v1/chat/completions"
                        and message["type"] == "http.response.body" and not message.get("more_body")):
                    ks, aid = KeySpace(gateway_env["GATEWAY_REDIS_PREFIX"]), watched["account"]
                    r = redis.Redis.from_url(gateway_env["REDIS_URL"])
                    try:
                        seen.append((r.xlen(ks.history(aid)), int(r.hget(ks.account(aid), "spent") or 0)))
                    finally:
                        r.close()
                await send(message)
            await app(scope, receive, spy)
        return wrapped

    with GatewayServer(REPO, gateway_env, wrap=watch) as gw:
        c = make_customer(gw, usd="5")
        watched["account"] = c.account_id
        client = sdk(gw, c.secret)
        for _ in range(3):
            if stream:
                assert list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=20,
                                                           stream=True))
            else:
                client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=20)
        costs = [e["cost"] for e in sorted(history(gw, c.account_id), key=lambda e: e["t"])]
    assert len(costs) == 3 and all(cost > 0 for cost in costs)
    # the n-th answer, as it left, found n calls recorded and charged
    assert seen == [(n, sum(costs[:n])) for n in (1, 2, 3)]


def test_a_reservation_of_a_hundred_thousand_dollars_is_released_in_full(gateway_env, tmp_path) -> None:
    """The reservation record holds the amount as the digits it arrived as: Lua prints a number of
    10^14 or more (nano-USD: $100,000) as 1e+14, which the settlement would not read back, and the
    account's reserved balance would keep that much for good."""
    from tests.support.gateway_server import copy_root

    root = copy_root(tmp_path)
    prices = next(p for p in (root / "pricing.d").glob("*.yaml")
                  if "gpt-4o-mini" in (yaml.safe_load(p.read_text()).get("models") or {}))
    doc = yaml.safe_load(prices.read_text())
    doc["models"]["gpt-4o-mini"]["per_request"] = "250000"
    prices.write_text(yaml.safe_dump(doc))
    with GatewayServer(root, gateway_env) as gw:
        c = make_customer(gw, usd="1000000")
        resp = sdk(gw, c.secret).chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
        assert resp.choices[0].message.content
        [entry] = history(gw, c.account_id)
        a = account(gw, c.account_id)
    assert entry["status"] == 200 and entry["cost"] >= 250_000 * NANO
    assert a.reserved == 0 and a.spent == entry["cost"]
