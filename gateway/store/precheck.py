"""Before a large body is read: can this key spend anything at all? (issue 14 item 2)

A key with nothing left to spend — a new sign-up's zero balance, a blocked account, a revoked key, a spent
monthly limit — is refused before the gateway parses or translates megabytes for it. The model is not known
yet (it is in the body), so this is the part of admit.lua that does not need it; admission proper still
runs for every request. Off the hot path: small bodies go straight to admission.
"""

from __future__ import annotations

from redis.exceptions import RedisError

from gateway.errors import Forbidden, Unauthorized, UpstreamUnavailable
from gateway.store.connection import AsyncStore
from gateway.store.keys import KeySpace
from gateway.store.ledger import Caller, month_and_day


async def can_spend(client: AsyncStore, keys: KeySpace, caller: Caller, now_ms: int) -> None:
    """Raise the refusal admission would give regardless of model and size; return when there is room."""
    month, _ = month_and_day(now_ms)
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.key(caller.account_id, caller.key_id), "status", "limit", f"m:{month}", f"mr:{month}")
            pipe.hmget(keys.account(caller.account_id), "status", "credited", "spent", "reserved")
            key, account = await pipe.execute()
    except (RedisError, OSError):
        raise UpstreamUnavailable("billing is temporarily unavailable; nothing was charged, try again",
                                  error_type="gateway_billing_unavailable") from None
    status, limit, month_spent, month_reserved = key
    if status is None or account[0] is None:
        raise Unauthorized("invalid token")
    if status != b"ACTIVE":
        raise Unauthorized("token revoked")
    if account[0] != b"ACTIVE":
        raise Forbidden("account is blocked")
    credited, spent, reserved = (int(v or 0) for v in account[1:])
    if credited - spent - reserved <= 0:
        raise Forbidden("insufficient balance: top up your account")
    if limit is not None and int(limit) >= 0 and int(month_spent or 0) + int(month_reserved or 0) >= int(limit):
        raise Forbidden("monthly limit exceeded for this key")
