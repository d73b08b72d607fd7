"""/metrics end to end: what the SDKs' calls leave in the Prometheus figures, health checks, the headers every
answer carries, the metrics token and a metrics port of its own."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support import REPO
from tests.support.gateway_server import GatewayServer, free_port, make_customer
from tests.support.metrics import scrape, value

MSG = [{"role": "user", "content": "hi"}]


def test_calls_show_in_metrics(gateway, client, fakes, auth) -> None:
    before = scrape(gateway.base_url + "/metrics")
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=20)
    chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=MSG, max_tokens=20,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=MSG)
    r = httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                   headers={"Authorization": "Bearer bt_nope"})
    assert r.status_code == 401
    after = scrape(gateway.base_url + "/metrics")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"endpoint": "chat", "model": "gpt-4o-mini", "provider": "openai"}
    assert delta("gateway_requests_total", status_class="2xx", **chat) == 1
    assert delta("gateway_request_duration_seconds_count", **chat) == 1
    assert delta("gateway_upstream_duration_seconds_count", **chat) == 1
    assert delta("gateway_overhead_seconds_count", **chat) == 1
    assert delta("gateway_cost_usd_total", **chat) > 0
    assert delta("gen_ai_client_token_usage_count", gen_ai_request_model="gpt-4o-mini", gen_ai_token_type="input",
                 gen_ai_provider_name="openai", gen_ai_operation_name="chat") == 1
    assert delta("gen_ai_client_token_usage_sum", gen_ai_request_model="gpt-4o-mini", gen_ai_token_type="output") > 0
    stream = {"endpoint": "chat", "model": "claude-sonnet-4-5", "provider": "anthropic"}
    assert delta("gateway_time_to_first_token_seconds_count", **stream) == 1
    assert delta("gen_ai_client_token_usage_sum", gen_ai_request_model="claude-sonnet-4-5",
                 gen_ai_token_type="output") > 0
    assert delta("gateway_errors_total", endpoint="chat", error_type="caller_not_found") == 1
    assert delta("gateway_errors_total", endpoint="chat", error_type="caller_auth") == 1
    assert delta("gateway_requests_total", endpoint="chat", status_class="4xx") == 2
    assert value(after, "gateway_provider_up", provider="openai") in (0.0, 1.0)
    assert value(after, "gateway_provider_last_success_timestamp_seconds", provider="anthropic") > 0
    assert value(after, "gateway_redis_up") == 1
    assert value(after, "gateway_requests_in_flight") >= 0
    assert value(after, "gateway_config_info") == 1
    # bounded labels: no account, key or free text anywhere
    text = httpx.get(gateway.base_url + "/metrics").text
    assert "no-such-model" not in text and "bt_nope" not in text and auth["Authorization"][7:] not in text


def test_policy_error_types(gateway, fakes) -> None:
    poor = make_customer(gateway, usd="0")
    limited = make_customer(gateway, usd="5", models=["claude-*"])
    before = scrape(gateway.base_url + "/metrics")
    for who, model in ((poor, "gpt-4o-mini"), (limited, "gpt-4o-mini")):
        r = httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": model, "messages": MSG},
                       headers={"Authorization": f"Bearer {who.secret}"})
        assert r.status_code == 403, r.text
    after = scrape(gateway.base_url + "/metrics")
    for kind in ("policy_balance", "policy_model_not_allowed"):
        assert (value(after, "gateway_errors_total", error_type=kind)
                - value(before, "gateway_errors_total", error_type=kind)) == 1, kind


def test_every_answer_has_request_id_and_overhead(gateway, client, auth) -> None:
    answers = [
        httpx.get(gateway.base_url + "/v1/models", headers=auth),
        httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                   headers=auth),
        httpx.post(gateway.base_url + "/v1/chat/completions", content=b"{", headers=auth),
        httpx.get(gateway.base_url + "/v1/nowhere"),
        httpx.get(gateway.base_url + "/admin/v1/accounts"),
        httpx.get(gateway.base_url + "/login"),
    ]
    for r in answers:
        assert r.headers["x-request-id"].startswith("req_"), (r.url, r.headers)
        assert float(r.headers["x-gateway-overhead-ms"]) >= 0
    assert answers[1].status_code == 200 and answers[2].status_code == 400
    # a well-formed client id is kept; anything else is replaced by ours
    mine = httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                      headers=auth | {"X-Request-Id": "trace-42.a:b"})
    assert mine.headers["x-request-id"] == "trace-42.a:b"
    assert len(mine.headers.get_list("x-request-id")) == 1
    bad = httpx.get(gateway.base_url + "/v1/models", headers=auth | {"X-Request-Id": "x" * 300})
    assert bad.headers["x-request-id"].startswith("req_")
    overhead = float(answers[1].headers["x-gateway-overhead-ms"])
    assert overhead < 5_000


def test_health(gateway) -> None:
    r = httpx.get(gateway.base_url + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx.get(gateway.base_url + "/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    r = httpx.post(gateway.base_url + "/readyz")
    assert r.status_code == 405


def test_readyz_without_redis(gateway_env, tmp_path) -> None:
    """Redis that does not answer: /readyz says why with 503 (the process itself is alive)."""
    port = free_port()  # nothing listens there
    with GatewayServer(REPO, gateway_env) as server:
        good = httpx.get(server.base_url + "/readyz")
        assert good.status_code == 200
        server.app.obs._ping = _refused(port)
        r = httpx.get(server.base_url + "/readyz")
        assert r.status_code == 503
        assert r.json()["statusCode"] == 503 and "Redis" in r.json()["message"]
        assert httpx.get(server.base_url + "/healthz").status_code == 200


def _refused(port: int):
    import asyncio

    async def ping() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    return ping


def test_metrics_token_and_port(gateway_env) -> None:
    port = free_port()
    env = gateway_env | {"GATEWAY_METRICS_TOKEN": "s3cret-scrape", "GATEWAY_METRICS_PORT": str(port)}
    with GatewayServer(REPO, env) as server:
        assert httpx.get(server.base_url + "/metrics").status_code == 404   # not on the main port
        url = f"http://127.0.0.1:{port}/metrics"
        r = httpx.get(url)
        assert r.status_code == 401 and r.json()["statusCode"] == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        samples = scrape(url, token="s3cret-scrape")
        assert value(samples, "gateway_config_info") == 1
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/elsewhere").status_code == 404
    env = gateway_env | {"GATEWAY_METRICS_TOKEN": "s3cret-scrape"}
    with GatewayServer(REPO, env) as server:
        assert httpx.get(server.base_url + "/metrics").status_code == 401
        assert value(scrape(server.base_url + "/metrics", token="s3cret-scrape"), "gateway_redis_up") == 1
