"""Small helpers shared by the fake upstreams (pure functions, no I/O)."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from collections.abc import Iterable
from typing import Any

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover
    import json

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(data: bytes | str) -> Any:
        return json.loads(data)


CREATED = 1760000000  # fixed timestamp used in every fake answer

WEATHER_ARGS: dict[str, str] = {"city": "Paris"}
WEATHER_ARGS_JSON = '{"city":"Paris"}'


def _png(width: int = 1, height: int = 1, rgba: tuple[int, int, int, int] = (255, 0, 0, 255)) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgba) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


PNG_BYTES: bytes = _png()  # a valid 1x1 red RGBA PNG
PNG_B64: str = base64.b64encode(PNG_BYTES).decode()


def json_answer(echo_of: str) -> str:
    """The default answer in JSON mode (response_format / output_config / responseMimeType)."""
    return dumps({"echo": echo_of}).decode()


def words(text: str | None) -> int:
    """Whitespace-separated word count: the fakes' deterministic "token" counter."""
    return len(text.split()) if text else 0


def split_pieces(text: str, parts: int = 3) -> list[str]:
    """Split ``text`` into at most ``parts`` consecutive pieces at word boundaries.

    ``"".join(split_pieces(t)) == t`` always; an empty text gives ``[]``."""
    if not text:
        return []
    tokens = re.findall(r"\s*\S+\s*|\s+", text)
    if len(tokens) <= 1:
        # one long word: cut it in the middle so streams still have several deltas
        if len(text) >= parts and parts > 1:
            step = -(-len(text) // parts)
            return [text[i : i + step] for i in range(0, len(text), step)]
        return [text]
    n = min(parts, len(tokens))
    size, extra = divmod(len(tokens), n)
    out, i = [], 0
    for k in range(n):
        take = size + (1 if k < extra else 0)
        out.append("".join(tokens[i : i + take]))
        i += take
    return out


def truncate_words(text: str, limit: int) -> str:
    """First ``limit`` words of ``text`` (whitespace between them kept)."""
    if limit <= 0:
        return ""
    m = list(re.finditer(r"\S+", text))
    if len(m) <= limit:
        return text
    return text[: m[limit - 1].end()]


def cut_at_stop(text: str, stops: Iterable[str] | str | None) -> tuple[str, str | None]:
    """Cut ``text`` before the earliest stop sequence; returns (text, matched or None)."""
    if not stops:
        return text, None
    if isinstance(stops, str):
        stops = [stops]
    best: tuple[int, str] | None = None
    for s in stops:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    if best is None:
        return text, None
    return text[: best[0]], best[1]


def sse(data: Any, event: str | None = None, *, crlf: bool = False) -> bytes:
    """One server-sent event. ``data`` is JSON-encoded unless it is already str/bytes."""
    nl = b"\r\n" if crlf else b"\n"
    if isinstance(data, str):
        payload = data.encode()
    elif isinstance(data, bytes):
        payload = data
    else:
        payload = dumps(data)
    head = b"event: " + event.encode() + nl if event else b""
    return head + b"data: " + payload + nl + nl


def text_of_openai_content(content: Any) -> str:
    """Flatten OpenAI message content (string or parts) to its text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
        return " ".join(out)
    return ""
