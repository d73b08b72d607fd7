"""The Messages API inbound (POST /v1/messages, /v1/messages/count_tokens) with the official `anthropic` SDK:
Claude models pass through to Anthropic's own endpoint, every other chat model is translated through chat;
billing, history, errors (in Anthropic's shape, so the SDK raises its own exception classes) as on
/v1/chat/completions."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import pytest

from tests.support import chat_model_for
from tests.support.fakes.specs import validate
from tests.support.gateway_server import accounts_call, make_customer

PROVIDERS = ["anthropic", "openai", "gemini", "xai"]
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture()
def paying(gateway):
    c = make_customer(gateway, usd="20")
    return c, anthropic.Anthropic(base_url=gateway.base_url, api_key=c.secret, max_retries=0, timeout=20)


def history(gateway, account_id: str, n: int = 1) -> list[dict]:
    return accounts_call(gateway, lambda acc: acc.history(account_id, n))


def spent(gateway, account_id: str) -> int:
    return accounts_call(gateway, lambda acc: acc.account(account_id)).spent


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create(provider: str, gateway, fakes, paying) -> None:
    c, client = paying
    model = chat_model_for(provider)
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=200, system="Be brief.",
        messages=[{"role": "user", "content": "Сгенерируй краткий план выходного дня в Москве"}])
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant" and msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("echo")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert validate("anthropic", "Message", raw.http_response.json()) == []
    assert raw.http_response.headers["x-gateway-provider"] == provider
    assert fakes[provider].spec_errors == [] and fakes[provider].response_spec_errors == []
    sent = fakes[provider].last
    if provider == "anthropic":  # the raw body passed: what the SDK sent is what Anthropic got
        assert sent.path == "/v1/messages" and sent.body["system"] == "Be brief." and sent.body["max_tokens"] == 200
        assert sent.headers["anthropic-version"] == client.default_headers["anthropic-version"]  # the client's
    entry = history(gateway, c.account_id)[0]
    assert entry["endpoint"] == "/v1/messages" and entry["status"] == 200 and entry["cost"] > 0
    assert entry["cost"] == spent(gateway, c.account_id)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream(provider: str, gateway, fakes, paying) -> None:
    c, client = paying
    model = chat_model_for(provider)
    seen: list[str] = []
    with client.messages.stream(model=model, max_tokens=200,
                                messages=[{"role": "user", "content": "Tell me about the weekend"}]) as stream:
        for event in stream:
            seen.append(event.type)
        final = stream.get_final_message()
    assert seen[0] == "message_start" and "content_block_delta" in seen and seen[-1] == "message_stop"
    assert final.content[0].text == "echo: Tell me about the weekend"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    assert fakes[provider].spec_errors == []
    entry = history(gateway, c.account_id)[0]
    assert entry["endpoint"] == "/v1/messages" and entry["cost"] > 0 and entry["cost"] == spent(gateway, c.account_id)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streaming", [False, True])
def test_tool_round_trip(provider: str, streaming: bool, fakes, paying) -> None:
    _, client = paying
    model = chat_model_for(provider)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    if streaming:
        with client.messages.stream(model=model, max_tokens=300, tools=[WEATHER], messages=ask) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=300, tools=[WEATHER], messages=ask)
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Paris"} and call.id
    follow = ask + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                  "content": "18C, cloudy"}]}]
    second = client.messages.create(model=model, max_tokens=300, tools=[WEATHER], messages=follow)
    assert second.stop_reason == "end_turn" and second.content[0].text
    assert fakes[provider].spec_errors == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_count_tokens(provider: str, gateway, fakes, paying) -> None:
    c, client = paying
    model = chat_model_for(provider)
    before = spent(gateway, c.account_id)
    raw = client.messages.with_raw_response.count_tokens(
        model=model, system="Be brief.", tools=[WEATHER],
        messages=[{"role": "user", "content": "How many tokens is this?"}])
    count = raw.parse()
    assert count.input_tokens > 0
    assert validate("anthropic", "CountMessageTokensResponse", raw.http_response.json()) == []
    if provider == "anthropic":  # Anthropic's own count
        assert fakes["anthropic"].last.path == "/v1/messages/count_tokens"
        assert "x-gateway-token-count" not in raw.http_response.headers
    else:  # an estimate, said to be one; no provider asked
        assert raw.http_response.headers["x-gateway-token-count"] == "estimate"
        assert fakes[provider].requests == []
    assert spent(gateway, c.account_id) == before  # free


def test_errors_raise_the_sdk_classes(gateway, paying) -> None:
    _, client = paying
    model = chat_model_for("anthropic")
    bad = anthropic.Anthropic(base_url=gateway.base_url, api_key="bt_" + "0" * 40, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as auth_err:
        bad.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert auth_err.value.body["type"] == "error" and auth_err.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError) as bad_request:
        client.messages.create(model=model, max_tokens=10, messages=[])
    assert validate("anthropic", "ErrorResponse", bad_request.value.body) == []
    poor = make_customer(gateway, usd="0")
    broke = anthropic.Anthropic(base_url=gateway.base_url, api_key=poor.secret, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        broke.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_rate_limit_carries_retry_after(gateway) -> None:
    c = make_customer(gateway, usd="5", rpm=1)
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=c.secret, max_retries=0)
    model = chat_model_for("openai")
    client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError) as err:
        client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert err.value.body["error"]["type"] == "rate_limit_error"


def test_feature_the_target_cannot_take_is_named(paying) -> None:
    _, client = paying
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=chat_model_for("openai"), max_tokens=50,
                               tools=[{"type": "web_search_20250305", "name": "web_search"}],
                               messages=[{"role": "user", "content": "search"}])
    assert "web_search" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=chat_model_for("openai"), max_tokens=50, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}])
    assert "document" in err.value.body["error"]["message"]


def test_bearer_token_as_claude_code_sends_it(gateway, fakes) -> None:
    """ANTHROPIC_AUTH_TOKEN: the SDK sends `Authorization: Bearer`, not x-api-key."""
    c = make_customer(gateway, usd="5")
    client = anthropic.Anthropic(base_url=gateway.base_url, auth_token=c.secret, max_retries=0)
    msg = client.messages.create(model=chat_model_for("anthropic"), max_tokens=50,
                                 messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "echo: hi"


def test_claude_code_request_pattern(gateway, fakes) -> None:
    """What Claude Code sends when ANTHROPIC_BASE_URL points at the gateway: count_tokens first, then streamed
    turns with the `anthropic-beta` header, a cached system prompt, tools and metadata.user_id; the beta
    header and version reach Anthropic, cache reads and writes are billed at their prices."""
    c = make_customer(gateway, usd="5")
    client = anthropic.Anthropic(base_url=gateway.base_url, auth_token=c.secret, max_retries=0,
                                 default_headers={"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"})
    model = chat_model_for("anthropic")
    system = [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
              {"type": "text", "text": "Work in the repository.", "cache_control": {"type": "ephemeral"}}]
    tools = [WEATHER, {"name": "Bash", "description": "Run a shell command",
                       "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                                        "required": ["command"]}}]
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?",
                                              "cache_control": {"type": "ephemeral"}}]}]
    count = client.messages.count_tokens(model=model, system=system, tools=tools, messages=messages)
    assert count.input_tokens > 0
    assert fakes["anthropic"].last.headers["anthropic-beta"].startswith("claude-code-20250219")
    usage = {"input_tokens": 12, "output_tokens": 9, "cache_creation_input_tokens": 1000,
             "cache_read_input_tokens": 3000, "cache_creation": None, "server_tool_use": None,
             "service_tier": "standard"}
    fakes["anthropic"].reply({"id": "msg_cc1", "type": "message", "role": "assistant", "model": model,
                              "content": [{"type": "tool_use", "id": "toolu_cc1", "name": "get_weather",
                                           "input": {"city": "Paris"}}],
                              "stop_reason": "tool_use", "stop_sequence": None, "usage": usage})
    before = spent(gateway, c.account_id)
    with client.messages.stream(model=model, max_tokens=32000, system=system, tools=tools, messages=messages,
                                metadata={"user_id": "user_abc_account__session_1"}) as s:
        final = s.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}
    sent = fakes["anthropic"].last
    assert sent.body["system"] == system and sent.body["metadata"] == {"user_id": "user_abc_account__session_1"}
    assert sent.headers["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14"
    assert fakes["anthropic"].spec_errors == []
    entry = history(gateway, c.account_id)[0]
    assert entry["in"] == 12 + 1000 + 3000 and entry["cached"] == 3000 and entry["cache_write"] == 1000
    # sonnet: $3 / 1M input, $0.30 cache read, $3.75 cache write, $15 output (pricing.d/anthropic.yaml)
    from gateway.pricing import PriceBook
    from gateway.usage import Usage
    from tests.support import repo_config
    expected = PriceBook(repo_config().prices).cost(model, Usage(input_tokens=4012, cached_input_tokens=3000,
                                                                 cache_write_tokens=1000, output_tokens=9))
    assert spent(gateway, c.account_id) - before == entry["cost"] == expected


def test_raw_http_x_api_key_and_version(gateway, fakes) -> None:
    c = make_customer(gateway, usd="5")
    r = httpx.post(gateway.base_url + "/v1/messages", headers={"x-api-key": c.secret, "anthropic-version": "2023-06-01"},
                   json={"model": chat_model_for("anthropic"), "max_tokens": 20,
                         "messages": [{"role": "user", "content": "hi"}]}, timeout=20)
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "echo: hi"
    r = httpx.post(gateway.base_url + "/v1/messages", json={}, timeout=20)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert json.loads(r.content)["type"] == "error"


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_client_disconnect_bills_what_was_sent(provider: str, gateway, fakes) -> None:
    """A Messages stream the client cuts is billed like a chat stream cut: what was produced, estimated."""
    c = make_customer(gateway, usd="5")
    fake = fakes[provider]
    fake.reply(text=" ".join(f"слово{i}" for i in range(60)), chunk_delay_ms=100)
    with httpx.stream("POST", f"{gateway.base_url}/v1/messages", timeout=20, headers={"x-api-key": c.secret},
                      json={"model": chat_model_for(provider), "max_tokens": 500, "stream": True,
                            "messages": [{"role": "user", "content": "Count"}]}) as r:
        got = 0
        for line in r.iter_lines():
            if line.startswith("event: content_block_delta"):
                got += 1
                if got == 3:
                    break  # leaving the block closes the connection
    deadline = time.monotonic() + 5
    entries: list[dict] = []
    while time.monotonic() < deadline and not entries:
        entries = accounts_call(gateway, lambda acc: acc.history(c.account_id, 5))
        time.sleep(0.05)
    [entry] = entries
    assert entry["cut"] == 1 and entry["stream"] == 1 and entry["estimated"] == 1
    assert entry["cost"] > 0 and entry["in"] > 0 and entry["ms"] < 4000
    acct = accounts_call(gateway, lambda acc: acc.account(c.account_id))
    assert acct.spent == entry["cost"] and acct.reserved == 0
