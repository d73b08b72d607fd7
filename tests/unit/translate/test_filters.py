"""gateway.translate.filters: every filter a template may call, on ordinary and edge inputs (None, empty,
wrong types), and as templates call them, through the sandboxed environment."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.translate import filters as f
from gateway.translate.environment import make_environment
from gateway.translate.tree import compile_tree, new_context

ENV = make_environment()


def render(expr: str, **variables: Any) -> Any:
    """The value of one template expression, evaluated as a wire template's leaf is."""
    return compile_tree("{{ " + expr + " }}", ENV)(new_context(ENV, variables))


# the filters of the inbound APIs (Messages, Gemini) are tested in test_inbound_filters.py
INBOUND = {"camel_keys", "paired_ids", "lower_schema_types", "safe_call_id", "chat_call_id"}


def test_every_registered_filter_is_covered_here() -> None:
    # a new filter needs its own tests in this file (or, for the inbound APIs' own, in test_inbound_filters.py)
    assert set(f.FILTERS) - INBOUND == {
        "where", "where_not", "has", "lacks", "map_attr", "join_attr", "join_text", "image_url_of", "guess_mime",
        "fail", "nearest_ratio", "from_json", "json_string", "content_parts", "text_of", "data_url",
        "merge_consecutive", "tool_call_names", "merge_tool_calls", "flatten", "to_tool_calls", "tool_call_signature",
        "tool_call_base_id", "clamp", "with_key", "as_list", "chat_finish_reason", "lookup",
        "text_inputs", "estimate_tokens", "float32_base64"}
    assert set(f.FILTERS) | {"map_tree"} <= set(ENV.filters)


# --------------------------------------------------------------------------- JSON


def test_from_json_parses_strings_and_passes_parsed_values() -> None:
    assert f.from_json('{"city": "Paris", "n": [1, 2]}') == {"city": "Paris", "n": [1, 2]}
    already = {"a": 1}
    assert f.from_json(already) is already and f.from_json([1]) == [1]
    assert f.from_json(None) == {} and f.from_json("") == {}  # a call without arguments


@pytest.mark.parametrize("bad", ["{oops", "[1,", "nul", 5])
def test_from_json_refuses_bad_json_as_a_400_naming_the_field(bad: Any) -> None:
    with pytest.raises(BadRequest, match="tool arguments is not valid JSON") as err:
        f.from_json(bad, "tool arguments")
    assert err.value.status == 400


def test_json_string_is_compact_and_keeps_unicode() -> None:
    assert f.json_string({"a": [1, None, True], "город": "Москва"}) == '{"a":[1,null,true],"город":"Москва"}'
    assert f.json_string("x") == '"x"'
    assert f.from_json(f.json_string({"k": {"n": 1.5}})) == {"k": {"n": 1.5}}


# --------------------------------------------------------------------------- content


def test_content_parts_normalises_every_openai_content_form() -> None:
    assert f.content_parts("hi") == [{"type": "text", "text": "hi"}]
    assert f.content_parts("") == [] and f.content_parts(None) == []
    part = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    assert f.content_parts([part, "bare"]) == [part, {"type": "text", "text": "bare"}]
    with pytest.raises(BadRequest, match="string or a list"):
        f.content_parts({"type": "text"})


def test_text_of_joins_only_text_parts() -> None:
    content = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}},
               {"type": "input_text", "text": "b"}, {"type": "text"}]
    assert f.text_of(content) == "ab"
    assert f.text_of(content, " | ") == "a | b | "
    assert f.text_of("plain") == "plain" and f.text_of(None) == ""


def test_join_text_joins_the_non_empty_texts_of_messages() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "developer", "content": ""},
                {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]}]
    assert f.join_text(messages) == "Be brief.\n\nAnswer in French."
    assert f.join_text(messages, " ") == "Be brief. Answer in French."
    assert f.join_text(None) == "" and f.join_text([]) == ""


def test_data_url_splits_base64_images_and_ignores_other_urls() -> None:
    data = base64.b64encode(b"\x89PNG\r\n" * 20).decode()
    assert f.data_url(f"data:image/png;base64,{data}") == {"mime_type": "image/png", "data": data}
    assert f.data_url(f"data:;base64,{data}") == {"mime_type": "application/octet-stream", "data": data}
    assert f.data_url("https://example.com/cat.png") is None
    assert f.data_url(None) is None and f.data_url(42) is None


@pytest.mark.parametrize("url, message", [
    ("data:image/png,rawbytes", "must be base64"),
    ("data:image/png;base64", "must be base64"),              # no comma at all
    ("data:image/png;base64,@@@@not*base64", "valid base64"),
])
def test_data_url_refuses_what_no_provider_takes(url: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        f.data_url(url)


def test_image_url_of_reads_both_part_forms() -> None:
    assert f.image_url_of({"type": "image_url", "image_url": {"url": "https://x/a.jpg", "detail": "low"}}) == \
        "https://x/a.jpg"
    assert f.image_url_of({"type": "image_url", "image_url": "https://x/b.jpg"}) == "https://x/b.jpg"
    for bad in ({"type": "image_url"}, {"image_url": {"url": ""}}, {"image_url": {"url": 5}}):
        with pytest.raises(BadRequest, match=r"image_url\.url"):
            f.image_url_of(bad)


def test_guess_mime_by_extension_ignoring_the_query() -> None:
    assert f.guess_mime("https://x/cat.png?size=large") == "image/png"
    assert f.guess_mime("https://x/photo.webp") == "image/webp"
    assert f.guess_mime("https://x/image") == "image/jpeg"
    assert f.guess_mime("https://x/image", "application/pdf") == "application/pdf"


# --------------------------------------------------------------------------- turns and tool calls


def test_merge_consecutive_merges_same_role_neighbours_only() -> None:
    turns = [{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "text", "text": "b"}]},
             {"role": "assistant", "content": "c"}, {"role": "user", "content": None},
             {"role": "user", "content": "d"}]
    out = f.merge_consecutive(turns)
    assert out == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": [{"type": "text", "text": "d"}]},
    ]
    assert turns[0] == {"role": "user", "content": "a"}, "the input is not modified"
    assert f.merge_consecutive([]) == []


def test_merge_consecutive_by_another_key_and_field() -> None:
    parts = [{"who": "tool", "parts": [1]}, {"who": "tool", "parts": [2, 3]}, {"who": "model", "parts": [4]}]
    assert f.merge_consecutive(parts, "who", "parts") == [{"who": "tool", "parts": [1, 2, 3]},
                                                          {"who": "model", "parts": [4]}]
    assert parts[0]["parts"] == [1]


def test_merge_consecutive_is_linear_on_long_runs() -> None:
    out = f.merge_consecutive([{"role": "user", "content": [i]} for i in range(20_000)])
    assert len(out) == 1 and out[0]["content"] == list(range(20_000))


def test_merge_tool_calls_folds_call_only_turns_into_the_previous_assistant_turn() -> None:
    def call(i: int) -> dict:
        return {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}

    messages = [{"role": "user", "content": "go"},
                {"role": "assistant", "content": "thinking", "tool_calls": [call(1)]},
                {"role": "assistant", "content": None, "tool_calls": [call(2)]},
                {"role": "assistant", "tool_calls": [call(3)]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                {"role": "assistant", "content": "text only"}]
    out = f.merge_tool_calls(messages)
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "assistant"]
    assert [c["id"] for c in out[1]["tool_calls"]] == ["c1", "c2", "c3"]
    assert messages[1]["tool_calls"] == [call(1)], "the input is not modified"
    # an assistant turn with text is never folded
    assert len(f.merge_tool_calls([{"role": "assistant", "content": "a"},
                                   {"role": "assistant", "content": "b", "tool_calls": [call(1)]}])) == 2


def test_tool_call_names_maps_ids_to_function_names() -> None:
    messages = [{"role": "assistant", "tool_calls": [
                    {"id": "a", "function": {"name": "weather"}}, {"id": "b", "function": {"name": "time"}},
                    {"function": {"name": "no id"}}, {"id": "c", "function": {}}]},
                {"role": "user", "content": "x"}]
    assert f.tool_call_names(messages) == {"a": "weather", "b": "time"}
    assert f.tool_call_names([]) == {}


def test_to_tool_calls_builds_openai_calls_from_dotted_paths() -> None:
    items = [{"functionCall": {"id": "g1", "name": "weather", "args": {"city": "Paris"}}},
             {"functionCall": {"name": "time", "args": None}},
             {"functionCall": {"id": "g3", "name": "echo", "args": '{"already":"text"}'}}]
    calls = render("items | to_tool_calls('functionCall.id', 'functionCall.name', 'functionCall.args')",
                   items=items, request_id="req_abc")
    assert calls == [
        {"id": "g1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_req_abc_1", "type": "function", "function": {"name": "time", "arguments": "{}"}},
        {"id": "g3", "type": "function", "function": {"name": "echo", "arguments": '{"already":"text"}'}},
    ]


def test_to_tool_calls_indexes_stream_deltas_and_carries_signatures_in_the_id() -> None:
    items = [{"name": "f", "args": {}, "sig": "SIG=="}, {"name": "g", "args": {}, "sig": ""}]
    calls = render("items | to_tool_calls('id', 'name', 'args', 'sig', 3, true)", items=items, request_id="r")
    assert [c["index"] for c in calls] == [3, 4]
    assert calls[0]["id"] == "call_r_3" + f.SIGNATURE_SEP + "SIG==" and calls[1]["id"] == "call_r_4"
    assert f.tool_call_signature(calls[0]["id"]) == "SIG==" and f.tool_call_signature(calls[1]["id"]) is None
    assert f.tool_call_base_id(calls[0]["id"]) == "call_r_3"


def test_tool_call_signature_and_base_id_on_plain_and_odd_ids() -> None:
    assert f.tool_call_signature("call_1") is None and f.tool_call_signature(None) is None
    assert f.tool_call_signature("call_1" + f.SIGNATURE_SEP) is None  # an empty signature is none
    assert f.tool_call_signature("a" + f.SIGNATURE_SEP + "b" + f.SIGNATURE_SEP + "c") == "b" + f.SIGNATURE_SEP + "c"
    assert f.tool_call_base_id("call_1") == "call_1" and f.tool_call_base_id(7) == 7


# --------------------------------------------------------------------------- lists and mappings


ITEMS = [{"type": "text", "text": "a", "n": 1}, {"type": "image", "n": None}, {"type": "text", "text": 5},
         {"kind": "other"}]


def test_where_and_where_not_filter_by_one_of_several_values() -> None:
    assert f.where(ITEMS, "type", "text") == [ITEMS[0], ITEMS[2]]
    assert f.where(ITEMS, "type", "text", "image") == ITEMS[:3]
    assert f.where_not(ITEMS, "type", "text") == [ITEMS[1], ITEMS[3]]
    assert f.where(None, "type", "x") == [] and f.where_not(None, "type") == []


def test_has_keeps_items_with_a_non_null_value() -> None:
    assert f.has(ITEMS, "n") == [ITEMS[0]]
    assert f.has(ITEMS, "text") == [ITEMS[0], ITEMS[2]]
    assert f.has(None, "n") == []


def test_map_attr_and_join_attr() -> None:
    assert f.map_attr(ITEMS, "text") == ["a", 5]
    assert f.map_attr(ITEMS, "n") == [1, None]  # present keys, null values included
    assert f.join_attr(ITEMS, "text") == "a"     # only strings are joined
    assert f.join_attr([{"t": "x"}, {"t": "y"}], "t", ", ") == "x, y"
    assert f.map_attr(None, "a") == [] and f.join_attr(None, "a") == ""


def test_flatten_splices_one_level() -> None:
    assert f.flatten([[1, 2], 3, [], [[4]]]) == [1, 2, 3, [4]]
    assert f.flatten(None) == [] and f.flatten([]) == []


def test_with_key_copies() -> None:
    state = {"a": 1}
    assert f.with_key(state, "b", 2) == {"a": 1, "b": 2} and state == {"a": 1}
    assert f.with_key(None, "x", None) == {"x": None}
    assert f.with_key(state, "a", 3) == {"a": 3}


def test_as_list() -> None:
    assert f.as_list("stop") == ["stop"] and f.as_list(["a", "b"]) == ["a", "b"]
    assert f.as_list(("a",)) == ["a"] and f.as_list(None) == [] and f.as_list(0) == [0]


def test_clamp_bounds_numbers_and_leaves_the_rest() -> None:
    assert f.clamp(3.5, 0, 2) == 2 and f.clamp(-1, 0, 2) == 0 and f.clamp(1.25, 0, 2) == 1.25
    assert f.clamp(None, 0, 1) is None and f.clamp("high", 0, 1) == "high"


def test_lookup_reads_a_table_with_a_default() -> None:
    table = {"end_turn": "stop", "max_tokens": "length"}
    assert f.lookup("max_tokens", table) == "length"
    assert f.lookup("refusal", table, "content_filter") == "content_filter"
    assert f.lookup(None, table, "stop") == "stop" and f.lookup(["end_turn"], table) is None


# --------------------------------------------------------------------------- answers and refusals


@pytest.mark.parametrize("response, reason", [
    ({"output": [{"type": "message"}]}, "stop"),
    ({"output": [{"type": "message"}, {"type": "function_call"}]}, "tool_calls"),
    ({"output": [], "incomplete_details": {"reason": "max_output_tokens"}}, "length"),
    ({"output": None, "incomplete_details": {"reason": "content_filter"}}, "content_filter"),
    ({"incomplete_details": None}, "stop"),
    ({"output": [{"type": "function_call"}], "incomplete_details": {"reason": "max_output_tokens"}}, "tool_calls"),
])
def test_chat_finish_reason_of_a_response(response: dict[str, Any], reason: str) -> None:
    assert f.chat_finish_reason(response) == reason


@pytest.mark.parametrize("size, ratio", [("1024x1024", "1:1"), ("1536x1024", "3:2"), ("1024x1536", "2:3"),
                                         ("1792x1024", "16:9"), ("1024X1792", "9:16")])
def test_nearest_ratio(size: str, ratio: str) -> None:
    assert f.nearest_ratio(size, ["1:1", "2:3", "3:2", "9:16", "16:9"]) == ratio


@pytest.mark.parametrize("size", ["auto", "1024", "0x0", "axb", None])
def test_nearest_ratio_refuses_what_is_not_a_size(size: Any) -> None:
    with pytest.raises(BadRequest, match="size must look like 1024x1024"):
        f.nearest_ratio(size, ["1:1"])


def test_fail_is_a_400_with_the_template_message() -> None:
    with pytest.raises(BadRequest, match="n > 1 is not supported") as err:
        render("'n > 1 is not supported' | fail")
    assert err.value.status == 400


def test_filters_compose_in_a_template() -> None:
    body = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"},
                         {"role": "user", "content": "u2"}]}
    out = render("body.messages | where_not('role', 'system') | merge_consecutive | map_attr('content')",
                 body=body)
    assert out == [[{"type": "text", "text": "u1"}, {"type": "text", "text": "u2"}]]


# --------------------------------------------------------------------------- the media endpoints' filters


def test_lacks_keeps_items_without_the_key_or_with_null() -> None:
    items = [{"id": 1}, {"id": None}, {"name": "x"}]
    assert f.lacks(items, "id") == [{"id": None}, {"name": "x"}]
    assert f.lacks(None, "id") == []


def test_text_inputs_takes_strings_and_refuses_token_ids() -> None:
    assert f.text_inputs("hi") == ["hi"]
    assert f.text_inputs(["a", "b"]) == ["a", "b"]
    with pytest.raises(BadRequest, match="text input only"):
        f.text_inputs([1, 2, 3])


def test_estimate_tokens_is_four_characters_a_token_rounded_up() -> None:
    assert f.estimate_tokens("abcd") == 1
    assert f.estimate_tokens("abcde") == 2
    assert f.estimate_tokens(["abcd", "ab", 7]) == 2   # non-strings are not counted
    assert f.estimate_tokens(None) == 0


def test_float32_base64_is_little_endian_float32() -> None:
    import base64
    import struct
    raw = base64.b64decode(f.float32_base64([1.0, -0.5]))
    assert struct.unpack("<2f", raw) == (1.0, -0.5)
