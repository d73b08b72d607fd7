"""tests.support.fakes.specs: the official specs accept the validated examples and reject broken payloads."""

from __future__ import annotations

import copy
import json
import time

import pytest

from tests.support.fakes.specs import SpecError, assert_valid, check, load_spec, specs_dir, validate

EXAMPLES = json.loads((specs_dir() / "examples" / "validated-examples.json").read_text())["items"]


def _spec(item: dict) -> str:
    return item["spec"].split("/")[0]


@pytest.mark.parametrize(
    "item", EXAMPLES, ids=[f"{i}-{_spec(x)}-{x['schema']}" for i, x in enumerate(EXAMPLES)]
)
def test_validated_examples_pass(item: dict) -> None:
    assert validate(_spec(item), item["schema"], item["obj"]) == []


def _example(spec: str, schema: str) -> dict:
    return copy.deepcopy(next(x["obj"] for x in EXAMPLES if _spec(x) == spec and x["schema"] == schema))


def test_anthropic_request_missing_max_tokens() -> None:
    body = _example("anthropic", "CreateMessageParams")
    del body["max_tokens"]
    assert validate("anthropic", "CreateMessageParams", body) == ["$: 'max_tokens' is a required property"]


def test_gemini_typo_field_fails_in_strict_mode_only() -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfg": {"temperature": 0.2},
    }
    errors = validate("gemini", "GenerateContentRequest", body)
    assert len(errors) == 1 and "generationConfg" in errors[0] and errors[0].startswith("$:")
    assert validate("gemini", "GenerateContentRequest", body, strict=False) == []
    # typos deeper down are caught as well
    nested = {"contents": [{"role": "user", "parts": [{"txt": "hi"}]}]}
    assert validate("gemini", "GenerateContentRequest", nested) == [
        "$.contents[0].parts[0]: unknown field ('txt' was unexpected)"
    ]


def test_gemini_request_model_not_required() -> None:
    assert validate("gemini", "GenerateContentRequest", {"contents": []}) == []


def test_openai_chat_response_bad_finish_reason() -> None:
    body = _example("openai", "CreateChatCompletionResponse")
    body["choices"][0]["finish_reason"] = "done"
    errors = validate("openai", "CreateChatCompletionResponse", body)
    assert len(errors) == 1
    assert errors[0].startswith("$.choices[0].finish_reason: 'done' is not one of")


def test_openai_nullable_normalised() -> None:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}],
    }
    assert validate("openai", "CreateChatCompletionStreamResponse", chunk) == []
    chunk["choices"][0]["finish_reason"] = "nope"
    assert validate("openai", "CreateChatCompletionStreamResponse", chunk)


def test_union_errors_point_at_the_discriminator() -> None:
    bad_role = {"model": "m", "messages": [{"role": "usr", "content": "hi"}]}
    (err,) = check("openai", "CreateChatCompletionRequest", bad_role)
    assert isinstance(err, SpecError)
    assert err.path == "$.messages[0].role" and err.field == "messages[0].role" and "'usr'" in err.message
    bad_block = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "txt", "text": "x"}]}],
    }
    (msg,) = validate("anthropic", "CreateMessageParams", bad_block)
    assert msg.startswith("$.messages[0].content[0].type: 'txt' is not one of ['text', 'image'")


def test_anthropic_newer_fields_accepted() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        "cache_control": {"type": "ephemeral"},
    }
    assert validate("anthropic", "CreateMessageParams", body) == []
    body["output_config"]["effort"] = "extreme"
    assert validate("anthropic", "CreateMessageParams", body)


def test_assert_valid_and_unknown_names() -> None:
    assert_valid("openai", "CreateCompletionRequest", {"model": "m", "prompt": "hi"})
    with pytest.raises(AssertionError, match="prompt"):
        assert_valid("openai", "CreateCompletionRequest", {"model": "m"})
    with pytest.raises(KeyError):
        validate("openai", "NoSuchSchema", {})
    with pytest.raises(ValueError):
        validate("cohere", "X", {})
    # xai is an alias of the OpenAI spec
    assert validate("xai", "CreateCompletionRequest", {"model": "m", "prompt": "hi"}) == []


def test_specs_cached_and_fast() -> None:
    assert load_spec("openai") is load_spec("openai")
    body = _example("openai", "CreateChatCompletionRequest")
    validate("openai", "CreateChatCompletionRequest", body)  # warm
    t = time.perf_counter()
    for _ in range(50):
        validate("openai", "CreateChatCompletionRequest", body)
    per_call = (time.perf_counter() - t) / 50
    assert per_call < 0.05, per_call
