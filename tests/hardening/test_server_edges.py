"""What a hostile or broken client does to the server protocol, on raw sockets (issue 14: items 1, 3, 11, 14).

Each test reproduces a hole that was found in the running gateway: a head that never ends, a body that
trickles, a flood of connections, answers lost to a half-close or to bytes that follow a request, and
framing errors answered with a silent close.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.http.server_protocol import ServerLimits
from tests.support.raw_http import app as echo_app
from tests.support.raw_http import closed_by_server, read_response, serving


class Limited:
    """The test app with the limits a deployment would set (GatewayApp carries them the same way)."""

    def __init__(self, limits: ServerLimits) -> None:
        self.server_limits = limits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await echo_app(scope, receive, send)


LIMITS = ServerLimits(head_timeout_s=1.0, body_min_rate=100, body_grace_s=1.0, max_connections=8, health_reserve=2)


@pytest.fixture(scope="module")
def base() -> Iterator[tuple[str, int]]:
    # keep-alive far longer than the deadlines under test, so that only they can cut a connection
    with serving(Limited(LIMITS), timeout_keep_alive=60) as addr:
        yield addr


def connect(base: tuple[str, int], timeout: float = 5) -> socket.socket:
    return socket.create_connection(base, timeout=timeout)


def send_until_answered(sock: socket.socket, first: bytes, chunk: bytes, limit: int) -> int:
    """Send `first`, then `chunk` until the server answers (or cuts us off) or `limit` bytes went out;
    the bytes sent by then."""
    sent = 0
    try:
        sock.sendall(first)
        sent = len(first)
        while sent < limit:
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


# -- item 1: the head limit counts raw bytes, and a head has a deadline -----------------------------------

def test_a_header_value_without_a_line_end_is_cut_at_the_head_limit(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    sent = send_until_answered(sock, b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: ", b"a" * 4096, 16 * 1024 * 1024)
    status, headers, body = read_response(sock, bytearray())
    assert status == 431 and b'"statusCode":431' in body
    assert closed_by_server(sock)
    # the kernel's buffers hold some bytes the server never reads; far less than the 16 MiB offered
    assert sent < 2 * 1024 * 1024, f"the server read {sent} bytes of one header before it answered"
    sock.close()


def test_a_head_that_trickles_is_closed_at_its_deadline(base: tuple[str, int]) -> None:
    sock = connect(base)
    started = time.monotonic()
    sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n")
    cut = False
    try:
        for _ in range(40):  # one header byte every 0.1 s: a head that would take minutes
            sock.sendall(b"X")
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        cut = True
    elapsed = time.monotonic() - started
    status, _, _ = read_response(sock, bytearray())
    assert status == 408
    assert cut or closed_by_server(sock), "the connection must be closed after the 408"
    assert elapsed < 4.0 + 2.0, f"the head's 1 s deadline was not applied ({elapsed:.1f} s)"
    sock.close()


# -- item 3: body deadlines, a connection cap with a reserve for health checks --------------------------

def test_a_body_that_trickles_is_answered_408_and_closed(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    started = time.monotonic()
    try:
        for _ in range(30):  # 1 byte every 0.2 s: 5 B/s against a 100 B/s minimum
            time.sleep(0.2)
            sock.sendall(b"x")
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, _, body = read_response(sock, bytearray())
    assert status == 408 and b'"statusCode":408' in body
    assert closed_by_server(sock)
    assert time.monotonic() - started < 5.0
    sock.close()


def test_a_body_sent_at_a_fair_pace_is_read_in_full(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 600\r\n\r\n")
    for _ in range(6):  # 100 bytes every 0.25 s = 400 B/s, above the minimum: never cut
        sock.sendall(b"y" * 100)
        time.sleep(0.25)
    status, _, body = read_response(sock, bytearray())
    assert status == 200 and b'"len": 600' in body
    sock.close()


def test_connections_beyond_the_cap_get_503_and_the_reserve_serves_health_checks(base: tuple[str, int]) -> None:
    held = [connect(base) for _ in range(LIMITS.max_connections)]
    try:
        for sock in held:  # each one really is a connection the server holds
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock, bytearray())[0] == 200
        over = connect(base)
        over.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = read_response(over, bytearray())
        assert status == 503 and b'"statusCode":503' in body and headers.get("connection") == "close"
        over.close()
        time.sleep(0.2)
        health = [connect(base) for _ in range(LIMITS.health_reserve)]
        for sock in health:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock, bytearray())[0] == 200
        beyond = connect(base)
        beyond.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(beyond, bytearray())[0] == 503
        for sock in [*health, beyond]:
            sock.close()
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    again = connect(base)  # the cap counts open connections: room again once they are gone
    again.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(again, bytearray())[0] == 200
    again.close()


# -- item 11: every complete request is answered before the connection closes ---------------------------

def test_a_request_followed_by_a_half_close_is_answered(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"GET /slow-head HTTP/1.1\r\nHost: t\r\n\r\n")  # answered 0.3 s later
    sock.shutdown(socket.SHUT_WR)
    status, _, body = read_response(sock, bytearray())
    assert status == 200 and body == b"done"
    assert closed_by_server(sock)
    sock.close()


def test_garbage_after_a_request_in_the_same_packet_gets_the_answer_then_400(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nokGARBAGE\x00\r\n\r\n")
    buf = bytearray()
    status, _, body = read_response(sock, buf)
    assert status == 200 and b'"body": "ok"' in body
    status, headers, body = read_response(sock, buf)
    assert status == 400 and b'"statusCode":400' in body and headers.get("connection") == "close"
    assert closed_by_server(sock)
    sock.close()


def test_a_request_after_connection_close_does_not_cost_the_first_its_answer(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, body = read_response(sock, bytearray())
    assert status == 200 and b"/first" in body and headers.get("connection") == "close"
    assert closed_by_server(sock)
    sock.close()


# -- item 14: Host, chunked framing ---------------------------------------------------------------------

@pytest.mark.parametrize("head", [
    b"GET /x HTTP/1.1\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
])
def test_http11_without_exactly_one_host_is_400(base: tuple[str, int], head: bytes) -> None:
    sock = connect(base)
    sock.sendall(head)
    status, _, body = read_response(sock, bytearray())
    assert status == 400 and b"Host" in body
    assert closed_by_server(sock)
    sock.close()


def test_http10_without_host_is_served(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"GET /x HTTP/1.0\r\n\r\n")
    assert read_response(sock, bytearray())[0] == 200
    sock.close()


def test_a_malformed_chunked_body_is_answered_400(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n")
    status, _, body = read_response(sock, bytearray())
    assert status == 400 and b'"statusCode":400' in body
    assert closed_by_server(sock)
    sock.close()
