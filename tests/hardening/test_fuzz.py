"""Property-based fuzzing of the four paid endpoints and the admin API (issue 14): whatever JSON a client
sends, the gateway answers without a 5xx of its own making, every error in the seed's shape
{"statusCode", "error", "message"} with the status it is sent with, and no Python internals in the message.

Bounded: a fixed number of examples per endpoint (a few seconds each), bodies built from the fields each
endpoint reads, with values of every JSON type, so the checks and the templates see wrong types, nulls,
nesting and odd strings in every place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import fake_env
from tests.support.gateway_server import GatewayServer, make_customer
from tests.support import REPO

TOKEN = "fuzz-admin-token"
PYTHON_INTERNALS = re.compile(r"object has no attribute|is not subscriptable|Traceback|[A-Z]\w+Error\b|"
                              r"\w+Exception\b|gaierror|Recursion limit|NoneType|unhashable|<[a-z_.]+ object at")
MODELS = ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "grok-3-mini", "gpt-5-codex", "gpt-image-1",
          "gemini-2.5-flash-image", "no-such-model", ""]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=20), st.sampled_from(["user", "assistant", "system", "tool", "text",
                                                           "image_url", "function", "data:image/png;base64,AAAA"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)


def field(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with some of `keys` (the names an endpoint reads), each holding any JSON value."""
    return st.fixed_dictionaries({}, optional={k: json_values for k in keys})


part = st.fixed_dictionaries({}, optional={"type": st.sampled_from(["text", "image_url", "input_text", "file", "x"]),
                                           "text": json_values, "image_url": json_values})
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "x"])},
                                optional={"content": st.one_of(st.text(max_size=30), st.lists(part, max_size=3),
                                                               json_values),
                                          "tool_calls": json_values, "tool_call_id": json_values, "name": json_values})
tool = st.fixed_dictionaries({"type": st.sampled_from(["function", "x"])},
                             optional={"function": field(["name", "description", "parameters", "strict"])})

COMMON = ["temperature", "top_p", "max_tokens", "n", "stop", "seed", "user", "stream", "stream_options",
          "response_format", "tool_choice", "metadata"]
BODIES = {
    "/v1/chat/completions": st.builds(
        lambda model, messages, tools, extra: {"model": model, "messages": messages, **tools, **extra},
        st.sampled_from(MODELS), st.one_of(st.lists(message, min_size=1, max_size=4), json_values),
        st.one_of(st.just({}), st.builds(lambda t: {"tools": t}, st.lists(tool, max_size=2))),
        field(COMMON + ["max_completion_tokens", "presence_penalty", "frequency_penalty", "logprobs"])),
    "/v1/responses": st.builds(
        lambda model, inp, extra: {"model": model, "input": inp, **extra},
        st.sampled_from(MODELS), st.one_of(st.text(max_size=30), st.lists(message, min_size=1, max_size=3),
                                           json_values),
        field(COMMON + ["instructions", "max_output_tokens", "text", "tools", "reasoning"])),
    "/v1/text/generations": st.builds(
        lambda model, prompt, extra: {"model": model, "prompt": prompt, **extra},
        st.sampled_from(MODELS), json_values, field(COMMON + ["suffix", "echo"])),
    "/v1/images/generations": st.builds(
        lambda model, prompt, extra: {"model": model, "prompt": prompt, **extra},
        st.sampled_from(MODELS), json_values, field(["n", "size", "quality", "response_format", "style", "user"])),
}


def check_answer(r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    doc = r.json()
    assert set(doc) == {"statusCode", "error", "message"}, doc
    assert doc["statusCode"] == r.status_code, doc
    assert isinstance(doc["message"], str) and doc["message"], doc
    assert not PYTHON_INTERNALS.search(doc["message"]), doc["message"]
    # 5xx only when a provider is at fault (a fake rejected what the gateway sent is a gateway bug too)
    assert r.status_code < 500, doc


@pytest.fixture(scope="module")
def fuzz_gateway(fakes, redis_env: dict[str, str]) -> Iterator[GatewayServer]:
    with GatewayServer(REPO, fake_env(fakes) | redis_env | {"GATEWAY_ADMIN_TOKEN": TOKEN}) as server:
        yield server


@pytest.fixture(scope="module")
def http(fuzz_gateway: GatewayServer) -> Iterator[httpx.Client]:
    customer = make_customer(fuzz_gateway, usd="100")
    with httpx.Client(base_url=fuzz_gateway.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {customer.secret}"}) as client:
        yield client


FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("path", list(BODIES))
def test_paid_endpoints_answer_any_json_in_the_seeds_shape(http: httpx.Client, fakes, path: str) -> None:
    @FUZZ
    @given(body=BODIES[path])
    def run(body: dict[str, Any]) -> None:
        body["stream"] = False if body.get("stream") is True else body.get("stream", False)
        check_answer(http.post(path, json=body))

    run()
    # what the gateway wrote itself (translations) satisfies the providers' specs; a pass-through body is
    # the client's own, and the provider's 400 for it is passed on
    for name in ("anthropic", "gemini"):
        assert fakes[name].spec_errors == [], [e[:160] for e in fakes[name].spec_errors]


admin_calls = st.one_of(
    st.tuples(st.just("POST"), st.just("/admin/v1/accounts"), field(["login", "name", "email", "admin"])),
    st.tuples(st.just("POST"), st.sampled_from(["/admin/v1/accounts/{a}/topup", "/admin/v1/accounts/{a}/corrections"]),
              field(["usd", "rub", "amount_usd", "amount_rub", "reason", "reference"])),
    st.tuples(st.just("POST"), st.just("/admin/v1/accounts/{a}/keys"),
              field(["name", "monthly_limit_usd", "rpm", "tpm", "models", "allowed_models"])),
    st.tuples(st.just("PATCH"), st.just("/admin/v1/keys/{k}"), field(["monthly_limit_usd", "rpm", "tpm", "models"])),
    st.tuples(st.just("POST"), st.just("/admin/v1/fx"), field(["usd_rub", "rate"])),
    st.tuples(st.sampled_from(["GET", "POST", "DELETE"]),
              st.sampled_from(["/admin/v1/accounts/{a}", "/admin/v1/accounts/{a}/ledger?limit=0",
                               "/admin/v1/accounts/{a}/history?limit=5000", "/admin/v1/accounts?offset=-1",
                               "/admin/v1/accounts/%00/keys", "/admin/v1/keys/{k}/revoke"]), st.just({})),
)


def test_admin_api_answers_any_json_in_the_seeds_shape(fuzz_gateway: GatewayServer) -> None:
    owner = make_customer(fuzz_gateway, usd="1")

    @FUZZ
    @given(call=admin_calls, ids=st.sampled_from(["own", "unknown", "junk"]))
    def run(call: tuple[str, str, dict[str, Any]], ids: str) -> None:
        method, path, body = call
        a, k = {"own": (owner.account_id, owner.key_id), "unknown": ("acct_000000000000", "key_000000000000"),
                "junk": ("../x", "%2e%2e")}[ids]
        r = httpx.request(method, fuzz_gateway.base_url + path.format(a=a, k=k),
                          json=body if method != "GET" else None,
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        check_answer(r)

    run()
