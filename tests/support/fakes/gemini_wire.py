"""Gemini generateContent wire format: default answers and stream chunks (pure functions).

The answer echoes the last user text (``{"echo": ...}`` with responseMimeType application/json).

Tokens: promptTokenCount = words of systemInstruction + all text parts + 10;
candidatesTokenCount = answer words + 1 per candidate (exactly ``maxOutputTokens`` when cut,
+1290 per generated image); thoughtsTokenCount = 5 when thinking is configured.
"""

from __future__ import annotations

import copy
from typing import Any

from .common import PNG_B64, WEATHER_ARGS, cut_at_stop, json_answer, split_pieces, truncate_words, words

THOUGHT_TEXT = "Thinking about it."
THOUGHT_TOKENS = 5
IMAGE_TOKENS = 1290
THOUGHT_SIGNATURE = "ZmFrZS10aG91Z2h0LXNpZ25hdHVyZQ=="  # base64("fake-thought-signature")

MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-image", "gemini-3-pro-preview"]


def _parts_text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    return " ".join(
        p["text"]
        for p in content.get("parts") or []
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    )


def prompt_tokens(body: dict) -> int:
    total = words(_parts_text(body.get("systemInstruction")))
    for c in body.get("contents") or []:
        total += words(_parts_text(c))
    return total + 10


def needs_thought_signature(model: str) -> bool:
    return model.startswith("gemini-3")


def missing_thought_signature(body: dict, model: str) -> str | None:
    """Gemini 3 rejects a model turn whose first functionCall part lacks its thoughtSignature."""
    if not needs_thought_signature(model):
        return None
    for i, c in enumerate(body.get("contents") or []):
        if c.get("role") != "model":
            continue
        calls = [p for p in c.get("parts") or [] if isinstance(p, dict) and "functionCall" in p]
        if calls and not calls[0].get("thoughtSignature"):
            return f"contents[{i}].parts"
    return None


def generate(body: dict, model: str, n: int, *, text: str | None = None) -> dict:
    """Default GenerateContentResponse."""
    contents = body.get("contents") or []
    user_texts = [_parts_text(c) for c in contents if c.get("role", "user") == "user"]
    last_user_text = next((t for t in reversed(user_texts) if t), "")
    last = contents[-1] if contents else {}
    last_is_user_text = last.get("role", "user") == "user" and bool(_parts_text(last))
    cfg = body.get("generationConfig") or {}

    decls: list[dict] = []
    for t in body.get("tools") or []:
        decls.extend(t.get("functionDeclarations") or [])
    names = [d["name"] for d in decls if d.get("name")]
    fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode = fcc.get("mode", "AUTO")
    call = None
    if text is None and names and mode != "NONE":
        if mode in ("ANY", "VALIDATED") and (mode == "ANY" or fcc.get("allowedFunctionNames")):
            allowed = fcc.get("allowedFunctionNames") or names
            call = allowed[0]
        elif last_is_user_text and "weather" in last_user_text.lower():
            call = names[0]

    modalities = [m.upper() for m in cfg.get("responseModalities") or []]
    want_image = "IMAGE" in modalities
    want_text = not modalities or "TEXT" in modalities
    think = cfg.get("thinkingConfig") or {}
    thinking = bool(think) and (
        think.get("includeThoughts") or (think.get("thinkingBudget") or 0) > 0 or think.get("thinkingLevel")
    )

    candidates, cand_tokens, image_tokens = [], 0, 0
    for i in range(cfg.get("candidateCount") or 1):
        parts: list[dict] = []
        if thinking and think.get("includeThoughts"):
            parts.append({"text": THOUGHT_TEXT, "thought": True})
        finish = "STOP"
        if call is not None:
            part: dict = {"functionCall": {"name": call, "args": dict(WEATHER_ARGS)}}
            if needs_thought_signature(model):
                part["thoughtSignature"] = THOUGHT_SIGNATURE
            parts.append(part)
            cand_tokens += 2
        else:
            if want_text:
                if text is not None:
                    answer = text
                elif cfg.get("responseMimeType") == "application/json":
                    answer = json_answer(last_user_text)
                else:
                    answer = "echo: " + last_user_text
                answer, _ = cut_at_stop(answer, cfg.get("stopSequences"))
                limit = cfg.get("maxOutputTokens")
                used = words(answer) + 1
                if isinstance(limit, int) and limit < words(answer):
                    answer, finish, used = truncate_words(answer, limit), "MAX_TOKENS", limit
                parts.append({"text": answer})
                cand_tokens += used
            if want_image and finish == "STOP":
                parts.append({"inlineData": {"mimeType": "image/png", "data": PNG_B64}})
                image_tokens += IMAGE_TOKENS
        candidates.append({"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": i})

    prompt = prompt_tokens(body)
    usage: dict = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": cand_tokens + image_tokens,
        "totalTokenCount": prompt + cand_tokens + image_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if image_tokens:
        details = [{"modality": "IMAGE", "tokenCount": image_tokens}]
        if cand_tokens:
            details.insert(0, {"modality": "TEXT", "tokenCount": cand_tokens})
        usage["candidatesTokensDetails"] = details
    if thinking:
        usage["thoughtsTokenCount"] = THOUGHT_TOKENS
        usage["totalTokenCount"] += THOUGHT_TOKENS
    return {
        "candidates": candidates,
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": f"fake{n}",
    }


def stream_chunks(resp: dict) -> list[dict]:
    """Split a GenerateContentResponse into ``streamGenerateContent`` chunks.

    Text parts are cut into ~3 slices, other parts (functionCall, inlineData) come whole;
    the last chunk of each candidate carries its finishReason; every chunk carries
    usageMetadata (prompt-only until the final chunk, which has the full counts)."""
    meta = {k: resp[k] for k in ("modelVersion", "responseId") if k in resp}
    usage = resp.get("usageMetadata")
    per_cand: list[list[dict]] = []
    cands = resp.get("candidates") or []
    for cand in cands:
        pieces: list[dict] = []
        for part in (cand.get("content") or {}).get("parts") or []:
            if isinstance(part.get("text"), str) and not part.get("thought") and len(part) == 1:
                pieces.extend({"text": t} for t in split_pieces(part["text"]) or [""])
            else:
                pieces.append(part)
        per_cand.append(pieces or [None])
    if not cands:  # blocked prompt: a single chunk with promptFeedback
        return [copy.deepcopy(resp)]
    total = max(len(p) for p in per_cand)
    out: list[dict] = []
    for j in range(total):
        chunk_cands = []
        for ci, (cand, pieces) in enumerate(zip(cands, per_cand, strict=True)):
            if j >= len(pieces):
                continue
            entry: dict = {}
            if pieces[j] is not None:
                entry["content"] = {
                    "role": (cand.get("content") or {}).get("role", "model"),
                    "parts": [pieces[j]],
                }
            if j == len(pieces) - 1:
                for k, v in cand.items():
                    if k != "content":
                        entry[k] = v
            entry.setdefault("index", cand.get("index", ci))
            chunk_cands.append(entry)
        chunk: dict = {"candidates": chunk_cands}
        if usage is not None:
            if j == total - 1:
                chunk["usageMetadata"] = usage
            else:
                p = usage.get("promptTokenCount", 0)
                chunk["usageMetadata"] = {"promptTokenCount": p, "totalTokenCount": p}
        if j == 0 and resp.get("promptFeedback") is not None:
            chunk["promptFeedback"] = resp["promptFeedback"]
        chunk.update(meta)
        out.append(chunk)
    return out


def count_tokens(body: dict) -> dict:
    inner = body.get("generateContentRequest") or body
    n = prompt_tokens(inner)
    return {"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}


def model_obj(model: str) -> dict:
    return {
        "name": f"models/{model}",
        "baseModelId": model,
        "version": "001",
        "displayName": model,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def models_list() -> dict:
    return {"models": [model_obj(m) for m in MODELS]}


# --------------------------------------------------------------------------- errors
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}


def error_body(
    status: int, message: str | None = None, *, status_name: str | None = None, details: list | None = None
) -> dict:
    err: dict = {
        "code": status,
        "message": message or DEFAULT_MESSAGES.get(status, f"HTTP {status}"),
        "status": status_name
        or STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
    }
    if details:
        err["details"] = details
    return {"error": err}


def retry_details(retry_delay: str = "1s") -> list[dict]:
    return [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                }
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
    ]
