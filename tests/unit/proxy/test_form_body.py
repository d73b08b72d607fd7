"""Uploads (gateway.proxy.form_body): parsed while they arrive in any split, every file located in the one buffer
that was read (never copied), and bounded — size (413), parts, field size, part headers (400) — before anything
is spent on them."""

from __future__ import annotations

import asyncio
import io
import os
import random
import wave

import pytest

from gateway.errors import BadRequest, PayloadTooLarge
from gateway.proxy.form_body import MAX_FIELD_BYTES, MAX_PARTS, read_form, wav_ms

BOUNDARY = b"----form-boundary-7MA4YWxkTrZu0gW"


def multipart(parts: list[tuple[bytes, bytes | None, bytes]]) -> bytes:
    out = b""
    for name, filename, data in parts:
        out += b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"" + name + b"\""
        out += (b"; filename=\"" + filename + b"\"\r\nContent-Type: application/octet-stream") if filename else b""
        out += b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


def read(raw: bytes, piece: int = 65536, limit: int = 1 << 24, declare: bool = True):
    pieces = iter([{"type": "http.request", "body": raw[i:i + piece], "more_body": i + piece < len(raw)}
                   for i in range(0, len(raw), piece)] or [{"type": "http.request", "body": b""}])

    async def receive():
        return next(pieces)

    headers = [(b"content-type", b"multipart/form-data; boundary=" + BOUNDARY)]
    if declare:
        headers.append((b"content-length", str(len(raw)).encode()))
    return asyncio.run(read_form({"headers": headers}, receive, limit))


def test_files_located_in_any_split() -> None:
    rng = random.Random(7)
    for _ in range(200):
        data = rng.randbytes(rng.randint(0, 3000))
        if rng.random() < 0.5:  # bytes that look like the start of a boundary, inside the file
            data += b"\r\n--" + BOUNDARY[: rng.randint(1, len(BOUNDARY) - 1)] + rng.randbytes(20)
        raw = multipart([(b"model", None, b"whisper-1"), (b"file", b"a.wav", data),
                         (b"timestamp_granularities[]", None, b"word"), (b"stream", None, b"true")])
        form = read(raw, piece=rng.randint(1, 200), declare=rng.random() < 0.5)
        assert bytes(form.data(form.file("file"))) == data
        assert form.fields == {"model": "whisper-1", "timestamp_granularities": ["word"], "stream": True}
        assert form.raw == raw   # the one buffer, forwarded as it came
        assert form.with_field("model", "whisper-2") == raw.replace(b"\r\n\r\nwhisper-1\r\n", b"\r\n\r\nwhisper-2\r\n")


@pytest.mark.parametrize("declare", [True, False])
def test_too_large_is_413(declare: bool) -> None:
    raw = multipart([(b"file", b"a.wav", b"x" * 5000)])
    with pytest.raises(PayloadTooLarge):
        read(raw, piece=1000, limit=4000, declare=declare)


def test_part_limits() -> None:
    with pytest.raises(BadRequest, match="too many parts"):
        read(multipart([(f"f{i}".encode(), None, b"1") for i in range(MAX_PARTS + 1)]))
    with pytest.raises(BadRequest, match="exceeds"):
        read(multipart([(b"prompt", None, b"x" * (MAX_FIELD_BYTES + 1))]))
    with pytest.raises(BadRequest, match="[Hh]eader"):
        read(multipart([(b"a" * 5000, None, b"1")]))
    with pytest.raises(BadRequest, match="closing boundary"):
        read(multipart([(b"model", None, b"x")])[:-10])
    with pytest.raises(BadRequest, match="UTF-8"):
        read(multipart([(b"prompt", None, b"\xff\xfe")]))


def test_not_a_form() -> None:
    async def receive():
        return {"type": "http.request", "body": b"{}"}
    with pytest.raises(BadRequest, match="multipart/form-data"):
        asyncio.run(read_form({"headers": [(b"content-type", b"application/json")]}, receive, 1000))


def test_wav_length_from_header() -> None:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(os.urandom(44100 * 4 * 3 // 2))   # 1.5 s of stereo
    data = out.getvalue()
    assert wav_ms(data[:4096], len(data)) == 1500
    assert wav_ms(b"ID3" + b"\0" * 100, 103) == 0
    form = read(multipart([(b"file", b"a.wav", data)]))
    assert form.audio_ms() == (1500, 1500)
    form = read(multipart([(b"file", b"a.mp3", b"\xff\xfb" + b"\0" * 31_998)]))
    assert form.audio_ms() == (16_000, 2_000)   # bounded at 16 kbit/s, estimated at 128 kbit/s
