"""Answers that are not (only) JSON — speech audio, transcripts as text/SRT/VTT, speech as SSE — and the usage
the gateway bills for them when the provider reports none.

A wire operation says how its provider answers (`answer:` in providers.d/wire/): `any` relays the provider's
bytes with their Content-Type (usage read from a JSON answer or from the last SSE event); `audio` translates
a JSON answer into {audio: base64 PCM, mime_type} and sends it as WAV (or raw PCM when asked).
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

import orjson

from gateway.errors import BadRequest
from gateway.http.upstreams import UpstreamReply
from gateway.translate.wire_operation import WireOperation
from gateway.usage import Usage

_RATE = re.compile(r"rate=(\d+)")
# estimates where the provider reports nothing (README "Billing"): ~4 characters a text token; speech runs
# ~15 characters a second and OpenAI's audio models count ~20 audio tokens a second of speech
CHARS_PER_TOKEN = 4
AUDIO_TOKENS_PER_CHAR_NUM, AUDIO_TOKENS_PER_CHAR_DEN = 4, 3
AUDIO_TOKENS_PER_S_ESTIMATE = 25


def media_answer(op: WireOperation, reply: UpstreamReply, body: dict[str, Any],
                 variables: dict[str, Any]) -> tuple[bytes, Usage | None, Any, bytes]:
    """(bytes for the client, usage, the answer as a document if it is JSON, Content-Type)."""
    if op.answer == "audio":
        client, usage = op.translate_response(orjson.loads(reply.body), body, variables)
        audio = base64.b64decode(client.get("audio") or "")
        if not audio:
            raise BadRequest("the model generated no audio for this input")
        if body.get("response_format") == "pcm":
            return audio, usage, None, b"audio/pcm"
        return wav(audio, pcm_rate(str(client.get("mime_type") or ""))), usage, None, b"audio/wav"
    ctype = reply.headers.get("content-type", "application/octet-stream")
    if "json" in ctype:
        doc = orjson.loads(reply.body)
        return reply.body, op.usage.extract(doc), doc, ctype.encode("latin-1")
    if ctype.startswith("text/event-stream"):
        return reply.body, op.usage.extract(last_sse_event(reply.body)), None, ctype.encode("latin-1")
    return reply.body, None, None, ctype.encode("latin-1")


def last_sse_event(data: bytes) -> Any:
    """The JSON of the last `data:` line of an SSE body (where OpenAI puts the usage of a speech stream)."""
    end = len(data)
    while True:
        start = data.rfind(b"data:", 0, end)
        if start < 0:
            return None
        line_end = data.find(b"\n", start)
        payload = data[start + 5: line_end if line_end >= 0 else len(data)].strip()
        if payload and payload != b"[DONE]":
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError:
                return None
        end = start


def pcm_rate(mime_type: str) -> int:
    """The sample rate of `audio/L16;codec=pcm;rate=24000` (Gemini's speech), 24 kHz when not given."""
    m = _RATE.search(mime_type)
    return int(m.group(1)) if m else 24000


def wav(pcm: bytes, rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """16-bit little-endian PCM wrapped in a RIFF/WAVE header (44 bytes; no conversion of the samples)."""
    block = channels * bits // 8
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, channels, rate,
                         rate * block, block, bits, b"data", len(pcm))
    return header + pcm


def speech_usage(reported: Usage | None, text: str) -> Usage:
    """What a speech call is billed: its characters always (models priced per character), and the
    provider's tokens — or, when it reports none (a binary answer), an estimate from the text."""
    n = len(text)
    if reported is not None:
        out_audio = reported.output_audio_tokens or reported.output_tokens
        return Usage(input_tokens=reported.input_tokens, output_tokens=reported.output_tokens,
                     output_audio_tokens=out_audio, characters=n, estimated=reported.estimated)
    out = -(-n * AUDIO_TOKENS_PER_CHAR_NUM // AUDIO_TOKENS_PER_CHAR_DEN)
    return Usage(input_tokens=-(-n // CHARS_PER_TOKEN), output_tokens=out, output_audio_tokens=out, characters=n,
                 estimated=True)


def audio_usage(reported: Usage | None, audio_ms: int, reply_len: int) -> Usage:
    """What a transcription is billed: the provider's usage (tokens, or the audio's seconds), completed with
    the length the gateway measured in the upload; when it reports nothing (text, SRT, VTT answers), that
    length, its audio tokens estimated (~25 a second) and the transcript's tokens (~4 bytes each)."""
    if reported is not None:
        if reported.audio_ms or not audio_ms:
            return reported
        return Usage(input_tokens=reported.input_tokens, output_tokens=reported.output_tokens,
                     input_audio_tokens=reported.input_audio_tokens, audio_ms=audio_ms, estimated=reported.estimated)
    tokens = AUDIO_TOKENS_PER_S_ESTIMATE * -(-audio_ms // 1000)
    return Usage(input_tokens=tokens, input_audio_tokens=tokens, output_tokens=-(-reply_len // CHARS_PER_TOKEN),
                 audio_ms=audio_ms, estimated=True)
