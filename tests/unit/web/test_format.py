"""The one money/number/time formatter of the cabinet and console, in both locales."""

from __future__ import annotations

import pytest

from gateway.web.format import day, moment, money, money_html, number, plain

NB = "\u00a0"


@pytest.mark.parametrize(("value", "ru", "en"), [
    ("10.526129339", f"10,53{NB}$", "$10.53"),
    ("1000.5", f"1{NB}000,50{NB}$", "$1,000.50"),
    ("0", f"0,00{NB}$", "$0.00"),
    ("-2.5", f"-2,50{NB}$", "-$2.50"),
    ("0.004999999", f"0,00{NB}$", "$0.00"),          # a balance is shown to the cent
])
def test_balance_usd_to_the_cent(value: str, ru: str, en: str) -> None:
    assert money(value, "USD", "ru") == ru
    assert money(value, "USD", "en") == en


@pytest.mark.parametrize(("value", "ru", "en"), [
    ("999.98", f"999,98{NB}₽", f"999.98{NB}₽"),
    ("1000.5", f"1{NB}000,50{NB}₽", f"1,000.50{NB}₽"),
])
def test_balance_rub_to_the_kopeck(value: str, ru: str, en: str) -> None:
    assert money(value, "RUB", "ru") == ru
    assert money(value, "RUB", "en") == en


@pytest.mark.parametrize(("value", "ru", "en"), [
    ("0.000002134", f"0,0000021{NB}$", "$0.0000021"),
    ("0.000105", f"0,00011{NB}$", "$0.00011"),
    ("0.0123", f"0,01{NB}$", "$0.01"),
    ("1.23456", f"1,23{NB}$", "$1.23"),
    ("0.000000001", f"0,000000001{NB}$", "$0.000000001"),
])
def test_cost_keeps_significant_digits(value: str, ru: str, en: str) -> None:
    assert money(value, "USD", "ru", "cost") == ru
    assert money(value, "USD", "en", "cost") == en


def test_tiny_rub_cost_is_not_zero() -> None:
    assert money("0.0002", "RUB", "ru", "cost") == f"0,0002{NB}₽"
    assert money("0.0002", "RUB", "en", "cost") == f"0.0002{NB}₽"


def test_no_value_is_a_dash() -> None:
    assert money(None, "USD", "ru") == "—"
    assert money("", "RUB", "en") == "—"
    assert money("NaN", "USD", "en") == "—"


def test_numbers_are_plain_decimals_grouped_per_locale() -> None:
    assert number("1E+2", "ru") == "100"
    assert number("1E+2", "en") == "100"
    assert number("95.5", "ru") == "95,5"
    assert number("95.5", "en") == "95.5"
    assert number(1234567, "ru") == f"1{NB}234{NB}567"
    assert number(1234567, "en") == "1,234,567"
    assert plain("1E+1") == "10"
    assert plain("0.000002134") == "0.000002134"


def test_times_and_days_per_locale() -> None:
    assert moment("2026-12-07T03:00:27.123Z", "en") == "Dec 7, 2026, 3:00:27\u202fAM"
    assert moment("2026-12-07T03:00:27.123Z", "ru") == "7 дек. 2026\u202fг., 03:00:27"
    assert moment(1796612427000, "ru") == moment("2026-12-07T03:00:27Z", "ru")
    assert day("2026-12-07", "ru") == "7 дек. 2026\u202fг."
    assert day("2026-12-07", "en") == "Dec 7, 2026"


def test_money_html_carries_the_exact_figure() -> None:
    html = str(money_html("0.000002134", "0.0002", "en", "cost"))
    assert 'data-usd="0.000002134"' in html and 'title="0.000002134 USD"' in html
    assert "$0.0000021" in html and f"0.0002{NB}₽" in html
    assert "&lt;" in str(money_html("<b>", "1", "en")) or 'data-usd=""' in str(money_html("<b>", "1", "en"))
