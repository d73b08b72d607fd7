"""Admission and settlement around one proxied call: what to reserve, what to charge, what to record.

Reservation = the request's maximum cost: every prompt byte counted as a token (a token is at least one
byte of text, so this bounds text prompts from above) plus the output cap (`max_completion_tokens` /
`max_tokens`, else the smaller of the model's cap and `billing.default_max_output_tokens`). The charge is
the provider's reported usage at the model's price. Documented bound: a request without a max-tokens
cap whose answer runs past the default cap, or with images passed by URL, can cost more than it
reserved; the balance may then go below zero by that difference and further requests get 403.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from gateway.config.model import Settings
from gateway.errors import Forbidden, RateLimited, Unauthorized, UpstreamUnavailable
from gateway.pricing import PriceBook
from gateway.proxy.outcome import Outcome
from gateway.proxy.routing import RouteDecision
from gateway.store.ledger import ADMIT_OK, REJECTIONS, Admission, Caller, Ledger
from gateway.store.resp import STORE_ERRORS, RespError, StoreUnavailable
from gateway.usage import Usage, dig

log = logging.getLogger("gateway.proxy.billing")
# a bound on the audio tokens a second of audio becomes (OpenAI's transcription models use ~10-25; Gemini 32)
AUDIO_TOKENS_PER_S = 50
UNAVAILABLE = "billing is temporarily unavailable; nothing was charged, try again"
# admit.lua's refusal codes (gateway.store.ledger.REJECTIONS) → the error type metrics and the log show
_REFUSAL_TYPES = {3: "policy_account_blocked", 4: "policy_model_not_allowed", 5: "policy_rate_limit_requests",
                  6: "policy_rate_limit_tokens", 7: "policy_balance", 8: "policy_monthly_limit"}


@dataclass(slots=True)
class Ticket:
    caller: Caller
    request_id: str
    model: str
    endpoint: str
    reserve: int
    admission: Admission
    started: float = field(default_factory=time.perf_counter)
    settled: bool = False
    cost: int = 0           # nano-USD charged, known once settle() has been called


def rate_headers(a: Admission) -> tuple[tuple[bytes, bytes], ...]:
    """OpenAI's x-ratelimit-* names, for the limits this key has."""
    if not a.rpm_limit and not a.tpm_limit:
        return ()
    out: list[tuple[bytes, bytes]] = []
    reset = f"{max(a.reset_ms, 1) / 1000:.3g}s".encode()
    if a.rpm_limit:
        out += [(b"x-ratelimit-limit-requests", str(a.rpm_limit).encode()),
                (b"x-ratelimit-remaining-requests", str(a.rpm_remaining).encode()),
                (b"x-ratelimit-reset-requests", reset)]
    if a.tpm_limit:
        out += [(b"x-ratelimit-limit-tokens", str(a.tpm_limit).encode()),
                (b"x-ratelimit-remaining-tokens", str(a.tpm_remaining).encode()),
                (b"x-ratelimit-reset-tokens", reset)]
    return tuple(out)


class Admitting:
    """An admission on its way through Redis. `ticket()` waits for it once and then answers the same
    (the ticket, or the refusal raised again), so every path of a request can ask."""

    __slots__ = ("_error", "_pending", "_ticket")

    def __init__(self, pending: Awaitable[Ticket]) -> None:
        self._pending: Awaitable[Ticket] | None = pending
        self._ticket: Ticket | None = None
        self._error: BaseException | None = None

    async def ticket(self) -> Ticket:
        if self._ticket is not None:
            return self._ticket
        if self._error is not None:
            raise self._error
        pending, self._pending = self._pending, None
        assert pending is not None
        try:
            self._ticket = await pending
        except BaseException as exc:
            self._error = exc
            raise
        return self._ticket


class BillingGate:
    def __init__(self, ledger: Ledger, prices: PriceBook, settings: Settings, version: str = "") -> None:
        self._ledger = ledger
        self._version = version   # the config version whose prices these are: each history entry records it
        self._resp = ledger.resp
        self._waiting = ledger.unconfirmed.pending
        self._max_waiting = ledger.unconfirmed.limit
        self._prices = prices
        self._default_cap = settings.default_max_output_tokens

    def output_cap(self, decision: RouteDecision, body: dict[str, Any]) -> int:
        billed = decision.endpoint.billed
        if billed != "tokens":
            if billed == "speech" or billed == "audio":  # audio out / the transcript: the model's cap
                return min(decision.model.max_output_tokens or self._default_cap, self._default_cap)
            return 0
        cap = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
        if cap is None and decision.endpoint.caps:  # an API that keeps it elsewhere (Gemini's generationConfig)
            cap = next((v for v in (dig(body, p.split(".")) for p in decision.endpoint.caps) if v is not None), None)
        if not isinstance(cap, int) or cap <= 0:
            model_cap = decision.model.max_output_tokens or self._default_cap
            cap = min(model_cap, self._default_cap)
        n = body.get("n")
        return cap * (n if isinstance(n, int) and 0 < n <= 128 else 1)

    def reservation(self, decision: RouteDecision, body: dict[str, Any], raw: bytes | bytearray,
                    media: Usage | None = None) -> int:
        billed = decision.endpoint.billed
        images = body.get("n", 1) if billed == "images" else 0
        input_bound = len(raw)
        if billed == "speech":  # every character, and each as a token (a token is at least one character)
            text = body.get("input")
            media = Usage(characters=len(text) if isinstance(text, str) else len(raw))
        elif media is not None:  # an upload: its text fields, its images or its audio as tokens, not its bytes
            input_bound = media.input_tokens + AUDIO_TOKENS_PER_S * -(-media.audio_ms // 1000)
            if not media.audio_ms:
                media = None
        return self._prices.max_cost(decision.model.name, input_bound, self.output_cap(decision, body),
                                     images=images if isinstance(images, int) else 1, media=media)

    def admit(self, caller: Caller, decision: RouteDecision, body: dict[str, Any], raw: bytes | bytearray,
              request_id: str, media: Usage | None = None) -> Admitting:
        """Send the admission to Redis now; the request can be prepared while Redis answers. While Redis
        is known to be down, or too many settlements wait for its confirmation, refuse at once (503)."""
        if self._resp.down or len(self._waiting) >= self._max_waiting:  # attributes, not properties: per request
            raise UpstreamUnavailable(UNAVAILABLE, headers={"Retry-After": "1"}, error_type="gateway_billing_unavailable")
        reserve = self.reservation(decision, body, raw, media)
        endpoint = decision.endpoint.path  # what history records
        pending = self._ledger.admit(caller, request_id, decision.model.name, endpoint, reserve)
        return Admitting(self._ticket(pending, caller, request_id, decision, endpoint, reserve))

    async def _ticket(self, pending: Awaitable[Admission], caller: Caller, request_id: str, decision: RouteDecision,
                      endpoint: str, reserve: int) -> Ticket:
        try:
            a = await pending
        except STORE_ERRORS as exc:
            if not isinstance(exc, (StoreUnavailable, RespError)):  # sent, and maybe run: release what it
                log.warning("admission of %s failed: %s", request_id, exc)  # may hold once Redis is back
                self._ledger.settle_later(caller, request_id, 0, {
                    "key": caller.key_id, "model": decision.model.name, "provider": "-", "endpoint": endpoint,
                    "status": 503, "error": f"billing unavailable: {exc}"[:300]})
            raise UpstreamUnavailable(UNAVAILABLE, headers={"Retry-After": "1"},
                                      error_type="gateway_billing_unavailable") from None
        if a.code != ADMIT_OK:
            status, message = REJECTIONS[a.code]
            if status == 401:
                raise Unauthorized(message)
            if status == 429:
                retry = str(max(1, -(-a.reset_ms // 1000)))
                raise RateLimited(message, headers={"Retry-After": retry, **{
                    k.decode(): v.decode() for k, v in rate_headers(a)}}, error_type=_REFUSAL_TYPES[a.code])
            if a.code == 4:
                message = f"model '{decision.model.name}' is not allowed for this key"
            raise Forbidden(message, error_type=_REFUSAL_TYPES.get(a.code, ""))
        return Ticket(caller, request_id, decision.model.name, endpoint, reserve, a)

    def settle(self, ticket: Ticket, outcome: Outcome, raw_len: int = 0, reply_len: int = 0,
               price_dims: tuple[str, str] = ("*", "*"), extra: dict[str, str | int] | None = None
               ) -> Awaitable[int]:
        """Charge a successful call its actual cost, a failed one nothing; record it either way.

        The settlement is written to Redis before this returns (only a connection lost and being reopened
        delays the write; the connections are opened at start-up), so the caller may answer its client
        while Redis runs it: whatever anyone sends after the answer reaches Redis after the charge.
        The awaitable (which must be awaited) gives the cost once Redis has confirmed it, or has failed
        to in time: then the ledger keeps the settlement, journals it and sends it again until it does."""
        if ticket.settled:
            return _no_charge()
        ticket.settled = True
        usage = outcome.usage
        cost = 0
        if outcome.status == 200:
            if usage is None:  # the provider reported none: bill an estimate (~4 bytes a token), marked as such
                usage = Usage(input_tokens=-(-raw_len // 4), output_tokens=-(-reply_len // 4), estimated=True)
            cost = self._prices.cost(ticket.model, usage, *price_dims)
        ticket.cost = cost
        u = usage or Usage()
        fields: dict[str, str | int] = {
            "key": ticket.caller.key_id, "model": ticket.model, "provider": outcome.provider or "-",
            "endpoint": ticket.endpoint, "status": outcome.status or 500,
            "in": u.input_tokens, "cached": u.cached_input_tokens, "out": u.output_tokens,
            "reasoning": u.reasoning_tokens, "ms": int((time.perf_counter() - ticket.started) * 1000),
        }
        if self._version:
            fields["cfg"] = self._version
        if u.images:
            fields["images"] = u.images
        if u.characters:
            fields["chars"] = u.characters
        if u.audio_ms:
            fields["audio_ms"] = u.audio_ms
        if u.input_audio_tokens or u.output_audio_tokens:
            fields["audio_tokens"] = u.input_audio_tokens + u.output_audio_tokens
        if u.cache_write_tokens:
            fields["cache_write"] = u.cache_write_tokens
        if u.estimated:
            fields["estimated"] = 1
        if outcome.error:
            fields["error"] = outcome.error[:300]
        if extra:
            fields.update(extra)
        tpm_tokens = u.total_tokens if ticket.admission.tpm_limit else 0  # a key without a TPM limit keeps no window
        return _charged(self._ledger.settle(ticket.caller, ticket.request_id, cost, tpm_tokens, True, fields),
                        ticket.request_id, cost)


async def _no_charge() -> int:
    return 0


async def _charged(pending: Awaitable[bool], request_id: str, cost: int) -> int:
    await pending  # never a store error: an unconfirmed settlement is kept and retried by the ledger
    return cost
