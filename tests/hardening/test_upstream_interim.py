"""Issue 14 item 5: an interim 1xx answer must be skipped, and a pooled connection must never carry one
request's answer to the next request."""

from __future__ import annotations

import httpx
import pytest

from gateway.http.client import HTTPError, Pool
from tests.support.gateway_server import GatewayServer, accounts_call, make_customer
from tests.support.raw_upstream import (
    CLOSE,
    RawRequest,
    RawUpstream,
    Step,
    answer,
    chat_json,
    last_user_text,
)

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def own_answer(req: RawRequest) -> bytes:
    return answer(200, b"answer to " + req.body, {"Content-Type": "text/plain"})


async def test_interim_in_its_own_packet_is_skipped_and_the_next_request_gets_its_own_answer() -> None:
    def script(req: RawRequest) -> list[Step]:
        return [EARLY_HINTS, 0.15, own_answer(req)]

    with RawUpstream(script) as up:
        pool = Pool(up.base_url, {})
        try:
            for word in (b"A", b"B", b"C"):
                r = await pool.request("POST", "/x", word, timeout=5)
                assert r.status == 200
                assert "link" not in r.headers, "the interim answer's headers are not the final answer's"
                assert await r.read() == b"answer to " + word
        finally:
            pool.close()
    assert up.connections == 1, "the connection stays usable once the final answer is read"


async def test_several_interim_answers_in_one_packet_with_the_final_one() -> None:
    def script(req: RawRequest) -> list[Step]:
        return [CONTINUE + EARLY_HINTS + EARLY_HINTS + own_answer(req)]

    with RawUpstream(script) as up:
        pool = Pool(up.base_url, {})
        try:
            for word in (b"A", b"B"):
                r = await pool.request("POST", "/x", word, timeout=5, stream=True)
                assert r.status == 200
                assert b"".join([c async for c in r.iter_chunks()]) == b"answer to " + word
        finally:
            pool.close()


async def test_101_is_an_error_and_the_connection_is_not_reused() -> None:
    def script(req: RawRequest) -> list[Step]:
        if req.body == b"A":
            return [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", 0.1,
                    own_answer(req)]
        return [own_answer(req)]

    with RawUpstream(script) as up:
        pool = Pool(up.base_url, {})
        try:
            with pytest.raises(HTTPError) as exc:
                r = await pool.request("POST", "/x", b"A", timeout=5)
                await r.read()
            assert "101" in str(exc.value)
            r = await pool.request("POST", "/x", b"B", timeout=5)
            assert await r.read() == b"answer to B"
        finally:
            pool.close()
    assert up.connections == 2


async def test_an_answer_with_more_after_it_is_not_pooled() -> None:
    """An upstream that sends a second, unasked-for answer: the connection is out of step and dropped."""
    def script(req: RawRequest) -> list[Step]:
        if req.body == b"A":
            return [own_answer(req) + answer(200, b"stray")]
        return [own_answer(req)]

    with RawUpstream(script) as up:
        pool = Pool(up.base_url, {})
        try:
            r = await pool.request("POST", "/x", b"A", timeout=5)
            assert await r.read() == b"answer to A"
            r = await pool.request("POST", "/x", b"B", timeout=5)
            assert await r.read() == b"answer to B"
        finally:
            pool.close()
    assert up.connections == 2


async def test_a_stray_answer_on_an_idle_connection_drops_it() -> None:
    def script(req: RawRequest) -> list[Step]:
        if req.body == b"A":
            return [own_answer(req), 0.1, answer(200, b"stray")]
        return [own_answer(req)]

    with RawUpstream(script) as up:
        pool = Pool(up.base_url, {})
        try:
            r = await pool.request("POST", "/x", b"A", timeout=5)
            assert await r.read() == b"answer to A"
            import asyncio
            await asyncio.sleep(0.3)  # the stray answer arrives while the connection sits in the pool
            r = await pool.request("POST", "/x", b"B", timeout=5)
            assert await r.read() == b"answer to B"
        finally:
            pool.close()
    assert up.connections == 2


def _chat(gw: GatewayServer, secret: str, text: str) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", timeout=20,
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                      headers={"Authorization": f"Bearer {secret}"})


def test_two_customers_never_get_each_others_answers(raw_gateway: GatewayServer, raw_up: RawUpstream) -> None:
    """End to end: the upstream sends 103 in a packet of its own before each answer; customer A's and
    customer B's requests, one after the other on the pooled connection, each get (and pay for) their own."""
    def script(req: RawRequest) -> list[Step]:
        body = chat_json(f"answer to {last_user_text(req)}")
        return [EARLY_HINTS, 0.15, answer(200, body, {"Content-Type": "application/json"})]

    raw_up.script = script
    a, b = make_customer(raw_gateway), make_customer(raw_gateway)
    for _ in range(2):
        for who, text in ((a, "secret of A"), (b, "secret of B")):
            r = _chat(raw_gateway, who.secret, text)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == f"answer to {text}"
    for who in (a, b):
        entries = accounts_call(raw_gateway, lambda acc, who=who: acc.history(who.account_id, 10))
        assert [e["status"] for e in entries] == [200, 200]
        assert all(e["cost"] > 0 for e in entries)


def test_interim_then_close_is_a_clean_503(raw_gateway: GatewayServer, raw_up: RawUpstream) -> None:
    raw_up.script = lambda req: [EARLY_HINTS, 0.05, CLOSE]
    c = make_customer(raw_gateway)
    r = _chat(raw_gateway, c.secret, "hello")
    assert r.status_code == 503
    assert r.json()["statusCode"] == 503
    [entry] = accounts_call(raw_gateway, lambda acc: acc.history(c.account_id, 10))
    assert entry["cost"] == 0
