"""Adapters between OpenAI's own API shapes (Responses ↔ chat, text completions → chat), written in
the same YAML + Jinja as the wire formats and compiled the same way. They ship with the engine
(gateway/adapters/*.yaml): they know no provider, only OpenAI's shapes on both sides."""

from __future__ import annotations

from pathlib import Path

import yaml
from jinja2.sandbox import SandboxedEnvironment

from gateway.translate.wire_operation import Operation
from gateway.translate.tree import compile_tree

ADAPTER_DIR = Path(__file__).resolve().parent.parent / "adapters"


def load_adapters(env: SandboxedEnvironment) -> dict[str, Operation]:
    adapters: dict[str, Operation] = {}
    for path in sorted(ADAPTER_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        where = f"gateway/adapters/{path.name}"
        macros = {name: compile_tree(tree, env, f"{where}: macros.{name}") for name, tree in (doc.get("macros") or {}).items()}
        adapters[doc["adapter"]] = Operation(doc["adapter"], doc["operation"], env, macros, f"{where}: operation")
    return adapters
