"""A call's charge on the call itself: the `x-gateway-cost-usd` header and `usage.cost` (USD, like
OpenRouter's usage accounting) in a JSON answer or a stream's final usage chunk, so a customer can
reconcile without the cabinet. The cost is what settlement charges (PriceBook.cost), known before the
answer goes out.

The JSON answer is not parsed again: the cost goes into its top-level `usage` object by a byte splice
(an unescaped `"usage"` key can only be a key: inside a string its quotes are escaped), or a `usage`
object is added when the answer has none. One reverse search of the body per call."""

from __future__ import annotations

_WS = b" \t\r\n"
_WS_OR_END = (b"", b" ", b"\t", b"\r", b"\n", b"}")   # what may follow `{` when usage is empty


def _skip(body: bytes, i: int) -> int:
    n = len(body)
    while i < n and body[i] in _WS:
        i += 1
    return i


def with_cost(body: bytes, cost: bytes) -> bytes:
    """`body` (a JSON object) with `"cost": <cost>` first in its `usage` object, or with
    `"usage":{"cost":…}` added when it has no usage object at all."""
    return b"".join(splice(body, cost))


def splice(body: bytes, cost: bytes) -> tuple[bytes | memoryview, ...]:
    """`with_cost` as pieces to send one after the other: a large answer is not copied for it."""
    end = len(body)
    while True:
        i = body.rfind(b'"usage"', 0, end)
        if i < 0:
            break
        if i and body[i - 1] == 0x5C:          # \"usage\" inside a string
            end = i
            continue
        if body[i + 7:i + 9] == b":{" and body[i + 9:i + 10] not in _WS_OR_END:   # compact JSON: the usual case
            view = memoryview(body)
            return view[:i + 9], b'"cost":' + cost + b",", view[i + 9:]
        j = _skip(body, i + 7)
        if j < len(body) and body[j] == 0x3A:  # :
            j = _skip(body, j + 1)
            if j < len(body) and body[j] == 0x7B:  # {
                k = _skip(body, j + 1)
                sep = b"" if k < len(body) and body[k] == 0x7D else b","
                view = memoryview(body)
                return view[:j + 1], b'"cost":' + cost + sep, view[j + 1:]
            return (body,)                      # "usage": null or a non-object: leave it alone
        end = i
    k = len(body)
    while k and body[k - 1] in _WS:
        k -= 1
    if not k or body[k - 1] != 0x7D:           # not an object: nothing to add to
        return (body,)
    inner = _skip(body, 1) if body[:1] == b"{" else 0
    sep = b"" if inner == k - 1 else b","
    view = memoryview(body)
    return view[:k - 1], sep + b'"usage":{"cost":' + cost + b"}}", view[k:]
