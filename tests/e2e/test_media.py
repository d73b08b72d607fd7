"""/v1/embeddings, /v1/moderations, /v1/audio/speech, /v1/audio/transcriptions and /v1/audio/translations end to
end with the official `openai` SDK against the fake providers on loopback (issue 20): every call billed from
the balance at pricing.d/ prices and recorded with its units; bad input answered 400/413 and charged nothing."""

from __future__ import annotations

import base64
import io
import math
import struct
import wave
from decimal import Decimal

import httpx
import openai
import pytest

from gateway.account_admin import Money, history_doc
from tests.support.fakes.media_wire import decoded
from tests.support.fakes.specs import validate
from tests.support.gateway_server import accounts_call, make_customer


@pytest.fixture()
def paying(gateway):
    c = make_customer(gateway, usd="20")
    return c, openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=c.secret, max_retries=0, timeout=30)


def history(gateway, account_id: str, n: int = 1) -> list[dict]:
    return accounts_call(gateway, lambda acc: acc.history(account_id, n))


def spent(gateway, account_id: str) -> int:
    return accounts_call(gateway, lambda acc: acc.account(account_id)).spent


def nano(usd_per_1m: float, units: float) -> int:
    return math.ceil(usd_per_1m * units * 1000)   # USD per 1M units → nano-USD for `units`


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    """A real WAV file: a 440 Hz tone, 16-bit mono, written with the standard library."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                               for i in range(int(seconds * rate))))
    return out.getvalue()


# ---------------------------------------------------------------- embeddings

def dims(embedding: list[float] | str) -> int:
    """Length of a vector, also when asked for as base64 (the SDK then hands back the string)."""
    return len(base64.b64decode(embedding)) // 4 if isinstance(embedding, str) else len(embedding)


def test_sdk_default_is_base64(fakes, paying) -> None:
    _, client = paying
    r = client.embeddings.create(model="text-embedding-3-large", input="hi there")
    assert fakes["openai"].last.body["encoding_format"] == "base64"   # the SDK asks for base64 and decodes it
    assert len(r.data[0].embedding) == 8 and isinstance(r.data[0].embedding[0], float)

@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_openai_embeddings(fmt: str, gateway, fakes, paying) -> None:
    c, client = paying
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["раз два три", "four"],
                                                     encoding_format=fmt, dimensions=4)
    r = raw.parse()
    assert [d.index for d in r.data] == [0, 1] and all(dims(d.embedding) == 4 for d in r.data)
    assert r.usage.prompt_tokens == 4   # the fake: whitespace words
    sent = fakes["openai"].last
    assert sent.path == "/v1/embeddings" and sent.body["encoding_format"] == fmt and sent.body["dimensions"] == 4
    assert validate("openai", "CreateEmbeddingResponse", decoded(raw.http_response.json())) == []
    assert fakes["openai"].spec_errors == []
    entry = history(gateway, c.account_id)[0]
    assert entry["endpoint"] == "/v1/embeddings" and entry["status"] == 200 and entry["in"] == 4
    assert entry["cost"] == nano(0.02, 4) == spent(gateway, c.account_id)


def test_openai_embeddings_token_arrays(fakes, paying) -> None:
    _, client = paying
    r = client.embeddings.create(model="text-embedding-ada-002", input=[[1, 2, 3], [4, 5]])
    assert len(r.data) == 2 and r.usage.prompt_tokens == 5
    assert fakes["openai"].last.body["input"] == [[1, 2, 3], [4, 5]]


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_gemini_embeddings_translated(fmt: str, gateway, fakes, paying) -> None:
    c, client = paying
    raw = client.embeddings.with_raw_response.create(
        model="gemini-embedding-001", input=["hello world", "good bye"], encoding_format=fmt, dimensions=3,
        extra_body={"task_type": "retrieval_query"})
    r = raw.parse()
    assert [dims(d.embedding) for d in r.data] == [3, 3] and r.model == "gemini-embedding-001"
    sent = fakes["gemini"].last
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.body["requests"][1] == {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "good bye"}]},
                                        "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 3}
    assert fakes["gemini"].spec_errors == [] and fakes["gemini"].response_spec_errors == []
    doc = raw.http_response.json()
    assert validate("openai", "CreateEmbeddingResponse", decoded(doc)) == []
    if fmt == "base64":   # little-endian float32, as OpenAI sends it
        assert len(base64.b64decode(doc["data"][0]["embedding"])) == 12
    assert r.usage.prompt_tokens == 3 + 2   # Gemini reports none: ~4 characters a token
    entry = history(gateway, c.account_id)[0]
    assert entry["in"] == 5 and entry.get("estimated") == 1
    assert entry["cost"] == nano(0.15, 5) == spent(gateway, c.account_id)


def test_gemini_embeddings_refuse_token_ids(gateway, fakes, paying) -> None:
    c, client = paying
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model="gemini-embedding-001", input=[1, 2, 3])
    assert "token ids" in exc.value.response.json()["message"]
    assert fakes["gemini"].requests == [] and spent(gateway, c.account_id) == 0


def test_embeddings_bad_input(gateway, fakes, paying) -> None:
    c, _ = paying
    for bad in ({"input": ""}, {"input": [1, "a"]}, {"input": "x", "dimensions": 0}, {}):
        r = httpx.post(f"{gateway.base_url}/v1/embeddings", json={"model": "text-embedding-3-small", **bad},
                       headers={"Authorization": f"Bearer {c.secret}"})
        assert r.status_code == 400 and r.json()["statusCode"] == 400, bad
    r = httpx.post(f"{gateway.base_url}/v1/embeddings", json={"model": "gpt-4.1-mini", "input": "x"},
                   headers={"Authorization": f"Bearer {c.secret}"})
    assert r.status_code == 400 and "/v1/chat/completions" in r.json()["message"]
    assert fakes["openai"].requests == [] and spent(gateway, c.account_id) == 0


# ---------------------------------------------------------------- moderations

def test_moderation_text_and_image(gateway, fakes, paying) -> None:
    c, client = paying
    r = client.moderations.create(model="omni-moderation-latest", input="I will kill the process")
    assert r.results[0].flagged and r.results[0].categories.violence
    r = client.moderations.create(model="omni-moderation-latest", input=[
        {"type": "text", "text": "a cat"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}])
    assert not r.results[0].flagged
    assert r.results[0].category_applied_input_types.violence == ["text", "image"]
    assert fakes["openai"].spec_errors == [] and fakes["openai"].response_spec_errors == []
    entries = history(gateway, c.account_id, 2)
    assert [e["endpoint"] for e in entries] == ["/v1/moderations"] * 2 and all(e["status"] == 200 for e in entries)
    assert all(e["cost"] == 0 for e in entries) and spent(gateway, c.account_id) == 0


# ---------------------------------------------------------------- speech

def test_speech_tts1_billed_per_character(gateway, fakes, paying) -> None:
    c, client = paying
    text = "Привет, мир! Hello."
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav")
    data = audio.read()
    assert data[:4] == b"RIFF" and len(data) == 44 + 24000 * 2 * len(text) // 100
    assert fakes["openai"].last.path == "/v1/audio/speech" and fakes["openai"].spec_errors == []
    entry = history(gateway, c.account_id)[0]
    assert entry["endpoint"] == "/v1/audio/speech" and entry["chars"] == len(text)
    assert entry["cost"] == nano(15, len(text)) == spent(gateway, c.account_id)
    shown = history_doc(entry, Money(Decimal(95)))   # what the cabinet, the admin API and the CLI show
    assert shown["characters"] == len(text) and shown["cost_usd"] == entry["cost"] / 1e9


def test_speech_streaming_response(gateway, fakes, paying) -> None:
    _, client = paying
    with client.audio.speech.with_streaming_response.create(model="tts-1-hd", voice="nova", input="stream me",
                                                            response_format="mp3") as response:
        assert response.headers["content-type"] == "audio/mpeg"
        data = b"".join(response.iter_bytes(chunk_size=7))
    assert data.startswith(b"FAKE-MP3:")


def test_speech_sse_usage(gateway, fakes, paying) -> None:
    c, client = paying
    text = "two words"
    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="coral", input=text, stream_format="sse") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    assert events and '"speech.audio.done"' in events[-1]
    entry = history(gateway, c.account_id)[0]
    usage_in, usage_out = len(text.split()) + 2, len(text) // 2 + 1   # what the fake reports
    assert entry["in"] == usage_in and entry["out"] == usage_out and entry.get("estimated") is None
    assert entry["cost"] == math.ceil((0.6 * usage_in + 12 * usage_out) * 1000) == spent(gateway, c.account_id)


def test_gemini_speech_wav(gateway, fakes, paying) -> None:
    c, client = paying
    audio = client.audio.speech.create(model="gemini-2.5-flash-preview-tts", voice="Kore", input="Say hi",
                                       response_format="wav").read()
    with wave.open(io.BytesIO(audio)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (24000, 2, 1)
        assert w.getnframes() == 24000 * len("Say hi") // 100
    sent = fakes["gemini"].last.body
    assert sent["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Kore"
    assert fakes["gemini"].spec_errors == [] and fakes["gemini"].response_spec_errors == []
    entry = history(gateway, c.account_id)[0]
    assert entry["cost"] == spent(gateway, c.account_id) > 0 and entry["out"] > 0
    # an OpenAI voice name is given the nearest Gemini voice; mp3 is refused naming what is supported
    client.audio.speech.create(model="gemini-2.5-flash-preview-tts", voice="alloy", input="x", response_format="pcm")
    assert fakes["gemini"].last.body["generationConfig"]["speechConfig"]["voiceConfig"][
        "prebuiltVoiceConfig"]["voiceName"] == "Kore"
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model="gemini-2.5-flash-preview-tts", voice="Kore", input="x", response_format="mp3")
    assert "wav or pcm" in exc.value.response.json()["message"]


@pytest.mark.parametrize("model", ["tts-1", "gemini-2.5-flash-preview-tts"])
def test_speech_unknown_voice(model: str, gateway, fakes, paying) -> None:
    c, client = paying
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model=model, voice="nobody", input="hello", response_format="wav")
    body = exc.value.response.json()
    assert body["statusCode"] == 400 and "nobody" in body["message"].lower()
    assert spent(gateway, c.account_id) == 0 and history(gateway, c.account_id)[0]["cost"] == 0


# ---------------------------------------------------------------- transcription

FORMATS = {"json": "whisper-1", "text": "whisper-1", "srt": "whisper-1", "verbose_json": "whisper-1",
           "vtt": "whisper-1", "diarized_json": "gpt-4o-transcribe-diarize"}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_transcription_every_format(fmt: str, gateway, fakes, paying) -> None:
    c, client = paying
    audio = wav_bytes(1.5)
    model = FORMATS[fmt]
    extra = {"timestamp_granularities": ["word", "segment"]} if fmt == "verbose_json" else {}
    if fmt == "diarized_json":
        extra["chunking_strategy"] = "auto"
    r = client.audio.transcriptions.create(model=model, file=("speech.wav", audio, "audio/wav"),
                                           response_format=fmt, **extra)
    text = r if isinstance(r, str) else r.text
    assert "fake transcript of 1.5 seconds" in text
    if fmt == "srt":
        assert "00:00:01,500" in r
    if fmt == "vtt":
        assert r.startswith("WEBVTT")
    if fmt == "verbose_json":
        assert r.duration == 1.5 and r.words and r.segments
    if fmt == "diarized_json":
        assert [s.speaker for s in r.segments] == ["A", "B"]
    assert fakes["openai"].spec_errors == [] and fakes["openai"].response_spec_errors == []
    sent = fakes["openai"].last
    assert sent.path == "/v1/audio/transcriptions" and sent.body["model"] == model
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    entry = history(gateway, c.account_id)[0]
    assert entry["endpoint"] == "/v1/audio/transcriptions" and entry["status"] == 200
    assert entry["audio_ms"] in (1500, 2000)   # the provider's whole seconds (json), or the WAV's length
    if model == "whisper-1":
        assert entry["cost"] == math.ceil(6_000_000 * entry["audio_ms"] / 60_000)   # $0.006 a minute
    assert history_doc(entry, Money(Decimal(95)))["audio_seconds"] == entry["audio_ms"] / 1000
    assert entry["cost"] == spent(gateway, c.account_id) > 0


def test_transcription_stream(gateway, fakes, paying) -> None:
    c, client = paying
    stream = client.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=("a.wav", wav_bytes(1), "audio/wav"),
                                                stream=True)
    events = list(stream)
    assert events[-1].type == "transcript.text.done" and events[-1].text.startswith("fake transcript")
    entry = history(gateway, c.account_id)[0]
    assert entry["in"] == 13 and entry["audio_tokens"] == 10 and entry["cost"] == spent(gateway, c.account_id)


def test_translation(gateway, fakes, paying) -> None:
    _, client = paying
    r = client.audio.translations.create(model="whisper-1", file=("a.wav", wav_bytes(0.5), "audio/wav"))
    assert r.text == "fake translation of 0.5 seconds"
    assert fakes["openai"].last.path == "/v1/audio/translations" and fakes["openai"].spec_errors == []


def test_transcription_bad_uploads(gateway, fakes, paying) -> None:
    c, client = paying
    url, auth = f"{gateway.base_url}/v1/audio/transcriptions", {"Authorization": f"Bearer {c.secret}"}
    cases = [
        ({"files": {"model": (None, "whisper-1")}}, 400, "'file' is required"),              # no file
        ({"data": {"model": "whisper-1"}, "files": {"file": ("notes.txt", b"hello", "text/plain")}}, 400,
         "unsupported file format"),                                                        # not audio
        ({"json": {"model": "whisper-1", "file": "x"}}, 400, "multipart/form-data"),        # not a form
        ({"data": {"model": "whisper-1", "response_format": "docx"},
          "files": {"file": ("a.wav", wav_bytes(0.1), "audio/wav")}}, 400, "response_format"),
    ]
    for kwargs, status, words in cases:
        r = httpx.post(url, headers=auth, **kwargs)
        assert r.status_code == status and words in r.json()["message"], (kwargs, r.text)
        assert r.json()["statusCode"] == status
    big = b"RIFF" + b"\0" * (25 * 1024 * 1024 + 1)
    r = httpx.post(url, headers=auth, data={"model": "whisper-1"}, files={"file": ("big.wav", big, "audio/wav")})
    assert r.status_code == 413 and r.json()["statusCode"] == 413
    with pytest.raises(openai.BadRequestError):   # the SDK: an unknown model kind for this endpoint
        client.audio.transcriptions.create(model="tts-1", file=("a.wav", wav_bytes(0.1), "audio/wav"))
    assert fakes["openai"].requests == [] and spent(gateway, c.account_id) == 0


# ---------------------------------------------------------------- image edits and variations

def png(color: tuple[int, int, int] = (0, 128, 255)) -> bytes:
    from tests.support.fakes.common import _png
    return _png(4, 4, (*color, 255))


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-2"])
def test_image_edit_openai(model: str, gateway, fakes, paying) -> None:
    c, client = paying
    kwargs = {"mask": ("mask.png", png((0, 0, 0)), "image/png")} if model == "dall-e-2" else {}
    images = ("a.png", png(), "image/png") if model == "dall-e-2" else [("a.png", png(), "image/png"),
                                                                         ("b.png", png((9, 9, 9)), "image/png")]
    r = client.images.edit(model=model, image=images, prompt="Add a hat", n=1, size="1024x1024", **kwargs)
    assert len(r.data) == 1 and base64.b64decode(r.data[0].b64_json).startswith(b"\x89PNG")
    sent = fakes["openai"].last
    assert sent.path == "/v1/images/edits" and sent.body["prompt"] == "Add a hat"
    assert fakes["openai"].spec_errors == [] and fakes["openai"].response_spec_errors == []
    entry = history(gateway, c.account_id)[0]
    assert entry["endpoint"] == "/v1/images/edits" and entry["images"] == 1
    assert entry["cost"] == spent(gateway, c.account_id) > 0
    if model == "dall-e-2":
        assert entry["cost"] == 20_000_000   # $0.02 for 1024x1024


def test_image_variation_dalle2(gateway, fakes, paying) -> None:
    c, client = paying
    r = client.images.create_variation(model="dall-e-2", image=("a.png", png(), "image/png"), n=2, size="256x256")
    assert len(r.data) == 2
    assert fakes["openai"].last.path == "/v1/images/variations" and fakes["openai"].spec_errors == []
    assert history(gateway, c.account_id)[0]["cost"] == 2 * 16_000_000 == spent(gateway, c.account_id)
    with pytest.raises(openai.BadRequestError):   # Gemini's image models have no variations
        client.images.create_variation(model="gemini-2.5-flash-image", image=("a.png", png(), "image/png"))


def test_image_edit_gemini(gateway, fakes, paying) -> None:
    c, client = paying
    r = client.images.edit(model="gemini-2.5-flash-image", image=[("a.png", png(), "image/png"),
                                                                  ("b.jpg", png(), "image/png")],
                           prompt="Merge them", size="1536x1024")
    assert r.data and r.data[0].b64_json
    sent = fakes["gemini"].last.body
    parts = sent["contents"][0]["parts"]
    assert parts[0] == {"text": "Merge them"}
    assert [p["inlineData"]["mimeType"] for p in parts[1:]] == ["image/png", "image/png"]
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == png()
    assert sent["generationConfig"]["imageConfig"] == {"aspectRatio": "3:2"}
    assert fakes["gemini"].spec_errors == []
    assert history(gateway, c.account_id)[0]["cost"] == spent(gateway, c.account_id) > 0


def test_image_edit_bad_input(gateway, fakes, paying) -> None:
    c, _ = paying
    url, auth = f"{gateway.base_url}/v1/images/edits", {"Authorization": f"Bearer {c.secret}"}
    cases = [
        ({"files": {"model": (None, "gpt-image-1"), "prompt": (None, "x")}}, "'image' is required"),
        ({"files": {"model": (None, "gpt-image-1"), "prompt": (None, "x"),
                    "image": ("a.gif", b"GIF89a", "image/gif")}}, "PNG, JPEG or WebP"),
        ({"files": {"model": (None, "gpt-image-1"), "image": ("a.png", png(), "image/png")}}, "'prompt' is required"),
        ({"files": [("model", (None, "gpt-image-1")), ("prompt", (None, "x"))]
          + [("image[]", (f"{i}.png", png(), "image/png")) for i in range(17)]}, "too many images"),
        ({"files": [("model", (None, "gpt-image-1")), ("prompt", (None, "x" * 200_000)),
                    ("image", ("a.png", png(), "image/png"))]}, "exceeds"),
        ({"files": [("model", (None, "gpt-image-1")), ("prompt", (None, "x"))]
          + [(f"f{i}", (None, "1")) for i in range(70)] + [("image", ("a.png", png(), "image/png"))]}, "too many parts"),
    ]
    for kwargs, words in cases:
        r = httpx.post(url, headers=auth, **kwargs)
        assert r.status_code == 400 and words in r.json()["message"], (words, r.text)
    assert fakes["openai"].requests == [] and spent(gateway, c.account_id) == 0


def test_an_upload_gets_the_upload_deadline(tmp_path, gateway_env, fakes) -> None:
    """Transcribing long audio takes the provider longer than a chat answer: an upload waits
    `server.upload_timeout_ms`, not the provider's 8 s (here 300 ms against an answer 800 ms late)."""
    import yaml

    from tests.support.gateway_server import GatewayServer, copy_root
    root = copy_root(tmp_path)
    path = root / "config" / "gateway.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["upstream"]["timeout_ms"] = 300
    path.write_text(yaml.safe_dump(doc))
    with GatewayServer(root, gateway_env) as server:
        c = make_customer(server, usd="5")
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=c.secret, max_retries=0, timeout=30)
        fakes["openai"].reply(delay_ms=800)
        r = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav_bytes(0.2), "audio/wav"))
        assert r.text.startswith("fake transcript")
        fakes["openai"].reply(delay_ms=800)
        with pytest.raises(openai.InternalServerError) as exc:   # a JSON call keeps the provider's deadline
            client.embeddings.create(model="text-embedding-3-small", input="x")
        assert exc.value.status_code == 503 and "timeout after 300 ms" in exc.value.response.json()["message"]
