"""Issue 14 item 10: a client that leaves while a route reads its request body is a normal event — at
most one short log line, never a traceback or an ERROR — on the web pages, the admin API and /v1."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import fake_env
from tests.support import REPO, private_redis_prefix, redis_url
from tests.support.gateway_server import GatewayServer, make_customer

TOKEN = "admin-test-token-disconnects"
ROUNDS = 5   # disconnects per route: enough to tell "one line each" from "a traceback each"


class _Started:
    """ASGI wrapper: tells the test when the app has been handed a request (so the disconnect that follows
    happens while the app reads the body, not before the app ever ran)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.event = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.event.set()
        await self.app(scope, receive, send)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def server(fakes: Any) -> Iterator[tuple[GatewayServer, _Started]]:
    holder: dict[str, _Started] = {}

    def wrap(app: Any) -> _Started:
        holder["w"] = _Started(app)
        return holder["w"]

    with private_redis_prefix() as prefix:
        env = fake_env(fakes) | {"REDIS_URL": redis_url(), "GATEWAY_REDIS_PREFIX": prefix,
                                 "GATEWAY_COOKIE_SECURE": "false", "GATEWAY_ADMIN_TOKEN": TOKEN}
        with GatewayServer(REPO, env, wrap=wrap) as gw:
            yield gw, holder["w"]


def _idle(gw: GatewayServer, timeout: float = 20) -> None:
    """Wait until every request task of the server has finished (its logging included)."""
    deadline = time.monotonic() + timeout
    while gw._server.server_state.tasks or gw._server.server_state.connections:
        assert time.monotonic() < deadline, "the server did not finish the abandoned requests"
        time.sleep(0.01)


def _abandon(gw: GatewayServer, started: _Started, head: bytes) -> None:
    """Send a request head promising 10,000 body bytes, send 10, wait until the app runs, close."""
    started.event.clear()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(head + b"content-length: 10000\r\n\r\n" + b"a=b&c=d&e=")
        assert started.event.wait(10), "the app never received the request"
        time.sleep(0.05)  # let it read the first bytes and wait for the rest
    _idle(gw)


def _heads(gw: GatewayServer) -> dict[str, bytes]:
    secret = make_customer(gw, usd="1").secret
    host = f"host: 127.0.0.1:{gw.port}\r\n".encode()
    form = b"content-type: application/x-www-form-urlencoded\r\n"
    return {
        "web /login": b"POST /login HTTP/1.1\r\n" + host + form,
        "web /payments/webhook": b"POST /payments/webhook/x HTTP/1.1\r\n" + host + b"content-type: application/json\r\n",
        "admin": b"POST /admin/v1/accounts HTTP/1.1\r\n" + host + f"authorization: Bearer {TOKEN}\r\n".encode()
                 + b"content-type: application/json\r\n",
        "v1": b"POST /v1/chat/completions HTTP/1.1\r\n" + host + f"authorization: Bearer {secret}\r\n".encode()
              + b"content-type: application/json\r\n",
    }


@pytest.mark.parametrize("route", ["web /login", "web /payments/webhook", "admin", "v1"])
def test_a_disconnect_during_the_body_is_one_short_line(server: tuple[GatewayServer, _Started], route: str) -> None:
    gw, started = server
    head = _heads(gw)[route]
    handler = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        for _ in range(ROUNDS):
            _abandon(gw, started, head)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    ours = [r for r in handler.records if r.name.startswith(("gateway", "uvicorn", "starlette", "fastapi", "asyncio"))]
    loud = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in ours if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, f"{route}: a disconnect was logged as an error: {loud}"
    assert len(ours) <= ROUNDS, [r.getMessage() for r in ours]
    for r in ours:
        assert len(r.getMessage()) < 200 and "\n" not in r.getMessage(), r.getMessage()
    # and the server still answers (read to the end: leaving early is a disconnect of another kind)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"GET /login HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    _idle(gw)
