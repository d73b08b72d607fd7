"""Golden tests for the translations of issue 20 that the JSON grid (test_translation_snapshots) cannot render:
an image edit upload becoming Gemini's generateContent with the images inline, and Gemini's speech answer
(base64 PCM) becoming the WAV file the client gets. Both sides are checked against the official specs."""

from __future__ import annotations

import asyncio
import io
import wave

import orjson

from gateway.http.upstreams import UpstreamReply
from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.form_body import form_document, read_form
from tests.support.fakes.common import _png
from tests.support.fakes.media_wire import gemini_speech
from tests.support.fakes.specs import validate
from tests.support.snapshot_grid import CFG, PIPELINE, ROUTER

BOUNDARY = "golden-boundary"


def multipart(parts: list[tuple[str, str | None, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, ctype, data in parts:
        out += f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"".encode()
        out += f"; filename=\"{filename}\"".encode() if filename else b""
        out += f"\r\nContent-Type: {ctype}".encode() if ctype else b""
        out += b"\r\n\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def read(raw: bytes):
    pieces = iter([{"type": "http.request", "body": raw[i:i + 100], "more_body": i + 100 < len(raw)}
                   for i in range(0, len(raw), 100)])

    async def receive():
        return next(pieces)

    scope = {"headers": [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
                         (b"content-length", str(len(raw)).encode())]}
    return asyncio.run(read_form(scope, receive, 1 << 20))


def variables(decision):
    return PIPELINE.variables(decision, "req_test") | {"created": 1777300000}


def test_gemini_image_edit_request(snapshot) -> None:
    form = read(multipart([("model", None, None, b"gemini-2.5-flash-image"),
                           ("prompt", None, None, "Put the two on one beach, закат".encode()),
                           ("image[]", "a.png", "image/png", _png(1, 1, (255, 0, 0, 255))),
                           ("image[]", "b.webp", "application/octet-stream", _png(1, 1, (0, 0, 255, 255))),
                           ("size", None, None, b"1024x1536")]))
    decision = ROUTER.resolve("gemini-2.5-flash-image", ENDPOINTS["image_edit"])
    provider, plan = decision.candidates[0]
    op = CFG.wire_of(provider).operations[plan.operation]
    _, req = PIPELINE.prepare(plan, op, form_document(form), form.raw, variables(decision))
    payload = orjson.loads(req.body)
    assert {"path": req.path, "body": payload} == snapshot
    assert validate("gemini", "GenerateContentRequest", payload) == []


def test_gemini_speech_answer(snapshot) -> None:
    body = {"model": "gemini-2.5-flash-preview-tts", "input": "Hello there", "voice": "Puck", "response_format": "wav"}
    decision = ROUTER.resolve(body["model"], ENDPOINTS["speech"])
    provider, plan = decision.candidates[0]
    op = CFG.wire_of(provider).operations[plan.operation]
    bodies, req = PIPELINE.prepare(plan, op, body, orjson.dumps(body), variables(decision))
    request = orjson.loads(req.body)
    assert validate("gemini", "GenerateContentRequest", request) == []
    upstream = gemini_speech(request, body["model"])
    assert validate("gemini", "GenerateContentResponse", upstream) == []
    answer = PIPELINE.translate_back(plan, op, provider, UpstreamReply(200, {}, orjson.dumps(upstream)), bodies,
                                     variables(decision))
    with wave.open(io.BytesIO(answer.body)) as w:
        audio = {"rate": w.getframerate(), "width": w.getsampwidth(), "channels": w.getnchannels(),
                 "frames": w.getnframes()}
    assert {"request": request, "content_type": answer.content_type, "wav": audio, "usage": answer.usage} == snapshot
