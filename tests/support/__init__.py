"""Shared test helpers: the repo's config, one representative model per provider, fixture loading."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import redis

from gateway.config import Config, load_config

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
}
# the OpenAI schema a client's answer on each endpoint must satisfy
CLIENT_SCHEMA = {"chat": "CreateChatCompletionResponse", "responses": "Response",
                 "completion": "CreateCompletionResponse", "image": "ImagesResponse",
                 "embedding": "CreateEmbeddingResponse"}
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
                  ("gemini", "speech"): ("gemini", "GenerateContentRequest")}


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextmanager
def private_redis_prefix() -> Iterator[str]:
    """A key prefix of the caller's own on the test Redis (the fx rate, accounts... are per prefix);
    every key under it is deleted afterwards."""
    prefix = "t" + secrets.token_hex(4)
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


def config_env(**overrides: str) -> dict[str, str]:
    """An environment with every provider configured (fake keys), plus overrides."""
    env = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test", "GEMINI_API_KEY": "gm-test",
           "XAI_API_KEY": "xai-test"}
    env.update(overrides)
    return env


@cache
def repo_config() -> Config:
    return load_config(REPO, config_env())


# the model each provider's golden tests use; any other provider gets its first enabled chat model
REPRESENTATIVE = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash",
                  "xai": "grok-3-mini"}


def chat_model_for(provider: str) -> str:
    """A representative enabled chat model whose primary route is `provider`."""
    cfg = repo_config()
    preferred = cfg.models.get(REPRESENTATIVE.get(provider, ""))
    if preferred is not None and preferred.enabled:
        return preferred.name
    for name, model in cfg.models.items():
        if model.enabled and model.kind == "chat":
            route = next(r for r in cfg.routes if r.matches(name))
            if route.primary == provider:
                return name
    raise LookupError(provider)


IMAGE_MODEL = {"openai": "gpt-image-1", "gemini": "gemini-2.5-flash-image", "xai": "grok-imagine-image"}
RESPONSES_ONLY_MODEL = {"openai": "gpt-5-codex"}


def model_for(provider: str, endpoint: str) -> str | None:
    """The model a golden test uses for `provider` on `endpoint` (None: the provider serves none there)."""
    if endpoint == "image":
        return IMAGE_MODEL.get(provider)
    if endpoint in MEDIA_MODEL:  # issue 20's endpoints; uploads (transcription) have no JSON grid
        return MEDIA_MODEL[endpoint].get(provider)
    return chat_model_for(provider)


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
