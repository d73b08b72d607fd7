"""JSON text of a large document without one long C call (issue 14 item 2).

orjson.dumps holds the GIL for the whole document: 80 ms for a 10 M-character string of quotes and
backslashes on the project's machine, during which the event loop cannot run even though the dump happens
in another thread. Here strings longer than PIECE are lifted out, the rest is dumped as usual, and each long
string is escaped in PIECE-character slices (JSON escaping is per character, and a Python string cannot be
sliced inside a code point), so the GIL changes hands between slices.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

PIECE = 256 * 1024


def dumps_like(doc: Any, source: bytes | bytearray) -> bytes:
    """orjson.dumps(doc) — in pieces when it was made from a large body (`source`, the raw body)."""
    return dumps(doc) if len(source) > PIECE else orjson.dumps(doc)


def dumps(doc: Any) -> bytes:
    """orjson.dumps(doc), in pieces when the document holds long strings."""
    lifted: list[str] = []
    mark = "\ue000" + secrets.token_hex(8)  # a private-use character: cannot clash with a lifted string
    skeleton = _lift(doc, lifted, mark)
    text = orjson.dumps(skeleton)
    if not lifted:
        return text
    out: list[bytes] = []
    for n, part in enumerate(text.split(f'"{mark}'.encode())):
        if n == 0:
            out.append(part)
            continue
        index, _, rest = part.partition(b'"')   # the marker's number, then what follows its closing quote
        s = lifted[int(index)]
        out.append(b'"')
        out.extend(orjson.dumps(s[i:i + PIECE])[1:-1] for i in range(0, len(s), PIECE))
        out.append(b'"')
        out.append(rest)
    return b"".join(out)


def _lift(value: Any, lifted: list[str], mark: str) -> Any:
    if isinstance(value, str):
        if len(value) > PIECE:
            lifted.append(value)
            return f"{mark}{len(lifted) - 1}"
        return value
    if isinstance(value, dict):
        return {k: _lift(v, lifted, mark) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lift(v, lifted, mark) for v in value]
    return value
