"""Whose fault a failed translation is: the client's request (a 400 in plain words) or the operator's
templates (the gateway's fault: a 500 "translation of <wire>.<operation> failed", logged with the template).

A client can send a value of the wrong type or shape, which a template then trips over; it cannot make a
template name a variable that does not exist, or leave an undefined value in the finished document (the
templates must say what happens when an optional field is missing). Those are the operator's mistakes,
found before start-up by `gateway config validate` (gateway.config.render_check) and, if one slips through
(a field only some requests have), answered as the gateway's fault, not blamed on the client.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Undefined, UndefinedError
from jinja2.exceptions import SecurityError

from gateway.translate.tree import TreeError

_NAME_UNDEFINED = re.compile(r"^'[^']*' is undefined$")


def is_operator_fault(exc: BaseException) -> bool:
    if isinstance(exc, UndefinedError):
        return bool(_NAME_UNDEFINED.match(str(exc)))
    if isinstance(exc, TypeError):  # orjson met a value a template left undefined
        return "Undefined" in str(exc) or str(exc).startswith("renders an undefined value")
    return isinstance(exc, (TreeError, SecurityError))


def find_undefined(doc: Any, path: str = "") -> tuple[str, str] | None:
    """Where in a rendered document an undefined value sits, and what it was: (dotted path, message)."""
    if isinstance(doc, Undefined):
        return path or "<root>", doc._undefined_message
    if isinstance(doc, dict):
        for k, v in doc.items():
            found = find_undefined(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(doc, (list, tuple)):
        for i, v in enumerate(doc):
            found = find_undefined(v, f"{path}[{i}]")
            if found:
                return found
    return None
