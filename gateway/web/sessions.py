"""Cabinet sessions and login throttling, kept in Redis so they survive restarts and are shared by every
worker and host.

A session is a random 256-bit token in an HttpOnly cookie; Redis keeps only its SHA-256
(`{prefix}:web:sess:<hash>` → account id, CSRF token, creation time) with an idle TTL that every request
renews. Each account lists its sessions (`{a:ID}:web:sessions`) so that a new password ends all of them.
Failed logins are counted per (email, client address) pair, per client address, and per email with a much
higher ceiling, in a fixed window: someone elsewhere cannot lock a known email out with a few wrong
passwords, and a password reset clears the email's counter."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from gateway.store.connection import AsyncStore
from gateway.store.keys import KeySpace


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    account_id: str
    csrf: str
    digest: str


class Sessions:
    def __init__(self, client: AsyncStore, keys: KeySpace, ttl_s: int) -> None:
        self.r = client
        self.k = keys
        self.ttl = ttl_s

    def _key(self, digest: str) -> str:
        return f"{self.k.p}:web:sess:{digest}"

    def _index(self, aid: str) -> str:
        return f"{self.k.tag(aid)}:web:sessions"

    async def create(self, aid: str) -> str:
        """A new session for `aid`; returns the cookie value (never stored as such)."""
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        async with self.r.pipeline(transaction=False) as p:
            p.hset(self._key(digest), mapping={"a": aid, "csrf": secrets.token_urlsafe(32),
                                               "t": int(time.time() * 1000)})
            p.expire(self._key(digest), self.ttl)
            p.sadd(self._index(aid), digest)
            p.expire(self._index(aid), self.ttl * 4)
            await p.execute()
        return token

    async def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 100:
            return None
        digest = _digest(token)
        async with self.r.pipeline(transaction=False) as p:
            p.hmget(self._key(digest), "a", "csrf")
            p.expire(self._key(digest), self.ttl)   # idle time out: every request renews it (no-op if gone)
            (aid, csrf), _ = await p.execute()
        if aid is None or csrf is None:
            return None
        return Session(aid.decode(), csrf.decode(), digest)

    async def destroy(self, session: Session) -> None:
        await self.r.delete(self._key(session.digest))
        await self.r.srem(self._index(session.account_id), session.digest)

    async def destroy_all(self, aid: str) -> int:
        # redis-py types a reply bytes | str; ours are bytes (decode_responses=False)
        digests = [d.decode() for d in await self.r.smembers(self._index(aid))]  # type: ignore[union-attr]
        for d in digests:
            await self.r.delete(self._key(d))
        await self.r.delete(self._index(aid))
        return len(digests)


@dataclass(frozen=True, slots=True)
class Throttled:
    retry_after_s: int


class LoginThrottle:
    """At most `max_failures` failed logins per (email, address) pair, 4x that per client address, and 20x
    that per email from everywhere (a spread-out guessing attack) per window."""

    EMAIL_CEILING = 20

    def __init__(self, client: AsyncStore, keys: KeySpace, max_failures: int, window_s: int) -> None:
        self.r = client
        self.k = keys
        self.max = max_failures
        self.window = window_s

    def _keys(self, login: str, address: str) -> tuple[str, str, str]:
        who = hashlib.sha256(login.strip().lower().encode()).hexdigest()[:32]
        pair = hashlib.sha256(f"{login.strip().lower()}|{address}".encode()).hexdigest()[:32]
        return (f"{self.k.p}:web:fail:pair:{pair}", f"{self.k.p}:web:fail:ip:{address}",
                f"{self.k.p}:web:fail:login:{who}")

    async def check(self, login: str, address: str) -> Throttled | None:
        keys = self._keys(login, address)
        async with self.r.pipeline(transaction=False) as p:
            for key in keys:
                p.get(key)
                p.ttl(key)
            n_pair, ttl_pair, n_ip, ttl_ip, n_login, ttl_login = await p.execute()
        for n, ttl, cap in ((n_pair, ttl_pair, self.max), (n_ip, ttl_ip, 4 * self.max),
                            (n_login, ttl_login, self.EMAIL_CEILING * self.max)):
            if n is not None and int(n) >= cap:
                return Throttled(max(int(ttl), 1))
        return None

    async def failed(self, login: str, address: str) -> None:
        async with self.r.pipeline(transaction=False) as p:
            for key in self._keys(login, address):
                p.set(key, 0, ex=self.window, nx=True)   # the window starts at the first failure
                p.incr(key)
            await p.execute()

    async def succeeded(self, login: str, address: str) -> None:
        await self.r.delete(self._keys(login, address)[0])

    async def reset(self, login: str, address: str) -> None:
        """A password changed through a reset link: this email may log in again at once from here."""
        pair, _, by_login = self._keys(login, address)
        await self.r.delete(pair, by_login)
