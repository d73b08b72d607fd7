"""Upstream faults end to end: timeout → fallback, both down → 503, 429 and 400 passed on, no key → 503."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.conftest import FAKE_KEY
from tests.support import chat_model_for
from tests.support.fakes.server import start_fake
from tests.support.gateway_server import GatewayServer, copy_root

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def backup():
    with start_fake("openai", FAKE_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def fallback_gateway(tmp_path_factory, gateway_env, backup):
    """The repo's config plus a second OpenAI-compatible upstream as the OpenAI route's fallback,
    and a 500 ms timeout on the primary."""
    root = copy_root(tmp_path_factory.mktemp("root"))
    (root / "providers.d" / "openai-backup.yaml").write_text(
        'wire: openai\nbase_url: "${OPENAI_BACKUP_BASE_URL}"\napi_key: "${OPENAI_BACKUP_API_KEY}"\n')
    primary = yaml.safe_load((root / "providers.d" / "openai.yaml").read_text())
    primary["timeout_ms"] = 500
    (root / "providers.d" / "openai.yaml").write_text(yaml.safe_dump(primary))
    routing = yaml.safe_load((root / "config" / "routing.yaml").read_text())
    routing["routes"][0]["fallback"] = "openai-backup"
    (root / "config" / "routing.yaml").write_text(yaml.safe_dump(routing))
    env = gateway_env | {"OPENAI_BACKUP_BASE_URL": backup.base_url, "OPENAI_BACKUP_API_KEY": FAKE_KEY}
    with GatewayServer(root, env) as server:
        yield server


@pytest.fixture()
def fb_client(fallback_gateway, backup, customer):
    backup.reset()
    return openai.OpenAI(base_url=fallback_gateway.base_url + "/v1", api_key=customer.secret, max_retries=0, timeout=20)


def test_timeout_uses_fallback(fb_client, fakes, backup) -> None:
    fakes["openai"].reply(delay_ms=2000)
    started = time.monotonic()
    raw = fb_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    elapsed = time.monotonic() - started
    assert raw.headers["x-gateway-provider"] == "openai-backup"
    assert raw.parse().choices[0].message.content == "echo: hi"
    assert len(backup.requests) == 1
    assert 0.4 < elapsed < 1.9, "the primary must be cut at its 500 ms timeout, not awaited"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_uses_fallback(status: int, fb_client, fakes, backup) -> None:
    fakes["openai"].fail(status)
    raw = fb_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    assert raw.headers["x-gateway-provider"] == "openai-backup"
    assert len(fakes["openai"].requests) == 1 and len(backup.requests) == 1


def test_both_down_is_503(fb_client, fakes, backup) -> None:
    fakes["openai"].fail(500)
    backup.fail(503)
    with pytest.raises(openai.InternalServerError) as exc:
        fb_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert exc.value.status_code == 503
    body = exc.value.response.json()
    assert body["statusCode"] == 503 and body["error"] == "Service Unavailable"
    assert "openai-backup" in body["message"]
    assert len(fakes["openai"].requests) == 1 and len(backup.requests) == 1, "exactly one fallback attempt"


def test_connection_refused_then_503(tmp_path: Path, gateway_env, auth) -> None:
    root = copy_root(tmp_path)
    env = gateway_env | {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    with GatewayServer(root, env) as gw:
        r = httpx.post(f"{gw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                       headers=auth)
    assert r.status_code == 503
    assert "connection error" in r.json()["message"]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_upstream_429_passes_retry_after(provider: str, client: openai.OpenAI, fakes) -> None:
    fakes[provider].fail(429, retry_after="7")
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model=chat_model_for(provider), messages=MSG)
    assert exc.value.response.headers["retry-after"] == "7"
    assert exc.value.response.json()["statusCode"] == 429
    assert len(fakes[provider].requests) == 1, "a 429 is not retried on the fallback"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_upstream_400_carries_provider_message(provider: str, client: openai.OpenAI, fakes) -> None:
    fakes[provider].fail(400, message="prompt is too long: 300000 tokens > 200000 maximum")
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=chat_model_for(provider), messages=MSG)
    body = exc.value.response.json()
    assert body["statusCode"] == 400
    assert "prompt is too long" in body["message"]


def test_anthropic_overloaded_without_fallback_is_503(client: openai.OpenAI, fakes) -> None:
    fakes["anthropic"].fail(529)
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model=chat_model_for("anthropic"), messages=MSG)
    assert exc.value.status_code == 503


def test_provider_without_key_is_503_not_configured(tmp_path: Path, gateway_env, fakes, auth) -> None:
    root = copy_root(tmp_path)
    env = {k: v for k, v in gateway_env.items() if k != "ANTHROPIC_API_KEY"}
    with GatewayServer(root, env) as gw:
        r = httpx.post(f"{gw.base_url}/v1/chat/completions",
                       json={"model": chat_model_for("anthropic"), "messages": MSG}, headers=auth)
        ok = httpx.post(f"{gw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                        headers=auth)
    assert r.status_code == 503
    assert r.json()["message"] == "provider 'anthropic' is not configured (no API key)"
    assert ok.status_code == 200
    assert not fakes["anthropic"].requests


def test_stream_falls_back_before_the_first_byte(fb_client, fakes, backup) -> None:
    fakes["openai"].fail(502)
    chunks = list(fb_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hi"
    assert len(fakes["openai"].requests) == 1 and len(backup.requests) == 1


def test_stream_timeout_before_first_byte_falls_back(fb_client, fakes, backup) -> None:
    fakes["openai"].reply(delay_ms=2000)
    chunks = list(fb_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hi"
    assert len(backup.requests) == 1


def test_streaming_switched_off_answers_plain_json(tmp_path: Path, gateway_env, auth, fakes) -> None:
    """The seed's behaviour (§15) when the operator sets server.streaming: false."""
    root = copy_root(tmp_path)
    settings = yaml.safe_load((root / "config" / "gateway.yaml").read_text())
    settings["server"]["streaming"] = False
    (root / "config" / "gateway.yaml").write_text(yaml.safe_dump(settings))
    with GatewayServer(root, gateway_env) as gw:
        r = httpx.post(f"{gw.base_url}/v1/chat/completions", headers=auth,
                       json={"model": chat_model_for("anthropic"), "messages": MSG, "stream": True,
                             "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["object"] == "chat.completion" and r.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert "stream" not in fakes["anthropic"].last.body


def test_a_template_mistake_is_the_gateways_500_logged_and_not_charged(tmp_path: Path, gateway_env, fakes,
                                                                        caplog) -> None:
    """A template that passes `config validate` (the samples carry no `safety_identifier`) but names a variable that does
    not exist when a request does: the gateway's fault, not the client's 400 (issue 16 item 2)."""
    root = copy_root(tmp_path)
    wire_file = root / "providers.d" / "wire" / "anthropic.yaml"
    wire = yaml.safe_load(wire_file.read_text())
    wire["operations"]["chat"]["request"]["metadata"] = {
        "$if": "{{ body.get('safety_identifier') }}", "user_id": "{{ no_such_variable ~ body.safety_identifier }}"}
    wire_file.write_text(yaml.safe_dump(wire, sort_keys=False))
    with GatewayServer(root, gateway_env) as server:
        from tests.support.gateway_server import accounts_call, make_customer
        customer = make_customer(server, usd="5")
        auth = {"Authorization": f"Bearer {customer.secret}"}
        ok = httpx.post(server.base_url + "/v1/chat/completions", headers=auth, timeout=20,
                        json={"model": "claude-sonnet-4-5", "messages": MSG})
        assert ok.status_code == 200, ok.text
        before = accounts_call(server, lambda acc: acc.account(customer.account_id)).credited
        with caplog.at_level("ERROR", logger="gateway.proxy.forwarding"):
            r = httpx.post(server.base_url + "/v1/chat/completions", headers=auth, timeout=20,
                           json={"model": "claude-sonnet-4-5", "messages": MSG, "safety_identifier": "u1"})
        assert r.status_code == 500, r.text
        doc = r.json()
        assert set(doc) == {"statusCode", "error", "message"} and doc["statusCode"] == 500
        assert doc["message"].startswith("translation of anthropic.chat failed")
        rid = r.headers["x-request-id"]
        assert rid in doc["message"]
        logged = [rec.getMessage() for rec in caplog.records if rid in rec.getMessage()]
        assert any("operations.chat.request.metadata.user_id" in line for line in logged), logged
        assert accounts_call(server, lambda acc: acc.account(customer.account_id)).credited == before
        history = accounts_call(server, lambda acc: acc.history(customer.account_id))
        assert history[0]["status"] == 500 and int(history[0]["cost"]) == 0, history[0]


def test_a_three_line_provider_file_on_any_wire_gets_the_wires_auth_and_headers(tmp_path: Path, gateway_env,
                                                                                  fakes) -> None:
    """An Anthropic-wire backup described by `wire`, `base_url` and `api_key` only: the wire brings its auth
    header (x-api-key, no Bearer) and the required anthropic-version (issue 16 item 6)."""
    root = copy_root(tmp_path)
    (root / "providers.d" / "claude-backup.yaml").write_text(
        'wire: anthropic\nbase_url: "${CLAUDE_BACKUP_BASE_URL}"\napi_key: "${CLAUDE_BACKUP_API_KEY}"\n')
    routing = yaml.safe_load((root / "config" / "routing.yaml").read_text())
    claude = next(r for r in routing["routes"] if "claude-*" in r["match"])
    claude["primary"] = "claude-backup"
    (root / "config" / "routing.yaml").write_text(yaml.safe_dump(routing))
    env = gateway_env | {"CLAUDE_BACKUP_BASE_URL": fakes["anthropic"].base_url, "CLAUDE_BACKUP_API_KEY": FAKE_KEY}
    with GatewayServer(root, env) as server:
        from tests.support.gateway_server import make_customer
        customer = make_customer(server, usd="5")
        r = httpx.post(server.base_url + "/v1/chat/completions", timeout=20,
                       headers={"Authorization": f"Bearer {customer.secret}"},
                       json={"model": "claude-sonnet-4-5", "messages": MSG})
        assert r.status_code == 200, r.text
        assert r.headers["x-gateway-provider"] == "claude-backup"
    sent = fakes["anthropic"].requests[-1].headers
    assert sent["x-api-key"] == FAKE_KEY and "authorization" not in sent
    assert sent["anthropic-version"] == "2023-06-01"
