"""Anthropic Messages wire format: default answers and SSE conversion (pure functions).

JSON mode (``output_config.format``) answers ``{"echo": "<last user text>"}``.
Tokens: input = words of system + all text (incl. tool_result text) + 10; output = words of
the answer (text + thinking + tool input JSON) + 1, or exactly ``max_tokens`` when cut.
"""

from __future__ import annotations

import copy
from typing import Any

from .common import WEATHER_ARGS, cut_at_stop, dumps, json_answer, split_pieces, truncate_words, words

THINKING_TEXT = "Let me think about this."
THINKING_SIGNATURE = "ZmFrZS1zaWduYXR1cmU="  # base64("fake-signature")

MODELS = ["claude-sonnet-4-6", "claude-opus-4-7", "claude-haiku-4-5"]


def _block_text(content: Any, *, include_tool_results: bool) -> str:
    if isinstance(content, str):
        return content
    out: list[str] = []
    if isinstance(content, list):
        for b in content:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "text" and isinstance(b.get("text"), str):
                out.append(b["text"])
            elif include_tool_results and b.get("type") == "tool_result":
                out.append(_block_text(b.get("content"), include_tool_results=False))
    return " ".join(t for t in out if t)


def input_tokens(body: dict) -> int:
    total = words(_block_text(body.get("system"), include_tool_results=False))
    for m in body.get("messages") or []:
        total += words(_block_text(m.get("content"), include_tool_results=True))
    return total + 10


def _usage(inp: int, out: int) -> dict:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "server_tool_use": None,
        "service_tier": "standard",
    }


def message(body: dict, n: int, *, text: str | None = None) -> dict:
    """Default ``Message`` for a CreateMessageParams body."""
    messages = body.get("messages") or []
    user_texts = [
        _block_text(m.get("content"), include_tool_results=False) for m in messages if m.get("role") == "user"
    ]
    last_user_text = next((t for t in reversed(user_texts) if t), "")
    last = messages[-1] if messages else {}
    last_is_user_text = last.get("role") == "user" and bool(
        _block_text(last.get("content"), include_tool_results=False)
    )

    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    names = [t["name"] for t in tools if "input_schema" in t] or [t["name"] for t in tools]
    tc = body.get("tool_choice") or {"type": "auto"}
    call, forced = None, False
    if text is None and names and tc.get("type") != "none":
        if tc.get("type") == "tool" and tc.get("name"):
            call, forced = tc["name"], True
        elif tc.get("type") == "any":
            call, forced = names[0], True
        elif last_is_user_text and "weather" in last_user_text.lower():
            call = names[0]

    content: list[dict] = []
    thinking = body.get("thinking") or {}
    out_words = 0
    if thinking.get("type") in ("enabled", "adaptive"):
        content.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE})
        out_words += words(THINKING_TEXT)

    stop_reason, stop_sequence = "end_turn", None
    if call is not None:
        if not forced:
            content.append({"type": "text", "text": "Let me check.", "citations": None})
            out_words += 3
        content.append({"type": "tool_use", "id": "toolu_fake1", "name": call, "input": dict(WEATHER_ARGS)})
        out_words += 1
        stop_reason = "tool_use"
        out_tokens = out_words + 1
    else:
        fmt = (body.get("output_config") or {}).get("format") or {}
        if text is not None:
            answer = text
        elif fmt.get("type") == "json_schema":
            answer = json_answer(last_user_text)
        else:
            answer = "echo: " + last_user_text
        answer, stop_sequence = cut_at_stop(answer, body.get("stop_sequences"))
        if stop_sequence is not None:
            stop_reason = "stop_sequence"
        max_tokens = body.get("max_tokens")
        out_tokens = out_words + words(answer) + 1
        if isinstance(max_tokens, int) and max_tokens < words(answer):
            answer = truncate_words(answer, max_tokens)
            stop_reason, stop_sequence = "max_tokens", None
            out_tokens = max_tokens
        content.append({"type": "text", "text": answer, "citations": None})

    return {
        "id": f"msg_fake{n}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(input_tokens(body), out_tokens),
    }


def stream_events(msg: dict) -> list[dict]:
    """The SSE event payloads for a Message (``event:`` name = ``data["type"]``)."""
    usage = msg.get("usage") or _usage(0, 0)
    start_msg = copy.deepcopy(msg)
    start_msg.update(content=[], stop_reason=None, stop_sequence=None)
    start_usage = dict(usage)
    start_usage["output_tokens"] = min(1, usage.get("output_tokens") or 0) or 1
    start_msg["usage"] = start_usage
    out: list[dict] = [{"type": "message_start", "message": start_msg}, {"type": "ping"}]
    for i, block in enumerate(msg.get("content") or []):
        kind = block.get("type")
        if kind == "text":
            start = {"type": "text", "text": ""}
            if "citations" in block:
                start["citations"] = None
            out.append({"type": "content_block_start", "index": i, "content_block": start})
            for piece in split_pieces(block.get("text") or ""):
                out.append(
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "text_delta", "text": piece},
                    }
                )
        elif kind in ("tool_use", "server_tool_use"):
            out.append(
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {"type": kind, "id": block["id"], "name": block["name"], "input": {}},
                }
            )
            args = dumps(block.get("input") or {}).decode()
            for piece in [""] + split_pieces(args, 2):
                out.append(
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    }
                )
        elif kind == "thinking":
            out.append(
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                }
            )
            for piece in split_pieces(block.get("thinking") or ""):
                out.append(
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "thinking_delta", "thinking": piece},
                    }
                )
            out.append(
                {
                    "type": "content_block_delta",
                    "index": i,
                    "delta": {"type": "signature_delta", "signature": block.get("signature") or ""},
                }
            )
        else:  # redacted_thinking, web_search_tool_result, ...: whole block at start
            out.append({"type": "content_block_start", "index": i, "content_block": block})
        out.append({"type": "content_block_stop", "index": i})
    out.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": msg.get("stop_reason"), "stop_sequence": msg.get("stop_sequence")},
            "usage": {
                "input_tokens": usage.get("input_tokens"),
                "cache_creation_input_tokens": usage.get("cache_creation_input_tokens"),
                "cache_read_input_tokens": usage.get("cache_read_input_tokens"),
                "output_tokens": usage.get("output_tokens"),
                "server_tool_use": usage.get("server_tool_use"),
            },
        }
    )
    out.append({"type": "message_stop"})
    return out


def count_tokens(body: dict) -> dict:
    return {"input_tokens": input_tokens(body)}


def models_list() -> dict:
    data = [
        {
            "type": "model",
            "id": m,
            "display_name": m.replace("-", " ").title(),
            "created_at": "2025-09-29T00:00:00Z",
        }
        for m in MODELS
    ]
    return {"data": data, "first_id": data[0]["id"], "last_id": data[-1]["id"], "has_more": False}


# --------------------------------------------------------------------------- errors
ERROR_TYPES = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(
    status: int, message: str | None = None, *, type: str | None = None, request_id: str = "req_fake"
) -> dict:
    etype, emsg = ERROR_TYPES.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}")
    )
    return {
        "type": "error",
        "error": {"type": type or etype, "message": message or emsg},
        "request_id": request_id,
    }
