"""Compile a YAML tree whose string leaves may be Jinja expressions into a fast evaluator.

- `"{{ expr }}"` (the whole string) evaluates to a native Python value; `omit` drops the key/item.
- any other string containing `{{` renders as text; plain strings and scalars are literals.
- a mapping with `$if: "{{ expr }}"` is dropped when the expression is falsy.
- a mapping with `$switch: "{{ expr }}"` picks the branch whose key equals the value, else `$default`
  (or omits).
- `map_tree('name')` (a filter) applies the named macro tree to each item of a list, with `item` and
  `index` bound.

Every expression is compiled once at start-up; rendering never parses text. One Jinja Context is
made per render and shared by every expression in it (a fresh Context per expression costs ~20 µs;
a shared one ~1 µs), with `item`/`index` set in place while a macro runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import TemplateError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import consume

from gateway.translate.omit import OMIT

Node = Callable[[Context], Any]
_WHOLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{).)*)\}\}\s*$", re.DOTALL)
MACROS_VAR = "__macros"


class TreeError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def _const(value: Any) -> Node:
    return lambda ctx: value


def compile_tree(node: Any, env: SandboxedEnvironment, path: str = "") -> Node:
    """Compile one tree; raises TreeError with the dotted path of the first bad leaf."""
    if isinstance(node, str):
        return _compile_string(node, env, path)
    if isinstance(node, list):
        items = [compile_tree(v, env, f"{path}[{i}]") for i, v in enumerate(node)]

        def build_list(ctx: Context) -> list:
            out = []
            for item in items:
                v = item(ctx)
                if v is not OMIT:
                    out.append(v)
            return out

        return build_list
    if isinstance(node, Mapping):
        if "$switch" in node:
            return _compile_switch(node, env, path)
        cond = _compile_string(node["$if"], env, f"{path}.$if") if "$if" in node else None
        fields = [(str(k), compile_tree(v, env, f"{path}.{k}" if path else str(k)))
                  for k, v in node.items() if k != "$if"]
        bad = [k for k, _ in fields if k.startswith("$")]
        if bad:
            raise TreeError(f"{path}.{bad[0]}", "unknown directive (use $if or $switch)")

        def build_dict(ctx: Context) -> Any:
            if cond is not None and not cond(ctx):
                return OMIT
            out = {}
            for key, fn in fields:
                v = fn(ctx)
                if v is not OMIT:
                    out[key] = v
            return out

        return build_dict
    return _const(node)


def _compile_switch(node: Mapping[str, Any], env: SandboxedEnvironment, path: str) -> Node:
    selector = _compile_string(node["$switch"], env, f"{path}.$switch")
    cases = {str(k): compile_tree(v, env, f"{path}.{k}") for k, v in node.items()
             if k not in ("$switch", "$default")}
    default = compile_tree(node["$default"], env, f"{path}.$default") if "$default" in node else _const(OMIT)

    def switch(ctx: Context) -> Any:
        branch = cases.get(str(selector(ctx)), default)
        return branch(ctx)

    return switch


def _compile_string(text: str, env: SandboxedEnvironment, path: str) -> Node:
    if "{{" not in text and "{%" not in text:
        return _const(text)
    try:
        m = _WHOLE_EXPR.match(text)
        if m:
            root = env.compile_expression(m.group("expr").strip(), undefined_to_none=False)._template.root_render_func

            def evaluate(ctx: Context) -> Any:
                try:  # free unless something is raised (3.11 zero-cost exceptions)
                    consume(root(ctx))
                except Exception as exc:
                    _mark(exc, path)
                    raise
                return ctx.vars["result"]

            return evaluate
        root_text = env.from_string(text).root_render_func

        def render_text(ctx: Context) -> str:
            try:
                return "".join(root_text(ctx))
            except Exception as exc:
                _mark(exc, path)
                raise

        return render_text
    except TemplateError as exc:
        raise TreeError(path, f"template does not compile: {exc}") from None


def _mark(exc: BaseException, path: str) -> None:
    """Name the leaf an exception came from (the innermost one: a macro's leaf inside map_tree keeps its own),
    so the log and `gateway config validate` can say which template failed."""
    if getattr(exc, "template_path", None) is None:
        exc.template_path = path  # type: ignore[attr-defined]


def template_path(exc: BaseException) -> str:
    """The template leaf an exception was raised in ("" when not raised by a template)."""
    return getattr(exc, "template_path", None) or ""


@pass_context
def map_tree(ctx: Context, items: Any, name: str) -> list[Any]:
    """Apply macro `name` to every item; items that evaluate to `omit` are dropped."""
    macros: Mapping[str, Node] = ctx[MACROS_VAR]
    try:
        macro = macros[name]
    except KeyError:
        raise TreeError(f"map_tree('{name}')", "no such macro") from None
    missing = object()
    saved = ctx.vars.get("item", missing), ctx.vars.get("index", missing)
    out = []
    try:
        for i, item in enumerate(items or ()):
            ctx.vars["item"] = item
            ctx.vars["index"] = i
            v = macro(ctx)
            if v is not OMIT:
                out.append(v)
    finally:
        for key, value in zip(("item", "index"), saved, strict=True):
            if value is missing:
                ctx.vars.pop(key, None)
            else:
                ctx.vars[key] = value
    return out


def new_context(env: SandboxedEnvironment, variables: dict[str, Any]) -> Context:
    """One render's context: the environment's globals plus `variables`."""
    return Context(env, {**env.globals, **variables}, "tree", {})
