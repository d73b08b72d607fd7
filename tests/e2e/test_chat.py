"""End to end: the official openai SDK → the gateway on loopback → fake providers speaking their real
wire formats (requests validated against the official specs)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support import chat_model_for

PROVIDERS = ["openai", "anthropic", "gemini", "xai"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_plain_chat(provider: str, client: openai.OpenAI, fakes) -> None:
    model = chat_model_for(provider)
    resp = client.chat.completions.create(
        model=model, max_tokens=50,
        messages=[{"role": "system", "content": "Отвечай кратко."}, {"role": "user", "content": "Скажи pong"}])
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == "echo: Скажи pong"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    fake = fakes[provider]
    assert len(fake.requests) == 1
    assert fake.spec_errors == []
    if provider in ("openai", "xai"):
        assert fake.last.body["model"] == model


@pytest.mark.parametrize("provider, model", [(p, chat_model_for(p)) for p in PROVIDERS] + [
    ("gemini", "gemini-3-pro-preview"), ("gemini", "gemini-3-flash-preview")])
def test_tool_call_round_trip(provider: str, model: str, client: openai.OpenAI, fakes) -> None:
    """Includes Gemini 3, which refuses a tool result whose call lost its thoughtSignature."""
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=tools, max_tokens=100)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18C, cloudy"}]
    second = client.chat.completions.create(model=model, messages=messages, tools=tools, max_tokens=100)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content
    fake = fakes[provider]
    assert fake.spec_errors == []
    sent = fake.last.body
    if provider == "anthropic":
        assert sent["messages"][-1]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "18C, cloudy"}
        assert sent["messages"][-2]["content"][-1]["type"] == "tool_use"
    elif provider == "gemini":
        assert sent["contents"][-1]["parts"][0]["functionResponse"] == {
            "name": "get_weather", "response": {"result": "18C, cloudy"}}
        assert sent["contents"][-2]["parts"][-1]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    else:
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "18C, cloudy"}


def test_model_in_url(gateway, fakes, auth) -> None:
    model = chat_model_for("anthropic")
    r = httpx.post(f"{gateway.base_url}/v1/models/{model}/chat/completions",
                   json={"messages": [{"role": "user", "content": "hi"}]}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == model
    assert r.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert fakes["anthropic"].last.body["model"] == model


def test_index_and_models(gateway, client: openai.OpenAI, auth) -> None:
    index = httpx.get(f"{gateway.base_url}/v1").json()
    assert any(e["path"] == "/v1/chat/completions" for e in index["endpoints"])
    listed = {m.id for m in client.models.list()}
    enabled = {m.name for m in gateway.config.enabled_models}
    assert listed == enabled
    disabled = next(m.name for m in gateway.config.models.values() if not m.enabled)
    assert disabled not in listed
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    r = httpx.get(f"{gateway.base_url}/v1/models/no-such-model", headers=auth)
    assert r.status_code == 404
    assert r.json() == {"statusCode": 404, "error": "Not Found",
                        "message": "model 'no-such-model' not found among enabled models"}
    r = httpx.get(f"{gateway.base_url}/v1/models/{disabled}", headers=auth)
    assert r.status_code == 404
    reason = gateway.config.models[disabled].reason.strip().rstrip(".")
    assert r.json()["message"] == f"model '{disabled}' is disabled: {reason}"
    assert httpx.get(f"{gateway.base_url}/v1/models").status_code == 401


def test_unknown_model_is_404(client: openai.OpenAI, fakes) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-unknown-9", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.response.json() == {"statusCode": 404, "error": "Not Found",
                                         "message": "model 'gpt-unknown-9' not found among enabled models"}
    assert all(not f.requests for f in fakes.values())


def test_disabled_model_is_404(gateway, client: openai.OpenAI) -> None:
    """With its reason, so the client knows it is not a typo (issue 16 item 8)."""
    disabled = next(m for m in gateway.config.models.values() if not m.enabled and m.kind == "realtime")
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model=disabled.name, messages=[{"role": "user", "content": "hi"}])
    message = exc.value.response.json()["message"]
    assert message == f"model '{disabled.name}' is disabled: {disabled.reason.strip().rstrip('.')}"
    assert len(disabled.reason) > 10


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "request body is not valid JSON"),
    (b"[1, 2]", 400, "request body must be a JSON object"),
    (b"", 400, "request body is empty"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "'model' is required"),
    (b'{"model": "gpt-4o-mini"}', 400, "'messages' is required"),
    (b'{"model": "gpt-4o-mini", "messages": "hi"}', 400, "'messages' is required"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "hi"}]}', 400, "messages[0].role"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}', 400, "messages[0].content"),
    # (found by the fuzz: a translated model answered 500, its template missing the id)
    (b'{"model": "claude-sonnet-4-5", "messages": [{"role": "tool"}]}', 400, "messages[0].tool_call_id"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "10"}', 400, "'max_tokens'"),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', 400, "'temperature'"),
    (b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}', 400, "'model' is required"),
])
def test_bad_input_gets_seed_error(gateway, fakes, auth, body: bytes, status: int, message: str) -> None:
    r = httpx.post(f"{gateway.base_url}/v1/chat/completions", content=body,
                   headers={"Content-Type": "application/json", **auth})
    assert r.status_code == status
    data = r.json()
    assert set(data) == {"statusCode", "error", "message"}
    assert data["statusCode"] == status and data["error"] == "Bad Request"
    assert message in data["message"]
    assert all(not f.requests for f in fakes.values())


def test_oversized_body_is_413(gateway, fakes, auth) -> None:
    limit = gateway.config.settings.max_body_bytes
    big = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + b"x" * (limit + 10) + b'"}]}'
    r = httpx.post(f"{gateway.base_url}/v1/chat/completions", content=big,
                   headers={"Content-Type": "application/json", **auth})
    assert r.status_code == 413
    assert r.json()["statusCode"] == 413
    assert not fakes["openai"].requests


def test_translation_refusal_is_400(client: openai.OpenAI, fakes) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=chat_model_for("anthropic"), n=2,
                                       messages=[{"role": "user", "content": "hi"}])
    assert "n > 1" in exc.value.response.json()["message"]
    assert not fakes["anthropic"].requests


def test_unknown_path_and_method(gateway) -> None:
    r = httpx.get(f"{gateway.base_url}/v1/nothing-here")
    assert r.status_code == 404 and r.json()["statusCode"] == 404
    r = httpx.get(f"{gateway.base_url}/v1/chat/completions")
    assert r.status_code == 405 and r.json()["statusCode"] == 405
