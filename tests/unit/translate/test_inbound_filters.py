"""The filters the Messages and Gemini adapters use: key spelling, call/answer pairing, schema types, ids."""

from __future__ import annotations

from gateway.translate.filters import (
    camel_keys,
    chat_call_id,
    lacks,
    lower_schema_types,
    paired_ids,
    safe_call_id,
)


def test_camel_keys_spares_user_data() -> None:
    body = {"system_instruction": {"parts": [{"text": "x"}]},
            "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": {
                "properties": {"snake_case_field": {"type": "string"}}}}]}],
            "contents": [{"parts": [{"function_call": {"name": "f", "args": {"some_arg": 1}}}]}]}
    out = camel_keys(body, ["args", "parametersJsonSchema"])
    assert out["systemInstruction"] == {"parts": [{"text": "x"}]}
    decl = out["tools"][0]["functionDeclarations"][0]
    assert decl["parametersJsonSchema"] == {"properties": {"snake_case_field": {"type": "string"}}}
    assert out["contents"][0]["parts"][0]["functionCall"]["args"] == {"some_arg": 1}
    assert body["system_instruction"]  # the input is left as it was


def test_paired_ids_by_name_in_order() -> None:
    turns = [{"role": "model", "parts": [{"functionCall": {"name": "a"}}, {"functionCall": {"name": "a"}},
                                         {"functionCall": {"name": "b", "id": "given"}}]},
             {"role": "user", "parts": [{"functionResponse": {"name": "b"}}, {"functionResponse": {"name": "a"}},
                                        {"functionResponse": {"name": "a"}}, {"text": "more"}]}]
    out = paired_ids(turns, "parts", "functionCall", "functionResponse")
    calls = [p["functionCall"]["id"] for p in out[0]["parts"]]
    answers = [p["functionResponse"]["id"] for p in out[1]["parts"][:3]]
    assert calls == ["call_0_0", "call_0_1", "given"]
    assert answers == ["given", "call_0_0", "call_0_1"]
    assert out[1]["parts"][3] == {"text": "more"}
    assert lacks(out[1]["parts"], "functionResponse") == [{"text": "more"}]


def test_lower_schema_types() -> None:
    schema = {"type": "OBJECT", "properties": {"type": {"type": "STRING", "enum": ["A"]},
                                               "n": {"type": ["INTEGER", "NULL"]}}}
    assert lower_schema_types(schema) == {"type": "object", "properties": {
        "type": {"type": "string", "enum": ["A"]}, "n": {"type": ["integer", "null"]}}}


def test_signed_call_ids_round_trip_through_safe_characters() -> None:
    signed = "call_abc:ts:CiQB+/x=="
    safe = safe_call_id(signed)
    assert safe.replace("_", "a").replace("-", "a").isalnum()
    assert chat_call_id(safe) == signed
    assert safe_call_id("toolu_01") == "toolu_01" and chat_call_id("toolu_01") == "toolu_01"
