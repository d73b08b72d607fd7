"""The one error hierarchy the client can see, rendered in the seed's shape.

    GatewayError                     client-safe; rendered as {"statusCode", "error", "message"}
     ├── BadRequest            400   malformed body, wrong types, unsupported parameter
     ├── Unauthorized          401   missing / unknown / revoked token
     ├── Forbidden             403   balance, monthly limit, model not allowed
     ├── NotFound              404   unknown or disabled model, unknown path
     ├── MethodNotAllowed      405
     ├── PayloadTooLarge       413
     ├── RateLimited           429   our limit or the provider's (carries Retry-After)
     ├── UpstreamUnavailable   503   timeout, connection error, 5xx, provider not configured
     └── InternalError         500   anything else: a request id, never internals
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
import yaml


class GatewayError(Exception):
    status: int = 500
    # whose fault, for metrics and the request log (gateway.observability): caller_*, policy_*, provider_*,
    # or gateway_* (ours); a class gives the usual one, a raise site may name a finer one
    error_type: str = "gateway_internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, provider: str = "",
                 error_type: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = headers or {}
        self.provider = provider  # the provider whose answer this error passes on ("" when it is ours)
        if error_type:
            self.error_type = error_type

    def body(self) -> bytes:
        return error_body(self.status, self.message)


class BadRequest(GatewayError):
    status = 400
    error_type = "caller_bad_request"


class Unauthorized(GatewayError):
    status = 401
    error_type = "caller_auth"


class Forbidden(GatewayError):
    status = 403
    error_type = "policy_forbidden"


class NotFound(GatewayError):
    status = 404
    error_type = "caller_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    error_type = "caller_method"


class PayloadTooLarge(GatewayError):
    status = 413
    error_type = "caller_too_large"


class RateLimited(GatewayError):
    status = 429
    error_type = "policy_rate_limit"


class UpstreamUnavailable(GatewayError):
    status = 503
    error_type = "provider_unavailable"


class InternalError(GatewayError):
    status = 500
    error_type = "gateway_internal"


_REASONS = {s.value: s.phrase for s in HTTPStatus}


def error_body(status: int, message: str) -> bytes:
    """The seed's error JSON (§14): {"statusCode": 401, "error": "Unauthorized", "message": "..."}."""
    return orjson.dumps({"statusCode": status, "error": _REASONS.get(status, "Error"), "message": message})


def error_for_status(status: int, message: str, headers: dict[str, str] | None = None,
                     provider: str = "") -> GatewayError:
    """A client-safe error carrying an arbitrary status (e.g. a provider's 400/404/413 passed on)."""
    err = GatewayError(message, headers=headers, provider=provider,
                       error_type="caller_rejected_by_provider" if provider and status < 500 else "")
    err.status = status
    return err


class ErrorShape:
    """An inbound API's own error body (gateway/shapes/errors.yaml), for the endpoints that speak it."""

    __slots__ = ("_body", "_default", "_types", "name", "stream_event")

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self._body = spec["body"]
        self._types = {int(k): str(v) for k, v in (spec.get("types") or {}).items()}
        self._default = str(spec.get("default", "error"))
        self.stream_event: str = spec.get("stream_event") or ""

    def document(self, status: int, message: str, request_id: str = "") -> Any:
        values = {"$status": status, "$type": self._types.get(status, self._default), "$message": message,
                  "$request_id": request_id}

        def fill(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: fill(v) for k, v in node.items()}
            if isinstance(node, str):
                return values.get(node, node)
            return node

        return fill(self._body)

    def body(self, status: int, message: str, request_id: str = "") -> bytes:
        return orjson.dumps(self.document(status, message, request_id))


def load_error_shapes() -> dict[str, ErrorShape]:
    doc = yaml.safe_load((Path(__file__).parent / "shapes" / "errors.yaml").read_text(encoding="utf-8"))
    return {name: ErrorShape(name, spec) for name, spec in doc.items()}


ERROR_SHAPES: dict[str, ErrorShape] = load_error_shapes()


def render_error(err: GatewayError, shape: ErrorShape | None, request_id: str = "") -> bytes:
    """The error's body in the seed's shape, or in the inbound API's own."""
    return err.body() if shape is None else shape.body(err.status, err.message, request_id)
