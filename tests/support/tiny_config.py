"""A config root of the unit tests' own: the repo's wire formats (the engine's templates) with two providers
and a handful of models whose names say what they are, so routing and billing tests do not depend on the
shipped catalogue, routes or prices (which operators edit)."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.config import Config, load_config
from tests.support import REPO

MODELS = """\
models:
  a-chat: {kind: chat, enabled: true}
  o-chat: {kind: chat, enabled: true, max_output_tokens: 1000}
  o-big: {kind: chat, enabled: true, max_output_tokens: 100000}
  o-resp: {kind: responses, enabled: true}
  o-text: {kind: completion, enabled: true}
  o-img: {kind: image, enabled: true}
  o-voice: {kind: speech, enabled: false, reason: no endpoint for speech}
  o-off: {kind: chat, enabled: false, reason: retired}
"""
# chatty speaks the anthropic wire (chat only), full the openai wire (chat, responses, completion, image)
ROUTING = """\
routes:
  - match: [a-*]
    primary: chatty
    fallback: full
  - match: [o-*]
    primary: full
"""
PRICES = """\
markup_percent: "10"
models:
  a-chat: {input: "3", output: "15"}
  o-chat: {input: "1", cached_input: "0.5", output: "4"}
  o-big: {input: "1", output: "4"}
  o-resp: {input: "2", output: "8"}
  o-text: {input: "1", output: "1"}
  o-img: {per_image: {"1024x1024/low": "0.01", "*/*": "0.2"}}
"""
DEFAULT_MAX_OUTPUT_TOKENS = 4096  # config/gateway.yaml is absent: the built-in default


def tiny_root(dest: Path) -> Path:
    """Write the tiny config root into `dest` (which must not hold one yet)."""
    (dest / "config").mkdir(parents=True)
    (dest / "pricing.d").mkdir()
    shutil.copytree(REPO / "providers.d" / "wire", dest / "providers.d" / "wire")
    (dest / "config" / "models.yaml").write_text(MODELS)
    (dest / "config" / "routing.yaml").write_text(ROUTING)
    for name, wire in (("chatty", "anthropic"), ("full", "openai")):
        (dest / "providers.d" / f"{name}.yaml").write_text(
            f'wire: {wire}\nbase_url: "http://127.0.0.1:9"\napi_key: "k"\n')
    (dest / "pricing.d" / "tiny.yaml").write_text(PRICES)
    return dest


def tiny_config(dest: Path) -> Config:
    return load_config(tiny_root(dest), {})
