"""Money is integer nano-USD (1e-9 USD) inside; Decimal only at the edges (YAML, JSON, CLI)."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

NANO = 1_000_000_000
_NANO_D = Decimal(NANO)


class MoneyError(ValueError):
    pass


def usd_to_nano(amount: str | Decimal | int) -> int:
    """Parse a USD amount ("12.5") to nano-USD exactly; more than 9 decimals is an error, not a rounding."""
    try:
        d = Decimal(str(amount).strip())
    except InvalidOperation:
        raise MoneyError(f"not a number: {amount!r}") from None
    if not d.is_finite():
        raise MoneyError(f"not a finite amount: {amount!r}")
    nano = d * _NANO_D
    if nano != nano.to_integral_value():
        raise MoneyError(f"{amount} has more precision than 1e-9 USD")
    return int(nano)


def nano_to_usd(nano: int) -> Decimal:
    return (Decimal(nano) / _NANO_D).normalize() if nano else Decimal(0)


def usd_text(nano: int) -> bytes:
    """Exact USD of a nano-USD amount as a plain decimal: 2134 → b"0.000002134", 10**9 → b"1.0"."""
    whole, frac = divmod(nano, 1_000_000_000)
    if not frac:
        return b"%d.0" % whole
    return (b"%d.%09d" % (whole, frac)).rstrip(b"0")


def nano_to_float(nano: int) -> float:
    """For JSON output only (the seed's fields are JSON numbers)."""
    return float(Decimal(nano) / _NANO_D)


def rub_to_nano_usd(rub: str | Decimal, usd_rub: Decimal) -> int:
    """RUB → nano-USD at the operator's rate, rounded down so a conversion never credits extra."""
    try:
        d = Decimal(str(rub).strip())
    except InvalidOperation:
        raise MoneyError(f"not a number: {rub!r}") from None
    if not d.is_finite() or usd_rub <= 0:
        raise MoneyError("invalid amount or rate")
    return int((d / usd_rub * _NANO_D).to_integral_value(rounding=ROUND_DOWN))


def nano_to_rub(nano: int, usd_rub: Decimal) -> Decimal:
    """RUB equivalent, to the kopeck."""
    return (Decimal(nano) / _NANO_D * usd_rub).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def parse_rate(rate: str | Decimal) -> Decimal:
    try:
        d = Decimal(str(rate).strip())
    except InvalidOperation:
        raise MoneyError(f"not a number: {rate!r}") from None
    if not d.is_finite() or d <= 0:
        raise MoneyError("the USD→RUB rate must be a positive number")
    return d
