"""Adapters between OpenAI's own API shapes (Responses ↔ chat, text completions → chat), each registered
once by name with both of its sides: the whole-body side in YAML + Jinja (gateway/adapters/<name>.yaml,
compiled like a wire operation) and the stream side in Python (gateway.translate.stream_adapters). They
ship with the engine: they know no provider, only OpenAI's shapes on both sides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2.sandbox import SandboxedEnvironment

from gateway.translate.stream_adapters import (
    ChatToGenerate,
    ChatToMessages,
    ChatToResponses,
    ChatToText,
    ResponsesToChat,
    StreamSide,
)
from gateway.translate.tree import Node, TreeError, compile_tree, new_context
from gateway.translate.wire_operation import WireOperation
from gateway.usage import Usage

ADAPTER_DIR = Path(__file__).resolve().parent.parent / "adapters"

# name → the stream side of the adapter whose whole-body side is gateway/adapters/<name>.yaml
STREAM_SIDES: dict[str, type[StreamSide]] = {
    "chat_via_responses": ResponsesToChat,
    "responses_via_chat": ChatToResponses,
    "text_via_chat": ChatToText,
    "messages_via_chat": ChatToMessages,
    "generate_via_chat": ChatToGenerate,
}


@dataclass(frozen=True, slots=True)
class Adapter:
    name: str
    whole: WireOperation               # the whole-body side: request down, answer back up
    stream_side: type[StreamSide]
    count: Node | None = None          # the answer of its API's token count, given an estimate (`tokens`)
    env: SandboxedEnvironment | None = None

    def render_request(self, body: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
        return self.whole.render_request(body, variables)

    def translate_response(self, doc: Any, body: dict[str, Any], variables: dict[str, Any],
                           usage: Usage | None) -> tuple[Any, Usage | None]:
        return self.whole.translate_response(doc, body, variables, usage)

    def count_answer(self, tokens: int, body: dict[str, Any], variables: dict[str, Any]) -> Any:
        """Its API's token-count answer carrying an estimate (gateway.proxy.token_count)."""
        if self.count is None or self.env is None:
            raise TreeError(f"gateway/adapters/{self.name}.yaml", "no `count:` answer")
        return self.count(new_context(self.env, {**variables, "body": body, "tokens": tokens}))

    def stream(self, body: dict[str, Any], variables: dict[str, Any]) -> StreamSide:
        """A converter for one stream (`body`: the request as this adapter received it)."""
        return self.stream_side(self.whole, body, variables)


def load_adapters(env: SandboxedEnvironment) -> dict[str, Adapter]:
    adapters: dict[str, Adapter] = {}
    for path in sorted(ADAPTER_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        where = f"gateway/adapters/{path.name}"
        name = doc["adapter"]
        if name not in STREAM_SIDES:
            raise TreeError(where, f"adapter '{name}' has no stream side in gateway.translate.adapters.STREAM_SIDES")
        macros = {m: compile_tree(tree, env, f"{where}: macros.{m}") for m, tree in (doc.get("macros") or {}).items()}
        count = compile_tree(doc["count"], env, f"{where}: count") if "count" in doc else None
        adapters[name] = Adapter(name, WireOperation(name, doc["operation"], env, macros, f"{where}: operation"),
                                 STREAM_SIDES[name], count, env)
    missing = set(STREAM_SIDES) - set(adapters)
    if missing:
        raise TreeError("gateway/adapters", f"stream sides without a YAML file: {', '.join(sorted(missing))}")
    return adapters
