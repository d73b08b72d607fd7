"""Cabinet passwords: scrypt (n=2**14, r=8, p=1, 16-byte salt) from the standard library, stored per account
under its hash tag as `scrypt$n$r$p$salt$hash` (base64). Hashing runs in a worker thread, so a login never
stalls the event loop; a login for an unknown email still pays for one hash, so timing tells nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

from gateway.store.accounts import InvalidInput
from gateway.store.connection import AsyncStore
from gateway.store.keys import KeySpace

N, R, P, SALT_BYTES, DK_BYTES = 2**14, 8, 1, 16, 32
MIN_LENGTH, MAX_LENGTH = 8, 256
_DUMMY = "scrypt$16384$8$1$" + base64.b64encode(b"\0" * SALT_BYTES).decode() + "$" + base64.b64encode(b"\0" * DK_BYTES).decode()


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"the password must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"the password must be at most {MAX_LENGTH} characters long")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=DK_BYTES, maxmem=64 * 1024 * 1024)
    return f"scrypt${N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, expected = stored.split("$")
        if algo != "scrypt":
            return False
        want = base64.b64decode(expected)
        dk = hashlib.scrypt(password.encode()[:4 * MAX_LENGTH], salt=base64.b64decode(salt), n=int(n), r=int(r),
                            p=int(p), dklen=len(want), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk, want)


class Passwords:
    def __init__(self, client: AsyncStore, keys: KeySpace) -> None:
        self.r = client
        self.k = keys

    def _key(self, aid: str) -> str:
        return f"{self.k.tag(aid)}:pw"

    async def set(self, aid: str, password: str) -> None:
        check_strength(password)
        await self.r.set(self._key(aid), await asyncio.to_thread(hash_password, password))

    async def set_hash(self, aid: str, hashed: str) -> None:
        """A password already hashed (by `hash_password`, in the caller's thread)."""
        await self.r.set(self._key(aid), hashed)

    async def has(self, aid: str) -> bool:
        return bool(await self.r.exists(self._key(aid)))

    async def verify(self, aid: str | None, password: str) -> bool:
        """True when `aid` has a password and this is it; an unknown account costs one hash too."""
        stored = await self.r.get(self._key(aid)) if aid else None
        # redis-py types a reply bytes | str; ours are bytes (decode_responses=False)
        ok = await asyncio.to_thread(verify_password, password, stored.decode() if stored else _DUMMY)  # type: ignore[union-attr]
        return ok and stored is not None
