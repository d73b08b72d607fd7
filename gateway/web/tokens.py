"""One-time links (address confirmation, password reset) and the per-address sign-up budget.

A link carries a random 256-bit token; Redis keeps only its SHA-256 with a TTL, and GETDEL consumes it,
so a link works once, until it expires, and a copy of Redis holds nothing that opens an account."""

from __future__ import annotations

import hashlib
import secrets

from gateway.store.connection import AsyncStore, text
from gateway.store.keys import KeySpace


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class OneTimeLinks:
    def __init__(self, client: AsyncStore, keys: KeySpace) -> None:
        self.r = client
        self.k = keys

    def _key(self, kind: str, token: str) -> str:
        return f"{self.k.p}:web:link:{kind}:{_digest(token)}"

    async def issue(self, kind: str, aid: str, ttl_s: int) -> str:
        token = secrets.token_urlsafe(32)
        await self.r.set(self._key(kind, token), aid, ex=ttl_s)
        return token

    async def peek(self, kind: str, token: str) -> str | None:
        """The account a still-valid link is for, without using it up (to show the reset form)."""
        if not token or len(token) > 100:
            return None
        raw = await self.r.get(self._key(kind, token))
        return text(raw) if raw else None

    async def consume(self, kind: str, token: str) -> str | None:
        """The account, once: the link is gone after this call."""
        if not token or len(token) > 100:
            return None
        raw = await self.r.getdel(self._key(kind, token))
        return text(raw) if raw else None


class AddressBudget:
    """At most `per_hour` actions of one kind (sign-ups, reset requests) per client address and hour."""

    def __init__(self, client: AsyncStore, keys: KeySpace, per_hour: int) -> None:
        self.r = client
        self.k = keys
        self.per_hour = per_hour

    async def spend(self, kind: str, address: str) -> bool:
        """True when this address may do it once more (and counts it)."""
        key = f"{self.k.p}:web:budget:{kind}:{address[:64]}"
        async with self.r.pipeline(transaction=False) as p:
            p.set(key, 0, ex=3600, nx=True)
            p.incr(key)
            _, n = await p.execute()
        return int(n) <= self.per_hour
