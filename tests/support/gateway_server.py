"""Run the real gateway app on a loopback port in a background thread: uvicorn with our HTTP protocol, as
`gateway serve` runs it."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Self, TypeVar

import uvicorn

from gateway.app import GatewayApp
from gateway.config import load_config
from gateway.http.server_protocol import HttpProtocol
from gateway.money import usd_to_nano
from gateway.store.accounts import Accounts
from gateway.store.connection import async_client
from gateway.store.keys import KeySpace
from tests.support import REPO
from tests.support.stand_ins import with_stand_ins

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayServer:
    def __init__(self, root: Path | str, env: Mapping[str, str], wrap: Callable[[Any], Any] | None = None) -> None:
        """`wrap`: an ASGI middleware put around the app (to watch what the app sends, and when). A ${VAR}
        without default that `env` leaves unset gets a stand-in (tests.support.stand_ins)."""
        self.config = load_config(root, with_stand_ins(root, env))
        self.app = GatewayApp(self.config)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        app = wrap(self.app) if wrap else self.app
        cfg = uvicorn.Config(app, host="127.0.0.1", port=self.port, loop="asyncio", http=HttpProtocol,
                             lifespan="on", log_level="warning", access_log=False,
                             proxy_headers=False)  # as `gateway serve`: forwarding headers are the app's to read
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self._server.run, name=f"gateway-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def copy_root(dest: Path) -> Path:
    """A private copy of the repo's config root that a test may edit."""
    for folder in ("config", "providers.d", "pricing.d"):
        shutil.copytree(REPO / folder, dest / folder)
    return dest


@dataclass(frozen=True)
class Customer:
    account_id: str
    key_id: str
    secret: str


def accounts_call(server: GatewayServer, fn: Callable[[Accounts], Awaitable[T]]) -> T:
    """Run one service call against the server's Redis from the test thread (own client, own loop)."""
    s = server.config.settings

    async def go() -> T:
        client = async_client(server.app.redis_url)
        try:
            return await fn(Accounts(client, KeySpace(s.redis_prefix), s.usd_rub_default))
        finally:
            await client.aclose()

    return asyncio.run(go())


def make_customer(server: GatewayServer, usd: str = "10", **key_options: Any) -> Customer:
    async def create(acc: Accounts) -> Customer:
        account = await acc.create_account(f"{secrets.token_hex(5)}@example.com")
        if Decimal(usd) > 0:
            await acc.credit(account.id, usd_to_nano(usd), reason="test funds")
        created = await acc.create_key(account.id, name="test", **key_options)
        return Customer(account.id, created.key.id, created.secret)

    return accounts_call(server, create)
