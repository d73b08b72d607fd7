"""The one locked-down Jinja environment every template is compiled in.

Sandboxed, StrictUndefined, autoescape off (we never produce HTML here), and only the filters and
globals registered below. Templates never build JSON text: an expression leaf evaluates to a Python
value and the engine serialises the finished tree.
"""

from __future__ import annotations

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from gateway.translate import filters


class Omit:
    """Returned by an expression to drop its key (or list item) from the tree."""

    _instance: "Omit | None" = None

    def __new__(cls) -> "Omit":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "omit"

    def __bool__(self) -> bool:
        return False


OMIT = Omit()


def make_environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    from gateway.translate.tree import map_tree  # tree imports OMIT from here

    env.filters.update(filters.FILTERS)
    env.filters["map_tree"] = map_tree
    env.globals.clear()
    env.globals.update({"omit": OMIT, "none": None, "true": True, "false": False})
    return env
