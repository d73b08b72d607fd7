"""Streaming: relay a provider's SSE stream to the client as OpenAI's, translating on the fly.

    upstream bytes ─► SSEParser ─► source ─► stream adapters ─► framer ─► client bytes
                                   │                                │
           pass-through (OpenAI-compatible) or a wire's           chat/text: `data:` + usage chunk + [DONE]
           stream mapping (provider events → chat deltas)          responses: named events, sequence numbers

Chunk by chunk, never buffering the answer. Every source tracks the usage the provider reports and the
text it produced, so a stream cut short is still billed (estimated at ~4 characters a token when the
provider sent no usage yet).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from gateway.errors import ErrorShape
from gateway.http.sse import DONE, SSEParser, frame
from gateway.proxy.cost import with_cost
from gateway.translate.stream import MappedStream, StreamFailed
from gateway.usage import Usage, UsageMap

Item = dict[str, Any]


def client_wants_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and opts.get("include_usage") is True


def with_usage_requested(body: dict[str, Any]) -> dict[str, Any]:
    """The body as sent upstream to an OpenAI-compatible provider: usage always asked for, so that
    billing never has to guess (the extra chunk is stripped unless the client asked for it too)."""
    opts = dict(body.get("stream_options") or {})
    opts["include_usage"] = True
    return {**body, "stream_options": opts}


class Source:
    """Turns upstream SSE events into items of the operation's own client shape."""

    usage: Usage | None = None
    held: bytes = b""           # the provider's usage chunk, sent at the end with the call's cost in it
    out_chars: int = 0
    done: bool = False

    def on_event(self, name: str, data: bytes) -> list[Item | bytes]:
        raise NotImplementedError


class PassthroughChat(Source):
    """OpenAI-compatible chat/completions stream. With `raw`, events go out as the provider framed them
    and only the few that matter are parsed (usage, errors, the first ones to learn the framing size):
    the hot path. Otherwise every chunk is parsed for an adapter to work on."""

    def __init__(self, usage_map: UsageMap, raw: bool, forward_usage: bool) -> None:
        self._usage_map = usage_map
        self._raw = raw
        self._forward_usage = forward_usage
        self._overhead = -1      # bytes of a chunk that are not its text (learnt from a parsed chunk)

    def on_event(self, name: str, data: bytes) -> list[Item | bytes]:
        if data == b"[DONE]":
            self.done = True
            return []
        special = b'"usage":{' in data or b'"usage": {' in data or data.startswith(b'{"error"')
        if self._raw and not special and self._overhead >= 0:
            self.out_chars += max(len(data) - self._overhead, 0)  # text estimate for a stream cut short
            return [frame(data)]
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamFailed("provider sent an unreadable stream event") from None
        if "error" in chunk and "choices" not in chunk:
            err = chunk["error"]
            raise StreamFailed(err.get("message", "provider error") if isinstance(err, dict) else str(err))
        text = 0
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content") if "delta" in choice else choice.get("text")
            if isinstance(content, str):
                text += len(content)
            for call in delta.get("tool_calls") or ():
                text += len((call.get("function") or {}).get("arguments") or "")
        self.out_chars += text
        if text and self._overhead < 0:
            self._overhead = len(data) - len(orjson.dumps(chunk["choices"][0].get("delta", {}).get("content", "")))
        if chunk.get("usage"):
            found = self._usage_map.extract(chunk)
            if found is not None:
                self.usage = found
            if not chunk.get("choices"):  # the usage-only chunk: held back to carry the cost (StreamCall.end)
                if self._forward_usage:
                    self.held = data
                return []
            if not self._forward_usage:
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
                return [frame(chunk)] if self._raw else [chunk]
        return [frame(data)] if self._raw else [chunk]


class PassthroughResponses(Source):
    """OpenAI-compatible Responses stream: named events relayed as they are."""

    def __init__(self, usage_map: UsageMap, raw: bool) -> None:
        self._usage_map = usage_map
        self._raw = raw

    def on_event(self, name: str, data: bytes) -> list[Item | bytes]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamFailed("provider sent an unreadable stream event") from None
        kind = event.get("type") or name
        if kind == "response.output_text.delta" or kind == "response.function_call_arguments.delta":
            self.out_chars += len(event.get("delta") or "")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            found = self._usage_map.extract(event)
            if found is not None:
                self.usage = found
            self.done = True
        elif kind == "error":
            raise StreamFailed(str(event.get("message") or "provider error"))
        return [frame(data, kind)] if self._raw else [event]


class PassthroughEvents(Source):
    """A provider's own event stream relayed to a client that speaks the same API (Messages, Gemini): each
    event goes out as the provider framed it (`wrap`: the framer's raw piece). Only the events that may carry
    usage or an error are parsed (`parse`: their names; every event when the stream names none), the others
    only counted for the estimate of a stream cut short. Usage: the largest value per field wins (both APIs
    report running totals)."""

    def __init__(self, usage_map: UsageMap, parse: frozenset[str], wrap: Any) -> None:
        self._usage_map = usage_map
        self._parse = parse
        self._wrap = wrap

    def on_event(self, name: str, data: bytes) -> list[Item | bytes]:
        if name and self._parse and name not in self._parse:
            self.out_chars += max(len(data) - 80, 0)  # a delta event's JSON beside its text: ~80 bytes
            return [self._wrap(data, name)]
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamFailed("provider sent an unreadable stream event") from None
        if isinstance(event, dict):
            err = event.get("error")
            if isinstance(err, dict):
                raise StreamFailed(str(err.get("message") or "provider error"))
            found = self._usage_map.extract(event)
            if found is not None:
                self.usage = found if self.usage is None else _larger(self.usage, found)
            if not name:
                self.out_chars += max(len(data) - 300, 0)  # a chunk's JSON beside its text (and usage)
        return [self._wrap(data, name)]


def _larger(a: Usage, b: Usage) -> Usage:
    return Usage(max(a.input_tokens, b.input_tokens), max(a.cached_input_tokens, b.cached_input_tokens),
                 max(a.cache_write_tokens, b.cache_write_tokens), max(a.output_tokens, b.output_tokens),
                 max(a.reasoning_tokens, b.reasoning_tokens))


class MappedChat(Source):
    """A provider's own stream format, translated by the wire's stream mapping into chat chunks."""

    def __init__(self, run: MappedStream, variables: dict[str, Any]) -> None:
        self._run = run
        self._id = "chatcmpl-" + variables["rid"]
        self._created = variables["created"]
        self._model = variables["model"]

    def on_event(self, name: str, data: bytes) -> list[Item | bytes]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamFailed("provider sent an unreadable stream event") from None
        deltas, error = self._run.on_event(name, event)
        self.usage = self._run.usage
        if error is not None:
            raise StreamFailed(error)
        out: list[Item | bytes] = []
        for d in deltas:
            delta = d.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.out_chars += len(delta["content"])
            for call in delta.get("tool_calls") or ():
                self.out_chars += len((call.get("function") or {}).get("arguments") or "")
            out.append({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                        "model": self._model, "choices": [{"index": d.get("index", 0), "delta": delta,
                                                           "logprobs": None, "finish_reason": d.get("finish_reason")}]})
        return out


class Framer:
    """The client's side of the stream for one endpoint. `framing` (the endpoint's record): "chat",
    "completion" (data chunks, a usage chunk, [DONE]); "responses", "messages" (events named by their type,
    the API's own closing event ends it); "generate" (data chunks, the connection's end ends it);
    "generate_array" (the same chunks as one JSON array, what :streamGenerateContent answers without
    ?alt=sse). `shape`: the endpoint's error body, for an error mid-stream."""

    def __init__(self, endpoint: str, variables: dict[str, Any], include_usage: bool, framing: str = "",
                 shape: ErrorShape | None = None) -> None:
        style = framing or endpoint
        self._responses = style == "responses"
        self._named = style in ("responses", "messages")
        self._own_end = style in ("responses", "messages", "generate", "generate_array")
        self._array = style == "generate_array"
        self._pieces = 0
        self._shape = shape
        self.content_type = b"application/json; charset=utf-8" if self._array else b"text/event-stream; charset=utf-8"
        self._include_usage = include_usage
        self._seq = 0
        self._vars = variables
        self._object = "text_completion" if endpoint == "completion" else "chat.completion.chunk"
        self._prefix = "cmpl-" if endpoint == "completion" else "chatcmpl-"

    def raw(self, data: bytes, name: str) -> bytes:
        """One provider event relayed as it came (pass-through of the client's own API)."""
        if self._array:
            self._pieces += 1
            return (b"[" if self._pieces == 1 else b",\r\n") + data
        return frame(data, name if self._named else None)

    def frames(self, items: list[Item | bytes]) -> Iterator[bytes]:
        for item in items:
            if isinstance(item, bytes):
                yield item
            elif self._responses:
                item["sequence_number"] = self._seq
                self._seq += 1
                yield frame(item, item.get("type"))
            elif self._named:
                yield frame(item, item.get("type"))
            elif self._array:
                yield self.raw(orjson.dumps(item), "")
            else:
                yield frame(item)

    def end(self, usage: Usage | None, usage_forwarded: bool, cost: bytes = b"0.0",
            held: bytes = b"") -> Iterator[bytes]:
        """The usage chunk (the provider's, held back, or ours) with `usage.cost`, then [DONE]; a stream of
        another API's own events ends as that API ends it."""
        if self._own_end:
            if self._array:
                yield b"]" if self._pieces else b"[]"
            return
        if held:
            yield frame(with_cost(held, cost))
        elif self._include_usage and not usage_forwarded:
            u = usage or Usage()
            yield frame(with_cost(orjson.dumps({
                "id": self._prefix + self._vars["rid"], "object": self._object, "created": self._vars["created"],
                "model": self._vars["model"], "choices": [], "usage": u.to_openai_chat()}), cost))
        yield DONE

    def error(self, message: str) -> bytes:
        """OpenAI's in-stream error shape, which the official SDKs raise as an APIError (or the endpoint's
        own API's error body, as its servers send it mid-stream)."""
        if self._shape is not None:
            doc = orjson.dumps(self._shape.document(500, message, self._vars["request_id"]))
            if self._array:
                return (b"[" if not self._pieces else b",\r\n") + doc + b"]"
            return frame(doc, self._shape.stream_event or None)
        payload: dict[str, Any] = {"error": {"message": message, "type": "upstream_error", "param": None,
                                   "code": "stream_failed"}}
        if self._responses:
            payload = {"type": "error", "code": "stream_failed", "message": message, "param": None,
                       "sequence_number": self._seq}
            return frame(payload, "error")
        return frame(payload)


def estimate(raw_len: int, out_chars: int, reported: Usage | None) -> Usage:
    """Usage for a stream cut short: what the provider reported so far, topped up by an estimate of
    ~4 characters a token for the output produced (and ~4 bytes a token for the prompt if nothing came)."""
    out = -(-out_chars // 4)
    if reported is None:
        return Usage(input_tokens=-(-raw_len // 4), output_tokens=out, estimated=True)
    return dataclasses.replace(reported, input_tokens=reported.input_tokens or -(-raw_len // 4),
                               output_tokens=max(reported.output_tokens, out), estimated=True)


class StreamCall:
    """One started stream: the upstream answer and the chain that turns its events into client bytes."""

    def __init__(self, provider: str, upstream: Any, source: Source, adapters: list[Any], framer: Framer,
                 usage_forwarded: bool) -> None:
        self.provider = provider
        self.upstream = upstream
        self.source = source
        self._adapters = adapters
        self.framer = framer
        self._usage_forwarded = usage_forwarded

    def _through_adapters(self, items: list[Item | bytes]) -> list[Item | bytes]:
        for adapter in self._adapters:
            converted: list[Item | bytes] = []
            for item in items:
                converted.extend(adapter.convert(item))
            items = converted
        return items

    async def frames(self) -> AsyncIterator[bytes]:
        """Client bytes as upstream events arrive, one piece per upstream read (every event that read
        completed, framed and joined: one write to the client, not one per event); raises StreamFailed /
        UpstreamFailure mid-stream."""
        parser = SSEParser()
        first = True
        async for chunk in self.upstream.chunks():
            pieces: list[bytes] = []
            try:
                for name, data in parser.feed(chunk):
                    pieces.extend(self.framer.frames(self._through_adapters(self.source.on_event(name, data))))
                    if first and pieces:  # the first bytes go out at once, whatever else this read holds
                        first = False
                        yield b"".join(pieces)
                        pieces = []
                    if self.source.done:
                        break
            except StreamFailed:
                if pieces:  # what came before the error still reaches the client, then the error
                    yield b"".join(pieces)
                raise
            if pieces:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if self.source.done:
                break
        if not self.source.done:  # an upstream that just closes (Gemini) may leave its last event unterminated
            for name, data in parser.close():
                for b in self.framer.frames(self._through_adapters(self.source.on_event(name, data))):
                    yield b
        tail: list[Item | bytes] = []
        for i, adapter in enumerate(self._adapters):
            produced: list[Item | bytes] = list(adapter.finish(self.source.usage))
            for later in self._adapters[i + 1:]:
                produced = [x for item in produced for x in later.convert(item)]
            tail.extend(produced)
        for b in self.framer.frames(tail):
            yield b

    def end(self, cost: bytes = b"0.0") -> bytes:
        """The closing frames (usage chunk with the call's cost, [DONE]); sent once the settlement is
        written to Redis, so whatever a client sends after the end of the stream sees the charge."""
        return b"".join(self.framer.end(self.source.usage, self._usage_forwarded, cost, self.source.held))
