"""What a request body must be before anyone spends on it: JSON, an object, the endpoint's shape (seed §14:
400), and within the request-shape limits of `server.limits` (issue 14: message, part and tool counts,
nesting depth, JSON values in all), so that no body can make translation or serialisation blow up.

Every check here is linear in the body and cheap for the bodies the hot path sees: the depth walk runs only
when the raw body has more brackets than the depth limit, the value count only in the helper process that
reads large bodies (gateway.proxy.large_bodies).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.config.model import ServerLimits
from gateway.errors import BadRequest

_ROLES = frozenset(("system", "developer", "user", "assistant", "tool", "function"))


def parse_json_body(raw: bytes | bytearray, max_depth: int = 0) -> dict[str, Any]:
    """The body as a JSON object (400 otherwise), nested at most `max_depth` deep when that is given."""
    if not raw:
        raise BadRequest("request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("Recursion limit"):
            raise BadRequest("request body is nested too deeply") from None
        raise BadRequest(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if max_depth:
        check_depth(body, raw, max_depth)
    return body


def check_chat_body(body: dict[str, Any], limits: ServerLimits) -> None:
    """The checks every chat request must pass before any provider sees it (seed §14: 400)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required and must be a non-empty array")
    if len(messages) > limits.max_messages:
        raise BadRequest(f"too many messages: {len(messages)}, at most {limits.max_messages} per request")
    parts = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object")
        role = m.get("role")
        if role not in _ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):   # as OpenAI: required
            raise BadRequest(f"messages[{i}].tool_call_id is required in a tool message: the id of the call it answers")
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            if not isinstance(content, list):
                raise BadRequest(f"messages[{i}].content must be a string or an array of content parts")
            parts += len(content)
            _check_parts(content, f"messages[{i}].content")
        if len(m) > 2:  # more than role and content: the fields a translation reads must have their types
            _check_fields(m, _MESSAGE_FIELDS, f"messages[{i}].")
            calls = m.get("tool_calls")
            if calls is not None:
                _check_tool_calls(calls, f"messages[{i}].tool_calls")
    if parts > limits.max_content_parts:
        raise BadRequest(f"too many content parts: {parts}, at most {limits.max_content_parts} per request")
    _check_common(body, limits, ("max_tokens", "max_completion_tokens", "n"),
                  ("temperature", "top_p", "presence_penalty", "frequency_penalty"))


def check_responses_body(body: dict[str, Any], limits: ServerLimits) -> None:
    inp = body.get("input")
    if not isinstance(inp, (str, list)) or not inp:
        raise BadRequest("'input' is required: a string or a non-empty array of input items")
    if isinstance(inp, list):
        if len(inp) > limits.max_messages:
            raise BadRequest(f"too many input items: {len(inp)}, at most {limits.max_messages} per request")
        parts = 0
        for item in inp:
            if not isinstance(item, dict):
                raise BadRequest("'input' items must be objects")
            content = item.get("content")
            if isinstance(content, list):
                parts += len(content)
        if parts > limits.max_content_parts:
            raise BadRequest(f"too many content parts: {parts}, at most {limits.max_content_parts} per request")
    if "instructions" in body and body["instructions"] is not None and not isinstance(body["instructions"], str):
        raise BadRequest("'instructions' must be a string")
    _check_common(body, limits, ("max_output_tokens",))


def check_text_body(body: dict[str, Any], limits: ServerLimits) -> None:
    prompt = body.get("prompt")
    if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
        raise BadRequest("'prompt' is required: a string or an array of strings")
    if isinstance(prompt, list) and len(prompt) > limits.max_messages:
        raise BadRequest(f"too many prompts: {len(prompt)}, at most {limits.max_messages} per request")
    _check_common(body, limits, ("max_tokens", "n"))


def check_image_body(body: dict[str, Any], limits: ServerLimits) -> None:
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        raise BadRequest("'prompt' is required and must be a non-empty string")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        raise BadRequest("'n' must be an integer from 1 to 10")
    for key in ("size", "quality", "response_format"):
        if key in body and body[key] is not None and not isinstance(body[key], str):
            raise BadRequest(f"'{key}' must be a string")


def check_embeddings_body(body: dict[str, Any], limits: ServerLimits) -> None:
    """`input`: a string, an array of strings, an array of token ids, or an array of such arrays."""
    inp = body.get("input")
    if isinstance(inp, str):
        if not inp:
            raise BadRequest("'input' must not be an empty string")
    elif isinstance(inp, list) and inp:
        if len(inp) > 2048:
            raise BadRequest(f"too many inputs: {len(inp)}, at most 2048 per request")
        first = inp[0]
        if isinstance(first, str):
            if not all(isinstance(x, str) and x for x in inp):
                raise BadRequest("'input' must be an array of non-empty strings")
        elif isinstance(first, int) and not isinstance(first, bool):
            if not all(type(x) is int for x in inp):
                raise BadRequest("'input' must be an array of integers (token ids)")
        elif isinstance(first, list):
            if not all(isinstance(x, list) and x and all(type(t) is int for t in x) for x in inp):
                raise BadRequest("'input' must be an array of non-empty arrays of integers (token ids)")
        else:
            raise BadRequest("'input' must be a string, an array of strings or an array of token ids")
    else:
        raise BadRequest("'input' is required: a string, an array of strings or an array of token ids")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'")
    dims = body.get("dimensions")
    if dims is not None and (type(dims) is not int or dims < 1):
        raise BadRequest("'dimensions' must be a positive integer")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise BadRequest("'user' must be a string")


def check_moderation_body(body: dict[str, Any], limits: ServerLimits) -> None:
    """`input`: a string, an array of strings, or an array of text / image_url parts."""
    inp = body.get("input")
    if isinstance(inp, str):
        return
    if not isinstance(inp, list) or not inp:
        raise BadRequest("'input' is required: a string, an array of strings or an array of input parts")
    if len(inp) > limits.max_content_parts:
        raise BadRequest(f"too many inputs: {len(inp)}, at most {limits.max_content_parts} per request")
    if all(isinstance(x, str) for x in inp):
        return
    for i, part in enumerate(inp):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if kind == "image_url" and isinstance(part.get("image_url"), dict) \
                and isinstance(part["image_url"].get("url"), str):
            continue
        raise BadRequest(f"input[{i}] must be {{'type': 'text', 'text': ...}} or "
                         "{'type': 'image_url', 'image_url': {'url': ...}}")


SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def check_speech_body(body: dict[str, Any], limits: ServerLimits) -> None:
    """OpenAI's CreateSpeechRequest: text (at most 4,096 characters), a voice, an audio format."""
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise BadRequest("'input' is required and must be a non-empty string")
    if len(text) > 4096:
        raise BadRequest(f"'input' is {len(text)} characters long; at most 4096")
    voice = body.get("voice")
    if isinstance(voice, dict):
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise BadRequest("'voice' is required: a voice name (e.g. 'alloy') or {'id': ...}")
    fmt = body.get("response_format")
    if fmt is not None and fmt not in SPEECH_FORMATS:
        raise BadRequest(f"'response_format' must be one of {', '.join(SPEECH_FORMATS)}")
    stream_format = body.get("stream_format")
    if stream_format is not None and stream_format not in ("sse", "audio"):
        raise BadRequest("'stream_format' must be 'sse' or 'audio'")
    speed = body.get("speed")
    if speed is not None and (not isinstance(speed, (int, float)) or isinstance(speed, bool)
                              or not 0.25 <= speed <= 4.0):
        raise BadRequest("'speed' must be a number from 0.25 to 4.0")
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise BadRequest("'instructions' must be a string")


TRANSCRIPTION_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")


def check_transcription_body(body: dict[str, Any], limits: ServerLimits) -> None:
    """The text fields of a transcription / translation form (the file is checked as it is read)."""
    fmt = body.get("response_format")
    if fmt is not None and fmt not in TRANSCRIPTION_FORMATS:
        raise BadRequest(f"'response_format' must be one of {', '.join(TRANSCRIPTION_FORMATS)}")
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, float):
        raise BadRequest("'temperature' must be a number")


def check_messages_body(body: dict[str, Any], limits: ServerLimits) -> None:
    """A Messages API body (POST /v1/messages and its count_tokens): the shape a translation reads, with the
    request-shape limits. Anything finer is the provider's to judge (a pass-through sends the body as is)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required and must be a non-empty array")
    if len(messages) > limits.max_messages:
        raise BadRequest(f"too many messages: {len(messages)}, at most {limits.max_messages} per request")
    parts = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}: an object whose role is 'user' or 'assistant'")
        content = m.get("content")
        if isinstance(content, list):
            parts += len(content)
            if not all(isinstance(b, dict) for b in content):
                raise BadRequest(f"messages.{i}.content: every content block must be an object")
        elif not isinstance(content, str):
            raise BadRequest(f"messages.{i}.content: a string or an array of content blocks")
    system = body.get("system")
    if isinstance(system, list):
        parts += len(system)
        if not all(isinstance(b, dict) for b in system):
            raise BadRequest("system: a string or an array of text blocks")
    elif system is not None and not isinstance(system, str):
        raise BadRequest("system: a string or an array of text blocks")
    if parts > limits.max_content_parts:
        raise BadRequest(f"too many content blocks: {parts}, at most {limits.max_content_parts} per request")
    for key in ("max_tokens",):
        v = body.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise BadRequest(f"'{key}' must be a positive integer")
    for key in ("temperature", "top_p"):
        v = body.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise BadRequest(f"'{key}' must be a number")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest("'stream' must be a boolean")
    _check_tool_list(body.get("tools"), limits)
    for key in ("tool_choice", "metadata", "thinking"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise BadRequest(f"'{key}' must be an object")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(x, str) for x in stops)):
        raise BadRequest("'stop_sequences' must be an array of strings")


def check_generate_body(body: dict[str, Any], limits: ServerLimits) -> None:
    """A Gemini API body (generateContent, streamGenerateContent, countTokens; camelCase or snake_case keys)."""
    inner = body.get("generateContentRequest") or body.get("generate_content_request")
    if isinstance(inner, dict):  # countTokens may wrap a whole generateContent request
        body = inner
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("'contents' is required and must be a non-empty array")
    if len(contents) > limits.max_messages:
        raise BadRequest(f"too many contents: {len(contents)}, at most {limits.max_messages} per request")
    parts = 0
    for i, c in enumerate(contents):
        p = c.get("parts") if isinstance(c, dict) else None
        if not isinstance(p, list) or not all(isinstance(x, dict) for x in p):
            raise BadRequest(f"contents[{i}]: an object with an array of part objects in 'parts'")
        parts += len(p)
    if parts > limits.max_content_parts:
        raise BadRequest(f"too many parts: {parts}, at most {limits.max_content_parts} per request")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise BadRequest("'tools' must be an array of objects")
        n = sum(len(t.get("functionDeclarations") or t.get("function_declarations") or ()) for t in tools)
        if n > limits.max_tools:
            raise BadRequest(f"too many function declarations: {n}, at most {limits.max_tools} per request")
    for key in ("generationConfig", "generation_config", "systemInstruction", "system_instruction",
                "toolConfig", "tool_config"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise BadRequest(f"'{key}' must be an object")


def _check_tool_list(tools: Any, limits: ServerLimits) -> None:
    if tools is None:
        return
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise BadRequest("'tools' must be an array of objects")
    if len(tools) > limits.max_tools:
        raise BadRequest(f"too many tools: {len(tools)}, at most {limits.max_tools} per request")


def check_image_edit_body(body: dict[str, Any], limits: ServerLimits) -> None:
    """The text fields of an image edit form (its images are checked as the form is read)."""
    check_image_body(body, limits)
    if body.get("stream") is True:
        raise BadRequest("streamed image edits are not offered: leave out 'stream'")


def check_image_variation_body(body: dict[str, Any], limits: ServerLimits) -> None:
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        raise BadRequest("'n' must be an integer from 1 to 10")


def _check_common(body: dict[str, Any], limits: ServerLimits, positive_ints: tuple[str, ...],
                  numbers: tuple[str, ...] = ("temperature", "top_p")) -> None:
    """Types of the fields every endpoint shares: counts, sampling numbers, stream, tools."""
    for key in positive_ints:
        v = body.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise BadRequest(f"'{key}' must be a positive integer")
    for key in numbers:
        v = body.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise BadRequest(f"'{key}' must be a number")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest("'stream' must be a boolean")
    for key, v in body.items():  # the fields a translation reads (a request names a few: look those up)
        rule = _COMMON_FIELDS.get(key)
        if rule is not None and v is not None:
            _check_field(key, v, rule, "")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise BadRequest("'tools' must be an array of objects")
        if len(tools) > limits.max_tools:
            raise BadRequest(f"too many tools: {len(tools)}, at most {limits.max_tools} per request")
        for i, tool in enumerate(tools):
            fn = tool.get("function")
            if fn is not None and (not isinstance(fn, dict) or not isinstance(fn.get("name"), str)
                                   or not isinstance(fn.get("parameters", {}), (dict, type(None)))
                                   or not isinstance(fn.get("description", ""), (str, type(None)))):
                raise BadRequest(f"tools[{i}].function must be an object with a string 'name' and an object "
                                 "'parameters'")


# The OpenAI fields a translation reads, and the JSON types OpenAI's API takes for them (null = not set).
_STR, _INT, _BOOL, _OBJ, _LIST = (str,), (int,), (bool,), (dict,), (list,)
_COMMON_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "user": (_STR, "a string"),
    "seed": (_INT, "an integer"),
    "stop": (_STR + _LIST, "a string or an array of strings"),
    "metadata": (_OBJ, "an object"),
    "response_format": (_OBJ, "an object"),
    "text": (_OBJ, "an object"),
    "reasoning": (_OBJ, "an object"),
    "stream_options": (_OBJ, "an object"),
    "tool_choice": (_STR + _OBJ, "a string or an object"),
    "parallel_tool_calls": (_BOOL, "a boolean"),
    "logprobs": (_BOOL + _INT, "a boolean"),
    "top_logprobs": (_INT, "an integer"),
    "reasoning_effort": (_STR, "a string"),
    "service_tier": (_STR, "a string"),
    "suffix": (_STR, "a string"),
}
_MESSAGE_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": (_STR, "a string"),
    "tool_call_id": (_STR, "a string"),
    "tool_calls": (_LIST, "an array"),
    "refusal": (_STR, "a string"),
}


def _check_fields(doc: dict[str, Any], table: dict[str, tuple[tuple[type, ...], str]], where: str) -> None:
    for key, v in doc.items():  # a request names a few fields: look up those, not the whole table
        rule = table.get(key)
        if rule is not None and v is not None:
            _check_field(key, v, rule, where)


def _check_field(key: str, v: Any, rule: tuple[tuple[type, ...], str], where: str) -> None:
    types, words = rule
    if not isinstance(v, types) or (v is True or v is False) and bool not in types:
        raise BadRequest(f"'{where}{key}' must be {words}")
    if key == "stop" and isinstance(v, list) and not all(isinstance(x, str) for x in v):
        raise BadRequest(f"'{where}stop' must be a string or an array of strings")
    if key == "metadata" and isinstance(v, dict) and not all(isinstance(x, str) for x in v.values()):
        raise BadRequest(f"'{where}metadata' values must be strings")


def _check_tool_calls(calls: list[Any], where: str) -> None:
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(fn, dict) or not isinstance(call.get("id", ""), str) or not isinstance(fn.get("name"), str)
                or not isinstance(fn.get("arguments", ""), (str, dict))):
            raise BadRequest(f"{where}[{j}] must be an object with a string 'id' and a 'function' with a string "
                             "'name' and 'arguments'")


def _check_parts(parts: list[Any], where: str) -> None:
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            if isinstance(part, str):
                continue  # some clients send bare strings; translation reads them as text
            raise BadRequest(f"{where}[{j}] must be a content part object")
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text") and not isinstance(part.get("text"), str):
            raise BadRequest(f"{where}[{j}].text must be a string")
        if kind == "image_url":
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str):
                raise BadRequest(f"{where}[{j}].image_url must be an object with a string 'url'")


BODY_CHECKS: dict[str, Callable[[dict[str, Any], ServerLimits], None]] = {
    "chat": check_chat_body, "responses": check_responses_body, "completion": check_text_body,
    "image": check_image_body, "embedding": check_embeddings_body, "moderation": check_moderation_body,
    "speech": check_speech_body, "transcription": check_transcription_body, "image_edit": check_image_edit_body,
    "image_variation": check_image_variation_body, "messages": check_messages_body, "generate": check_generate_body,
}


def check_depth(body: Any, raw: bytes | bytearray, limit: int) -> None:
    """400 for a body nested deeper than `limit` (translation and serialisation recurse). Walked only
    when the raw body holds more brackets than the limit: a shallower nesting cannot be deeper."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            raise BadRequest(f"request body is nested more than {limit} levels deep")
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))


def count_values(body: Any, limit: int) -> int:
    """JSON values in `body` (containers and scalars), stopping with a 400 past `limit`."""
    count = 1
    stack: list[Any] = [body]
    while stack:
        value = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        count += len(children)
        if count > limit:
            raise BadRequest(f"request body holds more than {limit} JSON values")
        stack.extend(c for c in children if isinstance(c, (dict, list)))
    return count
