"""JSON Schemas of the config file kinds (gateway/schemas/*.schema.yaml), compiled once, and their
violations in words an operator reads: a rule stated in words rather than a regular expression, and the
closest allowed name for a typo."""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# the schemas' patterns, said in words (a pattern missing here is shown as it is)
RULES = {
    r"^[0-9]+$": "a whole number such as 8000",
    r"^0*[1-9][0-9]*$": "a positive whole number such as 4",
    r"^[0-9]+(\.[0-9]+)?$": "a non-negative decimal such as \"0.15\"",
    r"^(0*[1-9][0-9]*(\.[0-9]+)?|0*\.[0-9]*[1-9][0-9]*)$": "a positive decimal such as \"2.5\"",
    r"^[0-9]+(\.[0-9]{1,9})?$": "a non-negative decimal string such as \"0.15\" (USD, at most 9 decimals)",
    r"^[0-9]+(\.[0-9]{1,2})?$": "a non-negative amount such as \"100\" or \"99.50\" (at most 2 decimals)",
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$": "a date such as \"2026-01-31\"",
    r"^https?://[^\s]+$": "an http:// or https:// URL such as \"https://api.example.com/v1\"",
    r"^(https?://[^\s/]+(/[^\s]*)?)?$": "empty or an http:// or https:// URL",
    r"^[a-z0-9][a-z0-9_-]*$": "a lower-case name of letters, digits, '-' and '_' such as \"deepseek\"",
    r"^[a-z0-9_]+$": "a lower-case name of letters, digits and '_' such as \"openai\"",
    r"^[A-Za-z0-9-]+$": "an HTTP header name such as \"x-api-key\"",
    r"^[A-Za-z0-9_:-]+$": "letters, digits, '_', ':' and '-'",
    r"^[A-Za-z0-9][A-Za-z0-9._:-]*$": "a model name of letters, digits, '.', '_', ':' and '-'",
    r"^[a-z][a-z0-9_-]{0,31}$": "a lower-case name of at most 32 letters, digits, '-' and '_'",
    r"^[^/]+/[^/]+$": "\"<size>/<quality>\" such as \"1024x1024/standard\" (\"*\" for any)",
    r"^[A-Za-z0-9._:/-]+\*?$": "a model name, or a prefix followed by one '*' such as \"gpt-*\"",
    r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$": "a dotted path such as \"generationConfig.temperature\"",
}
_TYPES = {"integer": "a whole number", "number": "a number", "string": "a string", "boolean": "true or false",
          "object": "a mapping", "array": "a list"}


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


def did_you_mean(name: str, choices: Any) -> str:
    """' — did you mean 'x'?' for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


def _message(error: Any) -> str:
    if error.validator == "additionalProperties":
        known = list(error.schema.get("properties") or {})
        extra = [k for k in error.instance if k not in known] if isinstance(error.instance, dict) else []
        if extra:
            return "; ".join(f"unknown field '{k}'{did_you_mean(k, known)}" for k in extra)
        return error.message.replace("Additional properties are not allowed", "unknown field(s)")
    if error.validator == "enum":
        return f"{error.message}{did_you_mean(error.instance, error.validator_value)}"
    if error.validator == "pattern" and error.validator_value in RULES:
        if "propertyNames" in error.schema_path:
            return f"the name {error.instance!r} must be {RULES[error.validator_value]}"
        return f"{error.instance!r} is not {RULES[error.validator_value]}"
    if error.validator in ("anyOf", "oneOf") and error.context:
        words = _alternatives(error.validator_value)
        if words:
            return f"{error.instance!r} is not {words}"
        best = min(error.context, key=lambda e: len(e.message))
        return f"{best.message} (or another allowed form)"
    return error.message


def _alternatives(branches: list[Any]) -> str:
    """'a whole number such as 8000' for [{type: integer}, {type: string, pattern: ...}] and the like."""
    words = []
    for branch in branches:
        if not isinstance(branch, dict):
            return ""
        if "pattern" in branch:
            if branch["pattern"] not in RULES:
                return ""
            words.append(RULES[branch["pattern"]])
        elif "enum" in branch:
            words.append("one of " + ", ".join(repr(v) for v in branch["enum"]))
        elif branch.get("type") in ("integer", "number"):
            continue  # the string form's words say it (a number written plainly is fine too)
        elif branch.get("type") in _TYPES:
            words.append(_TYPES[branch["type"]])
        else:
            return ""
    return " or ".join(dict.fromkeys(words))
