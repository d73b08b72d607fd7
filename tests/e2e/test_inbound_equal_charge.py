"""The same logical call through the three inbound APIs — OpenAI chat, Anthropic Messages, Gemini
generateContent — for a Claude and a GPT model, whole and streamed, is charged the same (issue 19): the
pass-through and the translations report the same usage and settle through the same path."""

from __future__ import annotations

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from tests.support import chat_model_for
from tests.support.gateway_server import accounts_call, make_customer

SYSTEM = "Answer briefly."
PROMPT = "Сгенерируй краткий план выходного дня в Москве"


def _chat(base: str, secret: str, model: str, stream: bool) -> None:
    client = openai.OpenAI(base_url=base + "/v1", api_key=secret, max_retries=0)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    if stream:
        list(client.chat.completions.create(model=model, messages=messages, max_tokens=100, stream=True))
    else:
        client.chat.completions.create(model=model, messages=messages, max_tokens=100)


def _messages(base: str, secret: str, model: str, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=base, api_key=secret, max_retries=0)
    kwargs = {"model": model, "system": SYSTEM, "max_tokens": 100, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        with client.messages.stream(**kwargs) as s:
            s.get_final_message()
    else:
        client.messages.create(**kwargs)


def _generate(base: str, secret: str, model: str, stream: bool) -> None:
    client = genai.Client(api_key=secret, http_options=types.HttpOptions(base_url=base, api_version="v1beta"))
    config = types.GenerateContentConfig(system_instruction=SYSTEM, max_output_tokens=100)
    if stream:
        list(client.models.generate_content_stream(model=model, contents=PROMPT, config=config))
    else:
        client.models.generate_content(model=model, contents=PROMPT, config=config)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_same_call_same_charge(provider: str, stream: bool, gateway, fakes) -> None:
    model = chat_model_for(provider)
    charges = {}
    for name, call in (("chat", _chat), ("messages", _messages), ("generate", _generate)):
        c = make_customer(gateway, usd="5")
        call(gateway.base_url, c.secret, model, stream)
        aid = c.account_id
        entry = accounts_call(gateway, lambda acc, aid=aid: acc.history(aid, 1))[0]
        spent = accounts_call(gateway, lambda acc, aid=aid: acc.account(aid)).spent
        assert entry["status"] == 200 and entry["cost"] == spent
        charges[name] = (entry["cost"], entry["in"], entry["out"], entry["endpoint"])
    costs = {name: v[:3] for name, v in charges.items()}
    assert costs["chat"] == costs["messages"] == costs["generate"], charges
    assert costs["chat"][0] > 0
    # history tells the three apart by the inbound API
    assert len({v[3] for v in charges.values()}) == 3
