"""Fake answers for the media endpoints (embeddings, moderations, speech, transcription) of OpenAI's wire and
Gemini's batchEmbedContents / speech generateContent. Pure functions, deterministic.

Embeddings: a vector of `dimensions` (default 8 for the fake) floats derived from the text's length, so a
test can check that the input reached the provider. Tokens = whitespace words of every input (+0).
Speech: 24 kHz 16-bit mono PCM, 10 ms per input character (so the answer's size is predictable); mp3 and the
other compressed formats get a short tagged byte string of the requested type. Transcription: the WAV's
duration read from its header; the text is "fake transcript of <seconds> seconds".
"""

from __future__ import annotations

import base64
import math
import struct
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from .common import CREATED

DEFAULT_DIMENSIONS = 8
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
                 "marin", "cedar")
GEMINI_VOICES = ("Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe", "Autonoe",
                 "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib", "Rasalgethi",
                 "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima", "Achird", "Zubenelgenubi",
                 "Vindemiatrix", "Sadachbia", "Sadaltager", "Sulafat")
SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                "wav": "audio/wav", "pcm": "audio/pcm"}
RATE = 24000


def vector(seed: int, dims: int) -> list[float]:
    return [round(math.sin(seed + i) / 2, 6) for i in range(dims)]


def embeddings(body: dict, n: int) -> dict:
    inp = body.get("input")
    items = [inp] if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)) else inp
    dims = body.get("dimensions") or DEFAULT_DIMENSIONS
    data, tokens = [], 0
    for i, item in enumerate(items or []):
        if isinstance(item, str):
            seed, tokens = len(item), tokens + len(item.split())
        else:
            seed, tokens = len(item), tokens + len(item)
        values = vector(seed, dims)
        if body.get("encoding_format") == "base64":
            emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *values)).decode()
        else:
            emb = values
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def form_parts(content_type: str, raw: bytes) -> list[tuple[str, str | None, bytes]]:
    """(name, filename or None, bytes) of each part of a multipart/form-data body, read with the standard
    library's MIME parser (independent of the gateway's own)."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    if not msg.is_multipart():
        return []
    return [(part.get_param("name", header="content-disposition"), part.get_filename(),
             part.get_payload(decode=True) or b"") for part in msg.iter_parts()]


def is_image(data: bytes) -> bool:
    """PNG, JPEG or WebP by its magic bytes (what OpenAI's image endpoints take)."""
    return data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def decoded(doc: dict) -> dict:
    """An embeddings answer with base64 vectors decoded to floats: the spec's schema knows only arrays, while
    the API sends base64 strings when asked (and the SDK asks by default)."""
    data = [{**d, "embedding": list(struct.unpack(f"<{len(base64.b64decode(d['embedding'])) // 4}f",
                                                  base64.b64decode(d["embedding"])))}
            if isinstance(d.get("embedding"), str) else d for d in doc.get("data") or []]
    return {**doc, "data": data}


_CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
               "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
               "violence/graphic")


# the categories OpenAI also scores images for
_IMAGE_CATEGORIES = ("self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic")


def moderation(body: dict, n: int) -> dict:
    """Flags `violence` when the text says "kill"; image inputs are scored too (never flagged)."""
    inp = body.get("input")
    items = [inp] if isinstance(inp, str) else inp
    if items and isinstance(items[0], dict):  # multimodal parts: one result for all of them
        items = [" ".join(p.get("text", "") for p in items if p.get("type") == "text")]
        types = ["text", "image"]
    else:
        types = ["text"]
    results = []
    for text in items:
        violent = "kill" in text.lower()
        results.append({
            "flagged": violent,
            "categories": {c: (c == "violence" and violent) for c in _CATEGORIES},
            "category_scores": {c: (0.9 if c == "violence" and violent else 0.001) for c in _CATEGORIES},
            "category_applied_input_types": {c: types if c in _IMAGE_CATEGORIES else ["text"] for c in _CATEGORIES},
        })
    return {"id": f"modr-fake{n}", "model": body.get("model"), "results": results}


_TONE = b"".join(struct.pack("<h", int(1000 * math.sin(i / 8))) for i in range(1200))  # 50 ms


def pcm_for(text: str) -> bytes:
    """10 ms of a quiet tone per character: 24 kHz, 16-bit little-endian mono."""
    size = RATE * len(text) // 100 * 2
    return (_TONE * (size // len(_TONE) + 1))[:size]


def wav(pcm: bytes, rate: int = RATE) -> bytes:
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2,
                       16, b"data", len(pcm)) + pcm


def speech(body: dict) -> tuple[bytes, str]:
    fmt = body.get("response_format") or "mp3"
    pcm = pcm_for(body.get("input") or "")
    if fmt == "pcm":
        return pcm, SPEECH_TYPES[fmt]
    if fmt == "wav":
        return wav(pcm), SPEECH_TYPES[fmt]
    return f"FAKE-{fmt.upper()}:".encode() + pcm[:64], SPEECH_TYPES[fmt]


def speech_usage(body: dict) -> dict:
    text = body.get("input") or ""
    inp, out = len(text.split()) + 2, len(text) // 2 + 1
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}


def speech_events(body: dict) -> list[dict]:
    audio, _ = speech({**body, "response_format": body.get("response_format") or "mp3"})
    half = len(audio) // 2
    return [{"type": "speech.audio.delta", "audio": base64.b64encode(audio[:half]).decode()},
            {"type": "speech.audio.delta", "audio": base64.b64encode(audio[half:]).decode()},
            {"type": "speech.audio.done", "usage": speech_usage(body)}]


def wav_seconds(data: bytes) -> float:
    """Duration of a PCM WAV file from its header (0.0 for anything else)."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return 0.0
    pos, byte_rate = 12, 0
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if kind == b"fmt ":
            byte_rate = struct.unpack("<I", data[pos + 16:pos + 20])[0]
        elif kind == b"data":
            return round(size / byte_rate, 3) if byte_rate else 0.0
        pos += 8 + size + (size & 1)
    return 0.0


# response formats each model family takes (OpenAI's docs): the rest get a 400
TRANSCRIPTION_FORMATS = {
    "whisper-1": ("json", "text", "srt", "verbose_json", "vtt"),
    "gpt-4o-transcribe-diarize": ("json", "text", "diarized_json"),
}
GPT_FORMATS = ("json", "text")


def formats_for(model: str) -> tuple[str, ...]:
    return TRANSCRIPTION_FORMATS.get(model, GPT_FORMATS)


def _stamp(t: float, sep: str) -> str:
    ms = round(t * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def transcription(fields: dict, audio: bytes, task: str = "transcribe") -> tuple[Any, str]:
    """(answer, content type): JSON documents or text, as the requested `response_format` says."""
    model = fields.get("model", "")
    seconds = wav_seconds(audio) or 1.0
    text = f"fake {'translation' if task == 'translate' else 'transcript'} of {seconds:g} seconds"
    if fields.get("prompt"):
        text += f" ({fields['prompt']})"
    fmt = fields.get("response_format") or "json"
    words = len(text.split())
    if model == "whisper-1":
        usage: dict = {"type": "duration", "seconds": math.ceil(seconds)}
    else:
        audio_tokens = max(1, int(seconds * 10))
        usage = {"type": "tokens", "input_tokens": audio_tokens + 3,
                 "input_token_details": {"text_tokens": 3, "audio_tokens": audio_tokens},
                 "output_tokens": words, "total_tokens": audio_tokens + 3 + words}
    if fmt == "text":
        return text + "\n", "text/plain; charset=utf-8"
    if fmt == "srt":
        return f"1\n{_stamp(0, ',')} --> {_stamp(seconds, ',')}\n{text}\n\n", "text/plain; charset=utf-8"
    if fmt == "vtt":
        return f"WEBVTT\n\n{_stamp(0, '.')} --> {_stamp(seconds, '.')}\n{text}\n\n", "text/plain; charset=utf-8"
    if fmt == "verbose_json":
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": list(range(words)),
                   "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.01}
        doc: dict = {"task": task, "language": "english", "duration": seconds, "text": text, "segments": [segment],
                     "usage": usage}
        if "word" in (fields.get("timestamp_granularities") or []):
            step = seconds / words
            doc["words"] = [{"word": w, "start": round(i * step, 3), "end": round((i + 1) * step, 3)}
                            for i, w in enumerate(text.split())]
        return doc, "application/json"
    if fmt == "diarized_json":
        half = round(seconds / 2, 3)
        return {"task": "transcribe", "duration": seconds, "text": text, "usage": usage, "segments": [
            {"type": "transcript.text.segment", "id": "seg_0", "start": 0.0, "end": half, "text": text,
             "speaker": "A"},
            {"type": "transcript.text.segment", "id": "seg_1", "start": half, "end": seconds, "text": "",
             "speaker": "B"}]}, "application/json"
    return {"text": text, "usage": usage}, "application/json"


def transcription_events(doc: dict) -> list[dict]:
    pieces = doc["text"].split(" ")
    events: list[dict] = [{"type": "transcript.text.delta", "delta": (" " if i else "") + p}
                          for i, p in enumerate(pieces)]
    events.append({"type": "transcript.text.done", "text": doc["text"], "usage": doc["usage"]})
    return events


# ---- Gemini
def gemini_embeddings(body: dict) -> dict:
    out = []
    for req in body.get("requests") or []:
        text = " ".join(p.get("text", "") for p in (req.get("content") or {}).get("parts") or [])
        out.append({"values": vector(len(text), req.get("outputDimensionality") or DEFAULT_DIMENSIONS)})
    return {"embeddings": out}


def gemini_speech(body: dict, model: str) -> dict:
    text = " ".join(p.get("text", "") for c in body.get("contents") or [] for p in c.get("parts") or [])
    pcm = pcm_for(text)
    prompt, audio_tokens = len(text.split()) + 3, len(pcm) // 1920 + 1   # 25 audio tokens a second
    return {
        "candidates": [{"content": {"role": "model", "parts": [
            {"inlineData": {"mimeType": f"audio/L16;codec=pcm;rate={RATE}", "data": base64.b64encode(pcm).decode()}}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": audio_tokens,
                          "totalTokenCount": prompt + audio_tokens,
                          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
                          "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": audio_tokens}]},
        "modelVersion": model, "responseId": "fake-tts",
    }


__all__ = [
    "CREATED",
    "GEMINI_VOICES",
    "OPENAI_VOICES",
    "embeddings",
    "formats_for",
    "gemini_embeddings",
    "gemini_speech",
    "moderation",
    "speech",
    "speech_events",
    "transcription",
    "wav_seconds",
]
