"""YAML parsing for the operator's files: safe, and a mapping key given twice is an error, not a silent win.

PyYAML's safe loader keeps the last of two equal keys, so a second `gpt-4o-mini:` entry quietly replaces the
first (and disabled the model it meant to describe). This loader reports each repeat with both lines.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode


class DuplicateKeys(yaml.YAMLError):
    """Every key given twice in one mapping of a document: (dotted path, key, first line, second line)."""

    def __init__(self, duplicates: list[tuple[str, str, int, int]]) -> None:
        super().__init__(f"{len(duplicates)} duplicate key(s)")
        self.duplicates = duplicates


class _StrictLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, str, int, int]] = []

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges are allowed to repeat keys
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base constructor says so in its own words
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                self.duplicates.append((_path_of(self, node), str(key), first, line))
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _path_of(loader: _StrictLoader, node: MappingNode) -> str:
    """The dotted path of a mapping node within the document (found by a walk from the root)."""
    root = getattr(loader, "_root_node", None)
    found = _find(root, node, "") if root is not None else None
    return found or ""


def _find(current: Any, target: Any, path: str) -> str | None:
    if current is target:
        return path
    if isinstance(current, MappingNode):
        for k, v in current.value:
            found = _find(v, target, f"{path}.{k.value}" if path else str(k.value))
            if found is not None:
                return found
    elif isinstance(current, yaml.SequenceNode):
        for i, v in enumerate(current.value):
            found = _find(v, target, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def load_yaml(text: str) -> Any:
    """Parse one YAML document safely; raise DuplicateKeys naming every repeated key, or yaml.YAMLError."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        loader._root_node = node  # type: ignore[attr-defined]
        doc = loader.construct_document(node)
    finally:
        loader.dispose()
    if loader.duplicates:
        raise DuplicateKeys(loader.duplicates)
    return doc
