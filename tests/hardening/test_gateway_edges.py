"""The gateway's own answers at its edges (issue 14 items 11, 13, 14): a paid answer is never lost to how
the client ends its connection, 405 names what is allowed, and no Python internals reach a client."""

from __future__ import annotations

import re
import socket
import time

import httpx
import orjson
import pytest

from tests.support.gateway_server import GatewayServer, accounts_call, make_customer
from tests.support.raw_http import read_response

PYTHON_INTERNALS = re.compile(r"object has no attribute|is not subscriptable|Traceback|\w+Error\b|\w+Exception\b|"
                              r"gaierror|Recursion limit|NoneType|unhashable")


def paid_request(secret: str, text: str) -> bytes:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 5})
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + secret.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)


def history(gateway: GatewayServer, account_id: str) -> list[dict]:
    return accounts_call(gateway, lambda acc: acc.history(account_id, 100))


def test_a_paid_request_followed_by_a_half_close_gets_its_answer_and_one_charge(gateway, fakes) -> None:
    c = make_customer(gateway, usd="1")
    fakes["openai"].reply(delay_ms=300)  # the answer comes after the client's FIN
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    sock.sendall(paid_request(c.secret, "half"))
    sock.shutdown(socket.SHUT_WR)
    status, _, body = read_response(sock, bytearray())
    sock.close()
    assert status == 200 and orjson.loads(body)["choices"][0]["message"]["content"] == "echo: half"
    time.sleep(0.2)
    entries = history(gateway, c.account_id)
    assert len(entries) == 1 and entries[0]["status"] == 200 and entries[0]["cost"] > 0


@pytest.mark.parametrize("after", [b"GARBAGE\x00\r\n\r\n", b"GET /v1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"])
def test_a_paid_request_followed_by_more_bytes_in_the_same_packet_gets_its_answer(gateway, fakes, after) -> None:
    c = make_customer(gateway, usd="1")
    fakes["openai"].reply(delay_ms=200)
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    request = paid_request(c.secret, "packet").replace(b"Host: t\r\n", b"Host: t\r\nConnection: close\r\n") \
        if after.startswith(b"GET") else paid_request(c.secret, "packet")
    sock.sendall(request + after)
    status, _, body = read_response(sock, bytearray())
    sock.close()
    assert status == 200 and orjson.loads(body)["choices"][0]["message"]["content"] == "echo: packet"
    time.sleep(0.2)
    assert [e["status"] for e in history(gateway, c.account_id)] == [200]


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/chat/completions", "POST"), ("DELETE", "/v1/responses", "POST"), ("POST", "/v1/models", "GET"),
    ("PUT", "/v1/balance", "GET"),
])
def test_405_names_the_allowed_methods(gateway, method: str, path: str, allow: str) -> None:
    r = httpx.request(method, gateway.base_url + path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    assert r.json()["statusCode"] == 405


def test_405_on_the_web_pages_carries_allow(gateway) -> None:
    for method, path in (("PUT", "/login"), ("DELETE", "/signup")):
        r = httpx.request(method, gateway.base_url + path)
        assert r.status_code == 405 and r.headers.get("allow"), (method, path, r.headers)


@pytest.mark.parametrize("message", [
    {"role": "user", "content": [{"type": "image_url", "image_url": 5}]},
    {"role": "user", "content": [{"type": "text", "text": {"nested": True}}]},
    {"role": "assistant", "content": None, "tool_calls": [{"id": 1, "function": "x"}]},
    {"role": "tool", "content": [7], "tool_call_id": {"a": 1}},
    {"role": "user", "content": ["just a string part"]},
])
@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
def test_untranslatable_requests_get_plain_words_and_a_request_id(gateway, customer, model, message) -> None:
    r = httpx.post(gateway.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {customer.secret}"},
                   json={"model": model, "messages": [message]}, timeout=20)
    doc = r.json()
    assert r.status_code in (200, 400), doc
    if r.status_code == 400:
        assert set(doc) == {"statusCode", "error", "message"}
        assert not PYTHON_INTERNALS.search(doc["message"]), doc["message"]
