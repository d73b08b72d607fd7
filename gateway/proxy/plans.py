"""Which wire operation serves a model of a given kind on a given endpoint, and through which adapters."""

from __future__ import annotations

from dataclasses import dataclass

# endpoint name → client path; a model's kind names its native endpoint
ENDPOINTS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "completion": "/v1/text/generations",
             "image": "/v1/images/generations"}
NATIVE_ENDPOINT = {"chat": "chat", "responses": "responses", "completion": "completion", "image": "image"}
ENDPOINT_OF_KIND = {kind: ENDPOINTS[ep] for kind, ep in NATIVE_ENDPOINT.items()}


@dataclass(frozen=True, slots=True)
class Plan:
    operation: str                 # the provider wire's operation that is called
    adapters: tuple[str, ...] = () # outermost first: the request passes them in order, the answer in reverse


def plan_for(endpoint: str, kind: str, operations: frozenset[str] | set[str]) -> Plan | None:
    """How a model of `kind` is served on `endpoint` by a wire offering `operations`, or None."""
    if endpoint == "chat":
        if kind == "chat" and "chat" in operations:
            return Plan("chat")
        if kind == "responses" and "responses" in operations:
            return Plan("responses", ("chat_via_responses",))
    elif endpoint == "responses":
        if kind in ("chat", "responses") and "responses" in operations:
            return Plan("responses")
        if kind == "chat" and "chat" in operations:
            return Plan("chat", ("responses_via_chat",))
    elif endpoint == "completion":
        if kind == "completion" and "completion" in operations:
            return Plan("completion")
        inner = plan_for("chat", kind, operations)
        if inner is not None:
            return Plan(inner.operation, ("text_via_chat",) + inner.adapters)
    elif endpoint == "image":
        if kind == "image" and "image" in operations:
            return Plan("image")
    return None
