"""Bearer bt_ token → Caller. The token → (account, key) mapping never changes, so it is cached in
process; whether the key is still ACTIVE is checked by the admission script on every request, so a
revocation bites on the very next call."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from redis.exceptions import RedisError

from gateway.errors import Unauthorized, UpstreamUnavailable
from gateway.http.asgi import header
from gateway.store.accounts import TOKEN_RE, token_hash
from gateway.store.connection import AsyncStore
from gateway.store.keys import KeySpace
from gateway.store.ledger import Caller


def credential(scope: Any, sources: tuple[str, ...]) -> bytes | None:
    """The client's `Authorization` value, or one made from where its API carries the key instead: a header
    (`x-api-key`, `x-goog-api-key`) or a query parameter ("?key"). The first source present wins."""
    for source in sources:
        if source == "bearer":
            value = header(scope, b"authorization")
            if value:
                return value
        elif source[0] == "?":
            query = scope.get("query_string") or b""
            if query:
                for k, v in parse_qsl(query.decode("latin-1")):
                    if k == source[1:] and v:
                        return b"Bearer " + v.encode("latin-1")
        else:
            value = header(scope, source.encode())
            if value:
                return b"Bearer " + value.strip()
    return None


class Authenticator:
    def __init__(self, client: AsyncStore, keys: KeySpace, ttl_s: float = 60.0, max_entries: int = 100_000,
                 down: Callable[[], bool] = lambda: False) -> None:
        self._r = client
        self._down = down  # Redis is known to be unreachable: answer at once instead of waiting a deadline
        self._k = keys
        self._ttl = ttl_s
        self._max = max_entries
        self._cache: dict[str, tuple[Caller, float]] = {}

    async def caller(self, authorization: bytes | None) -> Caller:
        if not authorization:
            raise Unauthorized("missing token: send Authorization: Bearer bt_...")
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not TOKEN_RE.match(token):
            raise Unauthorized("invalid token")
        digest = token_hash(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        if self._down():
            raise UpstreamUnavailable("the gateway cannot check tokens right now; try again",
                                      error_type="gateway_redis_unavailable")
        try:
            value = await self._r.get(self._k.token(digest))
        except (RedisError, OSError):
            raise UpstreamUnavailable("the gateway cannot check tokens right now; try again",
                                      error_type="gateway_redis_unavailable") from None
        if value is None:
            raise Unauthorized("invalid token")
        # redis-py types a reply bytes | str; ours are bytes (decode_responses=False)
        aid, _, kid = value.decode().partition(":")  # type: ignore[union-attr]
        caller = Caller(aid, kid)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[digest] = (caller, now + self._ttl)
        return caller
