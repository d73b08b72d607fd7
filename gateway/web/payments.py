"""Top-ups through a payment provider: create a payment, send the customer to the provider's page, credit
the balance when the provider's signed webhook says the payment succeeded.

    PaymentProvider (protocol)      create(...) → provider's payment id + confirmation URL;
     └── YooKassaStyle              verify(headers, raw body) → the webhook's event, or BadSignature
    TopUps                          our record of each payment, in Redis under the account's hash tag
    Payments                        the flow: start() for the Billing page, webhook() for the provider

A top-up is fixed when it is created: the amount in the provider's currency, its USD value in nano-USD at
the rate of that moment, and the account. A webhook is believed only with a valid HMAC-SHA256 signature over
its raw body, and only if its payment id, amount, currency and account match that record. The credit goes
through `gateway.operations.topup` with the operation id `<provider>:<payment id>`, which the credit script
applies once: a webhook delivered twice, or twice at the same moment, credits once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import httpx
import orjson

from gateway.account_admin import topup
from gateway.config.model import PaymentProvider as ProviderConfig
from gateway.money import MoneyError, nano_to_usd, rub_to_nano_usd, usd_to_nano
from gateway.store.accounts import Accounts, NotFoundError
from gateway.store.connection import AsyncStore
from gateway.store.keys import KeySpace
from gateway.web import forms
from gateway.web.forms import FieldError
from gateway.web.i18n import N_

log = logging.getLogger("gateway.web.payments")

SIGNATURE_HEADER = "x-payment-signature"
MAX_WEBHOOK_BYTES = 64 * 1024


class PaymentError(Exception):
    """The provider could not be reached or answered nonsense; nothing was charged or credited.
    The message is English marked for translation (the Billing page shows it in the customer's language)."""

# what a customer calls a payment kind, whatever the provider's brand (the catalogue translates it)
METHOD_WORDS = {"yookassa": N_("Bank card or SBP")}
FINAL = ("succeeded", "canceled")


class BadSignature(Exception):
    pass


class WebhookRejected(Exception):
    """A well-signed webhook that does not match our record; nothing is credited."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Created:
    payment_id: str
    confirmation_url: str


@dataclass(frozen=True, slots=True)
class Event:
    name: str                 # payment.succeeded, payment.canceled, ...
    payment_id: str
    status: str
    amount: Decimal | None
    currency: str
    metadata: dict[str, Any]


class PaymentProvider(Protocol):
    config: ProviderConfig

    async def create(self, *, idempotence_key: str, amount: Decimal, description: str, return_url: str,
                     metadata: dict[str, str]) -> Created: ...

    def verify(self, headers: dict[str, str], raw: bytes) -> Event: ...

    async def status(self, payment_id: str) -> Event: ...


def sign(secret: str, raw: bytes) -> str:
    """The webhook signature header's value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


class YooKassaStyle:
    """A YooKassa-like API: POST {api_url}/payments with HTTP Basic (shop id, secret key) and an
    Idempotence-Key; the answer's confirmation.confirmation_url is where the customer pays; the provider
    then POSTs a notification {"event": "payment.succeeded", "object": {...}} signed with the webhook secret."""

    def __init__(self, config: ProviderConfig, timeout_s: float = 10.0) -> None:
        self.config = config
        self.timeout = timeout_s

    async def create(self, *, idempotence_key: str, amount: Decimal, description: str, return_url: str,
                     metadata: dict[str, str]) -> Created:
        c = self.config
        basic = base64.b64encode(f"{c.shop_id}:{c.secret_key}".encode()).decode()
        body = {"amount": {"value": f"{amount:.2f}", "currency": c.currency}, "capture": True,
                "confirmation": {"type": "redirect", "return_url": return_url},
                "description": description[:128], "metadata": metadata}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.post(f"{c.api_url}/payments", content=orjson.dumps(body), headers={
                    "Authorization": f"Basic {basic}", "Idempotence-Key": idempotence_key,
                    "Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            log.warning("payment provider %s unreachable: %s", c.name, type(exc).__name__)
            raise PaymentError(N_("The payment service cannot be reached; try again in a minute.")) from None
        if resp.status_code != 200:
            log.warning("payment provider %s answered %s to create", c.name, resp.status_code)
            raise PaymentError(N_("The payment service refused the payment; try again later."))
        try:
            doc = resp.json()
            pid, url = str(doc["id"]), str(doc["confirmation"]["confirmation_url"])
        except (ValueError, KeyError, TypeError):
            raise PaymentError(N_("The payment service answered something unexpected; try again later.")) from None
        if not url.startswith(("https://", "http://")) or not pid or len(pid) > 100:
            raise PaymentError(N_("The payment service answered something unexpected; try again later."))
        return Created(pid, url)

    async def status(self, payment_id: str) -> Event:
        """GET {api_url}/payments/{id}: the payment as the provider sees it now (for the status poll)."""
        c = self.config
        basic = base64.b64encode(f"{c.shop_id}:{c.secret_key}".encode()).decode()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.get(f"{c.api_url}/payments/{payment_id}",
                                        headers={"Authorization": f"Basic {basic}"})
            if resp.status_code != 200:
                raise PaymentError(f"status answer {resp.status_code}")
            obj = resp.json()
            amount = obj.get("amount") or {}
            value = Decimal(str(amount["value"])) if "value" in amount else None
            return Event("payment." + str(obj.get("status", "")), str(obj["id"]), str(obj.get("status", "")),
                         value, str(amount.get("currency", "")), dict(obj.get("metadata") or {}))
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
            raise PaymentError(f"status of {payment_id} unreadable: {type(exc).__name__}") from None

    def verify(self, headers: dict[str, str], raw: bytes) -> Event:
        secret = self.config.webhook_secret
        given = headers.get(SIGNATURE_HEADER, "")
        if not secret or not hmac.compare_digest(given.encode(), sign(secret, raw).encode()):
            raise BadSignature("bad or missing webhook signature")
        try:
            doc = orjson.loads(raw)
            obj = doc["object"]
            amount = obj.get("amount") or {}
            value = Decimal(str(amount["value"])) if "value" in amount else None
            return Event(str(doc["event"]), str(obj["id"]), str(obj.get("status", "")), value,
                         str(amount.get("currency", "")), dict(obj.get("metadata") or {}))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, InvalidOperation):
            raise WebhookRejected(400, "malformed notification") from None


KINDS = {"yookassa": YooKassaStyle}


def providers_from(config: dict[str, ProviderConfig]) -> dict[str, PaymentProvider]:
    return {name: KINDS[p.kind](p) for name, p in config.items()}


# -- our records ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopUp:
    id: str                   # ours: tu_...
    account_id: str
    provider: str
    payment_id: str           # the provider's
    amount: Decimal           # in `currency`
    currency: str
    nano: int                 # what is credited, nano-USD, fixed at creation
    rate: Decimal
    status: str               # pending, succeeded, canceled
    created_ms: int
    paid_ms: int
    url: str = ""             # the provider's checkout page, to resume a pending payment

    @property
    def operation_id(self) -> str:
        return f"{self.provider}:{self.payment_id}"


class TopUps:
    def __init__(self, client: AsyncStore, keys: KeySpace) -> None:
        self.r = client
        self.k = keys

    def _key(self, aid: str, tid: str) -> str:
        return f"{self.k.tag(aid)}:topup:{tid}"

    def _list(self, aid: str) -> str:
        return f"{self.k.tag(aid)}:topups"

    def _pending(self) -> str:
        """Top-ups not final yet, for the status poll (one key: read by every process's poller)."""
        return f"{self.k.p}:web:topups:pending"

    async def pending(self, older_than_ms: int, limit: int = 100) -> list[tuple[str, str, int]]:
        """(account, top-up, created ms) of pending top-ups created before `older_than_ms`, oldest first."""
        rows = await self.r.zrangebyscore(self._pending(), 0, older_than_ms, start=0, num=limit, withscores=True)
        out: list[tuple[str, str, int]] = []
        for ref, score in rows:  # type: ignore[str-unpack]  # redis-py types withscores pairs loosely
            aid, _, tid = ref.decode().partition("|")
            out.append((aid, tid, int(score)))
        return out

    async def forget_pending(self, aid: str, tid: str) -> None:
        await self.r.zrem(self._pending(), f"{aid}|{tid}")

    def _by_payment(self, provider: str, pid: str) -> str:
        return f"{self.k.p}:web:payment:{provider}:{hashlib.sha256(pid.encode()).hexdigest()[:40]}"

    async def add(self, t: TopUp) -> None:
        async with self.r.pipeline(transaction=False) as p:
            p.hset(self._key(t.account_id, t.id), mapping={
                "id": t.id, "account": t.account_id, "provider": t.provider, "payment": t.payment_id,
                "amount": str(t.amount), "currency": t.currency, "nano": t.nano, "rate": str(t.rate),
                "status": t.status, "created": t.created_ms, "paid": 0, "url": t.url})
            p.zadd(self._list(t.account_id), {t.id: t.created_ms})
            p.zadd(self._pending(), {f"{t.account_id}|{t.id}": t.created_ms})
            p.set(self._by_payment(t.provider, t.payment_id), f"{t.account_id}|{t.id}")
            await p.execute()

    async def get(self, aid: str, tid: str) -> TopUp:
        v = await self.r.hgetall(self._key(aid, tid))
        if not v:
            raise NotFoundError(f"no top-up {tid}")
        d = {k.decode(): x.decode() for k, x in v.items()}
        return TopUp(d["id"], d["account"], d["provider"], d["payment"], Decimal(d["amount"]), d["currency"],
                     int(d["nano"]), Decimal(d["rate"]), d["status"], int(d["created"]), int(d.get("paid", 0)),
                     d.get("url", ""))

    async def by_payment(self, provider: str, pid: str) -> TopUp:
        ref = await self.r.get(self._by_payment(provider, pid))
        if ref is None:
            raise NotFoundError(f"no payment {pid}")
        aid, tid = ref.decode().split("|", 1)
        return await self.get(aid, tid)

    async def mark(self, t: TopUp, status: str) -> None:
        fields: dict[str, Any] = {"status": status}
        if status == "succeeded":
            fields["paid"] = int(time.time() * 1000)
        await self.r.hset(self._key(t.account_id, t.id), mapping=fields)
        if status in FINAL:
            await self.forget_pending(t.account_id, t.id)

    async def recent(self, aid: str, limit: int = 20) -> list[TopUp]:
        ids = [i.decode() for i in await self.r.zrevrange(self._list(aid), 0, limit - 1)]
        return [await self.get(aid, i) for i in ids]


# -- the flow --------------------------------------------------------------------------------------------


class Payments:
    def __init__(self, accounts: Accounts, topups: TopUps, providers: dict[str, PaymentProvider]) -> None:
        self.accounts = accounts
        self.topups = topups
        self.providers = providers

    def methods(self) -> dict[str, str]:
        """Each provider's payment method in a customer's words (English, translated by the page)."""
        return {name: METHOD_WORDS.get(p.config.kind, p.config.title) for name, p in self.providers.items()}

    def available(self) -> list[ProviderConfig]:
        return [p.config for p in self.providers.values() if p.config.configured]

    def parse_amount(self, provider: ProviderConfig, text: str) -> Decimal:
        """A plain decimal with at most 2 places within the provider's bounds (FieldError otherwise)."""
        amount = forms.plain_decimal(text, "amount", low=provider.min_amount, high=provider.max_amount, places=2)
        return amount.quantize(Decimal("0.01"))

    async def start(self, aid: str, provider_name: str, amount_text: str, return_url: str) -> tuple[TopUp, str]:
        """Create the payment at the provider; returns our record and the URL to send the customer to."""
        provider = self.providers.get(provider_name)
        if provider is None or not provider.config.configured:
            raise FieldError("provider", N_("This payment method is not available."))
        cfg = provider.config
        amount = self.parse_amount(cfg, amount_text)
        account = await self.accounts.account(aid)
        rate = await self.accounts.usd_rub()
        try:
            nano = rub_to_nano_usd(amount, rate) if cfg.currency == "RUB" else usd_to_nano(amount)
        except MoneyError as exc:
            raise FieldError("amount", N_("This amount cannot be credited; enter a smaller one.")) from exc
        tid = "tu_" + secrets.token_hex(8)
        created = await provider.create(
            idempotence_key=tid, amount=amount, description=f"Botech AI Gateway top-up for {account.login}",
            return_url=return_url.replace("{topup}", tid), metadata={"account_id": aid, "topup_id": tid})
        record = TopUp(tid, aid, cfg.name, created.payment_id, amount, cfg.currency, nano, rate, "pending",
                       int(time.time() * 1000), 0, created.confirmation_url)
        await self.topups.add(record)
        log.info("top-up %s of %s %s for %s created at %s", tid, amount, cfg.currency, aid, cfg.name)
        return record, created.confirmation_url

    async def webhook(self, provider_name: str, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
        """Handle one notification; raises BadSignature / WebhookRejected / NotFoundError (nothing changes)."""
        provider = self.providers.get(provider_name)
        if provider is None:
            raise NotFoundError(f"no payment provider {provider_name}")
        event = provider.verify(headers, raw)
        record = await self.topups.by_payment(provider_name, event.payment_id)
        return await self.apply(record, event)

    async def apply(self, record: TopUp, event: Event) -> dict[str, Any]:
        """What the provider says about a payment (its webhook or its status answer) applied to our record:
        credit once on success, mark a cancellation; raises WebhookRejected when it does not match."""
        if event.name == "payment.succeeded":
            if event.status != "succeeded":
                raise WebhookRejected(400, "payment.succeeded for a payment that has not succeeded")
            if event.amount != record.amount or event.currency != record.currency:
                log.warning("webhook for %s: amount %s %s does not match the top-up's %s %s", record.id,
                            event.amount, event.currency, record.amount, record.currency)
                raise WebhookRejected(400, "amount or currency does not match the payment")
            if event.metadata.get("account_id", record.account_id) != record.account_id:
                log.warning("webhook for %s names another account", record.id)
                raise WebhookRejected(400, "account does not match the payment")
            done = await topup(
                self.accounts, record.account_id, usd=nano_to_usd(record.nano),
                reason=f"{record.amount} {record.currency} via {record.provider} at {record.rate} RUB/USD "
                       f"(top-up {record.id})",
                operation_id=record.operation_id, actor=f"payment:{record.provider}")
            if record.status != "succeeded":
                await self.topups.mark(record, "succeeded")
            if done.applied:
                log.info("top-up %s credited to %s", record.id, record.account_id)
            return {"ok": True, "applied": done.applied}
        if event.name == "payment.canceled" and record.status == "pending":
            await self.topups.mark(record, "canceled")
        return {"ok": True, "applied": False}

    async def poll(self, record: TopUp) -> TopUp:
        """Ask the provider about a pending top-up (the webhook may be late or lost) and apply the answer."""
        provider = self.providers.get(record.provider)
        if provider is None or record.status != "pending":
            return record
        try:
            event = await provider.status(record.payment_id)
            if event.payment_id == record.payment_id and event.status in FINAL:
                await self.apply(record, event)
        except (PaymentError, WebhookRejected) as exc:
            log.warning("status poll of top-up %s: %s", record.id, exc)
            return record
        return await self.topups.get(record.account_id, record.id)

    async def cancel(self, record: TopUp) -> None:
        """The customer gives up a pending checkout. Only our record changes: money the provider still
        reports as received later (webhook or poll) is credited all the same."""
        if record.status == "pending":
            await self.topups.mark(record, "canceled")

    async def poll_pending(self, max_age_ms: int = 3 * 86400_000) -> int:
        """One round of the background poll: every pending top-up; those older than `max_age_ms` are given
        up (the provider's own checkout expires well before). Returns how many were asked about."""
        now = int(time.time() * 1000)
        asked = 0
        for aid, tid, created in await self.topups.pending(now):
            try:
                record = await self.topups.get(aid, tid)
            except NotFoundError:
                await self.topups.forget_pending(aid, tid)
                continue
            if record.status != "pending" or now - created > max_age_ms:
                await self.topups.forget_pending(aid, tid)
                continue
            await self.poll(record)
            asked += 1
        return asked
