"""Forwarding one call to its providers: translate the request (adapters, then the wire's operation), send
it once admitted, fall back on failure, and translate the answer back — whole, or as a stream.

Data flows one way: this module calls routing's decision, translation and the upstream pools; none of them
calls back. What it returns (an Answer, or a StreamCall) and the errors it raises are all the paid call
(gateway.proxy.paid_call) needs to settle and answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TypeVar

import orjson
from jinja2 import TemplateError

from gateway.config.model import Config, Provider
from gateway.errors import (
    ERROR_SHAPES,
    BadRequest,
    GatewayError,
    InternalError,
    RateLimited,
    UpstreamUnavailable,
    error_for_status,
)
from gateway.http.upstreams import UpstreamFailure, UpstreamPool, UpstreamReply
from gateway.observability.metrics import METRICS
from gateway.observability.record import RequestRecord
from gateway.proxy.endpoints import Plan
from gateway.proxy.form_body import Form, form_document
from gateway.proxy.large_bodies import INLINE_PARSE_BYTES, INLINE_TRANSLATE_BYTES, LargeBodies
from gateway.proxy.media import media_answer
from gateway.proxy.routing import RouteDecision
from gateway.proxy.streaming import (
    Framer,
    MappedChat,
    PassthroughChat,
    PassthroughEvents,
    PassthroughResponses,
    Source,
    StreamCall,
    client_wants_usage,
    with_usage_requested,
)
from gateway.translate.adapters import Adapter
from gateway.translate.faults import is_operator_fault
from gateway.translate.json_pieces import dumps_like
from gateway.translate.stream_adapters import StreamSide
from gateway.translate.tree import template_path
from gateway.translate.wire_operation import UpstreamRequest, Wire, WireOperation
from gateway.usage import Usage

log = logging.getLogger("gateway.proxy.forwarding")
T = TypeVar("T")
Admitted = Callable[[], Awaitable[Any]]
Headers = list[tuple[bytes, bytes]] | tuple[()]

# provider statuses after which the fallback candidate is tried (our key/config at fault, or the provider)
_RETRYABLE = frozenset((401, 403, 408, 409, 500, 502, 503, 504, 520, 521, 522, 524, 529))
_UNTRANSLATABLE = (TemplateError, TypeError, KeyError, AttributeError, ValueError, IndexError)


@dataclass(slots=True)  # not frozen: cheaper to build (one per call); nobody changes it
class Answer:
    """A provider's whole answer, translated for the client."""

    body: bytes
    provider: str
    usage: Usage | None
    document: Any                  # the client's answer as a document (images are counted from it)
    content_type: bytes = b"application/json"


def form_request(op: WireOperation, form: Form, variables: dict[str, Any]) -> UpstreamRequest:
    """An upload goes upstream as it came, boundary and all (only a renamed model is spliced in)."""
    upstream_model = variables["upstream_model"]
    raw = form.raw if form.fields.get("model") == upstream_model else form.with_field("model", upstream_model)
    return UpstreamRequest(op.method, op.path_for(form.fields, variables), raw, form.content_type)


def untranslatable(exc: Exception, variables: dict[str, Any], op: WireOperation) -> Exception:
    """A request the templates cannot translate: the client's 400 in plain words when its values are at fault,
    the gateway's 500 when a template is (gateway.translate.faults) — charged nothing either way (the paid
    call settles a GatewayError at no cost). The Python details and the template go to the log."""
    if isinstance(exc, GatewayError):
        return exc
    rid = variables["request_id"]
    where = template_path(exc).lstrip(".") or op.where.lstrip(".")
    if is_operator_fault(exc):
        log.error("request %s: translation of %s failed in template %s: %s: %s", rid, op.label, where,
                  type(exc).__name__, exc)
        return InternalError(f"translation of {op.label} failed; quote request id {rid}")
    log.info("request %s cannot be translated (template %s): %s: %s", rid, where, type(exc).__name__, exc)
    return BadRequest("the request cannot be translated for this model (a field has a type or value the "
                      f"model's provider cannot take); quote request id {rid}")


class Forwarder:
    def __init__(self, config: Config, pool: UpstreamPool, large: LargeBodies | None = None) -> None:
        self._config = config
        self._pool = pool
        self._large = large
        self._adapters: dict[str, Adapter] = config.adapters

    def variables(self, decision: RouteDecision, request_id: str) -> dict[str, Any]:
        """What templates see besides the body (README: "Translation templates")."""
        m = decision.model
        return {"model": m.name, "upstream_model": m.upstream_name, "request_id": request_id,
                "rid": request_id[4:], "created": int(time.time()),
                "max_output_tokens": m.max_output_tokens or self._config.settings.default_max_output_tokens}

    async def forward(self, decision: RouteDecision, body: dict[str, Any], raw: bytes | bytearray, request_id: str,
                      admitted: Admitted, rec: RequestRecord | None = None, form: Form | None = None,
                      headers: Headers = ()) -> Answer:
        """Try the candidates in order; the first answer, or the GatewayError the client gets. Each upstream
        request is prepared first and sent only once `admitted()` returns (the admission runs in Redis
        meanwhile). `rec` (observability) gets the provider tried, the upstream time and the fallback;
        `headers`: the client's, of which a wire operation may pass some on (`pass_headers`)."""
        variables = self.variables(decision, request_id)

        async def attempt(provider: Provider, plan: Plan) -> Answer:
            wire = self._config.wire_of(provider)
            op = wire.operations[plan.operation]
            if form is not None and op.passthrough:  # an upload, forwarded as it came
                bodies, upstream_request = [body], form_request(op, form, variables)
                upstream_request = dataclasses.replace(upstream_request, timeout_ms=max(
                    provider.timeout_ms, self._config.settings.upload_timeout_ms))
                await admitted()
            elif form is not None:  # an upload a template translates: files as base64, once admitted, off the loop
                await admitted()
                assert self._large is not None
                doc = await self._large.run(form_document, form)
                bodies, upstream_request = await self._large.run(self.prepare, plan, op, doc, form.raw, variables)
            elif len(raw) <= INLINE_TRANSLATE_BYTES or self._large is None:  # the hot path: no extra await level
                bodies, upstream_request = self.prepare(plan, op, body, raw, variables)
                await admitted()
            else:
                bodies, upstream_request = await self._translated_large(admitted, self.prepare, plan, op, body, raw,
                                                                        variables)
            if op.pass_headers:
                upstream_request = op.with_client_headers(upstream_request, headers)
            started = perf_counter()
            try:
                reply = await self._pool.send(provider, upstream_request, rec.upstream_head if rec is not None else b"")
            finally:
                if rec is not None:
                    rec.upstream_time(started)
            METRICS.provider_answered(provider.name)
            self._check_status(provider, wire, reply)
            if len(reply.body) > INLINE_PARSE_BYTES and self._large is not None:
                return await self._large.run(self.translate_back, plan, op, provider, reply, bodies, variables)
            return self.translate_back(plan, op, provider, reply, bodies, variables)

        return await self._first_that_answers(decision, request_id, attempt, rec)

    async def open_stream(self, decision: RouteDecision, body: dict[str, Any], raw: bytes | bytearray,
                          request_id: str, admitted: Admitted, rec: RequestRecord | None = None,
                          headers: Headers = (), framing: str = "") -> StreamCall:
        """Start the stream on the first candidate that answers 200; before that, fall back like forward().
        `framing`: the client's stream framing when the path, not the endpoint, decides it."""
        variables = self.variables(decision, request_id)
        variables["stream"] = True

        async def attempt(provider: Provider, plan: Plan) -> StreamCall:
            wire = self._config.wire_of(provider)
            op = wire.operations[plan.operation]
            if op.stream is None and not op.passthrough:
                raise BadRequest(f"streaming is not available for model '{decision.model.name}' on this endpoint")
            if len(raw) <= INLINE_TRANSLATE_BYTES or self._large is None:
                bodies, upstream_request = self.prepare_stream(plan, op, body, raw, variables)
                await admitted()
            else:
                bodies, upstream_request = await self._translated_large(admitted, self.prepare_stream, plan, op, body,
                                                                        raw, variables)
            if op.pass_headers:
                upstream_request = op.with_client_headers(upstream_request, headers)
            started = perf_counter()
            try:
                upstream = await self._pool.open_stream(provider, upstream_request,
                                                        rec.upstream_head if rec is not None else b"")
            finally:  # to the head of the answer; the paid call adds the stream's time
                if rec is not None:
                    rec.upstream_time(started)
            METRICS.provider_answered(provider.name)
            if upstream.status != 200:
                self._check_status(provider, wire, UpstreamReply(upstream.status, upstream.headers,
                                                                 await upstream.read_all()))
            return self._stream_chain(provider.name, upstream, plan, op, bodies, variables, decision, framing)

        return await self._first_that_answers(decision, request_id, attempt, rec)

    async def _first_that_answers(self, decision: RouteDecision, request_id: str,
                                  attempt: Callable[[Provider, Plan], Awaitable[T]], rec: RequestRecord | None) -> T:
        """The primary, then the fallback on timeout, connection error or a retryable status (seed §14)."""
        last: GatewayError | None = None
        tried = ""
        for provider, plan in decision.candidates:
            if last is not None:  # moving on to the fallback (metrics, the request log)
                METRICS.fallback(decision.endpoint.name, decision.model.name, tried, provider.name)
                if rec is not None:
                    rec.fallback = provider.name
            tried = provider.name
            if rec is not None:
                rec.provider = tried
            if not provider.configured:
                last = UpstreamUnavailable(f"provider '{provider.name}' is not configured (no API key)",
                                           error_type="provider_not_configured")
                continue
            try:
                return await attempt(provider, plan)
            except UpstreamFailure as exc:
                log.warning("upstream %s failed for %s: %s%s", provider.name, request_id, exc.reason,
                            f" ({exc.detail})" if exc.detail else "")
                last = UpstreamUnavailable(f"provider '{provider.name}' unavailable: {exc.reason}",
                                           error_type=exc.kind)
                METRICS.provider_failed(provider.name, exc.kind)
        assert last is not None
        raise last

    def _check_status(self, provider: Provider, wire: Wire, reply: UpstreamReply) -> None:
        """A retryable status moves on to the fallback; any other error status is the client's answer."""
        if reply.status in _RETRYABLE:
            raise UpstreamFailure(provider.name, f"answered HTTP {reply.status}",
                                  kind="provider_5xx" if reply.status >= 500 else "provider_refused")
        if reply.status >= 400:
            raise self._client_error(provider, wire, reply)

    def _stream_chain(self, provider: str, upstream: Any, plan: Plan, op: WireOperation,
                      bodies: list[dict[str, Any]], variables: dict[str, Any], decision: RouteDecision,
                      framing: str = "") -> StreamCall:
        endpoint = decision.endpoint
        wants_usage = client_wants_usage(bodies[0])
        raw_relay = not plan.adapters
        framer = Framer(endpoint.name, variables, wants_usage, framing or endpoint.framing,
                        ERROR_SHAPES[endpoint.errors] if endpoint.errors else None)
        source: Source
        if op.stream is not None:
            source = MappedChat(op.start_stream(bodies[-1], variables), variables)
        elif op.relay_events:  # the provider's own API, which the client speaks too
            source = PassthroughEvents(op.stream_usage, op.stream_parse, framer.raw)
        elif plan.operation == "responses":
            source = PassthroughResponses(op.stream_usage, raw=raw_relay)
        else:
            source = PassthroughChat(op.stream_usage, raw=raw_relay, forward_usage=wants_usage and raw_relay)
        # the innermost adapter converts first: the stream flows up from the wire towards the client
        sides: list[StreamSide] = [self._adapters[plan.adapters[level]].stream(bodies[level], variables)
                                   for level in range(len(plan.adapters) - 1, -1, -1)]
        return StreamCall(provider, upstream, source, sides, framer,
                          usage_forwarded=isinstance(source, PassthroughChat) and wants_usage and raw_relay)

    async def _translated_large(self, admitted: Admitted, translate: Callable[..., T], *args: Any) -> T:
        """A small body is translated while Redis runs the admission (see the callers); a large one
        (gateway.proxy.large_bodies) only once admitted, so a refused request costs no translation, and in the
        thread pool, off the event loop."""
        await admitted()
        assert self._large is not None
        return await self._large.run(translate, *args)

    def prepare_stream(self, plan: Plan, op: WireOperation, body: dict[str, Any], raw: bytes | bytearray,
                       variables: dict[str, Any]) -> tuple[list[dict[str, Any]], UpstreamRequest]:
        """As prepare(), for a streaming call (pass-through asks the provider for usage in the stream)."""
        bodies, _ = self.prepare(plan, op, body, raw, variables)
        inner = bodies[-1]
        if op.passthrough and plan.operation != "responses" and not op.relay_events:
            inner = with_usage_requested(inner)
        try:  # (try/except, not a context manager: free unless something is raised; this runs per request)
            return bodies, op.build_request(inner, dumps_like(inner, raw), variables)
        except _UNTRANSLATABLE as exc:
            raise untranslatable(exc, variables, op) from None

    def prepare(self, plan: Plan, op: WireOperation, body: dict[str, Any], raw: bytes | bytearray,
                variables: dict[str, Any]) -> tuple[list[dict[str, Any]], UpstreamRequest]:
        """The upstream request, and the body as each layer saw it (client's first, the wire's last)."""
        try:
            bodies = [body]
            for name in plan.adapters:
                bodies.append(self._adapters[name].render_request(bodies[-1], variables))
            if len(bodies) > 1:
                raw = dumps_like(bodies[-1], raw)
            return bodies, op.build_request(bodies[-1], raw, variables)
        except _UNTRANSLATABLE as exc:
            raise untranslatable(exc, variables, op) from None

    def translate_back(self, plan: Plan, op: WireOperation, provider: Provider, reply: UpstreamReply,
                       bodies: list[dict[str, Any]], variables: dict[str, Any]) -> Answer:
        if op.answer != "json":
            try:
                data, usage, doc, ctype = media_answer(op, reply, bodies[-1], variables)
                return Answer(data, provider.name, usage, doc, ctype)
            except GatewayError:
                raise
            except Exception:
                log.exception("cannot translate %s answer for %s", provider.name, variables["request_id"])
                raise UpstreamUnavailable(
                    f"provider '{provider.name}' sent an answer the gateway cannot read") from None
        try:
            upstream = orjson.loads(reply.body)
            client, usage = op.translate_response(upstream, bodies[-1], variables)
            if plan.adapters:
                doc = upstream if client is None else client
                for level in range(len(plan.adapters) - 1, -1, -1):
                    doc, _ = self._adapters[plan.adapters[level]].translate_response(doc, bodies[level], variables,
                                                                                     usage)
                client = doc
            data = reply.body if client is None else orjson.dumps(client)
        except Exception as exc:
            if is_operator_fault(exc):  # a response template's mistake: the gateway's fault, not the provider's
                rid = variables["request_id"]
                log.error("request %s: translation of %s failed in template %s: %s: %s", rid, op.label,
                          template_path(exc).lstrip(".") or op.where.lstrip("."), type(exc).__name__, exc)
                raise InternalError(f"translation of {op.label} failed; quote request id {rid}") from None
            log.exception("cannot translate %s answer for %s", provider.name, variables["request_id"])
            raise UpstreamUnavailable(f"provider '{provider.name}' sent an answer the gateway cannot read",
                                      error_type="provider_bad_answer") from None
        return Answer(data, provider.name, usage, client if client is not None else upstream)

    def _client_error(self, provider: Provider, wire: Wire, reply: UpstreamReply) -> GatewayError:
        try:
            message = wire.error_message(orjson.loads(reply.body)) or ""
        except orjson.JSONDecodeError:
            message = ""
        message = message or f"provider '{provider.name}' answered HTTP {reply.status}"
        if reply.status == 429:
            headers = {"Retry-After": reply.headers["retry-after"]} if "retry-after" in reply.headers else {}
            return RateLimited(f"rate limited by provider '{provider.name}': {message}", headers=headers,
                               provider=provider.name, error_type="provider_429")
        status = reply.status if reply.status in (400, 404, 413, 422) else 400
        return error_for_status(400 if status == 422 else status, message, provider=provider.name)
