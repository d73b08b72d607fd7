"""The customer's whole path in a real browser: sign up → top up through the (fake) payment provider →
create a key (secret visible once, gone after a reload) → call /v1/chat/completions with the openai SDK
against a fake upstream → the request is in History with its cost and the dashboard balance dropped by
exactly that cost → revoke → the key gets 401. Then the operator's console. Every page is photographed."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai

from gateway.store.accounts import TOKEN_RE
from tests.support.web import PASSWORD, Stack, make_admin, new_email

MSG = [{"role": "user", "content": "Скажи 'pong'"}]


def snap(page: Any, shots: Path, name: str, full: bool = True) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=full)


def test_customer_journey(stack: Stack, browser: Any, shots: Path) -> None:
    base = stack.base_url
    stack.payments.deliveries, stack.payments.concurrent = 2, True   # the provider sends its webhook twice at once
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("dialog", lambda dialog: dialog.accept())

    # sign up
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    snap(page, shots, "00-login")
    page.click("text=Sign up")
    email = new_email()
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form[action='/signup'] button[type=submit]")
    page.wait_for_url(base + "/signup/sent")       # no SMTP server in this stack: no confirmation gate
    page.click("#sent a.button")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(base + "/")
    assert page.locator("#balance .value").get_attribute("data-usd") == "0"
    snap(page, shots, "01-dashboard-new")

    # top up 950 RUB through the provider's page
    page.click("nav >> text=Billing")
    page.fill("input[name=amount]", "950")
    snap(page, shots, "02-billing")
    page.click("text=Continue to payment")
    page.wait_for_url(stack.payments.origin + "/checkout/*")
    assert "950.00 RUB" in page.inner_text("#amount")
    snap(page, shots, "03-provider-checkout")
    page.click("#pay")
    page.wait_for_url(re.compile(re.escape(base) + r"/billing\?topup=tu_[0-9a-f]+$"))
    assert "Payment received: 950.00\u00a0₽ is on your balance." in page.inner_text("#topup-status")
    assert page.locator("#balance .value").get_attribute("data-usd") == "10"
    assert page.locator("#ledger tbody tr").count() == 1         # two webhooks, one credit
    assert sorted(d.status for d in stack.payments.last().deliveries) == [200, 200]
    snap(page, shots, "04-billing-paid")

    # create a key: the secret is on this page only
    page.click("nav >> text=API keys")
    page.fill("input[name=name]", "production")
    page.fill("input[name=monthly_limit_usd]", "5")
    page.fill("input[name=models]", "gpt-4o-mini, claude-*")
    page.fill("input[name=rpm]", "60")
    page.click("text=Create key")
    secret = page.input_value("#secret")
    assert TOKEN_RE.match(secret.encode())
    snap(page, shots, "05-key-created")
    page.reload()
    page.wait_for_load_state()
    assert secret not in page.content() and page.locator("#secret").count() == 0
    assert page.locator("#keys tbody tr").count() == 1              # the reload made no second key
    page.goto(base + "/keys")
    assert secret not in page.content()
    snap(page, shots, "06-keys")

    # one request with the official SDK against the fake upstream
    client = openai.OpenAI(base_url=base + "/v1", api_key=secret, max_retries=0, timeout=20)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, max_tokens=20)
    reply = raw.parse()
    assert reply.choices[0].message.content and reply.usage.total_tokens > 0
    request_id = raw.headers["x-request-id"]

    page.click("nav >> text=History")
    row = page.locator(f'tr[data-request-id="{request_id}"]')
    assert row.count() == 1
    cost = Decimal(row.locator(".cost .usd").get_attribute("data-usd"))
    assert cost > 0
    text = row.inner_text()
    assert "gpt-4o-mini" in text and "/v1/chat/completions" in text and "200" in text and "production" in text
    assert f"{reply.usage.prompt_tokens} / {reply.usage.completion_tokens}" in text
    snap(page, shots, "07-history")

    page.click("nav >> text=Dashboard")
    balance = Decimal(page.locator("#balance .value").get_attribute("data-usd"))
    assert balance == Decimal(10) - cost                              # dropped by exactly that cost
    assert page.locator("#today .value").get_attribute("data-requests") == "1"
    assert Decimal(page.locator("#total .value").get_attribute("data-usd")) == cost
    snap(page, shots, "08-dashboard")

    page.click("nav >> text=Usage")
    assert page.locator("svg.chart").count() == 2
    assert Decimal(page.locator("#period-total .value").get_attribute("data-usd")) == cost
    snap(page, shots, "09-usage")
    page.click("nav >> text=Models & prices")
    assert page.locator('tr[data-model="gpt-4o-mini"]').count() == 1
    snap(page, shots, "10-models", full=False)

    # revoke: the key stops working
    page.click("nav >> text=API keys")
    page.click("#keys >> text=Revoke")
    page.wait_for_url(base + "/keys?done=key-revoked")
    assert "badge-revoked" in page.content()
    snap(page, shots, "11-key-revoked")
    deadline = time.monotonic() + 5
    while True:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
        except openai.AuthenticationError as exc:
            assert exc.status_code == 401
            break
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.2)
    for path in ("/", "/keys", "/history", "/billing", "/usage"):
        page.goto(base + path)
        assert secret not in page.content()
    context.close()


def test_operator_console(stack: Stack, browser: Any, shots: Path) -> None:
    base = stack.base_url
    with ThreadPoolExecutor(1) as pool:   # its own event loop, away from Playwright's in this thread
        admin_email = pool.submit(make_admin, stack).result()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(base + "/console")
    page.fill("input[name=email]", admin_email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(base + "/console")
    assert page.locator("#accounts tbody tr").count() >= 2
    snap(page, shots, "20-console-accounts")
    customer = page.locator("#accounts tbody tr").filter(has_not_text=admin_email).first
    customer.locator("a").first.click()
    page.wait_for_url(re.compile(re.escape(base) + r"/console/accounts/acct_[0-9a-f]+$"))
    before = Decimal(page.locator("#balance .value").get_attribute("data-usd"))
    page.fill("#manual-topup input[name=amount]", "5")
    page.fill("#manual-topup input[name=reason]", "goodwill credit")
    page.click("#manual-topup >> text=Top up")
    page.wait_for_url(re.compile(r".*done=topup-done$"))
    assert Decimal(page.locator("#balance .value").get_attribute("data-usd")) == before + 5
    assert "goodwill credit" in page.inner_text("#ledger")
    snap(page, shots, "21-console-account")
    page.click("text=Configuration")
    assert page.inner_text("#validate pre").startswith("OK: ")
    snap(page, shots, "22-console-config", full=False)
    context.close()
