"""The one locked-down Jinja environment every template is compiled in.

Sandboxed, StrictUndefined, autoescape off (we never produce HTML here), and only the filters and
globals registered below. Templates never build JSON text: an expression leaf evaluates to a Python
value and the engine serialises the finished tree.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from gateway.translate import filters
from gateway.translate.omit import OMIT
from gateway.translate.tree import map_tree

# Plain-data methods templates use all the time; they are safe, so they skip the sandbox's per-call checks.
_SAFE_METHODS = {
    dict: frozenset({"get", "keys", "values", "items"}),
    str: frozenset({"startswith", "endswith", "lower", "upper", "strip", "lstrip", "rstrip", "split", "join",
                    "replace", "count", "find", "isdigit"}),
    list: frozenset({"index", "count"}),
}


class GatewayEnvironment(SandboxedEnvironment):
    """The sandbox, with fast paths for what translation does on every request: read keys of parsed JSON
    (a key wins over a same-named dict method, so `resp.items` is the provider's field) and call the
    plain-data methods above. Everything else goes through the sandbox's checks unchanged."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        cls = obj.__class__
        if cls is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        safe = _SAFE_METHODS.get(cls)
        if safe is not None and attribute in safe:
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        safe = _SAFE_METHODS.get(owner.__class__) if owner is not None else None
        if safe is not None and getattr(__obj, "__name__", "") in safe:
            return __obj(*args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def make_environment() -> SandboxedEnvironment:
    env = GatewayEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(filters.FILTERS)
    env.filters["map_tree"] = map_tree
    env.globals.clear()
    env.globals.update({"omit": OMIT, "none": None, "true": True, "false": False})
    return env
