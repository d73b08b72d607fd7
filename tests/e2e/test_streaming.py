"""Streaming end to end (issue 5): the official SDK's stream iterators against the gateway, for every
provider, with exact billing, cut-off clients, mid-stream errors and fallback before the first byte."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from tests.support.gateway_server import accounts_call, make_customer
from tests.support import chat_model_for

PROVIDERS = ["openai", "anthropic", "gemini", "xai"]
MSG = [{"role": "user", "content": "Расскажи сказку про кота"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture()
def paying(gateway):
    c = make_customer(gateway, usd="20")
    return c, openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=c.secret, max_retries=0, timeout=20)


def entries(gateway, account_id: str) -> list[dict]:
    return accounts_call(gateway, lambda acc: acc.history(account_id, 100))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_stream(provider: str, include_usage: bool, gateway, fakes, paying) -> None:
    c, client = paying
    model = chat_model_for(provider)
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(model=model, messages=MSG, max_tokens=100, stream=True, **kwargs))
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "echo: Расскажи сказку про кота"
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) > 1, "streamed in pieces"
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage_chunks = [ch for ch in chunks if ch.usage]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0].choices == [] and chunks[-1] is usage_chunks[0]
        u = usage_chunks[0].usage
        assert u.prompt_tokens > 0 and u.completion_tokens > 0
    else:
        assert usage_chunks == []
    assert fakes[provider].spec_errors == []
    [entry] = entries(gateway, c.account_id)
    assert entry["status"] == 200 and entry["stream"] == 1 and entry["cost"] > 0 and "estimated" not in entry
    if include_usage:
        assert entry["in"] == u.prompt_tokens and entry["out"] == u.completion_tokens
    acct = accounts_call(gateway, lambda acc: acc.account(c.account_id))
    assert acct.spent == entry["cost"] and acct.reserved == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat_stream_tool_calls(provider: str, fakes, paying) -> None:
    _, client = paying
    stream = client.chat.completions.create(model=chat_model_for(provider), stream=True, tools=TOOLS,
                                            messages=[{"role": "user", "content": "Weather in Paris?"}])
    calls: dict[int, dict] = {}
    finish = None
    for ch in stream:
        for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            slot["id"] = slot["id"] or tc.id
            slot["name"] = slot["name"] or (tc.function.name if tc.function else None)
            slot["args"] += (tc.function.arguments or "") if tc.function else ""
        if ch.choices and ch.choices[0].finish_reason:
            finish = ch.choices[0].finish_reason
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["args"]) == {"city": "Paris"} and calls[0]["id"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_responses_stream(provider: str, gateway, fakes, paying) -> None:
    c, client = paying
    events = list(client.responses.create(model=chat_model_for(provider), input="Скажи pong", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    assert [e.sequence_number for e in events] == sorted(e.sequence_number for e in events)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert text == "echo: Скажи pong" and final.output_text == text
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    [entry] = entries(gateway, c.account_id)
    assert entry["endpoint"] == "/v1/responses" and entry["stream"] == 1 and entry["cost"] > 0
    assert entry["out"] == final.usage.output_tokens


def test_text_generations_stream(paying, fakes) -> None:
    _, client = paying
    # the seed's path is /v1/text/generations (the SDK's completions.create posts to /completions)
    with httpx.stream("POST", str(client.base_url) + "text/generations", timeout=20,
                      headers={"Authorization": f"Bearer {client.api_key}"},
                      json={"model": "claude-sonnet-4-5", "prompt": "Заголовок:", "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(ch["object"] == "text_completion" for ch in chunks)
    assert "".join(ch["choices"][0]["text"] for ch in chunks) == "echo: Заголовок:"


def test_client_disconnect_closes_upstream_and_bills_what_was_sent(gateway, fakes, paying) -> None:
    c, client = paying
    fake = fakes["anthropic"]
    fake.reply(text=" ".join(f"слово{i}" for i in range(60)), chunk_delay_ms=100)
    with httpx.stream("POST", f"{gateway.base_url}/v1/chat/completions", timeout=20,
                      headers={"Authorization": f"Bearer {c.secret}"},
                      json={"model": chat_model_for("anthropic"), "messages": MSG, "stream": True}) as r:
        got = 0
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                got += 1
                if got == 3:
                    break  # leaving the block closes the connection
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        history = entries(gateway, c.account_id)
        if history:
            break
        time.sleep(0.05)
    [entry] = history
    fake_deadline = time.monotonic() + 3
    while not fake.streams_closed_by_client and time.monotonic() < fake_deadline:
        time.sleep(0.05)
    assert fake.streams_closed_by_client and fake.streams_closed_by_client[0] < 20, "the upstream saw the close"
    assert entry["cut"] == 1 and entry["stream"] == 1 and entry["estimated"] == 1
    assert entry["cost"] > 0 and entry["out"] > 0
    assert entry["ms"] < 4000, "the gateway stopped at once, not after the whole 6 s stream"
    acct = accounts_call(gateway, lambda acc: acc.account(c.account_id))
    assert acct.spent == entry["cost"] and acct.reserved == 0


def test_error_mid_stream_ends_with_error_event(gateway, fakes, paying) -> None:
    c, client = paying
    fakes["anthropic"].reply(error_after=4)
    with pytest.raises(openai.APIError) as exc:
        for _ in client.chat.completions.create(model=chat_model_for("anthropic"), messages=MSG, stream=True):
            pass
    assert exc.value is not None
    [entry] = entries(gateway, c.account_id)
    assert entry["stream"] == 1 and entry["error"]


def test_failure_before_first_byte_is_seed_error(gateway, fakes, paying) -> None:
    c, client = paying
    fakes["gemini"].fail(503)
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model=chat_model_for("gemini"), messages=MSG, stream=True)
    assert exc.value.response.json()["statusCode"] == 503
    [entry] = entries(gateway, c.account_id)
    assert entry["cost"] == 0 and entry["status"] == 503


def test_hundred_concurrent_streams(gateway, fakes) -> None:
    c = make_customer(gateway, usd="50")

    async def one(http: httpx.AsyncClient, i: int) -> str:
        model = chat_model_for(PROVIDERS[i % 4])
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": f"number {i}"}]}
        text = ""
        async with http.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    ch = json.loads(line[6:])
                    if ch["choices"]:
                        text += ch["choices"][0]["delta"].get("content") or ""
        return text

    async def main() -> list[str]:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30, limits=httpx.Limits(max_connections=100),
                                     headers={"Authorization": f"Bearer {c.secret}"}) as http:
            return await asyncio.gather(*(one(http, i) for i in range(100)))

    texts = asyncio.run(main())
    assert texts == [f"echo: number {i}" for i in range(100)]
    history = entries(gateway, c.account_id)
    acct = accounts_call(gateway, lambda acc: acc.account(c.account_id))
    assert len(history) == 100 and acct.spent == sum(e["cost"] for e in history) and acct.reserved == 0
