"""JSON Schemas of the config file kinds (gateway/schemas/*.schema.yaml), compiled once."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@cache
def _validator(kind: str) -> Draft202012Validator:
    schema = yaml.safe_load((SCHEMA_DIR / f"{kind}.schema.yaml").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(kind: str, doc: Any) -> list[tuple[str, str]]:
    """(dotted path, message) for every schema violation, in document order."""
    out = []
    for error in sorted(_validator(kind).iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        path = ""
        for part in error.absolute_path:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append((path, _message(error)))
    return out


def _message(error: Any) -> str:
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown field(s)")
    if error.validator in ("anyOf", "oneOf") and error.context:
        best = min(error.context, key=lambda e: len(e.message))
        return f"{best.message} (or another allowed form)"
    return error.message
