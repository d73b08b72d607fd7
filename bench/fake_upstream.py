#!/usr/bin/env python3
"""A deliberately fast fake LLM upstream for the load benchmark (not for correctness tests: see tests/fakes).

Raw asyncio protocol + httptools (uvloop when installed), keep-alive, fixed pre-encoded answers:

  POST /v1/chat/completions   OpenAI chat.completion JSON with usage; with "stream": true an OpenAI SSE
                              stream of --chunks content chunks (+ a usage chunk when
                              stream_options.include_usage) and `data: [DONE]`
  POST /v1/messages           Anthropic Message JSON with usage
  POST /v1/embeddings         an OpenAI embedding list (one base64 vector of 1,536 floats) with usage
  POST /_bench/delay          body = milliseconds: change the answer delay at run time
  GET  /_bench/stats          {"requests": N, "delay_ms": D}

    python3 bench/fake_upstream.py --port 9100 --delay-ms 50 [--chunks 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys

import httptools

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

OPENAI_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1760000000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! How can I help you today?", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 9,
            "total_tokens": 21,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    },
    separators=(",", ":"),
).encode()

ANTHROPIC_BODY = json.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hi! How can I help you today?"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "output_tokens": 9,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    },
    separators=(",", ":"),
).encode()

# text-embedding-3-small's answer as the SDK asks for it (encoding_format base64): 1,536 float32s
EMBEDDING_BODY = json.dumps(
    {
        "object": "list",
        "data": [{"object": "embedding", "index": 0,
                  "embedding": base64.b64encode(bytes(range(256)) * 24).decode()}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    },
    separators=(",", ":"),
).encode()

NOT_FOUND_BODY = b'{"error":{"message":"not found","type":"invalid_request_error"}}'


def response(status: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: keep-alive\r\n\r\n"
        + body
    )


def sse_stream(chunks: int, include_usage: bool) -> tuple[bytes, bytes]:
    """The whole OpenAI SSE answer, HTTP/1.1 chunked: one HTTP chunk per SSE event."""

    def event(obj: object) -> bytes:
        data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_bench",
    }
    parts = [
        (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
        )
    ]
    parts.append(
        event(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        )
    )
    for i in range(chunks):
        parts.append(
            event(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"content": f"tok{i} "},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                }
            )
        )
    parts.append(
        event({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
    )
    if include_usage:
        parts.append(
            event(
                {
                    **base,
                    "choices": [],
                    "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks},
                }
            )
        )
    done = b"data: [DONE]\n\n"
    parts.append(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
    # (headers + role event + first content event, the rest): the first part is written on its own, the
    # rest on the next loop iteration, so a client sees its first bytes before the whole stream
    return b"".join(parts[:3]), b"".join(parts[3:])


class State:
    def __init__(self, delay_ms: float, chunks: int) -> None:
        self.delay = delay_ms / 1000
        self.requests = 0
        self.openai = response(b"200 OK", OPENAI_BODY)
        self.anthropic = response(b"200 OK", ANTHROPIC_BODY)
        self.embedding = response(b"200 OK", EMBEDDING_BODY)
        self.not_found = response(b"404 Not Found", NOT_FOUND_BODY)
        self.stream_plain = sse_stream(chunks, False)
        self.stream_usage = sse_stream(chunks, True)


class Upstream(asyncio.Protocol):
    __slots__ = ("body", "closing", "parser", "state", "transport", "url")

    def __init__(self, state: State) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(response(b"400 Bad Request", b'{"error":"bad request"}'))
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        st = self.state
        st.requests += 1
        path = self.url.split(b"?", 1)[0]
        body = b"".join(self.body)
        keep = self.parser.should_keep_alive()
        if path.endswith(b"/chat/completions"):
            out = st.openai
            if b'"stream"' in body:
                try:
                    req = _loads(body)
                except ValueError:
                    req = {}
                if req.get("stream") is True:
                    so = req.get("stream_options") or {}
                    out = st.stream_usage if so.get("include_usage") else st.stream_plain
        elif path.endswith(b"/messages"):
            out = st.anthropic
        elif path.endswith(b"/embeddings"):
            out = st.embedding
        elif path == b"/_bench/delay":
            st.delay = float(body or b"0") / 1000
            st.requests -= 1
            out = response(b"200 OK", json.dumps({"delay_ms": st.delay * 1000}).encode())
        elif path == b"/_bench/stats":
            st.requests -= 1
            out = response(
                b"200 OK", json.dumps({"requests": st.requests, "delay_ms": st.delay * 1000}).encode()
            )
        else:
            out = st.not_found
        if st.delay > 0 and not path.startswith(b"/_bench/"):
            asyncio.get_running_loop().call_later(st.delay, self._send, out, keep)
        else:
            self._send(out, keep)

    def _send(self, out: bytes | tuple[bytes, bytes], keep: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if isinstance(out, tuple):
            t.write(out[0])
            asyncio.get_running_loop().call_soon(self._send, out[1], keep)
            return
        t.write(out)
        if not keep:
            t.close()


async def main_async(host: str, port: int, state: State) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(state), host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"fake upstream on http://{host}:{port} delay={state.delay * 1000:g}ms", file=sys.stderr, flush=True
    )
    async with server:
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--chunks", type=int, default=200, help="content chunks per streamed answer")
    args = ap.parse_args()
    coro = main_async(args.host, args.port, State(args.delay_ms, args.chunks))
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
