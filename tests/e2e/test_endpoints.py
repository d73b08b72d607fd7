"""/v1/responses, /v1/text/generations and /v1/images/generations end to end with the official SDK,
against fake providers on loopback; every call is billed and recorded (seed §8, §9, §10)."""

from __future__ import annotations

import base64
import json
from decimal import ROUND_CEILING

import httpx
import openai
import pytest

from gateway.money import NANO
from tests.support import chat_model_for
from tests.support.fakes.specs import validate
from tests.support.gateway_server import accounts_call, make_customer

PROVIDERS = ["openai", "anthropic", "gemini", "xai"]
TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
          "strict": True}]


@pytest.fixture()
def paying(gateway):
    c = make_customer(gateway, usd="20")
    return c, openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=c.secret, max_retries=0, timeout=20)


def last_entry(gateway, account_id: str) -> dict:
    return accounts_call(gateway, lambda acc: acc.history(account_id, 1))[0]


def balance_spent(gateway, account_id: str) -> int:
    return accounts_call(gateway, lambda acc: acc.account(account_id)).spent


@pytest.mark.parametrize("provider", PROVIDERS)
def test_responses_string_input(provider: str, gateway, fakes, paying) -> None:
    c, client = paying
    model = chat_model_for(provider)
    raw = client.responses.with_raw_response.create(
        model=model, input="Сгенерируй краткий план выходного дня в Москве", instructions="Be brief.",
        max_output_tokens=100, temperature=0.5)
    r = raw.parse()
    assert r.object == "response" and r.status == "completed"
    assert r.output_text.startswith("echo")
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert validate("openai", "Response", raw.http_response.json()) == []
    assert fakes[provider].spec_errors == []
    entry = last_entry(gateway, c.account_id)
    assert entry["endpoint"] == "/v1/responses" and entry["status"] == 200 and entry["cost"] > 0
    assert entry["cost"] == balance_spent(gateway, c.account_id)
    sent = fakes[provider].last.body
    if provider == "anthropic":
        assert sent["system"] == "Be brief." and sent["max_tokens"] == 100
    elif provider == "gemini":
        assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    else:  # OpenAI and xAI serve the Responses API themselves: a pass-through
        assert fakes[provider].last.path == "/v1/responses" and sent["instructions"] == "Be brief."


@pytest.mark.parametrize("provider", PROVIDERS)
def test_responses_function_call_round_trip(provider: str, fakes, paying) -> None:
    _, client = paying
    model = chat_model_for(provider)
    first = client.responses.create(model=model, input=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS)
    calls = [o for o in first.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    follow = [{"role": "user", "content": "Weather in Paris?"}, calls[0].model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C, cloudy"}]
    second = client.responses.create(model=model, input=follow, tools=TOOLS)
    assert second.status == "completed" and second.output_text
    assert fakes[provider].spec_errors == []


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_responses_json_schema_format(provider: str, fakes, paying) -> None:
    _, client = paying
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
              "additionalProperties": False}
    client.responses.create(model=chat_model_for(provider), input="Ivan",
                            text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}})
    sent = fakes[provider].last.body
    if provider == "anthropic":
        assert sent["output_config"]["format"] == {"type": "json_schema", "schema": schema}
    else:
        assert sent["generationConfig"]["responseJsonSchema"] == schema


def test_responses_only_model_on_chat_completions(gateway, fakes, paying) -> None:
    """A model OpenAI serves only through /v1/responses still answers on /v1/chat/completions."""
    c, client = paying
    model = next(m.name for m in gateway.config.enabled_models if m.kind == "responses" and m.owned_by == "openai")
    r = client.chat.completions.create(model=model, messages=[{"role": "system", "content": "Be brief."},
                                                              {"role": "user", "content": "Скажи pong"}], max_tokens=50)
    assert r.choices[0].message.content.startswith("echo")
    assert r.choices[0].finish_reason == "stop" and r.usage.total_tokens > 0
    assert fakes["openai"].last.path == "/v1/responses"
    assert fakes["openai"].last.body["max_output_tokens"] == 50
    assert fakes["openai"].spec_errors == []
    assert last_entry(gateway, c.account_id)["endpoint"] == "/v1/chat/completions"


def test_gpt5_family_on_both_endpoints(fakes, paying) -> None:
    _, client = paying
    assert client.chat.completions.create(model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}]).choices
    assert fakes["openai"].last.path == "/v1/chat/completions"
    assert client.responses.create(model="gpt-5-mini", input="hi").output_text
    assert fakes["openai"].last.path == "/v1/responses"


@pytest.mark.parametrize("model, native", [("gpt-3.5-turbo-instruct", True), ("babbage-002", True),
                                           ("gpt-4o-mini", False), ("claude-sonnet-4-5", False),
                                           ("gemini-2.5-flash", False)])
def test_text_generations(model: str, native: bool, gateway, fakes, paying) -> None:
    c, client = paying
    raw = client.post("/text/generations", cast_to=httpx.Response,
                      body={"model": model, "prompt": "Однострочный заголовок для статьи о Kubernetes:",
                            "max_tokens": 64, "temperature": 0.2, "stop": ["\n"]})
    doc = raw.json()
    assert doc["object"] == "text_completion"
    assert doc["choices"][0]["text"] and doc["choices"][0]["finish_reason"] in ("stop", "length")
    assert doc["usage"]["total_tokens"] > 0
    assert validate("openai", "CreateCompletionResponse", doc) == []
    if native:
        assert fakes["openai"].last.path == "/v1/completions"
    entry = last_entry(gateway, c.account_id)
    assert entry["endpoint"] == "/v1/text/generations" and entry["cost"] > 0


def test_text_generations_prompt_list_for_chat_model(paying) -> None:
    _, client = paying
    with pytest.raises(openai.BadRequestError) as exc:
        client.post("/text/generations", cast_to=httpx.Response,
                    body={"model": "gpt-4o-mini", "prompt": ["a", "b"]})
    assert "prompt must be a string" in exc.value.response.json()["message"]


@pytest.mark.parametrize("model, provider", [("gpt-image-1", "openai"), ("dall-e-3", "openai"),
                                             ("gemini-2.5-flash-image", "gemini"), ("grok-imagine-image", "xai")])
def test_images(model: str, provider: str, gateway, fakes, paying) -> None:
    c, client = paying
    before = balance_spent(gateway, c.account_id)
    r = client.images.generate(model=model, prompt="Минималистичный логотип проекта о космосе", size="1024x1024", n=1)
    assert len(r.data) == 1
    item = r.data[0]
    assert item.b64_json or item.url
    if item.b64_json:
        assert base64.b64decode(item.b64_json)[:8] == b"\x89PNG\r\n\x1a\n"
    entry = last_entry(gateway, c.account_id)
    assert entry["endpoint"] == "/v1/images/generations" and entry["images"] == 1 and entry["status"] == 200
    assert entry["cost"] > 0 and balance_spent(gateway, c.account_id) - before == entry["cost"]
    assert fakes[provider].spec_errors == []
    sent = fakes[provider].last.body
    if provider == "gemini":
        assert sent["generationConfig"]["responseModalities"] == ["TEXT", "IMAGE"]
        assert sent["generationConfig"]["imageConfig"] == {"aspectRatio": "1:1"}
    if provider == "xai":
        assert "size" not in sent


def test_dalle_priced_per_image_by_size_and_quality(gateway, fakes, paying) -> None:
    c, client = paying
    client.images.generate(model="dall-e-3", prompt="a cat", size="1024x1792", quality="hd", n=1)
    price = gateway.config.prices["dall-e-3"]  # pricing.d/: USD per image of a size and quality, plus markup
    listed = next(usd for size, quality, usd in price.per_image if (size, quality) == ("1024x1792", "hd"))
    charged = (listed + price.per_request) * (100 + price.markup_percent) / 100 * NANO
    assert last_entry(gateway, c.account_id)["cost"] == int(charged.to_integral_value(rounding=ROUND_CEILING))


@pytest.mark.parametrize("model, endpoint, message", [
    ("gpt-image-1", "/chat/completions", "use /v1/images/generations"),
    ("gpt-4o-mini", "/images/generations", "cannot be used on /v1/images/generations"),
])
def test_model_on_wrong_endpoint_is_400(model: str, endpoint: str, message: str, gateway, fakes, paying) -> None:
    c, client = paying
    body = {"model": model, "prompt": "x", "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(openai.BadRequestError) as exc:
        client.post(endpoint, cast_to=httpx.Response, body=body)
    assert message in exc.value.response.json()["message"]
    assert all(not f.requests for f in fakes.values())
    assert balance_spent(gateway, c.account_id) == 0


def test_gemini_image_model_without_image_is_400_and_free(gateway, fakes, paying) -> None:
    c, client = paying
    fakes["gemini"].reply({"candidates": [{"content": {"role": "model", "parts": [{"text": "I can't draw that."}]},
                                           "finishReason": "STOP", "index": 0}],
                           "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 5, "totalTokenCount": 10}})
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.generate(model="gemini-2.5-flash-image", prompt="forbidden thing")
    assert "generated no image" in exc.value.response.json()["message"]
    assert balance_spent(gateway, c.account_id) == 0
