"""The charge spliced into a JSON answer: the top-level usage object, never text that looks like it."""

from __future__ import annotations

import orjson
import pytest

from gateway.money import usd_text
from gateway.proxy.cost import with_cost


@pytest.mark.parametrize(("nano", "text"), [(0, b"0.0"), (2134, b"0.000002134"), (10**9, b"1.0"),
                                            (1_500_000_000, b"1.5"), (123_456_789_012, b"123.456789012")])
def test_usd_text_is_exact(nano: int, text: bytes) -> None:
    assert usd_text(nano) == text


@pytest.mark.parametrize("doc", [
    {"id": "x", "choices": [{"message": {"content": 'say "usage": {"cost": 9}'}}],
     "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    {"usage": {"total_tokens": 7}, "choices": [{"message": {"content": 'after: "usage": {"cost": 9}'}}]},
    {"object": "response", "output": [], "usage": {}},
    {"created": 1, "data": [{"b64_json": "AAAA"}]},
    {},
])
def test_cost_goes_into_the_top_level_usage(doc: dict) -> None:
    for raw in (orjson.dumps(doc), orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"):
        out = orjson.loads(with_cost(raw, b"0.000002134"))
        assert out["usage"]["cost"] == pytest.approx(0.000002134)
        assert {k: v for k, v in out["usage"].items() if k != "cost"} == doc.get("usage", {})
        assert {k: v for k, v in out.items() if k != "usage"} == {k: v for k, v in doc.items() if k != "usage"}


def test_a_null_usage_is_left_alone() -> None:
    raw = b'{"usage": null, "x": 1}'
    assert with_cost(raw, b"1.0") == raw
