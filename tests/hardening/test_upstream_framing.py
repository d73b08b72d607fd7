"""Issue 14 item 12: answers delimited by the connection's close are read to the end, and gzip/deflate
answers (whole or streamed) are decoded; an encoding the gateway cannot decode fails before anything is
sent to the client, and is not billed."""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest

from gateway.http.client import HTTPError, Pool
from gateway.usage import Usage
from tests.support.gateway_server import GatewayServer, accounts_call, make_customer
from tests.support.raw_upstream import (
    CLOSE,
    USAGE,
    GzipStream,
    RawRequest,
    RawUpstream,
    Step,
    answer,
    chat_json,
    chat_sse_events,
    chunked,
    deflate_bytes,
    gzip_bytes,
    last_user_text,
)

TEXT = b"the whole answer, " * 200


async def _read(up: RawUpstream, stream: bool = False, keep: frozenset[bytes] | None = None,
                requests: int = 1) -> list[bytes]:
    pool = Pool(up.base_url, {}, keep_headers=keep)
    out = []
    try:
        for _ in range(requests):
            r = await pool.request("POST", "/x", b"{}", timeout=5, stream=stream)
            assert r.status == 200
            out.append(b"".join([c async for c in r.iter_chunks()]) if stream else await r.read())
    finally:
        pool.close()
    return out


# -- close-delimited --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("version, headers", [("1.0", {}), ("1.1", {"Connection": "close"}), ("1.1", {})])
async def test_body_delimited_by_close_is_read_to_the_end(version: str, headers: dict[str, str], stream: bool) -> None:
    with RawUpstream(lambda req: [answer(200, TEXT[:100], headers, length=False, version=version), 0.05,
                                  TEXT[100:], CLOSE]) as up:
        assert await _read(up, stream, requests=2) == [TEXT, TEXT]
        assert up.connections == 2, "a connection whose answer ended with its close is not reused"


async def test_a_length_cut_short_by_close_is_still_an_error() -> None:
    with RawUpstream(lambda req: [answer(200, TEXT, {"Connection": "close"})[:-10], CLOSE]) as up, \
            pytest.raises(HTTPError):
        await _read(up)


# -- content codings --------------------------------------------------------------------------------------

def _gzip_stream(pieces: list[bytes]) -> list[bytes]:
    z = GzipStream()
    return [z.piece(p) for p in pieces] + [z.end()]


CODED = {
    "gzip": gzip_bytes(TEXT),
    "x-gzip": gzip_bytes(TEXT),
    "deflate": deflate_bytes(TEXT),
    "gzip-members": gzip_bytes(TEXT[:1000]) + gzip_bytes(TEXT[1000:]),
}
_raw = zlib.compressobj(wbits=-15)
CODED["deflate-raw"] = _raw.compress(TEXT) + _raw.flush()
HEADER = {"gzip": "gzip", "x-gzip": "x-gzip", "deflate": "deflate", "deflate-raw": "deflate", "gzip-members": "gzip"}


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("coding", sorted(CODED))
async def test_whole_coded_answers_are_decoded(coding: str, framing: str) -> None:
    data = CODED[coding]
    headers = {"Content-Encoding": HEADER[coding]}

    def script(req: RawRequest) -> list[Step]:
        if framing == "length":
            return [answer(200, data, headers)]
        if framing == "chunked":
            return [answer(200, b"", headers | {"Transfer-Encoding": "chunked"}, length=False),
                    chunked([data[:50], data[50:]])]
        return [answer(200, data, headers | {"Connection": "close"}, length=False), CLOSE]

    with RawUpstream(script) as up:
        assert await _read(up, requests=2) == [TEXT, TEXT]
        assert await _read(up, stream=True, keep=frozenset({b"content-type"})) == [TEXT]


async def test_a_coded_stream_is_decoded_as_it_arrives() -> None:
    pieces = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]
    sent = _gzip_stream(pieces)

    with RawUpstream(lambda req: [answer(200, b"", {"Content-Encoding": "gzip", "Transfer-Encoding": "chunked"},
                                         length=False), chunked([sent[0]])[:-5], 0.5,
                                  chunked(sent[1:])]) as up:
        pool = Pool(up.base_url, {}, keep_headers=frozenset())
        try:
            r = await pool.request("POST", "/x", b"{}", timeout=5, stream=True)
            got = []
            async for chunk in r.iter_chunks():
                got.append(chunk)
            assert got[0] == pieces[0], "the first piece is decoded before the rest has arrived"
            assert b"".join(got) == b"".join(pieces)
        finally:
            pool.close()


@pytest.mark.parametrize("bad", ["corrupt", "truncated"])
async def test_a_broken_coded_body_is_an_error(bad: str) -> None:
    data = gzip_bytes(TEXT)
    data = data[:20] + b"\x00garbage\xff" * 4 + data[60:] if bad == "corrupt" else data[:-12]
    with RawUpstream(lambda req: [answer(200, data, {"Content-Encoding": "gzip"})]) as up, \
            pytest.raises(HTTPError) as exc:
        await _read(up)
    assert "decompress" in str(exc.value)


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br"])
async def test_an_encoding_we_cannot_decode_fails_at_the_head(coding: str) -> None:
    with RawUpstream(lambda req: [answer(200, b"\x1b\x00\x00garbage", {"Content-Encoding": coding})]) as up:
        for stream in (False, True):
            with pytest.raises(HTTPError) as exc:
                await _read(up, stream=stream)
            assert "cannot decode" in str(exc.value)


async def test_identity_is_no_coding() -> None:
    with RawUpstream(lambda req: [answer(200, TEXT, {"Content-Encoding": "identity"})]) as up:
        assert await _read(up) == [TEXT]


# -- end to end: decoded and billed, or refused and not billed -------------------------------------------

def _history(gw: GatewayServer, account_id: str) -> list[dict]:
    return accounts_call(gw, lambda acc: acc.history(account_id, 10))


def _post(gw: GatewayServer, secret: str, text: str, stream: bool) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "stream": stream}
    return httpx.post(f"{gw.base_url}/v1/chat/completions", json=body, timeout=20,
                      headers={"Authorization": f"Bearer {secret}"})


def _sse_text(body: str) -> str:
    out = []
    for line in body.split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            doc = json.loads(line[6:])
            for choice in doc.get("choices") or []:
                out.append(choice.get("delta", {}).get("content") or "")
    return "".join(out)


def _coded_answer(coding: str, framing: str, stream: bool, text: str) -> list[Step]:
    if stream:
        events = chat_sse_events(text)
        if coding == "gzip":
            pieces = _gzip_stream(events)
        else:
            z = zlib.compressobj()
            pieces = [z.compress(e) + z.flush(zlib.Z_SYNC_FLUSH) for e in events] + [z.flush()]
        ctype = "text/event-stream"
    else:
        raw = chat_json(text)
        pieces = [gzip.compress(raw) if coding == "gzip" else zlib.compress(raw)]
        ctype = "application/json"
    headers = {"Content-Type": ctype, "Content-Encoding": coding}
    if framing == "chunked":
        steps: list[Step] = [answer(200, b"", headers | {"Transfer-Encoding": "chunked"}, length=False)]
        for p in pieces:
            steps += [b"%x\r\n%s\r\n" % (len(p), p) if p else b"", 0.01]
        return steps + [b"0\r\n\r\n"]
    steps = [answer(200, b"", headers | {"Connection": "close"}, length=False)]
    for p in pieces:
        steps += [p, 0.01]
    return steps + [CLOSE]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "sse"])
@pytest.mark.parametrize("framing", ["chunked", "close"])
@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_coded_answers_end_to_end_are_decoded_and_billed(coding: str, framing: str, stream: bool,
                                                         raw_gateway: GatewayServer, raw_up: RawUpstream) -> None:
    raw_up.script = lambda req: _coded_answer(coding, framing, stream, f"answer to {last_user_text(req)}")
    c = make_customer(raw_gateway)
    r = _post(raw_gateway, c.secret, "gzip me", stream)
    assert r.status_code == 200, r.text
    got = _sse_text(r.text) if stream else r.json()["choices"][0]["message"]["content"]
    assert got == "answer to gzip me"
    [entry] = _history(raw_gateway, c.account_id)
    expected = raw_gateway.app.prices.cost("gpt-4o-mini", Usage(input_tokens=USAGE["prompt_tokens"],
                                                                output_tokens=USAGE["completion_tokens"]))
    assert entry["status"] == 200 and entry["cost"] == expected > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "sse"])
def test_an_undecodable_answer_is_an_error_and_not_billed(stream: bool, raw_gateway: GatewayServer,
                                                          raw_up: RawUpstream) -> None:
    events = b"".join(chat_sse_events("answer")) if stream else chat_json("answer")
    raw_up.script = lambda req: [answer(200, events, {"Content-Encoding": "br",
                                                      "Content-Type": "text/event-stream" if stream else "application/json"})]
    c = make_customer(raw_gateway)
    r = _post(raw_gateway, c.secret, "brotli me", stream)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["statusCode"] == 503 and body["error"] == "Service Unavailable"
    assert "cannot decode" in body["message"]
    [entry] = _history(raw_gateway, c.account_id)
    assert entry["cost"] == 0 and entry["status"] == 503


def test_http10_answer_end_to_end(raw_gateway: GatewayServer, raw_up: RawUpstream) -> None:
    raw_up.script = lambda req: [answer(200, chat_json(f"answer to {last_user_text(req)}"),
                                        {"Content-Type": "application/json"}, length=False, version="1.0"), CLOSE]
    c = make_customer(raw_gateway)
    for _ in range(2):
        r = _post(raw_gateway, c.secret, "old school", False)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "answer to old school"
    assert all(e["cost"] > 0 for e in _history(raw_gateway, c.account_id))
