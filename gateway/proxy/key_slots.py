"""Requests in flight per API key in one worker (`server.limits.max_concurrent_per_key`, issue 14 item 7).

Counted before the body is read, so one key cannot hold a worker's memory or connections with many slow or
large requests at once; beyond the limit the client gets 429 with Retry-After. Per worker: with N workers a
key may have N times the limit in flight in all. The app counts inline (`used`, per request); this holds the
count and the refusal.
"""

from __future__ import annotations

from typing import NoReturn

from gateway.errors import RateLimited


class KeySlots:
    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit or 1 << 62      # 0: no limit
        self.used: dict[str, int] = {}     # key id → requests in flight (absent: none)

    def refuse(self) -> NoReturn:
        raise RateLimited(f"too many requests in flight for this key (at most {self.limit} at once)",
                          headers={"Retry-After": "1"}, error_type="policy_key_concurrency")
