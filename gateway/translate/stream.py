"""A wire's stream mapping, compiled: provider SSE events → OpenAI chat choice deltas.

    stream:
      path: "..."                 # optional: the streaming endpoint, when it is not the same path
      select: "{{ event.type }}"  # which handler an event goes to (`name` is the SSE event field)
      state: {tools: 0}           # per-request state the handlers read as `state`
      events:                     # (not `on:`, which YAML reads as `true`)
        <handler>:
          emit: "{{ [...] }}"     # a list of choice deltas: {delta: {...}, finish_reason?, index?}
          set: {key: "{{ ... }}"} # state updates, applied after emit
          fail: "{{ ... }}"       # the provider reported an error mid-stream: its message
      usage: {output_tokens: [usage.output_tokens], ...}   # read from every event, the largest value wins

The engine frames, wraps deltas into chunks, adds the usage chunk and [DONE]; mappings never see bytes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from gateway.translate.tree import MACROS_VAR, Node, compile_tree, new_context
from gateway.usage import Usage, UsageMap


class StreamFailed(Exception):
    """The provider reported an error inside a stream that had already started."""


@dataclass(frozen=True, slots=True)
class _Handler:
    emit: Node | None
    sets: tuple[tuple[str, Node], ...]
    fail: Node | None


class StreamMapping:
    def __init__(self, spec: Mapping[str, Any], env: SandboxedEnvironment, macros: dict[str, Node], where: str) -> None:
        self._env = env
        self._macros = macros
        self.path = compile_tree(spec["path"], env, f"{where}.path") if "path" in spec else None
        self._select = compile_tree(spec.get("select", "{{ name or 'message' }}"), env, f"{where}.select")
        self._state = dict(spec.get("state") or {})
        self._handlers = {
            name: _Handler(
                emit=compile_tree(h["emit"], env, f"{where}.events.{name}.emit") if "emit" in h else None,
                sets=tuple((k, compile_tree(v, env, f"{where}.events.{name}.set.{k}")) for k, v in (h.get("set") or {}).items()),
                fail=compile_tree(h["fail"], env, f"{where}.events.{name}.fail") if "fail" in h else None,
            )
            for name, h in (spec.get("events") or {}).items()
        }
        self.usage = UsageMap(spec.get("usage") or {})

    def start(self, body: dict[str, Any], variables: dict[str, Any], finish_reasons: dict[str, str]) -> MappedStream:
        ctx = new_context(self._env, {**variables, "body": body, MACROS_VAR: self._macros,
                                      "finish_reasons": finish_reasons})
        ctx.vars["state"] = copy.deepcopy(self._state)
        return MappedStream(self, ctx)


class MappedStream:
    """One request's run through a stream mapping."""

    def __init__(self, mapping: StreamMapping, ctx: Context) -> None:
        self._m = mapping
        self._ctx = ctx
        self.usage: Usage | None = None

    def on_event(self, name: str, event: Any) -> tuple[list[dict[str, Any]], str | None]:
        """(choice deltas to send, an error message if the provider failed mid-stream)."""
        ctx = self._ctx
        ctx.vars["name"] = name
        ctx.vars["event"] = event
        found = self._m.usage.extract(event)
        if found is not None:
            self.usage = found if self.usage is None else merge_usage(self.usage, found)
        handler = self._m._handlers.get(str(self._m._select(ctx)))
        if handler is None:
            return [], None
        if handler.fail is not None:
            return [], str(handler.fail(ctx))
        out = handler.emit(ctx) if handler.emit is not None else []
        if handler.sets:
            state = ctx.vars["state"]
            updates = [(k, node(ctx)) for k, node in handler.sets]
            for k, v in updates:
                state[k] = v
        return list(out or ()), None


def merge_usage(a: Usage, b: Usage) -> Usage:
    """Streams report usage piecemeal and cumulatively: keep the largest count seen per field."""
    return Usage(input_tokens=max(a.input_tokens, b.input_tokens),
                 cached_input_tokens=max(a.cached_input_tokens, b.cached_input_tokens),
                 cache_write_tokens=max(a.cache_write_tokens, b.cache_write_tokens),
                 output_tokens=max(a.output_tokens, b.output_tokens),
                 reasoning_tokens=max(a.reasoning_tokens, b.reasoning_tokens))
