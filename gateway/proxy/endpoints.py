"""The paid endpoints, one record each: where it is, what its body must be, which models it serves and how,
how it answers and what it bills. Everything else — the route table, routing, admission, the config check,
the cabinet's catalogue — reads these records; no other module names an endpoint.

Adding an endpoint is one record here plus YAML: the wire operations it calls (providers.d/wire/), any
adapter between OpenAI shapes it needs (gateway/adapters/), and its models in config/models.yaml (README:
"Adding an endpoint").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config.model import ServerLimits
from gateway.proxy.request_body import (
    check_chat_body,
    check_embeddings_body,
    check_generate_body,
    check_image_body,
    check_image_edit_body,
    check_image_variation_body,
    check_messages_body,
    check_moderation_body,
    check_responses_body,
    check_speech_body,
    check_text_body,
    check_transcription_body,
)

BodyCheck = Callable[[dict[str, Any], ServerLimits], None]
BEARER = ("bearer",)   # OpenAI's way: Authorization: Bearer bt_...


@dataclass(frozen=True, slots=True)
class Plan:
    """How one provider serves a call: the operation of its wire that is called, and the adapters around
    it (outermost first: the request passes them in order, the answer in reverse)."""

    operation: str
    adapters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Way:
    """A model of `kind` is served by calling `operation` through `adapters` — if its provider's wire has it."""

    kind: str
    operation: str
    adapters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str                     # what history, metrics and the config call it
    path: str                     # the client's path (POST)
    check: BodyCheck              # the body's shape (400), before anyone spends on it
    ways: tuple[Way, ...]         # in order of preference; the first way of a kind without adapters is native
    streams: bool = True          # `stream: true` answers Server-Sent Events
    billed: str = "tokens"        # "tokens" (the provider's usage), "images" (the answer's data items), "input"
                                  # (input tokens only), "speech" (characters and/or tokens, output audio),
                                  # "audio" (audio length and/or tokens) or "free" (a token count: no admission,
                                  # no charge, no rate limit)
    form: bool = False            # the body is multipart/form-data (uploads), not JSON
    # -- endpoints that speak another API than OpenAI's (Messages, Gemini); the defaults are OpenAI's --
    also: tuple[str, ...] = ()    # more paths it answers on; "{model}" in a path: the model is named there
    auth: tuple[str, ...] = BEARER   # where the bt_ key may come: "bearer", a header name, "?<query key>"
    errors: str = ""              # its error body (gateway/shapes/errors.yaml); "" the seed's
    stream: bool | None = None    # whether it answers a stream, when the path says so (None: `stream: true`)
    framing: str = ""             # how its stream is framed (gateway.proxy.streaming.Framer); "" its name
    caps: tuple[str, ...] = ()    # dotted paths of the body's output cap besides max_tokens & co (billing)

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *self.also)

    @property
    def model_in_path(self) -> bool:
        return "{model}" in self.path

    def plan(self, kind: str, operations: frozenset[str] | set[str]) -> Plan | None:
        """How a model of `kind` is served here by a wire offering `operations`, or None."""
        for way in self.ways:
            if way.kind == kind and way.operation in operations:
                return Plan(way.operation, way.adapters)
        return None


ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (
    Endpoint("chat", "/v1/chat/completions", check_chat_body, (
        Way("chat", "chat"),
        Way("responses", "responses", ("chat_via_responses",)),
    )),
    Endpoint("responses", "/v1/responses", check_responses_body, (
        Way("chat", "responses"),
        Way("responses", "responses"),
        Way("chat", "chat", ("responses_via_chat",)),
    )),
    Endpoint("completion", "/v1/text/generations", check_text_body, (
        Way("completion", "completion"),
        Way("chat", "chat", ("text_via_chat",)),
        Way("responses", "responses", ("text_via_chat", "chat_via_responses")),
    )),
    Endpoint("image", "/v1/images/generations", check_image_body, (
        Way("image", "image"),
    ), streams=False, billed="images"),
    # Anthropic's Messages API: its own wire's native operation where it has one (the raw body passes),
    # else through chat
    Endpoint("messages", "/v1/messages", check_messages_body, (
        Way("chat", "messages"),
        Way("chat", "chat", ("messages_via_chat",)),
        Way("responses", "responses", ("messages_via_chat", "chat_via_responses")),
    ), auth=("x-api-key", "bearer"), errors="messages", framing="messages"),
    Endpoint("messages_count_tokens", "/v1/messages/count_tokens", check_messages_body, (
        Way("chat", "messages_count_tokens"),
        Way("chat", "chat", ("messages_via_chat",)),
        Way("responses", "responses", ("messages_via_chat", "chat_via_responses")),
    ), streams=False, billed="free", auth=("x-api-key", "bearer"), errors="messages"),
    # the Gemini API (google-genai calls /v1beta or /v1): the model and streaming are in the path
    *(Endpoint(name, f"/v1beta/models/{{model}}:{method}", check_generate_body, (
        Way("chat", "generate"),
        Way("chat", "chat", ("generate_via_chat",)),
        Way("responses", "responses", ("generate_via_chat", "chat_via_responses")),
    ), also=(f"/v1/models/{{model}}:{method}",), auth=("x-goog-api-key", "?key", "bearer"), errors="generate",
        stream=stream, framing="generate", caps=("generationConfig.maxOutputTokens",
                                                 "generation_config.max_output_tokens"))
      for name, method, stream in (("generate", "generateContent", False),
                                   ("stream_generate", "streamGenerateContent", True))),
    Endpoint("generate_count_tokens", "/v1beta/models/{model}:countTokens", check_generate_body, (
        Way("chat", "generate_count_tokens"),
        Way("chat", "chat", ("generate_via_chat",)),
        Way("responses", "responses", ("generate_via_chat", "chat_via_responses")),
    ), also=("/v1/models/{model}:countTokens",), streams=False, billed="free",
        auth=("x-goog-api-key", "?key", "bearer"), errors="generate"),
)}


# issue 20: the media endpoints (embeddings, moderations, speech, transcription, image edits)
ENDPOINTS.update({e.name: e for e in (
    Endpoint("embedding", "/v1/embeddings", check_embeddings_body, (
        Way("embedding", "embedding"),
    ), streams=False, billed="input"),
    Endpoint("moderation", "/v1/moderations", check_moderation_body, (
        Way("moderation", "moderation"),
    ), streams=False, billed="input"),
    Endpoint("speech", "/v1/audio/speech", check_speech_body, (
        Way("speech", "speech"),
    ), streams=False, billed="speech"),
    Endpoint("transcription", "/v1/audio/transcriptions", check_transcription_body, (
        Way("transcription", "transcription"),
    ), streams=False, billed="audio", form=True),
    Endpoint("translation", "/v1/audio/translations", check_transcription_body, (
        Way("transcription", "translation"),
    ), streams=False, billed="audio", form=True),
    Endpoint("image_edit", "/v1/images/edits", check_image_edit_body, (
        Way("image", "image_edit"),
    ), streams=False, billed="images", form=True),
    Endpoint("image_variation", "/v1/images/variations", check_image_variation_body, (
        Way("image", "image_variation"),
    ), streams=False, billed="images", form=True),
)})


def native_endpoint(kind: str) -> Endpoint | None:
    """The endpoint a model of `kind` is made for (served there without adapters)."""
    return next((e for e in ENDPOINTS.values() if any(w.kind == kind and not w.adapters for w in e.ways)), None)


def native_path(kind: str) -> str:
    e = native_endpoint(kind)
    return e.path if e is not None else ""
