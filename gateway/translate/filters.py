"""Small generic filters for translation templates. None of them knows a provider.

Each one does a job Jinja cannot say in one expression (parse a JSON string, decode a data URL,
merge consecutive turns...). The inbound schema is always OpenAI's, so helpers that read OpenAI
shapes (content parts, tool calls) are generic too.
"""

from __future__ import annotations

import array
import base64
import binascii
import mimetypes
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from jinja2 import pass_context
from jinja2.runtime import Context

from gateway.errors import BadRequest


def from_json(text: Any, what: str = "value") -> Any:
    """Parse a JSON string (e.g. tool call `arguments`); a client's bad JSON is a 400, not a crash."""
    if isinstance(text, (dict, list)):
        return text
    if text is None or text == "":
        return {}
    try:
        return orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError):
        raise BadRequest(f"{what} is not valid JSON") from None


def json_string(value: Any) -> str:
    """Compact JSON text of a value (OpenAI carries tool arguments as a JSON string)."""
    return orjson.dumps(value).decode()


def content_parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content (string, list of parts or null) as a list of parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [p if isinstance(p, dict) else {"type": "text", "text": str(p)} for p in content]
    raise BadRequest("message content must be a string or a list of content parts")


def text_of(content: Any, sep: str = "") -> str:
    """All text of an OpenAI content value, joined."""
    if isinstance(content, str):
        return content
    return sep.join(p.get("text", "") for p in content_parts(content) if p.get("type") in ("text", "input_text"))


def data_url(url: Any) -> dict[str, str] | None:
    """Split `data:<mime>;base64,<data>` into {mime_type, data}; None for any other URL."""
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise BadRequest("image data URLs must be base64: data:<mime>;base64,<data>")
    mime = head[: -len(";base64")] or "application/octet-stream"
    try:
        base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image data URL does not hold valid base64") from None
    return {"mime_type": mime, "data": data}


def merge_consecutive(items: Iterable[Mapping[str, Any]], key: str = "role", field: str = "content") -> list[dict]:
    """Merge neighbours with the same `key` by concatenating their list `field` (providers that
    demand alternating turns; tool results of one turn become one message)."""
    out: list[dict] = []
    owned: set[int] = set()  # ids of the lists this call made: extended in place (linear, not quadratic)
    for item in items:
        if out and out[-1].get(key) == item.get(key):
            prev = out[-1]
            merged: list = prev.get(field)  # type: ignore[assignment]  # made a list just below unless owned (then it is one)
            if id(merged) not in owned:
                merged = prev[field] = _as_list(merged)
                owned.add(id(merged))
            merged.extend(_as_list(item.get(field)))
        else:
            out.append(dict(item))
    return out


def _as_list(value: Any) -> list:
    """A fresh list (the caller may extend it)."""
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    return [{"type": "text", "text": value}] if isinstance(value, str) else [value]


def merge_tool_calls(messages: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Fold an assistant turn that only carries tool calls into the assistant turn just before it
    (Responses items list each call separately; chat wants one assistant message with all of them)."""
    out: list[dict] = []
    owned: set[int] = set()  # as in merge_consecutive: lists made here grow in place
    for m in messages:
        prev = out[-1] if out else None
        if (prev is not None and m.get("role") == "assistant" and prev.get("role") == "assistant"
                and not m.get("content") and m.get("tool_calls")):
            calls: list = prev.get("tool_calls")  # type: ignore[assignment]  # as merged above: a list once owned
            if id(calls) not in owned:
                calls = prev["tool_calls"] = list(calls or [])
                owned.add(id(calls))
            calls.extend(m["tool_calls"])
        else:
            out.append(dict(m))
    return out


def flatten(items: Iterable[Any] | None) -> list:
    """One level: lists are spliced in, anything else is kept as one item."""
    out: list = []
    for item in items or ():
        if isinstance(item, list):
            out.extend(item)
        else:
            out.append(item)
    return out


def tool_call_names(messages: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Map tool_call id → function name over all assistant turns (for formats that answer by name)."""
    names: dict[str, str] = {}
    for m in messages:
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            if "id" in call and "name" in fn:
                names[call["id"]] = fn["name"]
    return names


# Separates a tool call id from a provider's opaque signature carried inside it (see to_tool_calls).
SIGNATURE_SEP = ":ts:"


def _get(item: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(item, Mapping):
            return None
        item = item.get(part)
    return item


@pass_context
def to_tool_calls(ctx: Context, items: Iterable[Mapping[str, Any]], id_key: str, name_key: str,
                  args_key: str, signature_key: str | None = None, start: int = 0,
                  indexed: bool = False) -> list[dict[str, Any]]:
    """Provider tool invocations as OpenAI `tool_calls` (keys may be dotted paths). Ids the provider
    did not give are minted from the request id, so snapshots stay deterministic. A provider that needs
    an opaque signature echoed back with the call (Gemini 3's thoughtSignature) gets it carried inside
    the id: OpenAI clients return tool call ids verbatim, so no server-side state is needed."""
    calls = []
    for i, item in enumerate(items, start):
        call_id = _get(item, id_key) or f"call_{ctx.get('request_id', 'x')}_{i}"
        signature = _get(item, signature_key) if signature_key else None
        if isinstance(signature, str) and signature:
            call_id = f"{call_id}{SIGNATURE_SEP}{signature}"
        args = _get(item, args_key)
        calls.append({
            **({"index": i} if indexed else {}),   # stream deltas carry their call's index
            "id": call_id,
            "type": "function",
            "function": {"name": _get(item, name_key),
                         "arguments": args if isinstance(args, str) else json_string(args if args is not None else {})},
        })
    return calls


def tool_call_signature(call_id: Any) -> str | None:
    """The signature to_tool_calls carried inside a tool call id, if any."""
    if isinstance(call_id, str) and SIGNATURE_SEP in call_id:
        return call_id.split(SIGNATURE_SEP, 1)[1] or None
    return None


def tool_call_base_id(call_id: Any) -> Any:
    """A tool call id without a carried signature (for providers that restrict id characters)."""
    return call_id.split(SIGNATURE_SEP, 1)[0] if isinstance(call_id, str) else call_id


_SAFE_SEP = "__ts_"


def safe_call_id(call_id: Any) -> Any:
    """A tool call id for an API that allows only [A-Za-z0-9_-] in ids (the Messages API): a signature
    carried inside it (to_tool_calls) is kept, as URL-safe base64 after `__ts_`."""
    if isinstance(call_id, str) and SIGNATURE_SEP in call_id:
        base, signature = call_id.split(SIGNATURE_SEP, 1)
        return base + _SAFE_SEP + base64.urlsafe_b64encode(signature.encode()).decode().rstrip("=")
    return call_id


def chat_call_id(call_id: Any) -> Any:
    """The tool call id safe_call_id made, as it was (its signature carried again)."""
    if isinstance(call_id, str) and _SAFE_SEP in call_id:
        base, packed = call_id.split(_SAFE_SEP, 1)
        try:
            signature = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return call_id
        return f"{base}{SIGNATURE_SEP}{signature}"
    return call_id


def camel_keys(value: Any, opaque: Iterable[str] = ()) -> Any:
    """A copy with every snake_case key in camelCase (an API that takes both spellings, read one way), not
    descending into the values of `opaque` keys (user data: JSON schemas, function arguments)."""
    skip = frozenset(opaque)

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                key = _camel(k) if isinstance(k, str) and "_" in k else k
                out[key] = x if key in skip or k in skip else walk(x)
            return out
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def lacks(items: Iterable[Mapping[str, Any]] | None, key: str) -> list:
    """Items that do not carry `key` (or carry it as null)."""
    return [i for i in items or () if i.get(key) is None]


def paired_ids(turns: Iterable[Mapping[str, Any]] | None, parts_key: str, call_key: str, answer_key: str) -> list:
    """Turns whose call parts (`call_key`: {name, id?}) and answer parts (`answer_key`: {name, id?}) all carry an
    id: a call without one gets `call_<turn>_<part>`, an answer without one the id of the earliest call of its
    name not answered yet (APIs that pair calls with their answers by name, for formats that pair by id)."""
    waiting: dict[str, list[str]] = {}
    out = []
    for i, turn in enumerate(turns or ()):
        parts = turn.get(parts_key) if isinstance(turn, dict) else None
        if not isinstance(parts, list):
            out.append(turn)
            continue
        new_parts = []
        for j, part in enumerate(parts):
            if isinstance(part, dict) and isinstance(part.get(call_key), dict):
                call = dict(part[call_key])
                call["id"] = call.get("id") or f"call_{i}_{j}"
                waiting.setdefault(str(call.get("name")), []).append(call["id"])
                part = {**part, call_key: call}
            elif isinstance(part, dict) and isinstance(part.get(answer_key), dict):
                answer = dict(part[answer_key])
                queue = waiting.get(str(answer.get("name"))) or []
                if answer.get("id") in queue:
                    queue.remove(answer["id"])
                elif not answer.get("id"):
                    answer["id"] = queue.pop(0) if queue else f"call_{i}_{j}"
                part = {**part, answer_key: answer}
            new_parts.append(part)
        out.append({**turn, parts_key: new_parts})
    return out


def lower_schema_types(schema: Any) -> Any:
    """A schema whose `type` values are upper-case (OpenAPI's enum spelling: "OBJECT") in JSON Schema's
    lower case, everywhere inside it."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else
                    [x.lower() if isinstance(x, str) else x for x in v] if k == "type" and isinstance(v, list)
                    else lower_schema_types(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [lower_schema_types(x) for x in schema]
    return schema


def with_key(mapping: Mapping[Any, Any] | None, key: Any, value: Any) -> dict[Any, Any]:
    """A copy of `mapping` with one more entry (stream state is replaced, never mutated)."""
    out = dict(mapping or {})
    out[key] = value
    return out


def clamp(value: Any, low: float, high: float) -> Any:
    return max(low, min(high, value)) if isinstance(value, (int, float)) else value


def as_list(value: Any) -> list:
    """A scalar as a one-item list (OpenAI `stop` may be a string or a list)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def chat_finish_reason(response: Mapping[str, Any]) -> str:
    """A chat completion's finish_reason for an OpenAI Response object (the Responses → chat adapter's rule,
    used by its whole-body template and its stream side)."""
    output = response.get("output") or ()
    if any(isinstance(i, Mapping) and i.get("type") == "function_call" for i in output):
        return "tool_calls"
    reason = (response.get("incomplete_details") or {}).get("reason")
    return "length" if reason == "max_output_tokens" else "content_filter" if reason == "content_filter" else "stop"


def lookup(key: Any, table: Mapping[str, Any], default: Any = None) -> Any:
    """`table[key]` or a default (finish-reason tables)."""
    return table.get(key, default) if isinstance(key, str) else default


def where(items: Iterable[Mapping[str, Any]] | None, key: str, *values: Any) -> list:
    """Items whose `key` equals one of `values` (a fast `selectattr`)."""
    return [i for i in items or () if i.get(key) in values]


def where_not(items: Iterable[Mapping[str, Any]] | None, key: str, *values: Any) -> list:
    return [i for i in items or () if i.get(key) not in values]


def has(items: Iterable[Mapping[str, Any]] | None, key: str) -> list:
    """Items that carry `key` with a non-null value."""
    return [i for i in items or () if i.get(key) is not None]


def map_attr(items: Iterable[Mapping[str, Any]] | None, key: str) -> list:
    return [i[key] for i in items or () if key in i]


def join_attr(items: Iterable[Mapping[str, Any]] | None, key: str, sep: str = "") -> str:
    return sep.join(str(i[key]) for i in items or () if isinstance(i.get(key), str))


def join_text(messages: Iterable[Mapping[str, Any]] | None, sep: str = "\n\n") -> str:
    """The text of several OpenAI messages, joined (system/developer turns → one system prompt)."""
    return sep.join(t for t in (text_of(m.get("content")) for m in messages or ()) if t)


def image_url_of(part: Mapping[str, Any]) -> str:
    """The URL of an OpenAI `image_url` part (object form, or the bare string some clients send)."""
    ref = part.get("image_url")
    url = ref.get("url") if isinstance(ref, Mapping) else ref
    if not isinstance(url, str) or not url:
        raise BadRequest("image_url part needs image_url.url")
    return url


def guess_mime(url: str, default: str = "image/jpeg") -> str:
    return mimetypes.guess_type(url.split("?", 1)[0])[0] or default


def nearest_ratio(size: Any, choices: Iterable[str]) -> str:
    """The aspect ratio among `choices` ("W:H") closest to an OpenAI size ("1536x1024")."""
    try:
        w, h = (int(x) for x in str(size).lower().split("x"))
        target = w / h
    except (ValueError, ZeroDivisionError):
        raise BadRequest(f"size must look like 1024x1024, got {size!r}") from None

    def ratio(c: str) -> float:
        a, b = c.split(":")
        return int(a) / int(b)

    return min(choices, key=lambda c: abs(ratio(c) - target))


def fail(message: str) -> None:
    """Refuse the request with a 400 carrying `message` (for inputs a provider cannot take)."""
    raise BadRequest(str(message))


def text_inputs(value: Any) -> list[str]:
    """OpenAI embeddings `input` as a list of texts (token ids can only go to the models that made them)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return value
    raise BadRequest("this model takes text input only: send a string or an array of strings, not token ids")


def estimate_tokens(value: Any) -> int:
    """~4 characters a token over every string in `value` (for providers that report no usage)."""
    texts = [value] if isinstance(value, str) else [x for x in value if isinstance(x, str)] \
        if isinstance(value, list) else []
    return sum(-(-len(t) // 4) for t in texts)


def float32_base64(values: Any) -> str:
    """Floats as little-endian float32, base64 (OpenAI's `encoding_format: base64` embeddings)."""
    arr = array.array("f", values)
    if sys.byteorder != "little":  # pragma: no cover - every platform we run on is little-endian
        arr.byteswap()
    return base64.b64encode(arr.tobytes()).decode("ascii")


FILTERS = {
    "text_inputs": text_inputs,
    "estimate_tokens": estimate_tokens,
    "float32_base64": float32_base64,
    "where": where,
    "safe_call_id": safe_call_id,
    "camel_keys": camel_keys,
    "lacks": lacks,
    "paired_ids": paired_ids,
    "lower_schema_types": lower_schema_types,
    "chat_call_id": chat_call_id,
    "where_not": where_not,
    "has": has,
    "map_attr": map_attr,
    "join_attr": join_attr,
    "join_text": join_text,
    "image_url_of": image_url_of,
    "guess_mime": guess_mime,
    "fail": fail,
    "nearest_ratio": nearest_ratio,
    "from_json": from_json,
    "json_string": json_string,
    "content_parts": content_parts,
    "text_of": text_of,
    "data_url": data_url,
    "merge_consecutive": merge_consecutive,
    "tool_call_names": tool_call_names,
    "merge_tool_calls": merge_tool_calls,
    "flatten": flatten,
    "to_tool_calls": to_tool_calls,
    "tool_call_signature": tool_call_signature,
    "tool_call_base_id": tool_call_base_id,
    "clamp": clamp,
    "with_key": with_key,
    "as_list": as_list,
    "chat_finish_reason": chat_finish_reason,
    "lookup": lookup,
}
