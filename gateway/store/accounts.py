"""Accounts, keys, top-ups, the exchange rate and the read models (/v1/me, /v1/balance, /v1/usage,
history). The CLI, the admin API and the cabinet all go through this one module."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from gateway.archive.database import ArchiveDB, parse_id
from gateway.money import nano_to_float, nano_to_rub
from gateway.store.connection import AsyncStore
from gateway.store.keys import KeySpace
from gateway.store.ledger import month_and_day
from gateway.store.replicated import AUTO, ReplicaAcks
from gateway.store.scripts import Scripts

TOKEN_RE = re.compile(rb"^bt_[a-z0-9]{8}_[A-Za-z0-9]{32}$")
LOGIN_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_LOWER = string.ascii_lowercase + string.digits
_ALNUM = string.ascii_letters + string.digits


class NotFoundError(LookupError):
    pass


class ConflictError(ValueError):
    pass


class InvalidInput(ValueError):
    pass


def token_hash(token: bytes | str) -> str:
    return hashlib.sha256(token if isinstance(token, bytes) else token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(prefix, full secret) in the seed's format bt_<8 chars>_<32 chars>."""
    prefix = "".join(secrets.choice(_LOWER) for _ in range(8))
    return prefix, f"bt_{prefix}_{''.join(secrets.choice(_ALNUM) for _ in range(32))}"


def _s(v: bytes | None, default: str = "") -> str:
    return v.decode() if v is not None else default


def _i(v: bytes | None, default: int = 0) -> int:
    return int(v) if v not in (None, b"") else default


@dataclass(frozen=True, slots=True)
class AccountView:
    id: str
    login: str
    status: str
    role: str
    created_ms: int
    credited: int          # nano-USD ever credited (top-ups and corrections)
    spent: int             # nano-USD ever charged
    reserved: int          # nano-USD held by requests in flight
    requests: int
    month_spent: int
    month_requests: int

    @property
    def remaining(self) -> int:
        return self.credited - self.spent


@dataclass(frozen=True, slots=True)
class KeyView:
    id: str
    account_id: str
    name: str
    prefix: str
    status: str
    created_ms: int
    monthly_limit: int | None   # nano-USD, None = no limit
    models: tuple[str, ...]     # allowed model patterns, empty = all
    rpm: int                    # 0 = unlimited
    tpm: int
    spent: int
    requests: int
    month_spent: int


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: KeyView
    secret: str                 # shown once, never stored


class Accounts:
    def __init__(self, client: AsyncStore, keys: KeySpace, default_rate: Decimal,
                 replica_acks: ReplicaAcks = AUTO) -> None:
        self.r = client
        self.k = keys
        self._scripts = Scripts(client)
        self._acks = replica_acks   # credits are acknowledged once a replica has them (gateway.store.replicated)
        self.archive: ArchiveDB | None = None   # history older than Redis keeps (gateway.archive), when set
        self._default_rate = default_rate

    async def close(self) -> None:
        await self._scripts.close()

    # -- accounts --------------------------------------------------------------------------------------

    async def create_account(self, login: str, role: str = "customer") -> AccountView:
        login = login.strip().lower()
        if not LOGIN_RE.match(login):
            raise InvalidInput("login must be an email address")
        aid = "acct_" + secrets.token_hex(6)
        if not await self.r.set(self.k.login(login), aid, nx=True):
            raise ConflictError(f"an account with login {login} already exists")
        now = int(time.time() * 1000)
        await self.r.hset(self.k.account(aid), mapping={
            "id": aid, "login": login, "status": "ACTIVE", "role": role, "created": now,
            "credited": 0, "spent": 0, "reserved": 0, "requests": 0})
        await self.r.zadd(self.k.accounts(), {aid: now})
        return await self.account(aid)

    async def account(self, aid: str) -> AccountView:
        month, _ = month_and_day(int(time.time() * 1000))
        v = await self.r.hmget(self.k.account(aid), "id", "login", "status", "role", "created", "credited", "spent",
                               "reserved", "requests", f"m:{month}", f"mreq:{month}")
        if v[0] is None:
            raise NotFoundError(f"no account {aid}")
        return AccountView(_s(v[0]), _s(v[1]), _s(v[2]), _s(v[3], "customer"), _i(v[4]), _i(v[5]), _i(v[6]),
                           _i(v[7]), _i(v[8]), _i(v[9]), _i(v[10]))

    async def account_by_login(self, login: str) -> AccountView:
        aid = await self.r.get(self.k.login(login.strip().lower()))
        if aid is None:
            raise NotFoundError(f"no account with login {login}")
        return await self.account(aid.decode())

    async def list_accounts(self, query: str = "", offset: int = 0, limit: int = 50) -> tuple[list[AccountView], int]:
        ids = [i.decode() for i in await self.r.zrevrange(self.k.accounts(), 0, -1)]
        views = [await self.account(i) for i in ids]
        q = query.strip().lower()
        if q:
            views = [v for v in views if q in v.login or q in v.id]
        return views[offset:offset + limit], len(views)

    async def set_account_status(self, aid: str, status: str) -> AccountView:
        if status not in ("ACTIVE", "BLOCKED"):
            raise InvalidInput("status must be ACTIVE or BLOCKED")
        await self.account(aid)
        await self.r.hset(self.k.account(aid), "status", status)
        return await self.account(aid)

    async def credit(self, aid: str, amount: int, *, kind: str = "topup", reason: str = "", actor: str = "operator",
                     operation_id: str = "") -> tuple[bool, AccountView]:
        """Add `amount` nano-USD (negative for a correction); applied once per `operation_id`."""
        if kind == "topup" and amount <= 0:
            raise InvalidInput("a top-up must be a positive amount")
        if kind == "correction" and not reason.strip():
            raise InvalidInput("a correction needs a reason")
        applied, _ = await self._scripts.credit(
            keys=[self.k.account(aid), self.k.ledger(aid), self.k.payments(aid)],
            args=[operation_id, amount, kind, reason, actor, int(time.time() * 1000)], acks=self._acks)
        if int(applied) == -1:
            raise NotFoundError(f"no account {aid}")
        # the archiver looks at this account's ledger in its next pass (gateway.archive.archiver)
        await self.r.zadd(self.k.archive_index(), {aid: int(time.time() * 1000) + 60_000}, gt=True)
        return bool(int(applied)), await self.account(aid)

    async def ledger_entries(self, aid: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.r.xrevrange(self.k.ledger(aid), count=limit)
        return [{k.decode(): v.decode() for k, v in fields.items()} | {"id": eid.decode()} for eid, fields in rows]

    # -- exchange rate ---------------------------------------------------------------------------------

    async def usd_rub(self) -> Decimal:
        v = await self.r.get(self.k.fx())
        return Decimal(v.decode()) if v else self._default_rate

    async def set_usd_rub(self, rate: Decimal) -> Decimal:
        if rate <= 0:
            raise InvalidInput("the rate must be positive")
        await self.r.set(self.k.fx(), str(rate))
        return rate

    # -- keys ------------------------------------------------------------------------------------------

    async def create_key(self, aid: str, *, name: str = "", monthly_limit: int | None = None,
                         models: list[str] | None = None, rpm: int = 0, tpm: int = 0) -> CreatedKey:
        await self.account(aid)
        pats = [m.strip() for m in (models or []) if m.strip()]
        for p in pats:
            if not re.fullmatch(r"[A-Za-z0-9._:/-]+\*?", p):
                raise InvalidInput(f"model pattern '{p}' must be a name or a prefix ending in '*'")
        if monthly_limit is not None and monthly_limit < 0:
            raise InvalidInput("monthly limit must not be negative")
        if rpm < 0 or tpm < 0:
            raise InvalidInput("rpm and tpm must not be negative")
        kid = "key_" + secrets.token_hex(6)
        prefix, secret = new_token()
        now = int(time.time() * 1000)
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(self.k.key(aid, kid), mapping={
                "id": kid, "account": aid, "name": name.strip()[:100], "prefix": prefix, "status": "ACTIVE",
                "created": now, "limit": -1 if monthly_limit is None else monthly_limit, "models": ",".join(pats),
                "rpm": rpm, "tpm": tpm, "spent": 0, "requests": 0})
            pipe.zadd(self.k.keys_of(aid), {kid: now})
            pipe.set(self.k.token(token_hash(secret)), f"{aid}:{kid}")
            pipe.set(self.k.key_owner(kid), aid)
            await pipe.execute()
        return CreatedKey(await self.key(aid, kid), secret)

    async def key(self, aid: str, kid: str) -> KeyView:
        month, _ = month_and_day(int(time.time() * 1000))
        v = await self.r.hmget(self.k.key(aid, kid), "id", "name", "prefix", "status", "created", "limit", "models",
                               "rpm", "tpm", "spent", "requests", f"m:{month}")
        if v[0] is None:
            raise NotFoundError(f"no key {kid}")
        limit = _i(v[5], -1)
        return KeyView(_s(v[0]), aid, _s(v[1]), _s(v[2]), _s(v[3]), _i(v[4]), None if limit < 0 else limit,
                       tuple(m for m in _s(v[6]).split(",") if m), _i(v[7]), _i(v[8]), _i(v[9]), _i(v[10]), _i(v[11]))

    async def key_owner(self, kid: str) -> str:
        aid = await self.r.get(self.k.key_owner(kid))
        if aid is None:
            raise NotFoundError(f"no key {kid}")
        return aid.decode()

    async def list_keys(self, aid: str) -> list[KeyView]:
        await self.account(aid)
        return [await self.key(aid, kid.decode()) for kid in await self.r.zrevrange(self.k.keys_of(aid), 0, -1)]

    async def set_key_status(self, kid: str, status: str) -> KeyView:
        """REVOKED is final; ACTIVE/BLOCKED toggle. Takes effect on the next admission (checked in Lua)."""
        aid = await self.key_owner(kid)
        current = await self.key(aid, kid)
        if current.status == "REVOKED" and status != "REVOKED":
            raise ConflictError("a revoked key cannot be re-activated; create a new one")
        await self.r.hset(self.k.key(aid, kid), "status", status)
        return await self.key(aid, kid)

    async def revoke_key(self, kid: str) -> KeyView:
        return await self.set_key_status(kid, "REVOKED")

    async def update_key_limits(self, kid: str, *, monthly_limit: int | None = None, clear_limit: bool = False,
                                models: list[str] | None = None, rpm: int | None = None, tpm: int | None = None) -> KeyView:
        aid = await self.key_owner(kid)
        fields: dict[str, Any] = {}
        if clear_limit:
            fields["limit"] = -1
        elif monthly_limit is not None:
            fields["limit"] = monthly_limit
        if models is not None:
            fields["models"] = ",".join(m.strip() for m in models if m.strip())
        if rpm is not None:
            fields["rpm"] = rpm
        if tpm is not None:
            fields["tpm"] = tpm
        if fields:
            await self.r.hset(self.k.key(aid, kid), mapping=fields)
        return await self.key(aid, kid)

    # -- read models -----------------------------------------------------------------------------------

    async def history(self, aid: str, limit: int = 50, before: str | None = None) -> list[dict[str, Any]]:
        """Newest first; `before` is a stream id for paging."""
        end = f"({before}" if before else "+"
        rows = await self.r.xrevrange(self.k.history(aid), max=end, min="-", count=limit)
        out = []
        for eid, fields in rows:
            raw = {k.decode(): v for k, v in fields.items()}
            item: dict[str, Any] = orjson.loads(raw.pop("d")) if "d" in raw else {}
            item.update({k: v.decode() for k, v in raw.items()})
            for n in ("cost", "t"):
                item[n] = int(item[n])
            item["id"] = eid.decode()
            out.append(item)
        if len(out) < limit and self.archive is not None:
            # Redis keeps the newest part of the stream; what is older (trimmed once archived) is read there
            oldest = out[-1]["id"] if out else before
            older = await asyncio.to_thread(self.archive.history_before, aid, parse_id(oldest) if oldest else None,
                                            limit - len(out))
            out.extend(_archived(row) for row in older)
        return out

    async def balance(self, aid: str, kid: str) -> dict[str, Any]:
        """GET /v1/balance (seed §12), plus the RUB twin of every amount."""
        acct, key, rate = await self.account(aid), await self.key(aid, kid), await self.usd_rub()
        limit = key.monthly_limit
        doc: dict[str, Any] = {
            "account_balance_usd": nano_to_float(acct.credited),
            "account_balance_rub": float(nano_to_rub(acct.credited, rate)),
            "spend_total_usd": nano_to_float(acct.spent),
            "remaining_balance_usd": nano_to_float(acct.remaining),
            "monthly_limit_usd": None if limit is None else nano_to_float(limit),
            "spend_month_usd": nano_to_float(key.month_spent),
            "remaining_month_usd": None if limit is None else nano_to_float(max(limit - key.month_spent, 0)),
            "spend_total_rub": float(nano_to_rub(acct.spent, rate)),
            "remaining_balance_rub": float(nano_to_rub(acct.remaining, rate)),
            "spend_month_rub": float(nano_to_rub(key.month_spent, rate)),
            "usd_rub_rate": float(rate),
        }
        return doc

    async def me(self, aid: str, kid: str) -> dict[str, Any]:
        """GET /v1/me (seed §12): the account, this token, this token's usage."""
        acct, key = await self.account(aid), await self.key(aid, kid)
        return {
            "user": {"id": acct.id, "login": acct.login, "status": acct.status,
                     "createdAt": _iso(acct.created_ms)},
            "token": {"id": key.id, "prefix": key.prefix, "name": key.name, "status": key.status,
                      "createdAt": _iso(key.created_ms),
                      "monthlyLimitUsd": None if key.monthly_limit is None else nano_to_float(key.monthly_limit),
                      "models": list(key.models), "rpm": key.rpm or None, "tpm": key.tpm or None},
            "usage": {"requestsTotal": key.requests, "spendTotalUsd": nano_to_float(key.spent),
                      "spendMonthUsd": nano_to_float(key.month_spent)},
        }

    async def usage(self, aid: str, start: date | None = None, end: date | None = None) -> dict[str, Any]:
        """GET /v1/usage: all-time and this month, plus per-day requests and spend for [start, end]."""
        acct, rate = await self.account(aid), await self.usd_rub()
        today = datetime.now(UTC).date()
        end = end or today
        start = start or end.replace(day=1)
        if start > end:
            raise InvalidInput("'from' must not be after 'to'")
        if (end - start).days > 366:
            raise InvalidInput("the period may span at most 366 days")
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        fields = [f"{d.isoformat()}:{x}" for d in days for x in ("r", "s")]
        values = await self.r.hmget(self.k.daily(aid), fields)
        rows = []
        total_spend = 0
        for i, d in enumerate(days):
            req, spend = _i(values[2 * i]), _i(values[2 * i + 1])
            total_spend += spend
            rows.append({"date": d.isoformat(), "requests": req, "spend_usd": nano_to_float(spend),
                         "spend_rub": float(nano_to_rub(spend, rate))})
        return {
            "object": "usage",
            "total": {"requests": acct.requests, "spend_usd": nano_to_float(acct.spent),
                      "spend_rub": float(nano_to_rub(acct.spent, rate))},
            "month": {"month": today.strftime("%Y-%m"), "requests": acct.month_requests,
                      "spend_usd": nano_to_float(acct.month_spent), "spend_rub": float(nano_to_rub(acct.month_spent, rate))},
            "period": {"from": start.isoformat(), "to": end.isoformat(),
                       "requests": sum(r["requests"] for r in rows), "spend_usd": nano_to_float(total_spend),
                       "spend_rub": float(nano_to_rub(total_spend, rate)), "days": rows},
        }


def _archived(row: dict[str, Any]) -> dict[str, Any]:
    """An archive row as Accounts.history gives a Redis entry."""
    item: dict[str, Any] = orjson.loads(row["data"])
    item.update(rid=row["request_id"], cost=row["cost"], t=row["t_ms"], id=f"{row['ms']}-{row['seq']}")
    return item


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
