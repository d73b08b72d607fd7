"""The gateway's own HTTP/1.1 server protocol, under uvicorn, spoken to over raw sockets and httpx.

What a client (or a misbehaving one) does on the wire: keep-alive, pipelining, chunked uploads, streamed
answers, HEAD, Expect: 100-continue, HTTP/1.0, malformed and oversized heads, disconnects, a crashing app.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.http.server_protocol import MAX_HEAD_BYTES
from tests.support.raw_http import (app, closed_by_server, connect, disconnected, disconnects, json_answer, read_response,
                                     serving)

@pytest.fixture(scope="module")
def base() -> Iterator[tuple[str, int]]:
    with serving(app, timeout_keep_alive=1) as addr:
        yield addr


def test_keep_alive_serves_many_requests_on_one_connection(base: tuple[str, int]) -> None:
    with httpx.Client(base_url=f"http://{base[0]}:{base[1]}") as client:
        for i in range(20):
            r = client.post(f"/echo?i={i}", content=f"body {i}")
            assert r.status_code == 200
            assert r.json()["query"] == f"i={i}" and r.json()["body"] == f"body {i}"
            assert "date" in r.headers
    # one connection served all of them
    sock = connect(base)
    buf = bytearray()
    for _ in range(3):
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock, buf)[0] == 200
    sock.close()


def test_a_burst_on_many_connections_is_answered_even_when_some_clients_leave(base: tuple[str, int]) -> None:
    """Requests that arrive together are started a few per loop turn (gateway.http.pacing): every one whose
    client stays is answered, on its own connection, and clients that leave mid-burst disturb nothing."""
    socks = [connect(base) for _ in range(48)]
    for i, sock in enumerate(socks):
        sock.sendall(f"POST /echo?i={i} HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx".encode())
    for sock in socks[::4]:
        sock.close()  # gone before (or while) its request is started
    for i, sock in enumerate(socks):
        if i % 4:
            status, _, body = read_response(sock, bytearray())
            assert status == 200 and json.loads(body)["query"] == f"i={i}"
            sock.close()
    with httpx.Client(base_url=f"http://{base[0]}:{base[1]}") as client:
        assert client.get("/x").status_code == 200


def test_pipelined_requests_are_answered_in_order(base: tuple[str, int]) -> None:
    sock = connect(base)
    reqs = b"".join(f"POST /echo?n={i} HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n{i:03d}".encode()
                    for i in range(5))
    sock.sendall(reqs)
    buf = bytearray()
    answers = [json.loads(read_response(sock, buf)[2]) for _ in range(5)]
    assert [a["query"] for a in answers] == [f"n={i}" for i in range(5)]
    assert [a["body"] for a in answers] == [f"{i:03d}" for i in range(5)]
    sock.close()


def test_chunked_upload_is_reassembled(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    time.sleep(0.05)
    sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
    status, _, body = read_response(sock, bytearray())
    assert status == 200 and json.loads(body)["body"] == "hello world"
    sock.close()


def test_large_upload_arrives_whole(base: tuple[str, int]) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB: more than the read buffer's high-water mark
    r = httpx.post(f"http://{base[0]}:{base[1]}/echo", content=payload)
    assert r.status_code == 200 and r.json()["len"] == len(payload)


def test_streamed_answer_is_chunked_and_arrives_in_pieces(base: tuple[str, int]) -> None:
    with httpx.stream("GET", f"http://{base[0]}:{base[1]}/stream") as r:
        assert r.headers["transfer-encoding"] == "chunked"
        pieces = list(r.iter_text())
    assert "".join(pieces) == "".join(f"piece {i}\n" for i in range(5))


def test_large_answer_arrives_whole(base: tuple[str, int]) -> None:
    r = httpx.get(f"http://{base[0]}:{base[1]}/big?{8 * 1024 * 1024 + 3}")
    assert r.status_code == 200 and len(r.content) == 8 * 1024 * 1024 + 3


def test_head_has_no_body_and_keeps_the_connection(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\nGET /after-head HTTP/1.1\r\nHost: t\r\n\r\n")
    buf = bytearray()
    sock.settimeout(5)
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 14" in head.lower()
    buf[:] = rest
    status, _, body = read_response(sock, buf)   # the next answer follows the head directly
    assert status == 200 and json.loads(body) == {"path": "/after-head"}
    sock.close()


def test_expect_100_continue(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    buf = bytearray()
    status, _, _ = read_response(sock, buf)
    assert status == 100
    sock.sendall(b"ping")
    status, _, body = read_response(sock, buf)
    assert status == 200 and json.loads(body)["body"] == "ping"
    sock.close()


def test_http_1_0_gets_its_answer_and_a_close(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"GET /x HTTP/1.0\r\n\r\n")
    status, headers, body = read_response(sock, bytearray())
    assert status == 200 and headers.get("connection") == "close" and json.loads(body) == {"path": "/x"}
    assert closed_by_server(sock)


@pytest.mark.parametrize("raw", [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nHost t\r\n\r\n",
                                 b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n"])
def test_malformed_request_gets_400_in_the_seed_shape_and_a_close(base: tuple[str, int], raw: bytes) -> None:
    sock = connect(base)
    sock.sendall(raw)
    status, headers, body = read_response(sock, bytearray())
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body) == {"statusCode": 400, "error": "Bad Request", "message": "invalid HTTP request"}
    assert closed_by_server(sock)


def test_oversized_head_gets_431(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n")
    status, _, body = read_response(sock, bytearray())
    assert status == 431 and json.loads(body)["statusCode"] == 431
    assert closed_by_server(sock)


def test_client_that_goes_away_is_seen_by_the_app(base: tuple[str, int]) -> None:
    disconnected.clear()
    disconnects.clear()
    sock = connect(base)
    sock.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    assert not disconnected.is_set()
    sock.close()
    assert disconnected.wait(5)
    assert disconnects == ["http.disconnect"]


def test_crashing_app_gives_500_in_the_seed_shape(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"GET /crash HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, body = read_response(sock, bytearray())
    assert status == 500 and headers["connection"] == "close"
    assert json.loads(body) == {"statusCode": 500, "error": "Internal Server Error", "message": "internal error"}
    assert "boom" not in body.decode()


def test_answer_before_the_body_closes_the_connection_instead_of_reading_it(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\nsome")
    status, headers, _ = read_response(sock, bytearray())
    assert status == 413 and headers["connection"] == "close"  # the client must not reuse it
    assert closed_by_server(sock)


def test_early_answer_survives_the_client_still_sending(base: tuple[str, int]) -> None:
    """A client that keeps writing its body after the answer must still read the whole answer (no
    reset from the server's side), and learn that the connection ends."""
    sock = connect(base)
    sock.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n")
    time.sleep(0.1)  # the answer is out before the body comes
    sock.settimeout(5)
    try:
        for _ in range(30):
            sock.sendall(b"x" * 100_000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, headers, body = read_response(sock, bytearray())
    assert status == 413 and headers["connection"] == "close" and json.loads(body) == {"error": "too big"}


def test_header_injection_from_the_app_is_refused(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"GET /bad-header HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, _ = read_response(sock, bytearray())
    assert status == 500 and "set-cookie" not in headers


def test_head_is_sent_before_a_slow_body(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.settimeout(5)
    t0 = time.monotonic()
    sock.sendall(b"GET /slow-head HTTP/1.1\r\nHost: t\r\n\r\n")
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200") and time.monotonic() - t0 < 0.25
    buf = bytearray(first)
    status, _, body = read_response(sock, buf)
    assert status == 200 and body == b"done"
    sock.close()


def test_idle_keep_alive_connection_is_closed_after_the_timeout(base: tuple[str, int]) -> None:
    sock = connect(base)
    sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(sock, bytearray())[0] == 200
    t0 = time.monotonic()
    assert closed_by_server(sock, timeout=5)
    assert 0.9 <= time.monotonic() - t0 <= 3.5   # timeout 1 s, swept once a second


def test_a_server_that_has_stopped_leaves_its_event_loop_to_be_freed() -> None:
    """Whatever the protocol keeps per event loop (pacing, the idle sweep) must not outlive the loop:
    a process that runs servers one after another (tests, embedded use) would keep every loop and what
    hangs off it."""
    import gc
    import weakref

    seen: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await app(scope, receive, send)
            return
        seen.append(weakref.ref(asyncio.get_running_loop()))
        await json_answer(send, 200, {"ok": True})

    with serving(one) as addr, connect(addr) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(s, bytearray())[0] == 200
    gc.collect()
    assert seen and seen[0]() is None, "the stopped server's event loop is still referenced"
