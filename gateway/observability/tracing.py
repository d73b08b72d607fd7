"""Optional OpenTelemetry traces: a span per request with the GenAI attributes, and child spans for the
admission, the upstream call and the settlement, exported by the official SDK's OTLP/HTTP exporter.

On when `observability.otlp_endpoint` is set (by default from OTEL_EXPORTER_OTLP_ENDPOINT; spans go to
<endpoint>/v1/traces). The SDK's own variables still apply: OTEL_TRACES_SAMPLER(_ARG) for sampling,
OTEL_BSP_* for the batch exporter, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS. A client's W3C
`traceparent` is continued, and the request's span is passed on to the provider in `traceparent`.

The child spans are recorded after the fact from the request record's perf_counter stamps (the paid call
keeps no span objects of its own): a request pays for its spans only when tracing is on.
"""

from __future__ import annotations

import time
from time import perf_counter
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.observability.record import RequestRecord

_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    def __init__(self, endpoint: str, service_name: str, operation_of: dict[str, str]) -> None:
        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        self._tracer = self._provider.get_tracer("gateway.observability")
        self._operation_of = operation_of

    def start(self, rec: RequestRecord) -> None:
        scope = rec.scope
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"traceparent" or name == b"tracestate":
                carrier[name.decode()] = value.decode("latin-1")
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        span = self._tracer.start_span(f"{scope['method']} {rec.endpoint}", context=parent, kind=SpanKind.SERVER,
                                       attributes={"http.request.method": scope["method"],
                                                   "url.path": scope["path"][:200],
                                                   "gateway.request_id": rec.request_id})
        rec.span = span
        sc = span.get_span_context()
        rec.upstream_head = f"traceparent: 00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}\r\n".encode()

    def finish(self, rec: RequestRecord) -> None:
        span = rec.span
        now_ns, now = time.time_ns(), perf_counter()

        def at(t: float) -> int:
            return now_ns - int((now - t) * 1e9)

        operation = self._operation_of.get(rec.endpoint, "")
        if operation and rec.model:
            span.update_name(f"{operation} {rec.model}")   # GenAI semantic conventions: "{operation} {model}"
        attrs: dict[str, Any] = {"http.response.status_code": rec.status, "gateway.endpoint": rec.endpoint}
        if operation:
            attrs["gen_ai.operation.name"] = operation
        if rec.model:
            attrs["gen_ai.request.model"] = rec.model
        if rec.provider:
            attrs["gen_ai.provider.name"] = rec.provider
        usage = rec.usage
        if usage is not None:
            attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
            attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
            if usage.cached_input_tokens:
                attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
            if usage.reasoning_tokens:
                attrs["gen_ai.usage.reasoning_tokens"] = usage.reasoning_tokens
        if rec.caller is not None:
            attrs["gateway.account_id"] = rec.caller.account_id
            attrs["gateway.cost_usd"] = rec.cost_nano / 1e9
        if rec.stream:
            attrs["gateway.stream"] = True
            if rec.cut:
                attrs["gateway.stream_cut"] = rec.cut
        if rec.fallback:
            attrs["gateway.fallback"] = rec.fallback
        if rec.error_type:
            attrs["error.type"] = rec.error_type
        span.set_attributes(attrs)
        if rec.status >= 500 or rec.error_type.startswith(("provider_", "gateway_")):
            span.set_status(Status(StatusCode.ERROR, rec.error_type or str(rec.status)))
        parent = set_span_in_context(span)
        if rec.t_admit:
            admitted = rec.t_upstream or rec.t_settle or now
            self._tracer.start_span("admission", context=parent, start_time=at(rec.t_admit)).end(end_time=at(admitted))
        if rec.t_upstream and rec.upstream_s >= 0:
            child = self._tracer.start_span(f"upstream {rec.provider}", context=parent, kind=SpanKind.CLIENT,
                                            start_time=at(rec.t_upstream),
                                            attributes={"gen_ai.provider.name": rec.provider})
            child.end(end_time=at(rec.t_upstream + rec.upstream_s))
        if rec.t_settle:
            self._tracer.start_span("settlement", context=parent, start_time=at(rec.t_settle)).end(
                end_time=at(rec.t_settled or now))
        span.end(end_time=now_ns)

    def shutdown(self) -> None:
        self._provider.shutdown()   # exports what is still batched
