"""The fake upstreams behave like the real servers for the official SDKs.

Every test ends with ``_clean(fake)``: the requests the SDK sent validate against the
provider's request schema and every answer the fake produced validates against the
response schema.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

from tests.support.fakes.common import PNG_BYTES
from tests.support.fakes.server import FakeUpstream, start_fake

pytest_plugins = ["tests.support.fakes.fixtures"]  # fake_openai, fake_anthropic, fake_gemini, fake_xai

KEY = "test-key"
CLAUDE = "claude-sonnet-4-6"
WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _clean(fake: FakeUpstream) -> None:
    assert fake.spec_errors == []
    assert fake.response_spec_errors == []


def _oa(fake: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)


def _an(fake: FakeUpstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.base_url, api_key=KEY, max_retries=0)


def _gm(fake: FakeUpstream, key: str = KEY) -> genai.Client:
    return genai.Client(
        api_key=key,
        # google-genai 3.x defaults to /v1; the gateway uses /v1beta (tools, thinking, image output)
        http_options=gt.HttpOptions(
            base_url=fake.base_url, api_version="v1beta", retry_options=gt.HttpRetryOptions(attempts=1)
        ),
    )


def _sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").decode().split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((event, "\n".join(data)))
    return out


# =========================================================================== OpenAI
def test_openai_chat_plain(fake_openai: FakeUpstream) -> None:
    r = _oa(fake_openai).chat.completions.create(
        model="gpt-4.1-mini",
        messages=[
            {"role": "system", "content": "Be terse."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}],
            },
        ],
    )
    assert r.id == "chatcmpl-fake1" and r.object == "chat.completion" and r.created == 1760000000
    assert r.model == "gpt-4.1-mini"
    assert r.choices[0].message.content == "echo: Hello there"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (14, 4, 18)
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details.reasoning_tokens == 0
    rec = fake_openai.last
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == "Bearer test-key"
    assert rec.body["model"] == "gpt-4.1-mini" and rec.raw.startswith(b"{")
    _clean(fake_openai)


def test_openai_chat_tools_n_stop_and_length(fake_openai: FakeUpstream) -> None:
    c = _oa(fake_openai)
    r = c.chat.completions.create(
        model="gpt-4.1-mini",
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER_TOOL_OPENAI],
    )
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls" and ch.message.content is None
    (tc,) = ch.message.tool_calls
    assert (tc.id, tc.type, tc.function.name) == ("call_fake1", "function", "get_weather")
    assert json.loads(tc.function.arguments) == {"city": "Paris"}

    # the tool result round trip is echoed (last user message), no second tool call
    r2 = c.chat.completions.create(
        model="gpt-4.1-mini",
        messages=[
            {"role": "user", "content": "What's the weather in Paris?"},
            ch.message.model_dump(exclude_none=True, exclude={"annotations"}),
            {"role": "tool", "tool_call_id": "call_fake1", "content": "18C"},
        ],
        tools=[WEATHER_TOOL_OPENAI],
    )
    assert r2.choices[0].finish_reason == "stop"
    assert r2.choices[0].message.content == "echo: What's the weather in Paris?"

    r3 = c.chat.completions.create(
        model="gpt-4.1-mini",
        messages=[{"role": "user", "content": "one two three four"}],
        n=2,
        stop=["three"],
    )
    assert [x.message.content for x in r3.choices] == ["echo: one two ", "echo: one two "]
    assert [x.index for x in r3.choices] == [0, 1]
    r4 = c.chat.completions.create(
        model="gpt-4.1-mini",
        messages=[{"role": "user", "content": "one two three four"}],
        max_completion_tokens=2,
    )
    assert r4.choices[0].message.content == "echo: one" and r4.choices[0].finish_reason == "length"
    assert r4.usage.completion_tokens == 2
    _clean(fake_openai)


def test_openai_chat_stream_include_usage(fake_openai: FakeUpstream) -> None:
    stream = _oa(fake_openai).chat.completions.create(
        model="gpt-4.1-mini",
        messages=[{"role": "user", "content": "stream me a few words please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me a few words please"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 3
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    assert finish[0].choices[0].delta.content is None and finish[0].choices[0].delta.role is None
    last = chunks[-1]
    assert (
        last.choices == []
        and last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    )
    assert all(c.usage is None for c in chunks[:-1])
    _clean(fake_openai)


def test_openai_chat_stream_wire_framing_and_tool_call(fake_openai: FakeUpstream) -> None:
    body = {
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [WEATHER_TOOL_OPENAI],
        "stream": True,
    }
    r = httpx.post(
        f"{fake_openai.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    events = _sse_events(r.content)
    assert all(ev is None for ev, _ in events)
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all("usage" not in c for c in chunks)  # only with include_usage
    calls = [tc for c in chunks for tc in (c["choices"][0]["delta"].get("tool_calls") or [])]
    assert calls[0]["id"] == "call_fake1" and calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert "".join(tc["function"].get("arguments", "") for tc in calls) == '{"city":"Paris"}'
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }

    # the SDK's stream helper accumulates the same tool call
    with _oa(fake_openai).chat.completions.stream(
        model="gpt-4.1-mini", messages=body["messages"], tools=[WEATHER_TOOL_OPENAI]
    ) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments == '{"city":"Paris"}'
    _clean(fake_openai)


def test_openai_completions(fake_openai: FakeUpstream) -> None:
    c = _oa(fake_openai)
    r = c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert r.object == "text_completion" and r.choices[0].text == "echo: Say hi"
    assert r.choices[0].finish_reason == "stop" and r.usage.prompt_tokens == 12
    chunks = list(c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True))
    assert "".join(x.choices[0].text for x in chunks) == "echo: Say hi"
    assert chunks[-1].choices[0].finish_reason == "stop"
    _clean(fake_openai)


def test_openai_responses(fake_openai: FakeUpstream) -> None:
    c = _oa(fake_openai)
    r = c.responses.create(model="gpt-5-mini", instructions="Be terse.", input="Hello there")
    assert r.id == "resp_fake1" and r.status == "completed" and r.output_text == "echo: Hello there"
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (14, 4, 18)

    # the spec (and the SDK's FunctionToolParam) require "strict" and "parameters" on Responses function tools
    tool = {
        "type": "function",
        "name": "get_weather",
        "strict": False,
        "parameters": WEATHER_TOOL_OPENAI["function"]["parameters"],
    }
    r2 = c.responses.create(
        model="gpt-5-mini",
        input=[
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "weather in Paris?"}],
            }
        ],
        tools=[tool],
    )
    (item,) = r2.output
    assert item.type == "function_call" and item.name == "get_weather" and item.call_id == "call_fake1"
    assert json.loads(item.arguments) == {"city": "Paris"}

    r3 = c.responses.create(model="gpt-5-mini", input="one two three four", max_output_tokens=16)
    assert r3.status == "completed"
    r4 = c.responses.create(model="gpt-5-mini", input=" ".join(["w"] * 20), max_output_tokens=16)
    assert r4.status == "incomplete" and r4.incomplete_details.reason == "max_output_tokens"

    events = list(c.responses.create(model="gpt-5-mini", input="stream this", stream=True))
    types = [e.type for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-1] == "response.completed" and [e.sequence_number for e in events] == list(
        range(len(events))
    )
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: stream this"
    assert events[-1].response.output_text == "echo: stream this"

    tool_events = list(c.responses.create(model="gpt-5-mini", input="weather?", tools=[tool], stream=True))
    args = "".join(e.delta for e in tool_events if e.type == "response.function_call_arguments.delta")
    assert args == '{"city":"Paris"}' and tool_events[-1].response.output[0].type == "function_call"
    _clean(fake_openai)


def test_openai_images(fake_openai: FakeUpstream) -> None:
    c = _oa(fake_openai)
    r = c.images.generate(model="gpt-image-1", prompt="A red cube", n=2, size="1024x1024", quality="low")
    assert len(r.data) == 2 and base64.b64decode(r.data[0].b64_json) == PNG_BYTES
    assert r.usage.input_tokens == 13 and r.usage.output_tokens == 544 and r.output_format == "png"
    r2 = c.images.generate(model="dall-e-2", prompt="A red cube", response_format="url")
    assert r2.usage is None and r2.data[0].b64_json is None
    img = httpx.get(r2.data[0].url)
    assert img.status_code == 200 and img.content == PNG_BYTES and img.headers["content-type"] == "image/png"
    r3 = c.images.generate(model="dall-e-3", prompt="A red cube")
    assert r3.data[0].revised_prompt == "A red cube" and r3.data[0].b64_json
    assert [m.id for m in c.models.list()][:1] == ["gpt-4.1-mini"]
    _clean(fake_openai)


def test_openai_errors(fake_openai: FakeUpstream) -> None:
    c = _oa(fake_openai)
    msgs = [{"role": "user", "content": "hi"}]
    fake_openai.fail(429, retry_after="7")
    with pytest.raises(openai.RateLimitError) as ei:
        c.chat.completions.create(model="gpt-4.1-mini", messages=msgs)
    assert ei.value.response.headers["retry-after"] == "7"
    assert ei.value.code == "rate_limit_exceeded" and ei.value.body["type"] == "requests"

    fake_openai.fail(500, times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="gpt-4.1-mini", messages=msgs)
    assert fake_openai.pending == 0
    assert (
        c.chat.completions.create(model="gpt-4.1-mini", messages=msgs).choices[0].message.content
        == "echo: hi"
    )

    with pytest.raises(openai.AuthenticationError) as ei:
        openai.OpenAI(base_url=fake_openai.base_url, api_key="wrong-key", max_retries=0).models.list()
    assert ei.value.code == "invalid_api_key"

    fake_openai.reply(text="never used")  # invalid requests do not consume scripted answers
    with pytest.raises(openai.BadRequestError) as ei:
        c.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "robot", "content": "hi"}])
    assert "messages[0].role" in ei.value.message and ei.value.param == "messages[0].role"
    assert fake_openai.spec_errors and "'robot'" in fake_openai.spec_errors[0]
    assert fake_openai.last.spec_errors and fake_openai.pending == 1
    fake_openai.spec_errors.clear()
    _clean(fake_openai)


def test_xai_flavor(fake_xai: FakeUpstream) -> None:
    assert fake_xai.wire == "openai" and fake_xai.base_url.endswith("/v1")
    r = _oa(fake_xai).chat.completions.create(model="grok-4", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "echo: hi"
    bad = httpx.post(
        f"{fake_xai.base_url}/chat/completions", json={}, headers={"Authorization": "Bearer nope"}
    )
    assert bad.status_code == 400 and isinstance(bad.json()["error"], str) and "code" in bad.json()
    _clean(fake_xai)


# =========================================================================== Anthropic
def test_anthropic_plain(fake_anthropic: FakeUpstream) -> None:
    m = _an(fake_anthropic).messages.create(
        model=CLAUDE,
        max_tokens=256,
        system="Be terse.",
        messages=[{"role": "user", "content": "Hello there"}],
    )
    assert m.id == "msg_fake1" and m.type == "message" and m.role == "assistant" and m.model == CLAUDE
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == "echo: Hello there"
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    u = m.usage
    assert (u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens) == (
        14,
        4,
        0,
        0,
    )
    rec = fake_anthropic.last
    assert rec.path == "/v1/messages" and rec.headers.get("anthropic-version")
    _clean(fake_anthropic)


def test_anthropic_tool_use_stop_and_max_tokens(fake_anthropic: FakeUpstream) -> None:
    c = _an(fake_anthropic)
    m = c.messages.create(
        model=CLAUDE,
        max_tokens=256,
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
    )
    assert m.stop_reason == "tool_use"
    assert [b.type for b in m.content] == ["text", "tool_use"] and m.content[0].text == "Let me check."
    tu = m.content[1]
    assert (tu.id, tu.name, tu.input) == ("toolu_fake1", "get_weather", {"city": "Paris"})

    # tool result turn: echo of the last user text, and forced tool choice
    follow = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_fake1", "content": "18C"}],
        },
    ]
    m2 = c.messages.create(model=CLAUDE, max_tokens=256, messages=follow, tools=[WEATHER_TOOL_ANTHROPIC])
    assert m2.stop_reason == "end_turn" and m2.content[0].text == "echo: What's the weather in Paris?"
    m3 = c.messages.create(
        model=CLAUDE,
        max_tokens=256,
        messages=[{"role": "user", "content": "hi"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
        tool_choice={"type": "any"},
    )
    assert [b.type for b in m3.content] == ["tool_use"] and m3.stop_reason == "tool_use"

    m4 = c.messages.create(
        model=CLAUDE,
        max_tokens=256,
        messages=[{"role": "user", "content": "one two STOP three"}],
        stop_sequences=["STOP"],
    )
    assert (m4.content[0].text, m4.stop_reason, m4.stop_sequence) == (
        "echo: one two ",
        "stop_sequence",
        "STOP",
    )
    m5 = c.messages.create(
        model=CLAUDE, max_tokens=2, messages=[{"role": "user", "content": "one two three"}]
    )
    assert (m5.content[0].text, m5.stop_reason, m5.usage.output_tokens) == ("echo: one", "max_tokens", 2)
    m6 = c.messages.create(
        model=CLAUDE,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think"}],
    )
    assert [b.type for b in m6.content] == ["thinking", "text"] and m6.content[0].signature
    _clean(fake_anthropic)


def test_anthropic_stream(fake_anthropic: FakeUpstream) -> None:
    c = _an(fake_anthropic)
    with c.messages.stream(
        model=CLAUDE, max_tokens=256, messages=[{"role": "user", "content": "stream a few words"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "echo: stream a few words" and final.content[0].text == text
    assert (
        final.stop_reason == "end_turn" and final.usage.output_tokens == 6 and final.usage.input_tokens == 14
    )

    with c.messages.stream(
        model=CLAUDE,
        max_tokens=256,
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[1].input == {"city": "Paris"}

    # raw framing: event names equal data.type, ping early, message_stop last
    r = httpx.post(
        f"{fake_anthropic.base_url}/v1/messages",
        json={
            "model": CLAUDE,
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    )
    events = _sse_events(r.content)
    names = [e for e, _ in events]
    assert all(e == json.loads(d)["type"] for e, d in events)
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    delta = json.loads(events[-2][1])
    assert (
        delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
        and delta["usage"]["output_tokens"] == 3
    )
    assert r.headers["request-id"].startswith("req_fake")

    assert (
        c.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "a b c"}]).input_tokens
        == 13
    )
    assert CLAUDE in [m.id for m in c.models.list()]
    _clean(fake_anthropic)


def test_anthropic_errors(fake_anthropic: FakeUpstream) -> None:
    c = _an(fake_anthropic)
    msgs = [{"role": "user", "content": "hi"}]
    fake_anthropic.fail(429, retry_after="3")
    with pytest.raises(anthropic.RateLimitError) as ei:
        c.messages.create(model=CLAUDE, max_tokens=10, messages=msgs)
    assert ei.value.response.headers["retry-after"] == "3"
    assert ei.value.body["error"]["type"] == "rate_limit_error" and ei.value.body["request_id"]
    fake_anthropic.fail(529)
    with pytest.raises(anthropic.OverloadedError) as ei:
        c.messages.create(model=CLAUDE, max_tokens=10, messages=msgs)
    assert ei.value.status_code == 529 and ei.value.body["error"]["type"] == "overloaded_error"
    fake_anthropic.reply(status=500)
    with pytest.raises(anthropic.InternalServerError):
        c.messages.create(model=CLAUDE, max_tokens=10, messages=msgs)

    url = f"{fake_anthropic.base_url}/v1/messages"
    body = {"model": CLAUDE, "messages": msgs}  # no max_tokens
    ok_headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    assert httpx.post(url, json=body, headers={"anthropic-version": "2023-06-01"}).status_code == 401
    assert (
        httpx.post(
            url, json=body, headers={"x-api-key": "bad", "anthropic-version": "2023-06-01"}
        ).status_code
        == 401
    )
    assert httpx.post(url, json=body, headers={"x-api-key": KEY}).status_code == 400  # no anthropic-version
    r = httpx.post(url, json=body, headers=ok_headers)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]
    assert fake_anthropic.spec_errors == ["POST /v1/messages: $: 'max_tokens' is a required property"]
    fake_anthropic.spec_errors.clear()
    _clean(fake_anthropic)


# =========================================================================== Gemini
def test_gemini_plain(fake_gemini: FakeUpstream) -> None:
    c = _gm(fake_gemini)  # keep a reference: a collected genai.Client closes its HTTP client
    r = c.models.generate_content(
        model="gemini-2.5-flash",
        contents="Hello there",
        config=gt.GenerateContentConfig(system_instruction="Be terse.", temperature=0.2),
    )
    assert r.text == "echo: Hello there"
    cand = r.candidates[0]
    assert cand.finish_reason == gt.FinishReason.STOP and cand.index == 0 and cand.content.role == "model"
    u = r.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (14, 4, 18)
    assert r.model_version == "gemini-2.5-flash" and r.response_id == "fake1"
    rec = fake_gemini.last
    assert rec.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert rec.headers["x-goog-api-key"] == KEY and "systemInstruction" in rec.body
    _clean(fake_gemini)


def test_gemini_function_call_image_and_limits(fake_gemini: FakeUpstream) -> None:
    c = _gm(fake_gemini)
    decl = gt.FunctionDeclaration(
        name="get_weather",
        description="Current weather for a city",
        parameters_json_schema={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    )
    r = c.models.generate_content(
        model="gemini-2.5-flash",
        contents="What's the weather in Paris?",
        config=gt.GenerateContentConfig(tools=[gt.Tool(function_declarations=[decl])]),
    )
    (fc,) = r.function_calls
    assert fc.name == "get_weather" and fc.args == {"city": "Paris"}
    assert r.candidates[0].finish_reason == gt.FinishReason.STOP

    img = c.models.generate_content(
        model="gemini-2.5-flash-image",
        contents="A red cube",
        config=gt.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"]),
    )
    blobs = [p.inline_data for p in img.candidates[0].content.parts if p.inline_data]
    assert blobs and blobs[0].mime_type == "image/png" and blobs[0].data == PNG_BYTES

    cut = c.models.generate_content(
        model="gemini-2.5-flash",
        contents="one two three four",
        config=gt.GenerateContentConfig(max_output_tokens=2),
    )
    assert cut.text == "echo: one" and cut.candidates[0].finish_reason == gt.FinishReason.MAX_TOKENS
    stop = c.models.generate_content(
        model="gemini-2.5-flash",
        contents="one two END three",
        config=gt.GenerateContentConfig(stop_sequences=["END"]),
    )
    assert stop.text == "echo: one two "
    two = c.models.generate_content(
        model="gemini-2.5-flash", contents="hi", config=gt.GenerateContentConfig(candidate_count=2)
    )
    assert [x.index for x in two.candidates] == [0, 1]
    _clean(fake_gemini)


def test_gemini_stream(fake_gemini: FakeUpstream) -> None:
    c = _gm(fake_gemini)
    chunks = list(c.models.generate_content_stream(model="gemini-2.5-flash", contents="stream a few words"))
    assert len(chunks) == 3 and "".join(ch.text for ch in chunks) == "echo: stream a few words"
    assert chunks[-1].candidates[0].finish_reason == gt.FinishReason.STOP
    assert all(ch.candidates[0].finish_reason is None for ch in chunks[:-1])
    assert chunks[-1].usage_metadata.candidates_token_count == 6
    assert fake_gemini.last.query == {"alt": "sse"}

    # raw framing: data-only events separated by CRLF CRLF, no terminator
    r = httpx.post(
        f"{fake_gemini.base_url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={KEY}",
        json={
            "contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather"}]}],
        },
    )
    assert r.status_code == 200 and r.text.endswith("\r\n\r\n") and "[DONE]" not in r.text
    (only,) = [json.loads(d) for _, d in _sse_events(r.content)]
    assert only["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    ]

    # without alt=sse the endpoint streams one JSON array
    arr = httpx.post(
        f"{fake_gemini.base_url}/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        params={"key": KEY},
        json={"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]},
    )
    assert arr.headers["content-type"].startswith("application/json") and len(arr.json()) == 3
    assert c.models.count_tokens(model="gemini-2.5-flash", contents="a b c").total_tokens == 13
    assert "models/gemini-2.5-flash" in [m.name for m in c.models.list()]
    _clean(fake_gemini)


def test_gemini_thought_signature_required_for_gemini3(fake_gemini: FakeUpstream) -> None:
    c = _gm(fake_gemini)
    # the spec marks FunctionDeclaration.description as required
    tools = [
        gt.Tool(function_declarations=[gt.FunctionDeclaration(name="get_weather", description="Weather")])
    ]
    r = c.models.generate_content(
        model="gemini-3-pro-preview",
        contents="weather in Paris?",
        config=gt.GenerateContentConfig(tools=tools),
    )
    part = r.candidates[0].content.parts[0]
    assert part.function_call.name == "get_weather" and part.thought_signature
    turn = [
        gt.Content(role="user", parts=[gt.Part(text="weather in Paris?")]),
        r.candidates[0].content,
        gt.Content(
            role="user",
            parts=[gt.Part.from_function_response(name="get_weather", response={"result": "18C"})],
        ),
    ]
    ok = c.models.generate_content(
        model="gemini-3-pro-preview", contents=turn, config=gt.GenerateContentConfig(tools=tools)
    )
    assert ok.text == "echo: weather in Paris?"
    turn[1] = gt.Content(role="model", parts=[gt.Part(function_call=part.function_call)])  # signature dropped
    with pytest.raises(genai_errors.ClientError) as ei:
        c.models.generate_content(
            model="gemini-3-pro-preview", contents=turn, config=gt.GenerateContentConfig(tools=tools)
        )
    assert ei.value.code == 400 and "thought_signature" in ei.value.message
    _clean(fake_gemini)


def test_gemini_errors(fake_gemini: FakeUpstream) -> None:
    c = _gm(fake_gemini)
    fake_gemini.fail(429, retry_after="30")
    with pytest.raises(genai_errors.ClientError) as ei:
        c.models.generate_content(model="gemini-2.5-flash", contents="hi")
    e = ei.value
    assert e.code == 429 and e.status == "RESOURCE_EXHAUSTED"
    retry = [d for d in e.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]
    fake_gemini.fail(503)
    with pytest.raises(genai_errors.ServerError) as ei:
        c.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert ei.value.status == "UNAVAILABLE"

    bad = _gm(fake_gemini, key="bad-key")
    with pytest.raises(genai_errors.ClientError) as ei:
        bad.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert (
        ei.value.code == 400
        and ei.value.status == "INVALID_ARGUMENT"
        and "API key not valid" in ei.value.message
    )

    url = f"{fake_gemini.base_url}/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    no_key = httpx.post(url, json=body)
    assert no_key.status_code == 403 and no_key.json()["error"]["status"] == "PERMISSION_DENIED"
    assert httpx.post(url, params={"key": KEY}, json=body).status_code == 200
    typo = httpx.post(url, params={"key": KEY}, json={**body, "generationConfg": {}})
    assert typo.status_code == 400 and typo.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "generationConfg"' in typo.json()["error"]["message"]
    assert len(fake_gemini.spec_errors) == 1 and "generationConfg" in fake_gemini.spec_errors[0]
    fake_gemini.spec_errors.clear()
    _clean(fake_gemini)


# =========================================================================== all wires
def test_json_mode_and_in_stream_errors(
    fake_openai: FakeUpstream, fake_anthropic: FakeUpstream, fake_gemini: FakeUpstream
) -> None:
    oa, an, gm = _oa(fake_openai), _an(fake_anthropic), _gm(fake_gemini)
    msgs = [{"role": "user", "content": "hi there"}]
    r = oa.chat.completions.create(
        model="gpt-4.1-mini", messages=msgs, response_format={"type": "json_object"}
    )
    assert json.loads(r.choices[0].message.content) == {"echo": "hi there"}
    m = an.messages.create(
        model=CLAUDE,
        max_tokens=64,
        messages=msgs,
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
    )
    assert json.loads(m.content[0].text) == {"echo": "hi there"}
    g = gm.models.generate_content(
        model="gemini-2.5-flash",
        contents="hi there",
        config=gt.GenerateContentConfig(response_mime_type="application/json"),
    )
    assert json.loads(g.text) == {"echo": "hi there"}

    # an error after the 200 status has been sent: each SDK raises from inside the stream
    fake_openai.reply(error_after=2, error_status=500)
    with pytest.raises(openai.APIError, match="server had an error"):
        list(oa.chat.completions.create(model="gpt-4.1-mini", messages=msgs, stream=True))
    fake_anthropic.reply(error_after=3, error_status=529)
    with pytest.raises(anthropic.APIStatusError, match="Overloaded") as ei:
        with an.messages.stream(model=CLAUDE, max_tokens=64, messages=msgs) as s:
            s.get_final_message()
    assert ei.value.body["error"]["type"] == "overloaded_error"
    fake_gemini.reply(error_after=1, error_status=503)
    with pytest.raises(genai_errors.APIError) as gi:
        list(gm.models.generate_content_stream(model="gemini-2.5-flash", contents="hi there"))
    assert gi.value.code == 503
    for fake in (fake_openai, fake_anthropic, fake_gemini):
        _clean(fake)


# =========================================================================== infrastructure
def test_scripted_replies_stream_and_fifo(fake_openai: FakeUpstream, fake_anthropic: FakeUpstream) -> None:
    c = _oa(fake_openai)
    msgs = [{"role": "user", "content": "hi"}]
    scripted = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4.1-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Scripted answer", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    fake_openai.reply(scripted, headers={"x-custom": "1"})
    fake_openai.reply(scripted)
    fake_openai.reply(text="Plain text", times=2)
    r = c.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=msgs)
    assert r.headers["x-custom"] == "1" and r.parse().id == "chatcmpl-scripted"
    chunks = list(
        c.chat.completions.create(
            model="gpt-4.1-mini", messages=msgs, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(x.choices[0].delta.content or "" for x in chunks if x.choices) == "Scripted answer"
    assert chunks[-1].usage.total_tokens == 7
    assert (
        c.chat.completions.create(model="gpt-4.1-mini", messages=msgs).choices[0].message.content
        == "Plain text"
    )
    assert (
        c.chat.completions.create(model="gpt-4.1-mini", messages=msgs).choices[0].message.content
        == "Plain text"
    )
    assert (
        c.chat.completions.create(model="gpt-4.1-mini", messages=msgs).choices[0].message.content
        == "echo: hi"
    )

    # scripted bodies are not rejected, but checked against the response schema
    fake_openai.reply({"id": "x", "object": "chat.completion", "choices": []})
    httpx.post(
        f"{fake_openai.base_url}/chat/completions",
        json={"model": "m", "messages": msgs},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert any("'created' is a required property" in e for e in fake_openai.response_spec_errors)

    fake_anthropic.reply(raw=b'{"weird": true}', status=200)
    r = httpx.post(
        f"{fake_anthropic.base_url}/v1/messages",
        json={"model": "m", "max_tokens": 5, "messages": msgs},
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    )
    assert r.json() == {"weird": True}
    fake_openai.reset()
    assert fake_openai.requests == [] and fake_openai.response_spec_errors == [] and fake_openai.pending == 0


def test_stream_cut_mid_way(fake_anthropic: FakeUpstream) -> None:
    fake_anthropic.reply(cut_after=3)
    c = _an(fake_anthropic)
    # the SDK's transport (httpx2 in anthropic>=2) reports the truncated chunked body
    with pytest.raises(Exception, match="peer closed connection|incomplete"):
        with c.messages.stream(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            s.get_final_message()
    # next request is served normally
    assert (
        _an(fake_anthropic)
        .messages.create(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        .content[0]
        .text
        == "echo: hi"
    )


def test_delay_does_not_block_other_requests(fake_openai: FakeUpstream) -> None:
    url = f"{fake_openai.base_url}/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    hdr = {"Authorization": f"Bearer {KEY}"}
    fake_openai.reply(delay_ms=600)
    slow: dict = {}

    def call_slow() -> None:
        t = time.perf_counter()
        slow["status"] = httpx.post(url, json=body, headers=hdr, timeout=5).status_code
        slow["took"] = time.perf_counter() - t

    th = threading.Thread(target=call_slow)
    th.start()
    fake_openai.wait_for_requests(1)
    t = time.perf_counter()
    assert httpx.post(url, json=body, headers=hdr).status_code == 200
    assert time.perf_counter() - t < 0.4
    th.join()
    assert slow["status"] == 200 and slow["took"] >= 0.55

    fake_openai.delay_ms = 300  # default delay -> client timeout
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=body, headers=hdr, timeout=0.1)
    with pytest.raises(openai.APITimeoutError):
        openai.OpenAI(
            base_url=fake_openai.base_url, api_key=KEY, max_retries=0, timeout=0.1
        ).chat.completions.create(model="m", messages=body["messages"])


async def test_async_clients_and_context_manager() -> None:
    with start_fake("anthropic", api_key="other-key") as fake:
        assert fake.base_url == f"http://127.0.0.1:{fake.port}"
        c = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="other-key", max_retries=0)
        results = await asyncio.gather(
            *[
                c.messages.create(
                    model=CLAUDE, max_tokens=32, messages=[{"role": "user", "content": f"n{i}"}]
                )
                for i in range(5)
            ]
        )
        assert sorted(m.content[0].text for m in results) == [f"echo: n{i}" for i in range(5)]
        assert len({m.id for m in results}) == 5
        await c.close()
        _clean(fake)
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.base_url + "/v1/models")
