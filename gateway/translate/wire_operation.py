"""A wire format's operations, compiled: request building, response translation, usage, errors.

An operation is either a pass-through (the client's OpenAI body goes upstream as is: no render, no
re-serialisation unless the model name must change) or a translation: a parameter table plus a
request tree, and a response tree that turns the provider's answer back into OpenAI's shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

from gateway.errors import BadRequest
from gateway.translate.faults import find_undefined
from gateway.translate.json_pieces import dumps_like
from gateway.translate.omit import OMIT
from gateway.translate.stream import MappedStream, StreamMapping
from gateway.translate.tree import MACROS_VAR, Node, TreeError, compile_tree, new_context
from gateway.usage import Usage, UsageMap, dig

_PARAM_WORDS = {"drop", "reject", "template", "pass"}


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    path: str            # appended to the provider's base_url
    body: bytes | bytearray  # the client's raw body when it passes through unchanged
    content_type: str = ""   # when not JSON (a multipart upload passed through)
    headers: tuple[tuple[str, str], ...] = ()   # besides the provider's own (they replace those of that name)
    timeout_ms: int = 0      # when not the provider's (an upload: its audio takes the provider longer)


@dataclass(frozen=True, slots=True)
class _Param:
    action: str                    # "to" | "drop" | "reject" | "template" | "pass"
    target: tuple[str, ...] = ()
    value: Node | None = None
    message: str = ""
    unless: Node | None = None


class WireOperation:
    def __init__(self, name: str, spec: Mapping[str, Any], env: SandboxedEnvironment,
                 macros: dict[str, Node], where: str) -> None:
        self.name = name
        self.label = name      # "<wire>.<operation>" once its wire has named it (the 500 of a failed translation)
        self.where = where     # the prefix of its template paths
        self.method: str = spec.get("method", "POST")
        self.passthrough: bool = bool(spec.get("passthrough", False))
        self._env = env
        self._macros = macros
        path = spec.get("path", "")
        self._path = compile_tree(path, env, f"{where}.path")
        self._path_const = path if "{" not in path else None
        self.unknown_params: str = spec.get("unknown_params", "pass" if self.passthrough else "drop")
        self._lets = [(k, compile_tree(v, env, f"{where}.let.{k}")) for k, v in (spec.get("let") or {}).items()]
        self._params = {k: _compile_param(v, env, f"{where}.params.{k}") for k, v in (spec.get("params") or {}).items()}
        self._request = compile_tree(spec["request"], env, f"{where}.request") if "request" in spec else None
        self._response = compile_tree(spec["response"], env, f"{where}.response") if "response" in spec else None
        self.finish_reasons: dict[str, str] = dict(spec.get("finish_reasons") or {})
        self.usage = UsageMap(spec.get("usage") or {})
        self.answer: str = spec.get("answer", "json")   # json | any (relayed with its type) | audio (see schema)
        self.answer_usage = UsageMap(spec["answer_usage"]) if "answer_usage" in spec else None
        stream = spec.get("stream") or {}
        # a pass-through stream is relayed as is (usage read from its events); a mapped one is translated
        self.stream_usage = UsageMap(stream.get("usage") or spec.get("usage") or {})
        # a pass-through of the client's own API relays the provider's events as they come (`relay: events`),
        # parsing only those named in `parse` (every one when none are named)
        self.relay_events: bool = stream.get("relay") == "events"
        self.stream_parse: frozenset[str] = frozenset(stream.get("parse") or ())
        # the client headers passed on upstream (e.g. an API version the client asked for), when it sent them
        self.pass_headers: tuple[bytes, ...] = tuple(h.lower().encode() for h in spec.get("pass_headers") or ())
        self.model_in_body: bool = spec.get("model_in_body", True)
        self.stream = StreamMapping(stream, env, macros, f"{where}.stream") if "events" in stream else None
        self._stream_path = self.stream.path if self.stream is not None else (
            compile_tree(stream["path"], env, f"{where}.stream.path") if "path" in stream else None)

    # -- request ---------------------------------------------------------------------------------------

    def build_request(self, body: dict[str, Any], raw: bytes | bytearray, variables: dict[str, Any]) -> UpstreamRequest:
        """`variables` holds model, upstream_model, request_id, created, max_output_tokens."""
        if self.passthrough:
            return self._passthrough_request(body, raw, variables)
        ctx = self._context(body, variables)
        payload = self._render(ctx, body)
        try:
            data = dumps_like(payload, raw)
        except TypeError as exc:  # a template left a value undefined: say where, for the log
            found = find_undefined(payload)
            if found is not None and getattr(exc, "template_path", None) is None:
                exc.template_path = f"{self.where}.request.{found[0]}".lstrip(".")  # type: ignore[attr-defined]
                exc.args = (f"renders an undefined value ({found[1]})",)
            raise
        return UpstreamRequest(self.method, self._render_path(ctx), data)

    def render_request(self, body: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
        """The translated request as a document (adapters between OpenAI's own API shapes)."""
        return self._render(self._context(body, variables), body)

    def _render(self, ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
        assignments: list[tuple[tuple[str, ...], Any]] = []
        for key, value in body.items():
            if value is None:  # OpenAI's parameters are nullable: null means "not set", so nothing to map
                continue
            param = self._params.get(key)
            if param is None:
                if self.unknown_params == "reject":
                    raise BadRequest(f"parameter '{key}' is not supported for this model")
                if self.unknown_params == "pass":
                    assignments.append(((key,), value))
                continue
            action = param.action
            if action == "template" or action == "drop":
                continue
            ctx.vars["value"] = value
            if action == "reject":
                if param.unless is not None and param.unless(ctx):
                    continue
                raise BadRequest(param.message or f"parameter '{key}' is not supported for this model")
            if action == "pass":
                assignments.append(((key,), value))
            else:
                v = param.value(ctx) if param.value is not None else value
                if v is not OMIT:
                    assignments.append((param.target, v))
        payload = self._request(ctx) if self._request is not None else {}
        for target, value in assignments:
            _deep_set(payload, target, value)
        return payload

    def _passthrough_request(self, body: dict[str, Any], raw: bytes | bytearray, variables: dict[str, Any]) -> UpstreamRequest:
        upstream_model = variables["upstream_model"]
        changed = self.model_in_body and body.get("model") != upstream_model
        drops = [k for k in body if self._params.get(k, _PASS).action == "drop"]
        if changed or drops:
            body = {k: v for k, v in body.items() if k not in drops}
            body["model"] = upstream_model
            raw = dumps_like(body, raw)
        path = self._path_const if self._path_const is not None and self._stream_path is None else \
            self._render_path(self._context(body, variables))
        return UpstreamRequest(self.method, path, raw)

    def path_for(self, body: dict[str, Any], variables: dict[str, Any]) -> str:
        return self._path_const if self._path_const is not None else str(self._path(self._context(body, variables)))

    def with_client_headers(self, request: UpstreamRequest, client_headers: Any) -> UpstreamRequest:
        """The request with the client headers this operation passes on (`pass_headers`), those it sent."""
        wanted = self.pass_headers
        passed = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in client_headers if k in wanted)
        return dataclasses.replace(request, headers=passed) if passed else request

    def start_stream(self, body: dict[str, Any], variables: dict[str, Any]) -> MappedStream:
        assert self.stream is not None
        return self.stream.start(body, variables, self.finish_reasons)

    def _render_path(self, ctx: Any) -> str:
        if self._stream_path is not None and (ctx.get("stream") or ctx.get("body", {}).get("stream") is True):
            return str(self._stream_path(ctx))
        return self._path_const if self._path_const is not None else str(self._path(ctx))

    def _context(self, body: dict[str, Any], variables: dict[str, Any], lets: bool = True) -> Any:
        """A render context; `let:` values are computed for the request side only."""
        ctx = new_context(self._env, {**variables, "body": body, MACROS_VAR: self._macros,
                                       "finish_reasons": self.finish_reasons})
        if lets:
            for name, node in self._lets:
                ctx.vars[name] = node(ctx)
        return ctx

    # -- response --------------------------------------------------------------------------------------

    def translate_response(self, upstream: Any, body: dict[str, Any], variables: dict[str, Any],
                           usage: Usage | None = None) -> tuple[Any, Usage | None]:
        """The client's answer (a dict to serialise, or None for pass-through) and the usage: the one
        given (an adapter translating an answer whose usage is known) or the one the answer reports."""
        if usage is None:
            usage = self.usage.extract(upstream)
        if self._response is None:
            return None, usage
        ctx = self._context(body, variables, lets=False)
        ctx.vars["resp"] = upstream
        u = usage or Usage()
        ctx.vars["usage"] = u.to_openai_chat()
        ctx.vars["responses_usage"] = u.to_openai_responses()
        client = self._response(ctx)
        if usage is None and self.answer_usage is not None:  # the provider reported none: our estimate
            usage = self.answer_usage.extract(client)
            if usage is not None:
                usage = dataclasses.replace(usage, estimated=True)
        return client, usage


_PASS = _Param("pass")


def _compile_param(spec: Any, env: SandboxedEnvironment, where: str) -> _Param:
    if isinstance(spec, str):
        if spec in _PARAM_WORDS:
            return _Param(spec)
        return _Param("to", tuple(spec.split(".")))
    if "reject" in spec:
        unless = compile_tree(spec["unless"], env, f"{where}.unless") if "unless" in spec else None
        return _Param("reject", message=spec["reject"], unless=unless)
    if "to" not in spec:
        raise TreeError(where, "a parameter needs `to` (a target path) or `reject`")
    value = compile_tree(spec["value"], env, f"{where}.value") if "value" in spec else None
    return _Param("to", tuple(spec["to"].split(".")), value=value)


def _deep_set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        nxt = doc.get(part)
        if not isinstance(nxt, dict):
            nxt = doc[part] = {}
        doc = nxt
    doc[path[-1]] = value


class Wire:
    """One wire format: its operations and how to read its error bodies."""

    def __init__(self, name: str, doc: Mapping[str, Any], env: SandboxedEnvironment, where: str) -> None:
        self.name = name
        self.macros: dict[str, Node] = {}
        for macro, tree in (doc.get("macros") or {}).items():
            self.macros[macro] = compile_tree(tree, env, f"{where}.macros.{macro}")
        self.operations = {op: WireOperation(op, spec, env, self.macros, f"{where}.operations.{op}")
                           for op, spec in doc["operations"].items()}
        for op in self.operations.values():
            op.label = f"{name}.{op.name}"
        self.source = ""   # the file it was read from (set by the config loader)
        self._error_paths = tuple(tuple(p.split(".")) for p in (doc.get("errors") or {}).get("message", ()))

    def error_message(self, payload: Any) -> str | None:
        for path in self._error_paths:
            v = dig(payload, path)
            if isinstance(v, str) and v:
                return v
        return None
