"""The token-count estimate for models whose provider has no count of its own (documented in its module)."""

from __future__ import annotations

from gateway.proxy.token_count import IMAGE_TOKENS, MESSAGE_TOKENS, estimate_tokens


def test_estimate_counts_text_calls_tools_and_images() -> None:
    chat = {"messages": [{"role": "system", "content": "abcd" * 10},
                         {"role": "user", "content": [{"type": "text", "text": "é" * 4},
                                                      {"type": "image_url", "image_url": {"url": "data:..."}}]},
                         {"role": "assistant", "content": None,
                          "tool_calls": [{"id": "1", "function": {"name": "fn", "arguments": "{}"}}]}],
            "tools": [{"type": "function", "function": {"name": "fn"}}]}
    tools_json = len(b'[{"type":"function","function":{"name":"fn"}}]')
    text = 40 + 8 + 2 + 2 + tools_json
    assert estimate_tokens(chat) == -(-text // 4) + 3 * MESSAGE_TOKENS + IMAGE_TOKENS


def test_estimate_of_nothing_is_zero() -> None:
    assert estimate_tokens({"messages": []}) == 0
