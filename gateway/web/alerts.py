"""Alerts a customer sets on the Settings page: the balance falling below a threshold (USD or RUB) and a
key reaching N % of its monthly limit, sent by e-mail and/or to a webhook URL.

A background loop in every process (`Web.start_background`) looks at the accounts that have alerts. Each
alert fires once per crossing: HSETNX on the account's `fired` hash is the claim (one process sends, even
with many), and the mark is removed when the balance is back above the threshold or the key's spend is
back under N % (a new month, a raised limit). Webhooks are signed (HMAC-SHA256 of the body with the
account's alert secret), retried with backoff, never redirected, and refused for private, loopback,
link-local and other non-public addresses, checked when the URL is saved and again before each send
(loopback only when `web.alerts_allow_loopback`, for tests)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from gateway.money import nano_to_usd, rub_to_nano_usd, usd_to_nano
from gateway.store.accounts import Accounts, NotFoundError
from gateway.store.connection import AsyncStore, text
from gateway.store.keys import KeySpace
from gateway.web.forms import FieldError, plain_decimal, whole
from gateway.web.i18n import N_

log = logging.getLogger("gateway.web.alerts")

SIGNATURE_HEADER = "x-gateway-signature"
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0)
MAX_URL = 500
MAX_THRESHOLD = {"USD": Decimal(1_000_000), "RUB": Decimal(100_000_000)}


@dataclass(frozen=True, slots=True)
class AlertSettings:
    low_amount: Decimal | None = None      # the balance threshold, in `low_currency`
    low_currency: str = "USD"
    key_percent: int = 0                   # 0: off
    by_email: bool = True
    webhook_url: str = ""
    secret: str = ""                       # signs webhook bodies; shown to the customer

    @property
    def active(self) -> bool:
        return (self.low_amount is not None or self.key_percent > 0) and (self.by_email or bool(self.webhook_url))


class UnsafeURL(FieldError):
    pass


def public_address_check(url: str, allow_loopback: bool) -> None:
    """Refuse a webhook URL whose host is not a public address (FieldError on the `webhook_url` field)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL or parts.username:
        raise UnsafeURL("webhook_url", N_("Enter an http:// or https:// address of at most 500 characters."))
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise UnsafeURL("webhook_url", N_("This host name does not resolve.")) from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if ip.is_loopback and allow_loopback:
            continue
        if not ip.is_global or ip.is_multicast:
            raise UnsafeURL("webhook_url", N_("Webhooks go only to public internet addresses."))


def parse_form(form: dict[str, str], current: AlertSettings, allow_loopback: bool) -> AlertSettings:
    currency = form.get("low_currency", "USD")
    if currency not in MAX_THRESHOLD:
        raise FieldError("low_currency", N_("Choose USD or RUB."))
    low_text = form.get("low_amount", "").strip()
    low = plain_decimal(low_text, "low_amount", low=Decimal("0.01"), high=MAX_THRESHOLD[currency], places=2) \
        if low_text else None
    percent = whole(form.get("key_percent", ""), "key_percent", 100)
    url = form.get("webhook_url", "").strip()
    if url:
        public_address_check(url, allow_loopback)
    return AlertSettings(low, currency, percent, form.get("by_email") == "1", url,
                         current.secret or secrets.token_urlsafe(24))


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Alerts:
    def __init__(self, client: AsyncStore, keys: KeySpace, accounts: Accounts, allow_loopback: bool) -> None:
        self.r = client
        self.k = keys
        self.accounts = accounts
        self.allow_loopback = allow_loopback
        self._tasks: set[asyncio.Task[bool]] = set()

    def _key(self, aid: str) -> str:
        return f"{self.k.tag(aid)}:web:alerts"

    def _fired(self, aid: str) -> str:
        return f"{self.k.tag(aid)}:web:alerts:fired"

    def _index(self) -> str:
        return f"{self.k.p}:web:alerts:index"

    async def get(self, aid: str) -> AlertSettings:
        raw = {text(k): text(v) for k, v in (await self.r.hgetall(self._key(aid))).items()}
        if not raw:
            return AlertSettings()
        return AlertSettings(Decimal(raw["low"]) if raw.get("low") else None, raw.get("currency", "USD"),
                             int(raw.get("percent", "0")), raw.get("email") == "1", raw.get("url", ""),
                             raw.get("secret", ""))

    async def save(self, aid: str, a: AlertSettings) -> None:
        await self.r.hset(self._key(aid), mapping={
            "low": "" if a.low_amount is None else str(a.low_amount), "currency": a.low_currency,
            "percent": a.key_percent, "email": "1" if a.by_email else "0", "url": a.webhook_url,
            "secret": a.secret})
        await self.r.delete(self._fired(aid))        # new thresholds: every alert may fire again
        if a.active:
            await self.r.sadd(self._index(), aid)
        else:
            await self.r.srem(self._index(), aid)

    # -- the loop ----------------------------------------------------------------------------------------

    async def check_all(self, send: Any) -> int:
        """One round over every account with alerts; `send(aid, event, settings)` delivers. Returns how many
        alerts fired."""
        fired = 0
        for raw in await self.r.smembers(self._index()):
            aid = text(raw)
            try:
                fired += await self.check(aid, send)
            except NotFoundError:
                await self.r.srem(self._index(), aid)
        return fired

    async def check(self, aid: str, send: Any) -> int:
        a = await self.get(aid)
        if not a.active:
            return 0
        account = await self.accounts.account(aid)
        rate = await self.accounts.usd_rub()
        events: list[tuple[str, dict[str, Any]]] = []
        if a.low_amount is not None:
            limit = usd_to_nano(a.low_amount) if a.low_currency == "USD" else rub_to_nano_usd(a.low_amount, rate)
            below = account.remaining < limit
            if await self._crossed(aid, "low", below):
                events.append(("balance.low", {
                    "threshold": str(a.low_amount), "currency": a.low_currency,
                    "remaining_balance_usd": str(nano_to_usd(account.remaining)),
                    "remaining_balance_rub": str((nano_to_usd(account.remaining) * rate).quantize(Decimal("0.01")))}))
        if a.key_percent:
            month = datetime.now(UTC).strftime("%Y-%m")
            for key in await self.accounts.list_keys(aid):
                if key.status != "ACTIVE" or not key.monthly_limit:
                    continue
                over = key.month_spent * 100 >= key.monthly_limit * a.key_percent
                if await self._crossed(aid, f"key:{key.id}:{month}", over):
                    events.append(("key.limit", {
                        "key_id": key.id, "key_prefix": key.prefix, "key_name": key.name,
                        "percent": a.key_percent, "month_spent_usd": str(nano_to_usd(key.month_spent)),
                        "monthly_limit_usd": str(nano_to_usd(key.monthly_limit))}))
        for name, data in events:
            await send(aid, account.login, name, data, a)
        return len(events)

    async def _crossed(self, aid: str, what: str, beyond: bool) -> bool:
        """True once when `beyond` becomes true; the mark goes when it is false again (re-arms)."""
        if beyond:
            return bool(await self.r.hsetnx(self._fired(aid), what, int(time.time())))
        await self.r.hdel(self._fired(aid), what)
        return False

    # -- webhooks --------------------------------------------------------------------------------------

    def post_later(self, url: str, secret: str, event: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self.post(url, secret, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def post(self, url: str, secret: str, event: dict[str, Any]) -> bool:
        """POST the signed event; retried with backoff on a connection error or a 5xx/429 answer."""
        body = orjson.dumps(event)
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(secret, body),
                   "user-agent": "botech-gateway-alerts/1"}
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS_S)):
            await asyncio.sleep(delay)
            try:
                await asyncio.to_thread(public_address_check, url, self.allow_loopback)
            except FieldError:
                log.warning("alert webhook for %s refused: not a public address", event.get("account_id"))
                return False
            try:
                async with httpx.AsyncClient(timeout=5.0, follow_redirects=False, trust_env=False) as client:
                    resp = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                log.info("alert webhook attempt %s failed: %s", attempt + 1, type(exc).__name__)
                continue
            if resp.status_code < 500 and resp.status_code != 429:
                return 200 <= resp.status_code < 300
            log.info("alert webhook attempt %s answered %s", attempt + 1, resp.status_code)
        return False
