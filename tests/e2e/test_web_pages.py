"""What the cabinet and the console show, against the same code paths the API uses: the dashboard against
/v1/balance and /v1/usage, the history (filters, pages, CSV) against the requests made, the usage chart,
the price list against pricing.d/, and the operator's console actions against the ledger and the API."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.web import Cabinet, Stack, create_key, make_admin, usd_of, web_stack

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def stack(fakes: Any) -> Iterator[Stack]:
    with web_stack(fakes) as s:
        yield s


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Iterator[Cabinet]:
    with Cabinet(stack.base_url) as c:
        assert c.login(make_admin(stack)).status_code == 303
        yield c



@pytest.fixture(scope="module")
def busy(stack: Stack, admin: Cabinet) -> Iterator[dict[str, Any]]:
    """A customer with $20, two keys and 57 requests (two models, one refused) in the history."""
    c = Cabinet(stack.base_url)
    assert c.signup().status_code == 303
    assert admin.post(f"/console/accounts/{c.account_id}/topup",
                      {"amount": "20", "currency": "USD", "reason": "test funds", "nonce": "busy-1"}).status_code == 303
    k1, s1 = create_key(c, "alpha")
    k2, s2 = create_key(c, "beta", models="claude-*")
    with httpx.Client(base_url=stack.base_url + "/v1", timeout=20) as api:
        for _ in range(40):
            r = api.post("/chat/completions", headers={"Authorization": f"Bearer {s1}"},
                         json={"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 16})
            assert r.status_code == 200, r.text
        for _ in range(15):
            r = api.post("/chat/completions", headers={"Authorization": f"Bearer {s2}"},
                         json={"model": "claude-sonnet-4-5", "messages": MSG, "max_tokens": 16})
            assert r.status_code == 200, r.text
        refused = api.post("/chat/completions", headers={"Authorization": f"Bearer {s2}"},
                           json={"model": "gpt-4o-mini", "messages": MSG})
        assert refused.status_code == 403
        last = api.post("/chat/completions", headers={"Authorization": f"Bearer {s1}"},
                        json={"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 16})
        assert last.status_code == 200
    yield {"cabinet": c, "k1": k1, "k2": k2, "s1": s1, "s2": s2, "last_request": last.headers["x-request-id"]}
    c.close()


def test_dashboard_is_the_api_numbers(stack: Stack, busy: dict[str, Any]) -> None:
    c, s1 = busy["cabinet"], busy["s1"]
    page = c.get("/").text
    balance = httpx.get(stack.base_url + "/v1/balance", headers={"Authorization": f"Bearer {s1}"}).json()
    usage = httpx.get(stack.base_url + "/v1/usage", headers={"Authorization": f"Bearer {s1}"}).json()
    assert Decimal(usd_of(page, "balance")) == Decimal(str(balance["remaining_balance_usd"]))
    assert Decimal(usd_of(page, "total")) == Decimal(str(balance["spend_total_usd"]))
    assert Decimal(usd_of(page, "month")) == Decimal(str(usage["month"]["spend_usd"]))
    assert Decimal(usd_of(page, "balance")) + Decimal(usd_of(page, "total")) == Decimal(20)
    assert f'data-requests="{usage["period"]["requests"]}"' in page and 'data-requests="56"' in page
    # (the refused request is in the history but was never charged nor counted)
    assert "of $20.00 topped up" in page
    # both currencies, the RUB at the operator's rate, to the kopeck
    rub = Decimal(usd_of(page, "balance")) * 95
    assert f"{rub.quantize(Decimal('0.01')):,.2f}\u00a0₽" in page
    assert "alpha" in page and "beta" in page and "Remaining budget by key" in page


def test_history_filters_pages_and_csv(stack: Stack, busy: dict[str, Any]) -> None:
    c, k1, k2 = busy["cabinet"], busy["k1"], busy["k2"]
    first = c.get("/history").text
    assert first.count("data-request-id=") == 50
    assert f'data-request-id="{busy["last_request"]}"' in first     # newest first
    older = re.search(r'href="/history\?([^"]+)" id="older"', first).group(1)  # type: ignore[union-attr]
    second = c.get(f"/history?{older.replace('&amp;', '&')}").text
    assert second.count("data-request-id=") == 7 and 'id="older"' not in second and "← Newest" in second
    assert "model is not allowed for this key" in first and "model is not allowed" not in second
    only_beta = c.get(f"/history?key={k2}").text
    assert only_beta.count("data-request-id=") == 16
    only_claude = c.get("/history?model=claude-sonnet-4-5").text
    assert only_claude.count("data-request-id=") == 15 and "gpt-4o-mini</td>" not in only_claude
    both = c.get(f"/history?key={k1}&model=claude-sonnet-4-5").text
    assert "No requests match these filters." in both
    today = datetime.now(UTC).date()
    assert c.get(f"/history?from={today}&to={today}").text.count("data-request-id=") == 50
    tomorrow = today + timedelta(days=1)
    assert "No requests match" in c.get(f"/history?from={tomorrow}").text
    assert "No requests match" in c.get(f"/history?to={today - timedelta(days=1)}").text
    # CSV: every matching request with its cost in USD and RUB, summing to the spend
    resp = c.get("/history.csv")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 57 and rows[0]["request_id"] == busy["last_request"]
    assert {r["key_name"] for r in rows} == {"alpha", "beta"}
    spent = sum(Decimal(r["cost_usd"]) for r in rows)
    assert spent == Decimal(usd_of(c.get("/").text, "total")) > 0
    assert all(Decimal(r["cost_rub"]) == (Decimal(r["cost_usd"]) * 95).quantize(Decimal("0.01")) for r in rows)
    refused = [r for r in rows if r["status"] == "403"]
    assert len(refused) == 1 and refused[0]["cost_usd"] == "0" and "not allowed" in refused[0]["error"]
    beta = list(csv.DictReader(io.StringIO(c.get(f"/history.csv?key={k2}&model=claude-sonnet-4-5").text)))
    assert len(beta) == 15
    # one row's cost as the page shows it
    row = re.search(rf'data-request-id="{busy["last_request"]}".*?data-usd="([^"]+)"', first, re.DOTALL)
    assert row and Decimal(row.group(1)) == Decimal(rows[0]["cost_usd"])


def test_csv_cells_never_run_as_formulas(stack: Stack, admin: Cabinet) -> None:
    with Cabinet(stack.base_url) as c:
        assert c.signup().status_code == 303
        admin.post(f"/console/accounts/{c.account_id}/topup", {"amount": "1", "currency": "USD", "reason": "test",
                                                                "nonce": "f" + c.account_id})
        _, secret = create_key(c, '=HYPERLINK("http://evil.example")')
        openai.OpenAI(base_url=stack.base_url + "/v1", api_key=secret, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=MSG)
        rows = list(csv.DictReader(io.StringIO(c.get("/history.csv").text)))
        assert [r["key_name"] for r in rows] == ['\'=HYPERLINK("http://evil.example")']


def test_usage_chart_and_totals(stack: Stack, busy: dict[str, Any]) -> None:
    c = busy["cabinet"]
    today = datetime.now(UTC).date()
    start = today - timedelta(days=13)
    page = c.get(f"/usage?from={start}&to={today}").text
    assert page.count('<svg class="chart"') == 2 and "<script" not in page.split("<main")[1]
    assert page.count('class="bar"') == 2 * 14
    assert f"{today}: 56" in page                      # the requests bar's tooltip for today
    doc = httpx.get(stack.base_url + f"/v1/usage?from={start}&to={today}",
                    headers={"Authorization": f"Bearer {busy['s1']}"}).json()
    assert Decimal(usd_of(page, "period-total")) == Decimal(str(doc["period"]["spend_usd"]))
    assert "56 requests" in page
    # a bad period is explained, not a crash
    bad = c.get(f"/usage?from={today}&to={today - timedelta(days=3)}")
    assert bad.status_code == 400 and "must not be after" in bad.text
    assert "at most 366 days" in c.get(f"/usage?from={today - timedelta(days=400)}&to={today}").text


def _shown(usd: Decimal, markup_percent: Decimal) -> tuple[str, str]:
    """How a page shows a list price with its markup: USD with at least two decimals, RUB at 95 to the kopeck."""
    charged = usd * (100 + markup_percent) / 100
    digits = max(2, -charged.normalize().as_tuple().exponent)  # type: ignore[operator]
    return f"${charged:.{digits}f}", f"{(charged * 95).quantize(Decimal('0.01')):,.2f}".replace(",", "\u202f") + "\u00a0₽"


def test_models_and_prices(stack: Stack, busy: dict[str, Any]) -> None:
    c = busy["cabinet"]
    page = c.get("/models").text
    prices = stack.server.config.prices
    row = re.search(r'<tr data-model="gpt-4o-mini">(.*?)</tr>', page, re.DOTALL).group(1)  # type: ignore[union-attr]
    tokens = prices["gpt-4o-mini"]
    for per_1m in (tokens.input, tokens.output):  # the prices in pricing.d/, markup included, in both currencies
        assert all(text in row for text in _shown(per_1m, tokens.markup_percent)), (per_1m, row)
    image = re.search(r'<tr data-model="dall-e-3">(.*?)</tr>', page, re.DOTALL).group(1)  # type: ignore[union-attr]
    hd = next(price for size, quality, price in prices["dall-e-3"].per_image if (size, quality) == ("1024x1024", "hd"))
    assert "1024x1024 hd" in image and all(text in image for text in _shown(hd, prices["dall-e-3"].markup_percent))
    assert page.count("<tr data-model=") == len(stack.server.config.enabled_models)
    disabled = next(m for m in stack.server.config.models.values() if not m.enabled)
    assert f'data-model="{disabled.name}"' not in page
    found = c.get("/models?q=claude").text
    claude = [m.name for m in stack.server.config.enabled_models if "claude" in m.name]
    assert found.count("<tr data-model=") == len(claude) > 0 and 'data-model="gpt-4o-mini"' not in found


def test_key_limits_can_be_changed(stack: Stack, busy: dict[str, Any]) -> None:
    c, k2, s2 = busy["cabinet"], busy["k2"], busy["s2"]
    assert c.post(f"/keys/{k2}", {"monthly_limit_usd": "0.000001", "models": "", "rpm": "", "tpm": ""}).status_code == 303
    me = httpx.get(stack.base_url + "/v1/me", headers={"Authorization": f"Bearer {s2}"}).json()
    assert me["token"]["monthlyLimitUsd"] == 0.000001 and me["token"]["models"] == []
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=s2, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert "monthly limit" in refused.value.response.text
    assert c.post(f"/keys/{k2}", {"monthly_limit_usd": "", "models": "claude-*"}).status_code == 303
    me = httpx.get(stack.base_url + "/v1/me", headers={"Authorization": f"Bearer {s2}"}).json()
    assert me["token"]["monthlyLimitUsd"] is None and me["token"]["models"] == ["claude-*"]


def test_console_accounts_topup_correction_block(stack: Stack, admin: Cabinet) -> None:
    with Cabinet(stack.base_url) as c:
        assert c.signup().status_code == 303
        aid = c.account_id
        email = re.search(r'class="login" title="[^"]+">([^<]+)<', c.get("/").text).group(1)  # type: ignore[union-attr]
        kid, secret = create_key(c, "ops")
        # search
        page = admin.get(f"/console?q={email[:6]}").text
        assert f'data-account="{aid}"' in page
        assert f'data-account="{aid}"' not in admin.get("/console?q=nobody-here").text
        # a manual top-up in RUB, then the same form sent again: credited once
        form = {"amount": "1900", "currency": "RUB", "reason": "invoice 42", "nonce": "op-" + aid}
        assert admin.post(f"/console/accounts/{aid}/topup", form).headers["location"].endswith("done=topup-done")
        assert admin.post(f"/console/accounts/{aid}/topup", form).headers["location"].endswith("done=already-applied")
        page = admin.get(f"/console/accounts/{aid}").text
        assert usd_of(page, "balance") == "20" and "invoice 42 (1900 RUB at 95 RUB/USD)" in page
        admin_login = re.search(r'class="login" title="[^"]+">([^<]+)<', page).group(1)  # type: ignore[union-attr]
        assert f"console:{admin_login}" in page
        # a correction needs a reason; a negative one lowers the balance
        resp = admin.post(f"/console/accounts/{aid}/correct", {"usd": "-2.5", "reason": "", "nonce": "c1" + aid})
        assert resp.status_code == 400 and "A correction needs a reason" in resp.text
        resp = admin.post(f"/console/accounts/{aid}/correct", {"usd": "-2.5", "reason": "refund of a duplicate",
                                                               "nonce": "c2" + aid})
        assert resp.status_code == 303
        assert usd_of(admin.get(f"/console/accounts/{aid}").text, "balance") == "17.5"
        assert usd_of(c.get("/").text, "balance") == "17.5"
        assert "refund of a duplicate" in c.get("/billing").text
        resp = admin.post(f"/console/accounts/{aid}/topup", {"amount": "-5", "currency": "USD", "nonce": "n3",
                                                             "reason": "oops"})
        assert resp.status_code == 400 and "Enter a plain number" in resp.text and 'aria-invalid="true"' in resp.text
        resp = admin.post(f"/console/accounts/{aid}/topup", {"amount": "5", "currency": "USD", "nonce": "n4"})
        assert resp.status_code == 400 and "A manual top-up needs a reason" in resp.text
        # block and unblock a key, then the account
        client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=secret, max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert admin.post(f"/console/keys/{kid}/block").status_code == 303
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert admin.post(f"/console/keys/{kid}/unblock").status_code == 303
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert admin.post(f"/console/accounts/{aid}/block").status_code == 303
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert "account is blocked" in refused.value.response.text
        assert c.get("/").status_code == 303          # the customer's session ended
        assert admin.post(f"/console/accounts/{aid}/unblock").status_code == 303
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        page = admin.get(f"/console/accounts/{aid}").text
        assert page.count("data-request-id=") == 4 and "badge-active" in page
        # the account's history and CSV in the console
        assert admin.get(f"/console/accounts/{aid}/history?key={kid}").text.count("data-request-id=") == 4
        rows = list(csv.DictReader(io.StringIO(admin.get(f"/console/accounts/{aid}/history.csv").text)))
        assert len(rows) == 4 and {r["key_name"] for r in rows} == {"ops"}
        assert admin.post(f"/console/keys/{kid}/revoke").status_code == 303
        assert admin.post(f"/console/keys/{kid}/unblock").status_code == 409
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert admin.get("/console/accounts/acct_doesnotexist").status_code == 404
    assert admin.post(f"/console/accounts/{aid}/explode").status_code == 404


def test_console_rate_and_config(stack: Stack, admin: Cabinet) -> None:
    resp = admin.post("/console/fx", {"usd_rub": "-3"})
    assert resp.status_code == 400 and "Enter a plain number" in resp.text and 'aria-invalid="true"' in resp.text
    assert admin.post("/console/fx", {"usd_rub": "100"}).status_code == 303
    try:
        page = admin.get("/console").text
        assert "The USD→RUB rate is saved." not in page  # the notice shows on the redirect target only
        assert 'value="100"' in page
        assert "1 USD = 100 RUB" in admin.get("/").text
    finally:
        assert admin.post("/console/fx", {"usd_rub": "95"}).status_code == 303
    started = time.perf_counter()
    page = admin.get("/console/config").text
    took = time.perf_counter() - started
    assert re.search(r'<pre class="report ok">OK: \d+ models \(\d+ enabled\), \d+ routes', page)
    # the config in force, not a validation run per view (0.8-1.4 s before), and the catalogue folded
    assert f"<code>{stack.server.config.version}</code>" in page
    assert '<details id="catalogue-details">' in page and "<details id=\"catalogue-details\" open" not in page
    assert took < 0.5 or admin.get("/console/config").elapsed.total_seconds() < 0.5, took
    for name in ("gpt-*", "claude-*", "gemini-*", "grok-*"):
        assert name in page
    assert "yookassa" in page and stack.payments.api_url in page
    for secret in ("test-key", stack.payments.secret_key, stack.payments.webhook_secret, stack.payments.shop_id):
        assert secret not in page
    assert page.count('<tr class="">') + page.count('<tr class="muted">') == len(stack.server.config.models)
