"""What the cabinet's and console's forms accept: plain decimals within bounds, whole numbers, dates.

Each refusal is a FieldError naming its field (the page marks it `aria-invalid` and moves focus to it) and
carrying an English message marked for translation with its parameters, translated where it is shown."""

from __future__ import annotations

import re
import dataclasses
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from gateway.web.format import number
from gateway.web.i18n import N_

# digits, one optional decimal point (or comma, as Russian keyboards type it), an optional leading minus;
# no exponent (1e3), no sign but minus, no thousands separators that could be misread
_WHOLE = re.compile(r"[0-9]{1,12}")
_DECIMAL = re.compile(r"(-?)([0-9]{1,15})(?:[.,]([0-9]{1,9}))?")


@dataclass
class FieldError(Exception):
    field: str
    message: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def text(self, gettext: Any, locale: str) -> str:
        """The message in the page's language, its numbers written as the locale writes them."""
        params = {k: number(v, locale) if isinstance(v, (int, Decimal)) else v for k, v in self.params.items()}
        translated = gettext(self.message)
        return translated % params if params else translated


def plain_decimal(text: str, name: str, *, low: Decimal, high: Decimal, places: int = 9,
                  negative: bool = False) -> Decimal:
    """A decimal written as people write money (`1500`, `12.50`, `12,50`); `1e3`, `+5`, `1 000` refused."""
    raw = text.strip().replace("\u2212", "-")
    m = _DECIMAL.fullmatch(raw)
    if m is None or (m.group(1) and not negative):
        raise FieldError(name, N_("Enter a plain number such as 12.50 (no exponent, no spaces)."))
    if m.group(3) and len(m.group(3)) > places:
        raise FieldError(name, N_("At most %(places)s digits after the decimal point."), {"places": places})
    value = Decimal(m.group(1) + m.group(2) + ("." + m.group(3) if m.group(3) else ""))
    if value < low or value > high:
        raise FieldError(name, N_("Enter an amount from %(low)s to %(high)s."), {"low": low, "high": high})
    return value


def whole(text: str, name: str, high: int) -> int:
    """A whole number from 0 to `high`; blank is 0 (unlimited)."""
    raw = text.strip() or "0"
    if not _WHOLE.fullmatch(raw) or int(raw) > high:
        raise FieldError(name, N_("Enter a whole number from 0 to %(high)s (0 or blank: unlimited)."),
                         {"high": high})
    return int(raw)


def day(text: str | None, name: str) -> date | None:
    """A `YYYY-MM-DD` day, or None when blank; anything else is reported, not silently dropped."""
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip()[:10]) if len(text.strip()) == 10 else _bad_day(name)
    except ValueError:
        return _bad_day(name)


def _bad_day(name: str) -> date:
    raise FieldError(name, N_("Enter a date as YYYY-MM-DD."))

