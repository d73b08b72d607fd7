"""The Lua scripts, loaded once per client (EVALSHA, re-loaded transparently on NOSCRIPT)."""

from __future__ import annotations

from importlib.resources import files

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def _source(name: str) -> str:
    return files("gateway.store").joinpath(f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    def __init__(self, client: Redis) -> None:
        self.admit: AsyncScript = client.register_script(_source("admit"))
        self.settle: AsyncScript = client.register_script(_source("settle"))
        self.credit: AsyncScript = client.register_script(_source("credit"))
