"""Helpers for the cabinet tests: the gateway with a fake payment provider, and a logged-in page client."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import httpx
import redis

from gateway.store.accounts import Accounts
from gateway.web.passwords import Passwords
from tests.conftest import fake_env
from tests.support import REPO, private_redis_prefix, redis_url
from tests.support.fake_payments import FakePayments
from tests.support.gateway_server import GatewayServer, accounts_call

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
PAGES = ("/", "/keys", "/history", "/history.csv", "/usage", "/billing", "/models", "/console",
         "/console/config")


@dataclass
class Stack:
    server: GatewayServer
    payments: FakePayments
    prefix: str
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(redis_url())


@contextmanager
def web_stack(fakes: Mapping[str, Any], **env: str) -> Iterator[Stack]:
    """The gateway (plain-http cookies) on a private key prefix, wired to a fake payment provider."""
    payments = FakePayments()
    try:
        with private_redis_prefix() as prefix:
            full = fake_env(fakes) | payments.env() | {"REDIS_URL": redis_url(), "GATEWAY_REDIS_PREFIX": prefix,
                                                      "GATEWAY_COOKIE_SECURE": "false", "GATEWAY_LOCALE": "en",
                                                      "GATEWAY_PAYMENT_POLL_S": "1",
                                                      "GATEWAY_SIGNUPS_PER_HOUR": "100000"} | env
            with GatewayServer(REPO, full) as server:
                payments.webhook_url = server.base_url + "/payments/webhook/yookassa"
                yield Stack(server, payments, prefix, full)
    finally:
        payments.close()


def new_email() -> str:
    return f"{secrets.token_hex(5)}@example.com"


class Cabinet:
    """A page client: follows no redirects by itself, keeps cookies, knows its session's CSRF token."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
        self.token = ""
        self.account_id = ""

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def csrf_of(self, path: str) -> str:
        resp = self.http.get(path)
        m = CSRF_RE.search(resp.text)
        assert m, f"no CSRF token on {path}: {resp.status_code}"
        return m.group(1)

    def post(self, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None,
             **kw: Any) -> httpx.Response:
        fields = dict(data or {})
        if csrf is not None or self.token:
            fields["csrf"] = self.token if csrf is None else csrf
        return self.http.post(path, data=fields, **kw)

    def signup(self, email: str | None = None, password: str = PASSWORD) -> httpx.Response:
        email = email or new_email()
        token = self.csrf_of("/signup")
        resp = self.http.post("/signup", data={"csrf": token, "email": email, "password": password,
                                               "password2": password})
        if resp.status_code == 303:   # "check your mail", the same for a taken address: then log in
            assert resp.headers["location"] == "/signup/sent"
            return self.login(email, password)   # the login's answer (303 and the session cookie, or why not)
        return resp

    def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        token = self.csrf_of("/login")
        resp = self.http.post("/login", data={"csrf": token, "email": email, "password": password})
        if resp.status_code == 303:
            self._after_login()
        return resp

    def _after_login(self) -> None:
        page = self.http.get("/").text
        self.token = CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
        self.account_id = re.search(r'class="login" title="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_key(c: Cabinet, name: str = "k", **fields: str) -> tuple[str, str]:
    """(key id, secret) of a key made through the Keys page."""
    nonce = re.search(r'name="nonce" value="([^"]+)"', c.get("/keys").text).group(1)  # type: ignore[union-attr]
    resp = c.post("/keys", {"name": name, "nonce": nonce, **fields})
    assert resp.status_code == 201, resp.text
    secret = re.search(r'value="(bt_[^"]+)"', resp.text).group(1)  # type: ignore[union-attr]
    kid = re.search(r'data-key-id="(key_[0-9a-f]+)"', resp.text).group(1)  # type: ignore[union-attr]
    return kid, secret


def usd_of(html: str, element_id: str) -> str:
    """The exact USD (data-usd) of the stat card with this id."""
    m = re.search(rf'id="{element_id}".*?data-usd="([^"]*)"', html, re.DOTALL)
    assert m, f"no #{element_id} with data-usd"
    return m.group(1)


def make_admin(stack: Stack, email: str | None = None, password: str = PASSWORD) -> str:
    """An operator account with a password, as `gateway accounts create --admin` + `set-password` make it."""
    email = email or new_email()

    async def go(acc: Accounts) -> str:
        view = await acc.create_account(email, "admin")
        await Passwords(acc.r, acc.k).set(view.id, password)
        return view.id

    accounts_call(stack.server, go)
    return email


def run(coro: Any) -> Any:
    return asyncio.run(coro)
