"""Errors in the inbound API's own shape (gateway/shapes/errors.yaml), same statuses as the seed's."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import (
    ERROR_SHAPES,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
    render_error,
)
from tests.support.fakes.specs import validate


@pytest.mark.parametrize("err, kind", [(Unauthorized("x"), "authentication_error"), (Forbidden("x"), "permission_error"),
                                       (NotFound("x"), "not_found_error"), (RateLimited("x"), "rate_limit_error"),
                                       (UpstreamUnavailable("x"), "overloaded_error")])
def test_messages_shape(err, kind) -> None:
    doc = orjson.loads(render_error(err, ERROR_SHAPES["messages"], "req_1"))
    assert doc == {"type": "error", "error": {"type": kind, "message": "x"}, "request_id": "req_1"}
    assert validate("anthropic", "ErrorResponse", doc) == []


@pytest.mark.parametrize("err, status", [(Unauthorized("x"), "UNAUTHENTICATED"), (Forbidden("x"), "PERMISSION_DENIED"),
                                         (NotFound("x"), "NOT_FOUND"), (RateLimited("x"), "RESOURCE_EXHAUSTED"),
                                         (UpstreamUnavailable("x"), "UNAVAILABLE")])
def test_generate_shape(err, status) -> None:
    doc = orjson.loads(render_error(err, ERROR_SHAPES["generate"]))
    assert doc == {"error": {"code": err.status, "message": "x", "status": status}}
    assert validate("gemini", "Status", doc["error"]) == []


def test_seed_shape_by_default() -> None:
    assert orjson.loads(render_error(Unauthorized("x"), None)) == {"statusCode": 401, "error": "Unauthorized",
                                                                   "message": "x"}
