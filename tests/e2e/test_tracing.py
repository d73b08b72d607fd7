"""OpenTelemetry traces end to end: the gateway exports over OTLP/HTTP (protobuf) to a receiver on loopback;
the request span carries the GenAI attributes, has admission / upstream / settlement children, continues the
client's traceparent and is passed on to the provider."""

from __future__ import annotations

import httpx
import pytest

from tests.support import REPO
from tests.support.gateway_server import GatewayServer, make_customer
from tests.support.otlp_receiver import OtlpReceiver

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = "00f067aa0ba902b7"


@pytest.fixture()
def receiver():
    r = OtlpReceiver()
    yield r
    r.close()


def test_spans_exported_with_genai_attributes(receiver: OtlpReceiver, gateway_env, fakes) -> None:
    env = gateway_env | {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "gw-under-test"}
    server = GatewayServer(REPO, env)
    try:
        who = make_customer(server)
        auth = {"Authorization": f"Bearer {who.secret}"}
        r = httpx.post(server.base_url + "/v1/chat/completions", headers=auth | {
            "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"},
            json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20})
        assert r.status_code == 200, r.text
        sent = fakes["anthropic"].last.headers["traceparent"]
        bad = httpx.post(server.base_url + "/v1/chat/completions", headers=auth,
                         json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})
        assert bad.status_code == 404
    finally:
        server.close()   # the exporter sends what it still holds
    assert receiver.paths and all(p == "/v1/traces" for p in receiver.paths)
    assert all(ct == "application/x-protobuf" for ct in receiver.content_types)
    request = next(s for s in receiver.spans if s.name == "chat claude-sonnet-4-5")
    assert request.trace_id == CLIENT_TRACE and request.parent_span_id == CLIENT_PARENT   # continued
    assert request.kind == 2  # SERVER
    a = request.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["http.response.status_code"] == 200 and a["gateway.cost_usd"] > 0
    assert request.resource["service.name"] == "gw-under-test"
    # passed upstream: same trace, our request span as the parent
    assert sent == f"00-{CLIENT_TRACE}-{request.span_id}-01"
    children = {s.name: s for s in receiver.spans if s.parent_span_id == request.span_id}
    assert set(children) == {"admission", "upstream anthropic", "settlement"}
    assert children["upstream anthropic"].kind == 3  # CLIENT
    for child in children.values():
        assert child.trace_id == CLIENT_TRACE
        assert request.start_ns <= child.start_ns <= child.end_ns <= request.end_ns + 1_000_000
    failed = next(s for s in receiver.spans if s.attributes.get("http.response.status_code") == 404)
    assert failed.attributes["error.type"] == "caller_not_found"
    assert failed.trace_id != CLIENT_TRACE and failed.parent_span_id == ""   # a new trace of its own
