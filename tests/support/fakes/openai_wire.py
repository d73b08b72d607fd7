"""OpenAI wire format (also xAI): default answers and SSE conversion.

Every function is pure: request dict in, response dict / list of SSE event payloads out.
The answer echoes the last user text (``"echo: ..."``; ``{"echo": "..."}`` in JSON mode,
i.e. ``response_format`` / ``text.format`` json_object or json_schema).
Token counts are deterministic: prompt = words of all message text + 10, completion =
answer words + 1 (the +1 is the end-of-turn token; an answer cut by the token limit has
no end token, so it counts exactly ``limit``).
"""

from __future__ import annotations

import copy
from typing import Any

from .common import (
    CREATED,
    PNG_B64,
    WEATHER_ARGS_JSON,
    cut_at_stop,
    json_answer,
    split_pieces,
    text_of_openai_content,
    truncate_words,
    words,
)

SYSTEM_FINGERPRINT = "fp_fake"

MODELS = [
    "gpt-4.1-mini",
    "gpt-4.1",
    "gpt-4o-mini",
    "gpt-5-mini",
    "gpt-5",
    "gpt-3.5-turbo-instruct",
    "gpt-image-1",
    "dall-e-3",
    "dall-e-2",
]


# --------------------------------------------------------------------------- helpers
def _answer_text(echo_of: str, override: str | None, fmt: Any = None) -> str:
    if override is not None:
        return override
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        return json_answer(echo_of)
    return "echo: " + echo_of


def _limit(text: str, *, stop: Any, max_tokens: int | None) -> tuple[str, str, int]:
    """Apply stop sequences and the token limit: (text, finish_reason, completion_tokens)."""
    text, matched = cut_at_stop(text, stop)
    n = words(text)
    if max_tokens is not None and max_tokens < n:
        return truncate_words(text, max_tokens), "length", max_tokens
    return text, "stop", n + 1


def _usage(prompt: int, completion: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _forced_tool(tool_choice: Any, names: list[str]) -> str | None:
    if not names:
        return None
    if tool_choice == "required":
        return names[0]
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function") or {}
        name = fn.get("name") or tool_choice.get("name")
        if name:
            return name
    return None


# --------------------------------------------------------------------------- chat
def chat_prompt_tokens(body: dict) -> int:
    return sum(words(text_of_openai_content(m.get("content"))) for m in body.get("messages") or []) + 10


def chat_completion(body: dict, n: int, *, text: str | None = None) -> dict:
    """Default ``chat.completion`` for a CreateChatCompletionRequest."""
    messages = body.get("messages") or []
    model = body.get("model", "")
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    last_user_text = text_of_openai_content(last_user.get("content")) if last_user else ""
    tools = [
        t for t in body.get("tools") or [] if t.get("type", "function") == "function" and t.get("function")
    ]
    names = [t["function"]["name"] for t in tools]
    tool_choice = body.get("tool_choice")
    call: str | None = None
    if text is None and names and tool_choice != "none":
        call = _forced_tool(tool_choice, names)
        if (
            call is None
            and messages
            and messages[-1].get("role") == "user"
            and "weather" in last_user_text.lower()
        ):
            call = names[0]

    n_choices = body.get("n") or 1
    prompt = chat_prompt_tokens(body)
    choices = []
    completion = 0
    for i in range(n_choices):
        if call is not None:
            message = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_fake1",
                        "type": "function",
                        "function": {"name": call, "arguments": WEATHER_ARGS_JSON},
                    }
                ],
                "annotations": [],
            }
            finish = "tool_calls"
            completion += words(WEATHER_ARGS_JSON) + 1
        else:
            limit = body.get("max_completion_tokens")
            if limit is None:
                limit = body.get("max_tokens")
            content, finish, used = _limit(
                _answer_text(last_user_text, text, body.get("response_format")),
                stop=body.get("stop"),
                max_tokens=limit,
            )
            completion += used
            message = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})
    return {
        "id": f"chatcmpl-fake{n}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": choices,
        "usage": _usage(prompt, completion),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def chat_chunks(resp: dict, *, include_usage: bool) -> list[dict]:
    """Turn a ``chat.completion`` into the ``chat.completion.chunk`` sequence (no [DONE])."""
    base = {
        "id": resp.get("id", "chatcmpl-fake"),
        "object": "chat.completion.chunk",
        "created": resp.get("created", CREATED),
        "model": resp.get("model", ""),
    }
    for k in ("service_tier", "system_fingerprint"):
        if k in resp:
            base[k] = resp[k]
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict, finish: str | None = None) -> dict:
        return {
            **base,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    out: list[dict] = []
    for choice in resp.get("choices") or []:
        i = choice.get("index", 0)
        msg = choice.get("message") or {}
        out.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
        content = msg.get("content")
        if content:
            out.extend(chunk(i, {"content": piece}) for piece in split_pieces(content))
        if msg.get("refusal"):
            out.extend(chunk(i, {"refusal": piece}) for piece in split_pieces(msg["refusal"]))
        for j, tc in enumerate(msg.get("tool_calls") or []):
            fn = tc.get("function") or {}
            out.append(
                chunk(
                    i,
                    {
                        "tool_calls": [
                            {
                                "index": j,
                                "id": tc.get("id"),
                                "type": "function",
                                "function": {"name": fn.get("name"), "arguments": ""},
                            }
                        ]
                    },
                )
            )
            for piece in split_pieces(fn.get("arguments") or "", 2):
                out.append(chunk(i, {"tool_calls": [{"index": j, "function": {"arguments": piece}}]}))
        out.append(chunk(i, {}, choice.get("finish_reason") or "stop"))
    if include_usage and resp.get("usage") is not None:
        out.append({**base, "choices": [], "usage": resp["usage"]})
    return out


# --------------------------------------------------------------------------- legacy completions
def _prompts(prompt: Any) -> list[str]:
    if prompt is None:
        return [""]
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        if not prompt:
            return [""]
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(p, int) for p in prompt):
            return [" ".join(map(str, prompt))]
        return [" ".join(map(str, p)) if isinstance(p, list) else str(p) for p in prompt]
    return [str(prompt)]


def completion(body: dict, n: int, *, text: str | None = None) -> dict:
    prompts = _prompts(body.get("prompt"))
    n_choices = body.get("n") or 1
    limit = body.get("max_tokens")
    if limit is None:
        limit = 16
    choices, used_total = [], 0
    for p in prompts:
        for _ in range(n_choices):
            t, finish, used = _limit(_answer_text(p, text), stop=body.get("stop"), max_tokens=limit)
            if body.get("echo"):
                t = p + t
            used_total += used
            choices.append({"text": t, "index": len(choices), "logprobs": None, "finish_reason": finish})
    prompt_tokens = sum(words(p) for p in prompts) + 10
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": used_total,
        "total_tokens": prompt_tokens + used_total,
    }
    return {
        "id": f"cmpl-fake{n}",
        "object": "text_completion",
        "created": CREATED,
        "model": body.get("model", ""),
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
        "usage": usage,
    }


def completion_chunks(resp: dict, *, include_usage: bool) -> list[dict]:
    """Legacy completion stream chunks. Intermediate chunks carry ``finish_reason: null``
    like the real API (the spec's CreateCompletionResponse does not allow null there)."""
    base = {k: resp[k] for k in ("id", "object", "created", "model", "system_fingerprint") if k in resp}
    if include_usage:
        base["usage"] = None
    out: list[dict] = []
    for choice in resp.get("choices") or []:
        i = choice.get("index", 0)
        for piece in split_pieces(choice.get("text") or ""):
            out.append(
                {**base, "choices": [{"text": piece, "index": i, "logprobs": None, "finish_reason": None}]}
            )
        out.append(
            {
                **base,
                "choices": [
                    {
                        "text": "",
                        "index": i,
                        "logprobs": None,
                        "finish_reason": choice.get("finish_reason") or "stop",
                    }
                ],
            }
        )
    if include_usage and resp.get("usage") is not None:
        out.append({**base, "choices": [], "usage": resp["usage"]})
    return out


# --------------------------------------------------------------------------- responses API
def _responses_input_text(item_content: Any) -> str:
    if isinstance(item_content, str):
        return item_content
    if isinstance(item_content, list):
        return " ".join(
            p.get("text", "")
            for p in item_content
            if isinstance(p, dict)
            and p.get("type") in ("input_text", "output_text", "text")
            and p.get("text")
        )
    return ""


def responses_prompt_tokens(body: dict) -> int:
    total = words(body.get("instructions") if isinstance(body.get("instructions"), str) else "")
    inp = body.get("input")
    if isinstance(inp, str):
        total += words(inp)
    elif isinstance(inp, list):
        for item in inp:
            if isinstance(item, dict):
                total += words(_responses_input_text(item.get("content")))
                if item.get("type") == "function_call_output" and isinstance(item.get("output"), str):
                    total += words(item["output"])
    return total + 10


def response(body: dict, n: int, *, text: str | None = None) -> dict:
    """Default Responses API object for a CreateResponse."""
    inp = body.get("input")
    last_is_user = False
    last_user_text = ""
    if isinstance(inp, str):
        last_user_text, last_is_user = inp, True
    elif isinstance(inp, list):
        for item in inp:
            if not isinstance(item, dict):
                continue
            is_msg = item.get("type", "message") == "message"
            if is_msg and item.get("role") == "user":
                last_user_text = _responses_input_text(item.get("content"))
        last = inp[-1] if inp else None
        last_is_user = (
            isinstance(last, dict) and last.get("type", "message") == "message" and last.get("role") == "user"
        )
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    names = [t["name"] for t in tools if t.get("name")]
    tool_choice = body.get("tool_choice", "auto")
    call = None
    if text is None and names and tool_choice != "none":
        call = _forced_tool(tool_choice, names)
        if call is None and last_is_user and "weather" in last_user_text.lower():
            call = names[0]

    status, incomplete = "completed", None
    if call is not None:
        output = [
            {
                "type": "function_call",
                "id": f"fc_fake{n}",
                "call_id": "call_fake1",
                "name": call,
                "arguments": WEATHER_ARGS_JSON,
                "status": "completed",
            }
        ]
        out_tokens = words(WEATHER_ARGS_JSON) + 1
    else:
        content, finish, out_tokens = _limit(
            _answer_text(last_user_text, text, (body.get("text") or {}).get("format")),
            stop=None,
            max_tokens=body.get("max_output_tokens"),
        )
        if finish == "length":
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        output = [
            {
                "type": "message",
                "id": f"msg_fake{n}",
                "status": "completed" if status == "completed" else "incomplete",
                "role": "assistant",
                "content": [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}],
            }
        ]
    in_tokens = responses_prompt_tokens(body)
    fmt = (body.get("text") or {}).get("format") or {"type": "text"}
    return {
        "id": f"resp_fake{n}",
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "completed_at": CREATED + 1 if status == "completed" else None,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model", ""),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1),
        "text": {"format": fmt},
        "tool_choice": tool_choice,
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1),
        "truncation": body.get("truncation") or "disabled",
        "usage": {
            "input_tokens": in_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": in_tokens + out_tokens,
        },
        "metadata": body.get("metadata") or {},
    }


def response_events(resp: dict) -> list[dict]:
    """The named-event sequence of a streamed Response (``event:`` = ``data.type``)."""
    seq = 0
    out: list[dict] = []

    def emit(ev: dict) -> None:
        nonlocal seq
        ev["sequence_number"] = seq
        seq += 1
        out.append(ev)

    pending = copy.deepcopy(resp)
    pending.update(status="in_progress", output=[], incomplete_details=None)
    # the real API sends "usage": null here; the spec's Response does not allow null, so omit it
    pending.pop("usage", None)
    if "completed_at" in pending:
        pending["completed_at"] = None
    emit({"type": "response.created", "response": copy.deepcopy(pending)})
    emit({"type": "response.in_progress", "response": copy.deepcopy(pending)})
    for oi, item in enumerate(resp.get("output") or []):
        kind = item.get("type")
        if kind == "message":
            added = {**item, "status": "in_progress", "content": []}
            emit({"type": "response.output_item.added", "output_index": oi, "item": added})
            for ci, part in enumerate(item.get("content") or []):
                if part.get("type") == "output_text":
                    empty = {**part, "text": ""}
                    emit(
                        {
                            "type": "response.content_part.added",
                            "item_id": item["id"],
                            "output_index": oi,
                            "content_index": ci,
                            "part": empty,
                        }
                    )
                    for piece in split_pieces(part.get("text") or ""):
                        emit(
                            {
                                "type": "response.output_text.delta",
                                "item_id": item["id"],
                                "output_index": oi,
                                "content_index": ci,
                                "delta": piece,
                                "logprobs": [],
                            }
                        )
                    emit(
                        {
                            "type": "response.output_text.done",
                            "item_id": item["id"],
                            "output_index": oi,
                            "content_index": ci,
                            "text": part.get("text") or "",
                            "logprobs": [],
                        }
                    )
                else:
                    emit(
                        {
                            "type": "response.content_part.added",
                            "item_id": item["id"],
                            "output_index": oi,
                            "content_index": ci,
                            "part": part,
                        }
                    )
                emit(
                    {
                        "type": "response.content_part.done",
                        "item_id": item["id"],
                        "output_index": oi,
                        "content_index": ci,
                        "part": part,
                    }
                )
        elif kind == "function_call":
            added = {**item, "status": "in_progress", "arguments": ""}
            emit({"type": "response.output_item.added", "output_index": oi, "item": added})
            for piece in split_pieces(item.get("arguments") or "", 2):
                emit(
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": item.get("id"),
                        "output_index": oi,
                        "delta": piece,
                    }
                )
            emit(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item.get("id"),
                    "name": item.get("name"),
                    "output_index": oi,
                    "arguments": item.get("arguments") or "",
                }
            )
        else:
            emit({"type": "response.output_item.added", "output_index": oi, "item": item})
        emit({"type": "response.output_item.done", "output_index": oi, "item": item})
    final_type = {
        "completed": "response.completed",
        "incomplete": "response.incomplete",
        "failed": "response.failed",
    }.get(resp.get("status"), "response.completed")
    emit({"type": final_type, "response": resp})
    return out


# --------------------------------------------------------------------------- images
def images(body: dict, *, n: int, url_base: str) -> dict:
    model = body.get("model") or "dall-e-2"
    count = body.get("n") or 1
    gpt_image = model.startswith("gpt-image")
    data = []
    for i in range(count):
        if not gpt_image and body.get("response_format") == "url":
            item: dict = {"url": f"{url_base}/fake-files/img-{n}-{i}.png"}
        else:
            item = {"b64_json": PNG_B64}
        if model == "dall-e-3":
            item["revised_prompt"] = body.get("prompt", "")
        data.append(item)
    out: dict = {"created": CREATED, "data": data}
    if gpt_image:
        prompt_tokens = words(body.get("prompt")) + 10
        out_tokens = 272 * count
        size = body.get("size")
        quality = body.get("quality")
        background = body.get("background")
        out.update(
            background=background if background in ("transparent", "opaque") else "opaque",
            output_format=body.get("output_format") or "png",
            size=size if size in ("1024x1024", "1024x1536", "1536x1024") else "1024x1024",
            quality=quality if quality in ("low", "medium", "high") else "medium",
            usage={
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
                "output_tokens": out_tokens,
                "total_tokens": prompt_tokens + out_tokens,
            },
        )
    return out


def models_list() -> dict:
    return {"object": "list", "data": [model_obj(m) for m in MODELS]}


def model_obj(model: str) -> dict:
    return {"id": model, "object": "model", "created": CREATED, "owned_by": "system"}


# --------------------------------------------------------------------------- errors
_ERROR_TYPES = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
    504: ("server_error", None, "Gateway timeout."),
}


def error_body(
    status: int,
    message: str | None = None,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict:
    etype, ecode, emsg = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}")
    )
    return {
        "error": {
            "message": message or emsg,
            "type": type or etype,
            "param": param,
            "code": code if code is not None else ecode,
        }
    }
