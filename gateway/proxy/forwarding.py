"""The request path of a proxied call: parse → route → (admit, in flight) → translate → (admitted) → upstream → back → (settle).

Data flows one way: this module calls routing, translation and upstream; none of them calls back.
Admission and settlement (the ledger) wrap the upstream attempt and see only its outcome.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from jinja2 import TemplateError

from gateway.config.model import Config, Provider
from gateway.errors import BadRequest, GatewayError, RateLimited, UpstreamUnavailable, error_for_status
from gateway.proxy.large_bodies import INLINE_PARSE_BYTES, INLINE_TRANSLATE_BYTES, LargeBodies
from gateway.proxy.routing import Plan, RouteDecision, Router
from gateway.proxy.streaming import (
    ChatToResponses,
    ChatToText,
    Framer,
    MappedChat,
    PassthroughChat,
    PassthroughResponses,
    ResponsesToChat,
    Source,
    StreamCall,
    client_wants_usage,
    with_usage_requested,
)
from gateway.translate.json_pieces import dumps_like
from gateway.translate.wire_operation import Operation, Wire
from gateway.http.upstreams import UpstreamFailure, UpstreamPool, UpstreamReply
from gateway.usage import Usage

log = logging.getLogger("gateway.proxy.forwarding")
T = TypeVar("T")

# provider statuses after which the fallback candidate is tried (our key/config at fault, or the provider)
_RETRYABLE = frozenset((401, 403, 408, 409, 500, 502, 503, 504, 520, 521, 522, 524, 529))


@dataclass(slots=True)
class Outcome:
    """What happened to one call; the ledger settles from it and history records it."""

    status: int = 0
    provider: str = ""
    usage: Usage | None = None
    error: str = ""
    document: Any = None           # the client's answer as a document (for endpoints that read it back)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def count_images(outcome: Outcome) -> None:
    """Images are billed by count: the number of `data` items in the answer the client gets. An
    answer without any image is a failure the client can act on, not something to charge."""
    doc = outcome.document
    data = doc.get("data") if isinstance(doc, dict) else None
    if not data:
        raise BadRequest("the model generated no image for this prompt (it may have been refused)")
    usage = outcome.usage or Usage()
    outcome.usage = dataclasses.replace(usage, images=len(data))



_UNTRANSLATABLE = (TemplateError, TypeError, KeyError, AttributeError, ValueError, IndexError)


def untranslatable(exc: Exception, variables: dict[str, Any]) -> Exception:
    """A request the templates cannot translate is the client's 400, not a crash: plain words and the request
    id for the client, the Python details for the log."""
    if isinstance(exc, GatewayError):
        return exc
    rid = variables["request_id"]
    log.info("request %s cannot be translated: %s: %s", rid, type(exc).__name__, exc)
    return BadRequest("the request cannot be translated for this model (a field has a type or value the "
                      f"model's provider cannot take); quote request id {rid}")


class Pipeline:
    def __init__(self, config: Config, router: Router, pool: UpstreamPool, large: LargeBodies | None = None) -> None:
        self._config = config
        self._large = large
        self._router = router
        self._pool = pool
        self._wires: dict[str, Wire] = config.wires  # type: ignore[assignment]
        self._adapters: dict[str, Operation] = config.adapters

    def route(self, body: dict[str, Any], endpoint: str) -> RouteDecision:
        return self._router.resolve(body.get("model"), endpoint)

    def variables(self, decision: RouteDecision, request_id: str) -> dict[str, Any]:
        m = decision.model
        return {"model": m.name, "upstream_model": m.upstream_name, "request_id": request_id,
                "created": int(time.time()),
                "max_output_tokens": m.max_output_tokens or self._config.settings.default_max_output_tokens}

    async def forward(self, decision: RouteDecision, body: dict[str, Any], raw: bytes, request_id: str,
                      outcome: Outcome, admitted: Callable[[], Awaitable[Any]]) -> Reply:
        """Try the candidates in order; raise a GatewayError the client may see, or return the reply.
        Each upstream request is prepared first and sent only once `admitted()` returns (the admission
        runs in Redis meanwhile)."""
        variables = self.variables(decision, request_id)

        async def attempt(provider: Provider, plan: Plan) -> Reply:
            wire = self._wires[provider.wire]
            op = wire.operations[plan.operation]
            if len(raw) <= INLINE_TRANSLATE_BYTES or self._large is None:  # the hot path: no extra await level
                bodies, upstream_request = self.prepare(plan, op, body, raw, variables)
                await admitted()
            else:
                bodies, upstream_request = await self._translated_large(admitted, self.prepare, plan, op, body, raw,
                                                                        variables)
            reply = await self._pool.send(provider, upstream_request)
            self._check_status(provider, wire, reply, outcome)
            if len(reply.body) > INLINE_PARSE_BYTES and self._large is not None:
                return await self._large.run(self.translate_back, plan, op, provider, reply, bodies, variables,
                                             outcome)
            return self.translate_back(plan, op, provider, reply, bodies, variables, outcome)

        return await self._first_that_answers(decision, request_id, outcome, attempt)

    async def open_stream(self, decision: RouteDecision, body: dict[str, Any], raw: bytes, request_id: str,
                          endpoint: str, outcome: Outcome, admitted: Callable[[], Awaitable[Any]]) -> StreamCall:
        """Start the stream on the first candidate that answers 200; before that, fall back like forward()."""
        variables = self.variables(decision, request_id)

        async def attempt(provider: Provider, plan: Plan) -> StreamCall:
            wire = self._wires[provider.wire]
            op = wire.operations[plan.operation]
            if op.stream is None and not op.passthrough:
                raise BadRequest(f"streaming is not available for model '{decision.model.name}' on this endpoint")
            if len(raw) <= INLINE_TRANSLATE_BYTES or self._large is None:
                bodies, upstream_request = self.prepare_stream(plan, op, body, raw, variables)
                await admitted()
            else:
                bodies, upstream_request = await self._translated_large(admitted, self.prepare_stream, plan, op, body,
                                                                        raw, variables)
            upstream = await self._pool.open_stream(provider, upstream_request)
            if upstream.status != 200:
                reply = UpstreamReply(upstream.status, upstream.headers, await upstream.read_all())
                self._check_status(provider, wire, reply, outcome)
            outcome.provider = provider.name
            return self._stream_chain(provider.name, upstream, plan, op, bodies, variables, endpoint)

        return await self._first_that_answers(decision, request_id, outcome, attempt)

    async def _first_that_answers(self, decision: RouteDecision, request_id: str, outcome: Outcome,
                                  attempt: Callable[[Provider, Plan], Awaitable[T]]) -> T:
        """The primary, then the fallback on timeout, connection error or a retryable status (seed §14)."""
        last: GatewayError | None = None
        for provider, plan in decision.candidates:
            if not provider.configured:
                last = UpstreamUnavailable(f"provider '{provider.name}' is not configured (no API key)")
                continue
            try:
                return await attempt(provider, plan)
            except UpstreamFailure as exc:
                log.warning("upstream %s failed for %s: %s%s", provider.name, request_id, exc.reason,
                            f" ({exc.detail})" if exc.detail else "")
                last = UpstreamUnavailable(f"provider '{provider.name}' unavailable: {exc.reason}")
        assert last is not None
        raise last

    def _check_status(self, provider: Provider, wire: Wire, reply: UpstreamReply, outcome: Outcome) -> None:
        """A retryable status moves on to the fallback; any other error status is the client's answer."""
        if reply.status in _RETRYABLE:
            raise UpstreamFailure(provider.name, f"answered HTTP {reply.status}")
        if reply.status >= 400:
            outcome.provider = provider.name
            raise self._client_error(provider, wire, reply)
        outcome.provider = provider.name

    def _stream_chain(self, provider: str, upstream: Any, plan: Plan, op: Operation, bodies: list[dict[str, Any]],
                      variables: dict[str, Any], endpoint: str) -> StreamCall:
        client_body = bodies[0]
        wants_usage = client_wants_usage(client_body)
        raw_relay = not plan.adapters
        source: Source
        if op.stream is not None:
            source = MappedChat(op.start_stream(bodies[-1], variables), variables)
        elif plan.operation == "responses":
            source = PassthroughResponses(op.stream_usage, raw=raw_relay)
        else:
            source = PassthroughChat(op.stream_usage, raw=raw_relay, forward_usage=wants_usage and raw_relay)
        adapters: list[Any] = []
        for level in range(len(plan.adapters) - 1, -1, -1):
            name = plan.adapters[level]
            if name == "responses_via_chat":
                adapters.append(ChatToResponses(self._adapters[name], bodies[level], variables))
            elif name == "chat_via_responses":
                adapters.append(ResponsesToChat(variables))
            elif name == "text_via_chat":
                adapters.append(ChatToText(variables))
        framer = Framer(endpoint, variables, wants_usage)
        return StreamCall(provider, upstream, source, adapters, framer,
                          usage_forwarded=isinstance(source, PassthroughChat) and wants_usage and raw_relay)

    async def _translated_large(self, admitted: Callable[[], Awaitable[Any]], translate: Callable[..., T],
                                *args: Any) -> T:
        """A small body is translated while Redis runs the admission (see the callers); a large one
        (gateway.proxy.large_bodies) only once admitted, so a refused request costs no translation, and in the
        thread pool, off the event loop."""
        await admitted()
        assert self._large is not None
        return await self._large.run(translate, *args)

    def prepare_stream(self, plan: Plan, op: Operation, body: dict[str, Any], raw: bytes,
                       variables: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
        """As prepare(), for a streaming call (pass-through asks the provider for usage in the stream)."""
        bodies, _ = self.prepare(plan, op, body, raw, variables)
        inner = bodies[-1]
        if op.passthrough and plan.operation != "responses":
            inner = with_usage_requested(inner)
        try:  # (try/except, not a context manager: free unless something is raised; this runs per request)
            return bodies, op.build_request(inner, dumps_like(inner, raw), variables)
        except _UNTRANSLATABLE as exc:
            raise untranslatable(exc, variables) from None

    def prepare(self, plan: Plan, op: Operation, body: dict[str, Any], raw: bytes,
               variables: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
        """The upstream request, and the body as each layer saw it (client's first, the wire's last)."""
        try:
            bodies = [body]
            for name in plan.adapters:
                bodies.append(self._adapters[name].render_request(bodies[-1], variables))
            if len(bodies) > 1:
                raw = dumps_like(bodies[-1], raw)
            return bodies, op.build_request(bodies[-1], raw, variables)
        except _UNTRANSLATABLE as exc:
            raise untranslatable(exc, variables) from None

    def translate_back(self, plan: Plan, op: Operation, provider: Provider, reply: UpstreamReply,
                        bodies: list[dict[str, Any]], variables: dict[str, Any], outcome: Outcome) -> Reply:
        try:
            upstream = orjson.loads(reply.body)
            client, usage = op.translate_response(upstream, bodies[-1], variables)
            if plan.adapters:
                doc = upstream if client is None else client
                for level in range(len(plan.adapters) - 1, -1, -1):
                    doc, _ = self._adapters[plan.adapters[level]].translate_response(doc, bodies[level], variables, usage)
                client = doc
            data = reply.body if client is None else orjson.dumps(client)
        except Exception:  # a provider answer we cannot read is the provider's failure, not a crash
            log.exception("cannot translate %s answer for %s", provider.name, variables["request_id"])
            raise UpstreamUnavailable(f"provider '{provider.name}' sent an answer the gateway cannot read") from None
        outcome.status = 200
        outcome.usage = usage
        outcome.document = client if client is not None else upstream
        return Reply(200, data)

    def _client_error(self, provider: Provider, wire: Wire, reply: UpstreamReply) -> GatewayError:
        try:
            message = wire.error_message(orjson.loads(reply.body)) or ""
        except orjson.JSONDecodeError:
            message = ""
        message = message or f"provider '{provider.name}' answered HTTP {reply.status}"
        if reply.status == 429:
            headers = {"Retry-After": reply.headers["retry-after"]} if "retry-after" in reply.headers else {}
            return RateLimited(f"rate limited by provider '{provider.name}': {message}", headers=headers)
        status = reply.status if reply.status in (400, 404, 413, 422) else 400
        return error_for_status(400 if status == 422 else status, message)
