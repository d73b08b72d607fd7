"""The operator's operations over the accounts service, shared by the CLI and the admin API.

`gateway.store.accounts.Accounts` is the single source of truth; this module only adds what both
operator tools need around it: parsing amounts at the edge (Decimal, never float), the two composite
operations (a top-up in USD or RUB, a correction) and the documents both tools show. A document's money
is either JSON numbers (the admin API, like the seed's /v1/balance) or exact decimal strings (the CLI's
`--json`), always USD with its RUB twin at the current rate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.money import (
    NANO,
    MoneyError,
    nano_to_float,
    nano_to_rub,
    nano_to_usd,
    rub_to_nano_usd,
    usd_to_nano,
)
from gateway.store.accounts import Accounts, AccountView, InvalidInput, KeyView
from gateway.store.ledger import REJECTIONS

MODEL_PATTERN = re.compile(r"[A-Za-z0-9._:/-]+\*?")  # the same rule Accounts.create_key applies
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")         # account and key ids as the service mints them
MAX_AMOUNT = Decimal(10**9)                          # per operation; keeps every sum far inside Redis' int64


def decimal_of(value: Any, what: str = "amount") -> Decimal:
    """A decimal from a JSON string or number (via its text, so 0.1 stays 0.1), or MoneyError."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise MoneyError(f"{what} must be a decimal string or a number")
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"{what} is not a number: {value!r}") from None
    if not d.is_finite():
        raise MoneyError(f"{what} must be a finite number")
    if abs(d) > MAX_AMOUNT:
        raise MoneyError(f"{what} must be at most {MAX_AMOUNT} in absolute value")
    if d != d.quantize(Decimal("1e-9")):
        raise MoneyError(f"{what} has more than 9 decimal places")
    return d


def check_models(models: Sequence[str]) -> list[str]:
    """Allowed-model patterns for a key: exact names or prefixes ending in '*'."""
    out = [m.strip() for m in models if m.strip()]
    for p in out:
        if not MODEL_PATTERN.fullmatch(p):
            raise InvalidInput(f"model pattern '{p}' must be a name or a prefix ending in '*'")
    return out


def check_limit(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise InvalidInput(f"{name} must not be negative")


# -- documents -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Money:
    """How a document shows money: `exact` gives decimal strings, otherwise JSON numbers."""

    rate: Decimal
    exact: bool = False

    def usd(self, nano: int) -> float | str:
        return format(nano_to_usd(nano), "f") if self.exact else nano_to_float(nano)

    def rub(self, nano: int) -> float | str:
        rub = nano_to_rub(nano, self.rate)
        return str(rub) if self.exact else float(rub)

    def pair(self, name: str, nano: int | None) -> dict[str, Any]:
        if nano is None:
            return {f"{name}_usd": None, f"{name}_rub": None}
        return {f"{name}_usd": self.usd(nano), f"{name}_rub": self.rub(nano)}

    def rate_value(self) -> float | str:
        return str(self.rate) if self.exact else float(self.rate)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def account_doc(a: AccountView, money: Money) -> dict[str, Any]:
    """balance = credited − spent (the seed's remaining balance); reserved is held by requests in flight."""
    return {
        "id": a.id, "login": a.login, "status": a.status, "role": a.role, "created_at": iso(a.created_ms),
        **money.pair("balance", a.remaining), **money.pair("credited", a.credited),
        **money.pair("spent", a.spent), **money.pair("reserved", a.reserved), "requests": a.requests,
        **money.pair("month_spent", a.month_spent), "month_requests": a.month_requests,
        "usd_rub_rate": money.rate_value(),
    }


def key_doc(k: KeyView, money: Money) -> dict[str, Any]:
    """A key as the operator sees it: never the secret (it is not stored), only its prefix."""
    limit = k.monthly_limit
    return {
        "id": k.id, "account_id": k.account_id, "prefix": k.prefix, "name": k.name, "status": k.status,
        "created_at": iso(k.created_ms), **money.pair("monthly_limit", limit), "models": list(k.models),
        "rpm": k.rpm, "tpm": k.tpm, "requests": k.requests, **money.pair("spent", k.spent),
        **money.pair("month_spent", k.month_spent),
        **money.pair("month_remaining", None if limit is None else max(limit - k.month_spent, 0)),
    }


def ledger_doc(entry: dict[str, Any], money: Money) -> dict[str, Any]:
    return {
        "id": entry["id"], "time": iso(int(entry.get("t", 0))), "kind": entry.get("kind", ""),
        **money.pair("amount", int(entry.get("amount", 0))), "reason": entry.get("reason", ""),
        "actor": entry.get("actor", ""), "operation_id": entry.get("op") or None,
        **money.pair("credited_after", int(entry.get("credited", 0))),
    }


def _flag(entry: dict[str, Any], name: str) -> bool:
    return str(entry.get(name, "0")) == "1"


def history_doc(entry: dict[str, Any], money: Money) -> dict[str, Any]:
    """One request from the history stream; a request refused at admission has a `rejected` reason."""
    doc: dict[str, Any] = {
        "id": entry["id"], "time": iso(entry.get("t", 0)), "request_id": entry.get("rid", ""),
        "key": entry.get("key", ""), "model": entry.get("model", ""), "provider": entry.get("provider", "-"),
        "endpoint": entry.get("endpoint", ""), "status": entry.get("status", 0),
        "tokens_in": entry.get("in", 0), "tokens_cached": entry.get("cached", 0),
        "tokens_out": entry.get("out", 0), "tokens_reasoning": entry.get("reasoning", 0),
        **money.pair("cost", entry.get("cost", 0)),
        "latency_ms": entry.get("ms"), "estimated": _flag(entry, "estimated"),
        "stream": _flag(entry, "stream"),
    }
    if _flag(entry, "cut"):
        doc["cut"] = True  # a stream the client left early: billed for what was produced
    if entry.get("images"):
        doc["images"] = entry["images"]
    if entry.get("chars"):  # speech, per character
        doc["characters"] = entry["chars"]
    if entry.get("audio_ms"):  # transcription: the audio's length
        doc["audio_seconds"] = entry["audio_ms"] / 1000
    if entry.get("audio_tokens"):
        doc["audio_tokens"] = entry["audio_tokens"]
    if "code" in entry:
        doc["rejected"] = REJECTIONS.get(entry["code"], (0, f"code {entry['code']}"))[1]
    if entry.get("error"):
        doc["error"] = entry["error"]
    return doc


# -- composite operations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credited:
    """The outcome of a top-up or correction; `applied` is False when the operation id was already used."""

    applied: bool
    operation_id: str | None
    nano: int
    rate: Decimal
    account: AccountView

    def doc(self, exact: bool = False) -> dict[str, Any]:
        money = Money(self.rate, exact)
        return {"applied": self.applied, "operation_id": self.operation_id, **money.pair("amount", self.nano),
                "usd_rub_rate": money.rate_value(), "account": account_doc(self.account, money)}


async def topup(accounts: Accounts, aid: str, *, usd: Decimal | None = None, rub: Decimal | None = None,
                reason: str = "", operation_id: str = "", actor: str = "operator") -> Credited:
    """Credit a positive amount given in USD, or in RUB at the current rate (rounded down to the nano-USD,
    the RUB amount and rate noted in the ledger). With an operation id it is applied once, however often
    it is repeated."""
    if (usd is None) == (rub is None):
        raise InvalidInput("give exactly one of usd or rub")
    rate = await accounts.usd_rub()
    reason = reason.strip()
    if usd is not None:
        nano = usd_to_nano(decimal_of(usd, "usd"))
    else:
        assert rub is not None
        rub = decimal_of(rub, "rub")
        nano = rub_to_nano_usd(rub, rate)
        note = f"{format(rub, 'f')} RUB at {rate} RUB/USD"
        reason = f"{reason} ({note})" if reason else note
    if nano <= 0:
        raise InvalidInput("a top-up must be a positive amount")
    if nano > MAX_AMOUNT * NANO:
        raise MoneyError(f"a top-up must be at most {MAX_AMOUNT} USD")
    op = operation_id.strip()
    applied, view = await accounts.credit(aid, nano, kind="topup", reason=reason, actor=actor,
                                          operation_id=op)
    return Credited(applied, op or None, nano, rate, view)


async def correct(accounts: Accounts, aid: str, usd: Decimal, reason: str, *, operation_id: str = "",
                  actor: str = "operator") -> Credited:
    """A signed manual correction of the balance; it must say why."""
    if not reason.strip():
        raise InvalidInput("a correction needs a reason")
    nano = usd_to_nano(decimal_of(usd, "usd"))
    if nano == 0:
        raise InvalidInput("a correction must not be zero")
    rate = await accounts.usd_rub()
    op = operation_id.strip()
    applied, view = await accounts.credit(aid, nano, kind="correction", reason=reason.strip(), actor=actor,
                                          operation_id=op)
    return Credited(applied, op or None, nano, rate, view)
