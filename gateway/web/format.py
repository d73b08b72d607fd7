"""How the cabinet and the console show numbers, money and times: one place, Babel's locale data.

The documents hold exact decimal strings (USD to the nano-dollar, RUB to the kopeck); these functions only
round them for reading and never compute an amount. Balances and limits are shown to the cent (kopeck);
a per-request cost keeps two significant digits so a tiny one is not shown as zero; the exact figure goes
into a `title` (hover) and `data-usd`, and CSV/API carry it whole.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import partial
from typing import Any, Literal

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from markupsafe import Markup, escape

LOCALES = ("ru", "en")
BABEL_LOCALE = {"ru": "ru_RU", "en": "en_US"}
DASH = "—"
CENT = Decimal("0.01")
Kind = Literal["balance", "cost"]


def decimal_or_none(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def rounded(d: Decimal, kind: Kind) -> Decimal:
    """A balance to the cent; a cost to two significant digits below a cent (never rounded to zero)."""
    if kind == "cost" and d and abs(d) < CENT:
        step = Decimal(1).scaleb(d.adjusted() - 1)     # two significant digits
        return d.quantize(step, rounding=ROUND_HALF_UP)
    return d.quantize(CENT, rounding=ROUND_HALF_UP)


def money(value: Any, currency: str, locale: str = "ru", kind: Kind = "balance") -> str:
    """`$10.53` / `10,53 $`, `999,98 ₽` / `999.98 ₽`; `—` for no value. `currency` is USD or RUB."""
    d = decimal_or_none(value)
    if d is None:
        return DASH
    d = rounded(d, kind)
    loc = BABEL_LOCALE.get(locale, locale)
    if currency == "RUB":   # Babel's English shows "RUB1.00"; the rouble sign reads better in both languages
        pattern = "#,##0.00" + "#" * max(0, -d.as_tuple().exponent - 2)    # type: ignore[operator]
        return format_decimal(d, format=pattern, locale=loc, decimal_quantization=False) + "\u00a0₽"
    return format_currency(d, currency, locale=loc, currency_digits=False, decimal_quantization=False)


def number(value: Any, locale: str = "ru") -> str:
    """A count or a rate, grouped per locale (`1 000`, `1,000`; `95,5`); plain decimals only, never `1E+2`."""
    d = decimal_or_none(value)
    if d is None:
        return DASH if value is None or value == "" else str(value)
    exp = -d.normalize().as_tuple().exponent   # type: ignore[operator]
    pattern = "#,##0" + ("." + "#" * exp if exp > 0 else "")
    return format_decimal(d, format=pattern, locale=BABEL_LOCALE.get(locale, locale), decimal_quantization=False)


def plain(value: Any) -> str:
    """The exact decimal string, for data attributes, hovers and CSV (`10.526129339`, never `1E+1`)."""
    d = decimal_or_none(value)
    return "" if d is None else format(d, "f")


def moment(value: Any, locale: str = "ru") -> str:
    """An ISO time (the documents' `time`) or epoch ms, in UTC, as the locale writes it with seconds."""
    if isinstance(value, int):
        t = datetime.fromtimestamp(value / 1000, tz=UTC)
    else:
        try:
            t = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return format_datetime(t, "medium", tzinfo=UTC, locale=BABEL_LOCALE.get(locale, locale))


def day(value: date | str, locale: str = "ru") -> str:
    """A day in the locale's medium form: `7 дек. 2026 г.`, `Dec 7, 2026`."""
    d = date.fromisoformat(value) if isinstance(value, str) else value
    return format_date(d, "medium", locale=BABEL_LOCALE.get(locale, locale))


def money_html(usd: Any, rub: Any, locale: str = "ru", kind: Kind = "balance") -> Markup:
    """Both currencies in one unbreakable span; the exact USD figure on hover and in `data-usd`."""
    exact = plain(usd)
    title = f' title="{escape(exact)} USD"' if exact else ""
    return Markup('<span class="money"><span class="usd" data-usd="{exact}"{title}>{u}</span> '
                  '<span class="rub">{r}</span></span>').format(exact=exact, title=Markup(title),
                                                               u=money(usd, "USD", locale, kind),
                                                               r=money(rub, "RUB", locale, kind))


def filters(locale: str) -> dict[str, Callable[..., Any]]:
    """The Jinja filters of one locale's environment: every page and the console use these."""
    return {
        "usd": partial(money, currency="USD", locale=locale),
        "rub": partial(money, currency="RUB", locale=locale),
        "usd_cost": partial(money, currency="USD", locale=locale, kind="cost"),
        "rub_cost": partial(money, currency="RUB", locale=locale, kind="cost"),
        "num": partial(number, locale=locale),
        "when": partial(moment, locale=locale),
        "day": partial(day, locale=locale),
        "plain": plain,
        "money_in": lambda value, currency: money(value, currency, locale),
    }
