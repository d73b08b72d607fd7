"""The Gemini API inbound (/v1beta/models/{model}:generateContent, :streamGenerateContent, :countTokens,
GET /v1beta/models; the same under /v1) with the official `google-genai` SDK: Gemini models pass through to
Google's own endpoint, every other chat model is translated through chat; billing, history and errors (in
Google's shape) as on /v1/chat/completions."""

from __future__ import annotations

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.support import chat_model_for
from tests.support.fakes.specs import validate
from tests.support.gateway_server import accounts_call, make_customer

PROVIDERS = ["gemini", "openai", "anthropic", "xai"]
WEATHER = types.FunctionDeclaration(
    name="get_weather", description="Current weather for a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def sdk(gateway, secret: str, version: str = "v1beta") -> genai.Client:
    return genai.Client(api_key=secret, http_options=types.HttpOptions(base_url=gateway.base_url, api_version=version,
                                                                       timeout=20_000))


@pytest.fixture()
def paying(gateway):
    c = make_customer(gateway, usd="20")
    return c, sdk(gateway, c.secret)


def history(gateway, account_id: str) -> dict:
    return accounts_call(gateway, lambda acc: acc.history(account_id, 1))[0]


def spent(gateway, account_id: str) -> int:
    return accounts_call(gateway, lambda acc: acc.account(account_id)).spent


@pytest.mark.parametrize("version", ["v1beta", "v1"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_generate_content(provider: str, version: str, gateway, fakes) -> None:
    c = make_customer(gateway, usd="5")
    client = sdk(gateway, c.secret, version)
    model = chat_model_for(provider)
    r = client.models.generate_content(
        model=model, contents="Сгенерируй краткий план выходного дня в Москве",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=200, temperature=0.5))
    assert r.text.startswith("echo")
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata.prompt_token_count > 0 and r.usage_metadata.candidates_token_count > 0
    assert fakes[provider].spec_errors == [] and fakes[provider].response_spec_errors == []
    sent = fakes[provider].last
    if provider == "gemini":  # the raw body passed, the model in the path
        assert sent.path == f"/v1beta/models/{model}:generateContent"
        assert sent.body["systemInstruction"] == {"parts": [{"text": "Be brief."}], "role": "user"} or \
            sent.body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    entry = history(gateway, c.account_id)
    assert entry["endpoint"].endswith(":generateContent") and entry["status"] == 200 and entry["cost"] > 0
    assert entry["cost"] == spent(gateway, c.account_id)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_generate_content_stream(provider: str, gateway, fakes, paying) -> None:
    c, client = paying
    model = chat_model_for(provider)
    chunks = list(client.models.generate_content_stream(model=model, contents="Tell me about the weekend"))
    assert "".join(ch.text or "" for ch in chunks) == "echo: Tell me about the weekend"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    assert fakes[provider].spec_errors == []
    entry = history(gateway, c.account_id)
    assert entry["endpoint"].endswith(":streamGenerateContent") and entry["cost"] == spent(gateway, c.account_id) > 0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streaming", [False, True])
def test_function_call_round_trip(provider: str, streaming: bool, fakes, paying) -> None:
    _, client = paying
    model = chat_model_for(provider)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    ask = [types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])]
    if streaming:
        chunks = list(client.models.generate_content_stream(model=model, contents=ask, config=config))
        calls = [p.function_call for ch in chunks for p in (ch.candidates[0].content.parts or [])
                 if ch.candidates and ch.candidates[0].content and p.function_call]
    else:
        first = client.models.generate_content(model=model, contents=ask, config=config)
        calls = first.function_calls or []
    assert calls and calls[0].name == "get_weather" and calls[0].args == {"city": "Paris"}
    follow = ask + [types.Content(role="model", parts=[types.Part(function_call=calls[0])]),
                    types.Content(role="user", parts=[types.Part.from_function_response(
                        name="get_weather", response={"result": "18C, cloudy"})])]
    second = client.models.generate_content(model=model, contents=follow, config=config)
    assert second.text
    assert fakes[provider].spec_errors == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_count_tokens(provider: str, gateway, fakes, paying) -> None:
    c, client = paying
    before = spent(gateway, c.account_id)
    r = client.models.count_tokens(model=chat_model_for(provider), contents="How many tokens is this?")
    assert r.total_tokens > 0
    if provider == "gemini":
        assert fakes["gemini"].last.path.endswith(":countTokens")
    else:
        assert fakes[provider].requests == []
    assert spent(gateway, c.account_id) == before


def test_models_list_and_get(gateway, paying) -> None:
    _, client = paying
    names = [m.name for m in client.models.list()]
    assert f"models/{chat_model_for('gemini')}" in names and f"models/{chat_model_for('openai')}" in names
    one = client.models.get(model=chat_model_for("anthropic"))
    assert one.name == f"models/{chat_model_for('anthropic')}" and "generateContent" in one.supported_actions


def test_errors_in_googles_shape(gateway, paying) -> None:
    c, client = paying
    bad = sdk(gateway, "bt_" + "0" * 40)
    with pytest.raises(genai_errors.ClientError) as err:
        bad.models.generate_content(model=chat_model_for("gemini"), contents="hi")
    assert err.value.code == 401 and err.value.status == "UNAUTHENTICATED"
    with pytest.raises(genai_errors.ClientError) as err:
        client.models.generate_content(model="no-such-model", contents="hi")
    assert err.value.code == 404 and err.value.status == "NOT_FOUND"
    r = httpx.post(f"{gateway.base_url}/v1beta/models/{chat_model_for('gemini')}:generateContent",
                   params={"key": c.secret}, json={"contents": []}, timeout=20)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert validate("gemini", "Status", r.json()["error"]) == []
    poor = make_customer(gateway, usd="0")
    broke = sdk(gateway, poor.secret)
    with pytest.raises(genai_errors.ClientError) as err:
        broke.models.generate_content(model=chat_model_for("openai"), contents="hi")
    assert err.value.code == 403 and err.value.status == "PERMISSION_DENIED"


def test_feature_the_target_cannot_take_is_named(paying) -> None:
    _, client = paying
    with pytest.raises(genai_errors.ClientError) as err:
        client.models.generate_content(model=chat_model_for("openai"), contents="search",
                                       config=types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())]))
    assert err.value.code == 400 and "googleSearch" in err.value.message


def test_stream_without_alt_sse_is_a_json_array(gateway, fakes) -> None:
    c = make_customer(gateway, usd="5")
    for provider in ("gemini", "openai"):
        r = httpx.post(f"{gateway.base_url}/v1beta/models/{chat_model_for(provider)}:streamGenerateContent",
                       headers={"x-goog-api-key": c.secret},
                       json={"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}, timeout=20)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        chunks = r.json()
        assert isinstance(chunks, list) and "".join(
            p.get("text", "") for ch in chunks for cand in ch.get("candidates") or [] for p in cand["content"]["parts"]
        ) == "echo: hi there"
        for ch in chunks:
            assert validate("gemini", "GenerateContentResponse", ch) == []
