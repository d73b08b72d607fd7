"""Shared test helpers: the repo's config, one representative model per provider, fixture loading."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import redis

from gateway.config import Config, load_config
from tests.support.redis_target import redis_url
from tests.support.stand_ins import with_stand_ins

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "golden" / "fixtures"

# which official spec and schema a wire operation's request / answer must satisfy
WIRE_RESPONSE_SCHEMA = {
    ("openai", "chat"): ("openai", "CreateChatCompletionResponse"),
    ("openai", "responses"): ("openai", "Response"),
    ("openai", "image"): ("openai", "ImagesResponse"),
    ("anthropic", "chat"): ("anthropic", "Message"),
    ("gemini", "chat"): ("gemini", "GenerateContentResponse"),
    ("gemini", "image"): ("gemini", "GenerateContentResponse"),
    ("openai", "embedding"): ("openai", "CreateEmbeddingResponse"),
    ("gemini", "embedding"): ("gemini", "BatchEmbedContentsResponse"),
    ("gemini", "speech"): ("gemini", "GenerateContentResponse"),
    ("anthropic", "messages"): ("anthropic", "Message"),
    ("gemini", "generate"): ("gemini", "GenerateContentResponse"),
}
# a wire's answers recorded for one operation that another operation gets too (its client's own API)
SAME_ANSWERS = {("anthropic", "chat"): ("messages",), ("gemini", "chat"): ("generate",)}
# the OpenAI schema a client's answer on each endpoint must satisfy
CLIENT_SCHEMA = {"chat": ("openai", "CreateChatCompletionResponse"), "responses": ("openai", "Response"),
                 "completion": ("openai", "CreateCompletionResponse"), "image": ("openai", "ImagesResponse"),
                 "embedding": ("openai", "CreateEmbeddingResponse"),
                 "messages": ("anthropic", "Message"), "generate": ("gemini", "GenerateContentResponse")}
# the schema of what a client sends to each endpoint (the request fixtures are checked against it too)
CLIENT_REQUEST_SCHEMA = {"chat": ("openai", "CreateChatCompletionRequest"), "responses": ("openai", "CreateResponse"),
                         "completion": ("openai", "CreateCompletionRequest"), "image": ("openai", "CreateImageRequest"),
                         "embedding": ("openai", "CreateEmbeddingRequest"),
                         "moderation": ("openai", "CreateModerationRequest"),
                         "speech": ("openai", "CreateSpeechRequest"),
                         "messages": ("anthropic", "CreateMessageParams"),
                         "generate": ("gemini", "GenerateContentRequest")}
# the smallest request of each endpoint (answers are translated back for it)
MINIMAL_REQUEST = {"chat": {"messages": [{"role": "user", "content": "hi"}]}, "responses": {"input": "hi"},
                   "completion": {"prompt": "hi"}, "image": {"prompt": "hi"},
                   "embedding": {"input": ["hello world", "hi"], "encoding_format": "float"},
                   "messages": {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
                   "generate": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}
REQUEST_SCHEMA = {("openai", "chat"): ("openai", "CreateChatCompletionRequest"),
                  ("openai", "responses"): ("openai", "CreateResponse"),
                  ("openai", "completion"): ("openai", "CreateCompletionRequest"),
                  ("openai", "image"): ("openai", "CreateImageRequest"),
                  ("anthropic", "chat"): ("anthropic", "CreateMessageParams"),
                  ("gemini", "chat"): ("gemini", "GenerateContentRequest"),
                  ("gemini", "image"): ("gemini", "GenerateContentRequest"),
                  ("openai", "embedding"): ("openai", "CreateEmbeddingRequest"),
                  ("openai", "moderation"): ("openai", "CreateModerationRequest"),
                  ("openai", "speech"): ("openai", "CreateSpeechRequest"),
                  ("gemini", "embedding"): ("gemini", "BatchEmbedContentsRequest"),
                  ("gemini", "speech"): ("gemini", "GenerateContentRequest"),
                  ("anthropic", "messages"): ("anthropic", "CreateMessageParams"),
                  ("gemini", "generate"): ("gemini", "GenerateContentRequest")}


def __getattr__(name: str) -> Any:
    # `REDIS_URL` is decided on first use (tests.support.redis_target), not at import
    if name == "REDIS_URL":
        return redis_url()
    raise AttributeError(name)


@contextmanager
def private_redis_prefix() -> Iterator[str]:
    """A key prefix of the caller's own on the test Redis (the fx rate, accounts... are per prefix);
    every key under it is deleted afterwards."""
    prefix = "t" + secrets.token_hex(4)
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(redis_url())
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


def config_env(**overrides: str) -> dict[str, str]:
    """An environment with every provider configured (fake keys), plus overrides, plus a stand-in for any
    other ${VAR} without default the repo's config uses (tests.support.stand_ins)."""
    env = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test", "GEMINI_API_KEY": "gm-test",
           "XAI_API_KEY": "xai-test"}
    env.update(overrides)
    return with_stand_ins(REPO, env)


@cache
def repo_config() -> Config:
    return load_config(REPO, config_env())


# the model each provider's golden tests use; any other provider gets its first enabled chat model
REPRESENTATIVE = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash",
                  "xai": "grok-3-mini"}


def chat_model_for(provider: str, cfg: Config | None = None) -> str:
    """A representative enabled chat model whose primary route is `provider` (in `cfg`, default the repo's)."""
    cfg = cfg or repo_config()
    preferred = cfg.models.get(REPRESENTATIVE.get(provider, ""))
    if preferred is not None and preferred.enabled:
        return preferred.name
    for name, model in cfg.models.items():
        if model.enabled and model.kind == "chat":
            route = next((r for r in cfg.routes if r.matches(name)), None)
            if route is not None and route.primary == provider:
                return name
    raise LookupError(f"no enabled chat model has {provider!r} as its primary provider")


IMAGE_MODEL = {"openai": "gpt-image-1", "gemini": "gemini-2.5-flash-image", "xai": "grok-imagine-image"}
RESPONSES_ONLY_MODEL = {"openai": "gpt-5-codex"}


def model_for(provider: str, endpoint: str, cfg: Config | None = None) -> str | None:
    """The model a golden test uses for `provider` on `endpoint` (None: the provider serves none there)."""
    if endpoint == "image":
        return IMAGE_MODEL.get(provider)
    if endpoint in MEDIA_MODEL:  # issue 20's endpoints; uploads (transcription) have no JSON grid
        return MEDIA_MODEL[endpoint].get(provider)
    return chat_model_for(provider, cfg)


MEDIA_MODEL = {"embedding": {"openai": "text-embedding-3-small", "gemini": "gemini-embedding-001"},
               "moderation": {"openai": "omni-moderation-latest"},
               "speech": {"openai": "gpt-4o-mini-tts", "gemini": "gemini-2.5-flash-preview-tts"},
               # uploads have no JSON grid: tests/golden/test_media_snapshots.py renders them
               "transcription": {}, "translation": {}, "image_edit": {}, "image_variation": {}}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def request_fixtures() -> list[Path]:
    """requests/<endpoint>/<name>.json: OpenAI-shaped requests a client sends to that endpoint."""
    return sorted((FIXTURES / "requests").glob("*/*.json"))


def response_fixtures() -> list[Path]:
    """responses/<wire>/<operation>/<name>.json: what a provider answers to that wire operation."""
    return sorted((FIXTURES / "responses").glob("*/*/*.json"))
