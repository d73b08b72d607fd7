"""Every successful call carries its charge (issue 21 item 10): the `x-gateway-cost-usd` header and
`usage.cost` in the JSON answer, and `usage.cost` in a stream's final usage chunk — each equal to what the
balance was charged, to the nano-dollar, read with the official openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.web import Cabinet, Stack, create_key, make_admin, web_stack

MSG = [{"role": "user", "content": "Скажи 'pong'"}]


@pytest.fixture(scope="module")
def stack(fakes: Any) -> Iterator[Stack]:
    with web_stack(fakes) as s:
        yield s


def spent(stack: Stack, key: str) -> Decimal:
    doc = httpx.get(stack.base_url + "/v1/balance", headers={"Authorization": f"Bearer {key}"}).json()
    return Decimal(str(doc["spend_total_usd"]))


def test_cost_on_json_answers_and_streams(stack: Stack) -> None:
    admin_email = make_admin(stack)
    with Cabinet(stack.base_url) as c, Cabinet(stack.base_url) as admin:
        assert c.signup().status_code == 303 and admin.login(admin_email).status_code == 303
        admin.post(f"/console/accounts/{c.account_id}/topup",
                   {"amount": "5", "currency": "USD", "reason": "cost test", "nonce": "cost" + c.account_id})
        _, key = create_key(c, "cost")
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, max_retries=0)
    total = Decimal(0)
    for model in ("gpt-4o-mini", "claude-sonnet-4-5"):          # pass-through and translated
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG, max_tokens=20)
        header = Decimal(raw.headers["x-gateway-cost-usd"])
        body = raw.parse()
        assert header > 0 and Decimal(str(body.usage.model_extra["cost"])) == header
        total += header
        assert spent(stack, key) == total
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=20, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    cost = Decimal(str(last.usage.model_extra["cost"]))
    assert cost > 0
    assert spent(stack, key) == total + cost
    responses = client.responses.with_raw_response.create(model="gpt-4o-mini", input="hi", max_output_tokens=20)
    header = Decimal(responses.headers["x-gateway-cost-usd"])
    assert Decimal(str(responses.parse().usage.model_extra["cost"])) == header
    assert spent(stack, key) == total + cost + header
