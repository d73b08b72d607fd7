"""The journey of the customer the seed is written for, in Chromium, in Russian (the default): sign up →
confirm the address from the letter the loopback SMTP server caught → top up in roubles → key → call →
history → a low-balance alert letter once the balance crosses the threshold. Then the switch to English,
remembered for the account in a new browser, and the cabinet on a 390 px phone (screenshots, no sideways
scrolling, the menu behind a button). Screenshots go to tests/artifacts/browser/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.store.accounts import TOKEN_RE
from tests.support.smtp import MailBox
from tests.support.web import PASSWORD, Stack, new_email, web_stack

MSG = [{"role": "user", "content": "Скажи 'pong'"}]
NB = "\u00a0"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[MailBox]:
    with MailBox() as box:
        yield box


@pytest.fixture(scope="module")
def stack(fakes: Any, mailbox: MailBox) -> Iterator[Stack]:
    with web_stack(fakes, **mailbox.env(), GATEWAY_LOCALE="ru") as s:
        yield s


def snap(page: Any, shots: Path, name: str, full: bool = True) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=full)


def log_in(page: Any, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(base + "/")


def test_russian_journey(stack: Stack, browser: Any, shots: Path, mailbox: MailBox) -> None:
    base = stack.base_url
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="ru-RU")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())

    # sign up, in Russian; a bad password is tied to its field and focused
    page.goto(base + "/signup")
    assert page.get_attribute("html", "lang") == "ru" and "Регистрация" in page.inner_text("h1")
    email = new_email()
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", "short")
    page.fill("input[name=password2]", "short")
    page.evaluate("document.querySelectorAll('input[minlength]').forEach(i => i.removeAttribute('minlength'))")
    page.click("form[action='/signup'] button[type=submit]")
    assert page.get_attribute("input[name=password]", "aria-invalid") == "true"
    assert "Пароль должен быть не короче 8 символов." in page.inner_text("#err-password")
    assert page.evaluate("document.activeElement.name") == "password"
    snap(page, shots, "ru-00-signup-error")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form[action='/signup'] button[type=submit]")
    page.wait_for_url(base + "/signup/sent")
    assert "Проверьте почту" in page.inner_text("h1")
    snap(page, shots, "ru-01-check-mail")

    # the letter, in Russian, from the loopback SMTP server; no key before the address is confirmed
    letter = mailbox.wait(email)[0]
    assert letter.subject.startswith("Подтвердите адрес e-mail")
    log_in(page, base, email)
    page.click("nav >> text=API-ключи")
    assert page.locator("#unverified").count() == 1
    page.goto(letter.link("/verify"))
    assert "Адрес e-mail подтверждён" in page.inner_text("#sent")
    snap(page, shots, "ru-02-confirmed")

    # top up 950 ₽ on the provider's page
    page.goto(base + "/billing")
    assert "Банковская карта или СБП" in page.inner_text("#topup")
    page.fill("input[name=amount]", "1e3")
    page.click("text=Перейти к оплате")
    assert "Введите обычное число" in page.inner_text("#topup .error")
    page.fill("input[name=amount]", "950")
    page.click("text=Перейти к оплате")
    page.wait_for_url(stack.payments.origin + "/checkout/*")
    page.click("#pay")
    page.wait_for_url(re.compile(re.escape(base) + r"/billing\?topup=tu_[0-9a-f]+$"))
    assert f"Платёж получен: 950,00{NB}₽ зачислено на баланс." in page.inner_text("#topup-status")
    assert page.locator("#balance .value").inner_text() == f"10,00{NB}$"
    assert page.locator("#balance .rub").inner_text() == f"950,00{NB}₽"
    snap(page, shots, "ru-03-billing-paid")

    # an alert below 950 ₽ (the balance is exactly that now), by e-mail
    page.goto(base + "/settings")
    page.fill("input[name=low_amount]", "950")
    page.select_option("select[name=low_currency]", "RUB")
    page.check("input[name=by_email]")
    page.click("text=Сохранить уведомления")
    page.wait_for_url(base + "/settings?done=alerts-saved")
    snap(page, shots, "ru-04-settings")

    # a key; the code sample names this service
    page.click("nav >> text=API-ключи")
    page.fill("input[name=name]", "прод")
    page.fill("input[name=models]", "nosuch-*")
    page.click("#create-key button[type=submit]")
    assert page.get_attribute("input[name=models]", "aria-invalid") == "true"
    assert "не подходит ни одна доступная модель" in page.inner_text("#err-models")
    page.fill("input[name=models]", "gpt-4o-mini, claude-*")
    page.click("#create-key button[type=submit]")
    secret = page.input_value("#secret")
    assert TOKEN_RE.match(secret.encode())
    assert f'base_url="{base}/v1"' in page.inner_text("#snippet")
    snap(page, shots, "ru-05-key")

    # the call: its cost on the answer, the same figure in History
    client = openai.OpenAI(base_url=base + "/v1", api_key=secret, max_retries=0, timeout=20)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, max_tokens=20)
    cost = Decimal(raw.headers["x-gateway-cost-usd"])
    page.goto(base + "/history?model=gpt")
    row = page.locator(f'tr[data-request-id="{raw.headers["x-request-id"]}"]')
    assert row.count() == 1
    assert Decimal(row.locator(".cost .usd").get_attribute("data-usd")) == cost
    assert row.locator(".cost .usd").get_attribute("title") == f"{cost} USD"
    snap(page, shots, "ru-06-history")
    page.goto(base + "/history?from=2026-13-45")
    assert page.get_attribute("input[name=from]", "aria-invalid") == "true"

    # the alert letter once the call took the balance below 950 ₽
    alert = next(m for m in mailbox.wait(email, 2, timeout_s=30) if "Баланс на исходе" in m.subject)
    assert f"Баланс опустился ниже 950,00{NB}₽" in alert.body
    page.goto(base + "/usage")
    assert page.locator('#by-model tr[data-model="gpt-4o-mini"]').count() == 1
    snap(page, shots, "ru-07-usage")
    page.goto(base + "/")
    snap(page, shots, "ru-08-dashboard")

    # switch to English: remembered for the account, in another browser too
    page.click("#lang-en")
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "en" and "Remaining balance" in page.inner_text("#balance")
    assert page.locator("#balance .value").inner_text() == "$10.00"                # to the cent...
    exact = page.locator("#balance .value").get_attribute("title")                   # ...exact on hover
    assert exact == f"{Decimal(10) - cost} USD"
    snap(page, shots, "en-01-dashboard")
    context.close()
    other = browser.new_context(viewport={"width": 1280, "height": 860})
    page = other.new_page()
    log_in(page, base, email)
    assert page.get_attribute("html", "lang") == "en" and "Dashboard" in page.inner_text("h1")
    other.close()

    # a 390 px phone: no sideways scrolling, the menu behind its button, key actions reachable
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                has_touch=True)
    page = phone.new_page()
    log_in(page, base, email)
    for path, name in (("/", "m-01-dashboard"), ("/keys", "m-02-keys"), ("/history", "m-03-history"),
                       ("/billing", "m-04-billing"), ("/settings", "m-05-settings")):
        page.goto(base + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        snap(page, shots, name)
    assert not page.locator("#main-nav").is_visible()
    page.click(".menu-button")
    assert page.locator("#main-nav").is_visible()
    snap(page, shots, "m-06-menu-open", full=False)
    page.click("#main-nav >> text=API keys")
    page.wait_for_url(base + "/keys")
    limits = page.locator("#keys .row-actions a").first
    limits.scroll_into_view_if_needed()
    box = limits.bounding_box()
    assert limits.is_visible() and box is not None and box["x"] + box["width"] <= 390   # no sideways scroll
    snap(page, shots, "m-07-keys-actions")
    phone.close()
