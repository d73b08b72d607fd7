"""What the money inputs accept, and which webhook addresses alerts refuse."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.web.alerts import public_address_check
from gateway.web.forms import FieldError, plain_decimal, whole


@pytest.mark.parametrize(("text", "value"), [("1500", "1500"), ("12.50", "12.50"), ("12,50", "12.50"),
                                             (" 7 ", "7"), ("0.000000001", "0.000000001")])
def test_plain_decimals_are_accepted(text: str, value: str) -> None:
    assert plain_decimal(text, "x", low=Decimal(0), high=Decimal(10_000)) == Decimal(value)


@pytest.mark.parametrize("text", ["1e3", "1E+2", "+5", "1 000", "1,000.5", "NaN", "Infinity", "", ".5", "5.",
                                  "0x10", "١٢"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(FieldError) as err:
        plain_decimal(text, "amount", low=Decimal(0), high=Decimal(10_000))
    assert err.value.field == "amount"


def test_bounds_places_and_sign() -> None:
    with pytest.raises(FieldError, match="amount from"):
        plain_decimal("1000000000", "x", low=Decimal(0), high=Decimal(1_000_000))
    with pytest.raises(FieldError, match="digits after"):
        plain_decimal("1.001", "x", low=Decimal(0), high=Decimal(10), places=2)
    with pytest.raises(FieldError):
        plain_decimal("-1", "x", low=Decimal(-10), high=Decimal(10))
    assert plain_decimal("−2.5", "x", low=Decimal(-10), high=Decimal(10), negative=True) == Decimal("-2.5")


def test_error_text_in_each_language() -> None:
    from gateway.web.i18n import translations
    with pytest.raises(FieldError) as err:
        plain_decimal("5000000", "x", low=Decimal(0), high=Decimal(1_000_000))
    assert err.value.text(translations("en").gettext, "en") == "Enter an amount from 0 to 1,000,000."
    assert err.value.text(translations("ru").gettext, "ru") == "Введите сумму от 0 до 1\u00a0000\u00a0000."


def test_whole_numbers() -> None:
    assert whole("", "rpm", 100) == 0 and whole("60", "rpm", 100) == 60
    for bad in ("-5", "1.5", "101", "9" * 13, "١٢"):
        with pytest.raises(FieldError):
            whole(bad, "rpm", 100)


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost/x", "http://10.1.2.3/", "http://192.168.0.1/",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://0.0.0.0/",
                                 "http://100.64.0.1/", "ftp://example.com/", "http://user:pw@8.8.8.8/",
                                 "http://[fd00::1]/"])
def test_webhooks_only_to_public_addresses(url: str) -> None:
    with pytest.raises(FieldError):
        public_address_check(url, allow_loopback=False)


def test_loopback_only_when_allowed_and_never_private() -> None:
    public_address_check("http://127.0.0.1:9/x", allow_loopback=True)
    with pytest.raises(FieldError):
        public_address_check("http://10.0.0.5/x", allow_loopback=True)
    public_address_check("https://8.8.8.8/hook", allow_loopback=False)     # a literal public address
