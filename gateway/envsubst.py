"""`${VAR}` and `${VAR:-default}` substitution in config strings, from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingVariable(ValueError):
    pass


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Replace every ${VAR} / ${VAR:-default}; a ${VAR} with no value and no default is an error."""

    def one(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        raise MissingVariable(f"environment variable {name} is not set and has no default")

    return _VAR.sub(one, text)


def without_default(node: Any) -> set[str]:
    """The names of every ${VAR} with no default in the strings of a parsed YAML tree: the variables a
    deployment must set (an empty value counts as unset)."""
    if isinstance(node, str):
        return {m.group(1) for m in _VAR.finditer(node) if m.group(2) is None}
    if isinstance(node, dict):
        return set().union(*map(without_default, node.values()))
    if isinstance(node, list):
        return set().union(*map(without_default, node))
    return set()


def substitute_tree(node: Any, env: Mapping[str, str], path: str, errors: list[str],
                    origins: dict[str, tuple[str, ...]] | None = None) -> Any:
    """Substitute in every string of a parsed YAML tree; collect errors as 'path: message'. `origins`, when
    given, receives path → the variables whose values the environment supplied there (an error about that
    value is then blamed on the variable, not on the file)."""
    if isinstance(node, str):
        if "${" not in node:
            return node
        if origins is not None:
            from_env = tuple(m.group(1) for m in _VAR.finditer(node) if env.get(m.group(1)) not in (None, ""))
            if from_env:
                origins[path] = from_env
        try:
            return substitute(node, env)
        except MissingVariable as exc:
            errors.append(f"{path or '<root>'}: {exc}")
            return node
    if isinstance(node, dict):
        return {k: substitute_tree(v, env, f"{path}.{k}" if path else str(k), errors, origins)
                for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_tree(v, env, f"{path}[{i}]", errors, origins) for i, v in enumerate(node)]
    return node
