"""Redis key names. Everything of one account carries the hash tag {a:ID}, so each Lua script
touches one cluster slot; the few global lookups (token, login, key → account) sit outside it."""

from __future__ import annotations


class KeySpace:
    __slots__ = ("p",)

    def __init__(self, prefix: str) -> None:
        self.p = prefix

    def tag(self, account_id: str) -> str:
        return f"{self.p}:{{a:{account_id}}}"

    def account(self, aid: str) -> str:
        return f"{self.tag(aid)}:acct"

    def key_prefix(self, aid: str) -> str:
        return f"{self.tag(aid)}:key:"

    def key(self, aid: str, kid: str) -> str:
        return f"{self.tag(aid)}:key:{kid}"

    def keys_of(self, aid: str) -> str:
        return f"{self.tag(aid)}:keys"

    def reservations(self, aid: str) -> str:
        return f"{self.tag(aid)}:resv"

    def reservation_queue(self, aid: str) -> str:
        return f"{self.tag(aid)}:resvq"

    def rate(self, aid: str, kid: str) -> str:
        return f"{self.tag(aid)}:rl:{kid}"

    def history(self, aid: str) -> str:
        return f"{self.tag(aid)}:hist"

    def daily(self, aid: str) -> str:
        return f"{self.tag(aid)}:daily"

    def ledger(self, aid: str) -> str:
        return f"{self.tag(aid)}:ledger"

    def payments(self, aid: str) -> str:
        return f"{self.tag(aid)}:payments"

    def token(self, token_hash: str) -> str:
        return f"{self.p}:tok:{token_hash}"

    def login(self, login: str) -> str:
        return f"{self.p}:login:{login.lower()}"

    def key_owner(self, kid: str) -> str:
        return f"{self.p}:keyacct:{kid}"

    def reservation_index(self) -> str:
        """Accounts that hold reservations → when the sweeper should look at them (outside any hash tag)."""
        return f"{self.p}:resvidx"

    def archive_index(self) -> str:
        """Accounts whose streams the archiver should read → until when (outside any hash tag)."""
        return f"{self.p}:archidx"

    def archive_lease(self) -> str:
        """Which process archives now (one at a time; the others wait for the lease)."""
        return f"{self.p}:archiver"

    def accounts(self) -> str:
        return f"{self.p}:accounts"

    def fx(self) -> str:
        return f"{self.p}:fx:usd_rub"
