"""Requests in flight per API key in one worker (`server.limits.max_concurrent_per_key`, issue 14 item 7).

Counted before the body is read, so one key cannot hold a worker's memory or connections with many slow or
large requests at once; beyond the limit the client gets 429 with Retry-After. Per worker: with N workers a
key may have N times the limit in flight in all.
"""

from __future__ import annotations

from gateway.errors import RateLimited


class KeySlots:
    __slots__ = ("_limit", "_used")

    def __init__(self, limit: int) -> None:
        self._limit = limit            # 0: no limit
        self._used: dict[str, int] = {}

    def take(self, key_id: str) -> None:
        n = self._used.get(key_id, 0)
        if self._limit and n >= self._limit:
            raise RateLimited(f"too many requests in flight for this key (at most {self._limit} at once)",
                              headers={"Retry-After": "1"})
        self._used[key_id] = n + 1

    def give_back(self, key_id: str) -> None:
        n = self._used.get(key_id, 0) - 1
        if n > 0:
            self._used[key_id] = n
        else:
            self._used.pop(key_id, None)
