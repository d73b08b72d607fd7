"""Where each inbound API carries the bt_ key (gateway.auth.credential): the first source present wins."""

from __future__ import annotations

from gateway.auth import credential


def scope(headers: dict[str, str], query: str = "") -> dict:
    return {"headers": [(k.encode(), v.encode()) for k, v in headers.items()], "query_string": query.encode()}


def test_sources_in_order() -> None:
    both = scope({"x-api-key": "bt_a", "authorization": "Bearer bt_b"})
    assert credential(both, ("x-api-key", "bearer")) == b"Bearer bt_a"
    assert credential(both, ("bearer",)) == b"Bearer bt_b"
    assert credential(scope({"authorization": "Bearer bt_b"}), ("x-api-key", "bearer")) == b"Bearer bt_b"


def test_query_key() -> None:
    assert credential(scope({}, "alt=sse&key=bt_q"), ("x-goog-api-key", "?key", "bearer")) == b"Bearer bt_q"
    assert credential(scope({"x-goog-api-key": "bt_h"}, "key=bt_q"), ("x-goog-api-key", "?key")) == b"Bearer bt_h"


def test_nothing() -> None:
    assert credential(scope({}, "alt=sse"), ("x-goog-api-key", "?key", "bearer")) is None
