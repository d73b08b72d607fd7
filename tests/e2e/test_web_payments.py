"""Top-ups through the YooKassa-style provider, end to end against the fake provider on loopback: the
payment is created with the shop's credentials, paid on the provider's page, and credited once from the
signed webhook, however often (or however concurrently) it arrives; a bad signature or a notification that
does not match the payment changes nothing."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gateway.store.replicated import NotReplicated
from tests.support.web import Cabinet, Stack, make_admin, usd_of, web_stack


@pytest.fixture(scope="module")
def stack(fakes: Any) -> Iterator[Stack]:
    with web_stack(fakes) as s:
        yield s


@pytest.fixture()
def customer(stack: Stack) -> Iterator[Cabinet]:
    stack.payments.deliveries, stack.payments.concurrent = 1, False
    with Cabinet(stack.base_url) as c:
        assert c.signup().status_code == 303
        yield c


def start(c: Cabinet, amount: str = "950") -> str:
    """Start a top-up on the Billing page; returns the provider's confirmation URL."""
    resp = c.post("/billing/topup", {"provider": "yookassa", "amount": amount})
    assert resp.status_code == 303, resp.text
    return resp.headers["location"]


def ledger_rows(c: Cabinet) -> int:
    page = c.get("/billing").text
    body = page.split('id="ledger"', 1)
    return body[1].split("</tbody>")[0].count("<tr><td") if len(body) > 1 else 0


def test_topup_end_to_end(stack: Stack, customer: Cabinet) -> None:
    url = start(customer)
    fake = stack.payments
    created = fake.create_requests[-1]
    assert created["headers"]["Authorization"].startswith("Basic ")
    body = created["body"]
    assert body["amount"] == {"value": "950.00", "currency": "RUB"}
    assert body["metadata"]["account_id"] == customer.account_id
    assert created["headers"]["Idempotence-Key"] == body["metadata"]["topup_id"]
    assert body["confirmation"]["return_url"] == f"{stack.base_url}/billing?topup={body['metadata']['topup_id']}"
    # pending until the provider says otherwise
    page = customer.get("/billing").text
    assert "badge-pending" in page and usd_of(page, "balance") == "0"
    checkout = httpx.get(url)
    assert checkout.status_code == 200 and "950.00 RUB" in checkout.text
    paid = httpx.post(url + "/pay", follow_redirects=False)
    assert paid.status_code == 303 and paid.headers["location"] == body["confirmation"]["return_url"]
    payment = fake.last()
    assert [d.status for d in payment.deliveries] == [200]
    # credited by this webhook, or a moment before by the background status poll: once either way
    assert json.loads(payment.deliveries[0].body)["ok"] is True
    page = customer.get(paid.headers["location"].removeprefix(stack.base_url)).text
    assert "Payment received: 950.00\u00a0₽ is on your balance." in page
    assert usd_of(page, "balance") == "10"                      # 950 RUB at 95 RUB/USD
    assert "badge-succeeded" in page and "950.00 RUB via yookassa at 95 RUB/USD" in page
    assert ledger_rows(customer) == 1
    dash = customer.get("/").text
    assert usd_of(dash, "balance") == "10" and "950.00\u00a0₽" in dash


def test_webhook_delivered_twice_credits_once(stack: Stack, customer: Cabinet) -> None:
    stack.payments.deliveries = 2
    url = start(customer, "190")
    assert httpx.post(url + "/pay", follow_redirects=False).status_code == 303
    results = [json.loads(d.body) for d in stack.payments.last().deliveries]
    assert all(r["ok"] for r in results) and results[1]["applied"] is False
    assert sum(r["applied"] for r in results) <= 1      # the status poll may have credited it first
    # and once more, later, straight from the provider
    again = stack.payments.deliver(stack.payments.notification(stack.payments.last()))
    assert [d.status for d in again] == [200] and json.loads(again[0].body)["applied"] is False
    assert usd_of(customer.get("/billing").text, "balance") == "2"
    assert ledger_rows(customer) == 1


def test_concurrent_webhooks_credit_once(stack: Stack, customer: Cabinet) -> None:
    start(customer, "285")
    payment = stack.payments.last()
    raw = stack.payments.notification(payment)
    results = stack.payments.deliver(raw, times=25, concurrent=True)
    assert [r.status for r in results] == [200] * 25
    assert sum(json.loads(r.body)["applied"] for r in results) == 1
    assert usd_of(customer.get("/billing").text, "balance") == "3"
    assert ledger_rows(customer) == 1


def test_bad_signature_changes_nothing(stack: Stack, customer: Cabinet) -> None:
    start(customer, "950")
    fake = stack.payments
    payment = fake.last()
    raw = fake.notification(payment)
    for signature in ("", "sha256=" + "0" * 64, fake.sign(raw, "another secret"), fake.sign(raw)[:-2],
                      fake.sign(raw).upper(), fake.sign(raw + b" ")):
        result = fake.deliver(raw, signature=signature)
        assert result[0].status == 401 and json.loads(result[0].body) == {"error": "bad signature"}
    # a signed notification for this payment that names another amount, currency or account
    for changes in ({"amount": {"value": "95000.00", "currency": "RUB"}},
                    {"amount": {"value": "950.00", "currency": "USD"}},
                    {"metadata": {"account_id": "acct_000000000000"}}, {"status": "pending"}):
        result = fake.deliver(fake.notification(payment, **changes))
        assert result[0].status == 400, changes
    # an unknown payment, a malformed body, an unknown provider
    result = fake.deliver(fake.notification(payment, id="no-such-payment"))
    assert result[0].status == 404
    assert fake.deliver(b"{not json")[0].status == 400
    resp = httpx.post(stack.base_url + "/payments/webhook/nope", content=raw,
                      headers={"X-Payment-Signature": fake.sign(raw)})
    assert resp.status_code == 404
    page = customer.get("/billing").text
    assert usd_of(page, "balance") == "0" and "badge-pending" in page and ledger_rows(customer) == 0
    # the genuine one still works afterwards
    assert json.loads(fake.deliver(raw)[0].body)["applied"] is True
    assert usd_of(customer.get("/billing").text, "balance") == "10"


def test_canceled_payment_credits_nothing(stack: Stack, customer: Cabinet) -> None:
    url = start(customer, "500")
    resp = httpx.post(url + "/cancel", follow_redirects=False)
    assert resp.status_code == 303
    page = customer.get(resp.headers["location"].removeprefix(stack.base_url)).text
    assert "was canceled; nothing was charged" in page and "badge-canceled" in page
    assert usd_of(page, "balance") == "0" and ledger_rows(customer) == 0


def test_amount_is_fixed_when_the_payment_is_created(stack: Stack, customer: Cabinet) -> None:
    """The USD credit is computed at creation: a rate change before the webhook does not alter it."""
    url = start(customer, "1000")
    admin = Cabinet(stack.base_url)
    assert admin.login(make_admin(stack)).status_code == 303
    assert admin.post("/console/fx", {"usd_rub": "100"}).status_code == 303
    try:
        assert httpx.post(url + "/pay", follow_redirects=False).status_code == 303
        assert usd_of(customer.get("/billing").text, "balance") == "10.526315789"  # 1000/95, rounded down
    finally:
        assert admin.post("/console/fx", {"usd_rub": "95"}).status_code == 303
        admin.close()


def test_topup_form_errors(stack: Stack, customer: Cabinet) -> None:
    for amount, message in (("", "Enter a plain number"), ("abc", "Enter a plain number"),
                            ("1e3", "Enter a plain number"), ("1E+2", "Enter a plain number"),
                            ("99.99", "Enter an amount from 100 to 500,000."),
                            ("500001", "Enter an amount from 100 to 500,000."),
                            ("100.001", "At most 2 digits after the decimal point.")):
        resp = customer.post("/billing/topup", {"provider": "yookassa", "amount": amount})
        assert resp.status_code == 400 and message in resp.text, (amount, resp.text[-800:])
    resp = customer.post("/billing/topup", {"provider": "paypal", "amount": "1000"})
    assert resp.status_code == 400 and "not available" in resp.text
    assert 'id="payments"' not in customer.get("/billing").text


def test_provider_unreachable_or_refusing(fakes: Any) -> None:
    with web_stack(fakes, PAYMENT_SECRET_KEY="wrong-secret") as s, Cabinet(s.base_url) as c:
        assert c.signup().status_code == 303
        resp = c.post("/billing/topup", {"provider": "yookassa", "amount": "1000"})
        assert resp.status_code == 502 and "refused the payment" in resp.text
        assert "wrong-secret" not in resp.text
    with web_stack(fakes, PAYMENT_API_URL="http://127.0.0.1:9/v3") as s, Cabinet(s.base_url) as c:
        assert c.signup().status_code == 303
        resp = c.post("/billing/topup", {"provider": "yookassa", "amount": "1000"})
        assert resp.status_code == 502 and "cannot be reached" in resp.text
    with web_stack(fakes, PAYMENT_WEBHOOK_SECRET="") as s, Cabinet(s.base_url) as c:
        assert c.signup().status_code == 303
        page = c.get("/billing").text
        assert "Online top-up is not available right now" in page
        raw = b'{"event": "payment.succeeded", "object": {"id": "x"}}'
        resp = httpx.post(s.base_url + "/payments/webhook/yookassa", content=raw,
                          headers={"X-Payment-Signature": s.payments.sign(raw, "")})
        assert resp.status_code == 401


def test_return_page_shows_only_own_topups(stack: Stack, customer: Cabinet) -> None:
    start(customer, "950")
    tid = stack.payments.last().metadata["topup_id"]
    with Cabinet(stack.base_url) as other:
        assert other.signup().status_code == 303
        page = other.get(f"/billing?topup={tid}").text
        assert 'id="topup-status"' not in page and tid not in page
    assert re.search(r'id="topup-status"', customer.get(f"/billing?topup={tid}").text)
    assert Decimal(usd_of(customer.get("/billing").text, "balance")) == 0


def test_lost_webhook_is_made_up_by_the_status_poll(stack: Stack, customer: Cabinet) -> None:
    """The provider never calls the webhook: the return page asks it, and so does the background poll."""
    stack.payments.deliveries = 0
    url = start(customer, "190")
    paid = httpx.post(url + "/pay", follow_redirects=False)
    assert stack.payments.last().deliveries == []
    page = customer.get(paid.headers["location"].removeprefix(stack.base_url)).text
    assert "Payment received: 190.00\u00a0₽ is on your balance." in page
    assert usd_of(page, "balance") == "2"
    # a second one the customer never comes back from: the background poll (every second here) credits it
    url = start(customer, "285")
    tid = stack.payments.last().metadata["topup_id"]
    httpx.post(url + "/pay", follow_redirects=False)
    deadline = time.monotonic() + 30
    while Decimal(usd_of(customer.get("/billing").text, "balance")) != 5 and time.monotonic() < deadline:
        time.sleep(0.3)
    page = customer.get("/billing").text
    assert usd_of(page, "balance") == "5"
    row = page.split(f'data-topup="{tid}"')[1].split("</tr>")[0]
    assert 'data-status="succeeded"' in row and "badge-succeeded" in row
    assert ledger_rows(customer) == 2            # each payment credited once, poll and page together


def test_pending_checkout_resumed_or_cancelled(stack: Stack, customer: Cabinet) -> None:
    stack.payments.deliveries = 1
    url = start(customer, "100")
    tid = stack.payments.last().metadata["topup_id"]
    page = customer.get("/billing").text
    row = page.split(f'data-topup="{tid}"')[1].split("</tr>")[0]
    assert "badge-pending" in row and "waiting for payment" in row and "Bank card or SBP" in row
    assert "<span class=\"muted\">—</span>" in row              # nothing credited yet
    resumed = customer.post(f"/billing/topup/{tid}/resume")
    assert resumed.status_code == 303 and resumed.headers["location"] == url
    cancelled = customer.post(f"/billing/topup/{tid}/cancel")
    assert cancelled.status_code == 303
    page = customer.get(cancelled.headers["location"]).text
    assert "was canceled; nothing was charged" in page
    row = page.split(f'data-topup="{tid}"')[1].split("</tr>")[0]
    assert "badge-canceled" in row and "/resume" not in row and "<span class=\"muted\">—</span>" in row
    assert usd_of(page, "balance") == "0"
    # another customer cannot touch it
    with Cabinet(stack.base_url) as other:
        assert other.signup().status_code == 303
        assert other.post(f"/billing/topup/{tid}/resume").status_code == 404
    # money that reaches the provider after all is still credited (the webhook wins over our cancel)
    httpx.post(url + "/pay", follow_redirects=False)
    assert usd_of(customer.get("/billing").text, "balance") == "1.052631578"


def test_russian_billing_words(stack: Stack, customer: Cabinet) -> None:
    stack.payments.deliveries = 1
    start(customer, "1000.5")
    customer.post("/lang", {"lang": "ru", "back": "/billing"})
    page = customer.get("/billing").text
    assert '<html lang="ru">' in page and "Банковская карта или СБП" in page and "ожидает оплаты" in page
    assert "1\u00a0000,50\u00a0₽" in page and "Остаток на балансе" in page


def test_credit_redis_cannot_confirm_is_a_503_the_provider_retries_and_it_credits_once(
        stack: Stack, customer: Cabinet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis takes the credit but no replica confirms it (a failover under way): the webhook must not look like
    our bug (a bare 500) but say "try again" (503, Retry-After) in JSON; the provider's retry credits once."""
    accounts = stack.server.app.accounts
    real = accounts.credit
    confirming = False

    async def unconfirmed(*args: Any, **kwargs: Any) -> Any:
        done = await real(*args, **kwargs)   # applied on the master ...
        if not confirming:                   # ... but not confirmed by a replica
            raise NotReplicated("no replica confirmed the write within 100 ms")
        return done

    monkeypatch.setattr(accounts, "credit", unconfirmed)
    url = start(customer, "190")
    assert httpx.post(url + "/pay", follow_redirects=False).status_code == 303
    first = stack.payments.last().deliveries[0]
    assert first.status == 503 and "error" in json.loads(first.body)
    confirming = True
    again = stack.payments.deliver(stack.payments.notification(stack.payments.last()))
    assert [d.status for d in again] == [200]
    assert usd_of(customer.get("/billing").text, "balance") == "2"
    assert ledger_rows(customer) == 1
