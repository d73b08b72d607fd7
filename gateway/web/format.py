"""Display filters for the templates: they format the decimal strings the documents already hold (exact
USD, RUB to the kopeck) and never compute an amount."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _grouped(d: Decimal) -> str:
    """At least 2 decimals, every significant one beyond (a cost of $0.000105 stays visible)."""
    digits = max(2, -d.normalize().as_tuple().exponent) if d else 2  # type: ignore[operator]  # finite: exponent is an int
    return f"{abs(d):,.{digits}f}"


def usd(value: Any) -> str:
    d = _dec(value)
    if d is None:
        return "—"
    return ("−$" if d < 0 else "$") + _grouped(d)


def rub(value: Any) -> str:
    d = _dec(value)
    if d is None:
        return "—"
    return ("−" if d < 0 else "") + f"{abs(d):,.2f}".replace(",", "\u202f") + "\u00a0₽"


def num(value: Any) -> str:
    if value is None or value == "":
        return "—"
    try:
        return f"{int(value):,}".replace(",", "\u202f")
    except (TypeError, ValueError):
        return str(value)


def when(value: Any) -> str:
    """An ISO time (the documents' `time`) or epoch ms, as `YYYY-MM-DD HH:MM:SS` UTC."""
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)[:19].replace("T", " ")


def plain(value: Any) -> str:
    """The exact decimal string, for data attributes and CSV."""
    d = _dec(value)
    return "" if d is None else format(d, "f")


def count(value: Any, word: str) -> str:
    """`1 request`, `56 requests`."""
    return f"{num(value)} {word}{'' if str(value) == '1' else 's'}"


FILTERS = {"usd": usd, "rub": rub, "num": num, "when": when, "plain": plain, "count": count}
