"""`gateway serve --workers 2` as an operator runs it: the request log (one JSON line per request, never a
secret or a prompt, checked over the whole of stderr of the run) and /metrics coherent across workers."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import fake_env
from tests.support import REPO
from tests.support.ledger import Serve
from tests.support.metrics import scrape, value
from tests.support.web import PASSWORD, Cabinet

ADMIN_TOKEN = "adm-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fakes, redis_env):
    data = tmp_path_factory.mktemp("ops-data")
    env = fake_env(fakes) | redis_env | {"GATEWAY_DATA_DIR": str(data), "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
                                         "GATEWAY_COOKIE_SECURE": "false", "GATEWAY_LOG_FORMAT": "json"}
    gw = Serve(REPO, env, workers=2)
    try:
        gw.wait_up()
        yield gw
    finally:
        gw.stop()


def _lines(log: str) -> list[dict]:
    out = []
    for line in log.splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))  # every line of stderr is JSON (request lines and the rest)
    return out


def test_request_log_and_no_secrets(served: Serve, fakes) -> None:
    prompt = f"my secret plan is {secrets.token_hex(8)}"
    password = PASSWORD
    with Cabinet(served.base) as cab:
        assert cab.signup(password=password).status_code == 303
        account = cab.account_id
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = httpx.post(f"{served.base}/admin/v1/accounts/{account}/topup", json={"usd": "5", "reason": "test"},
                   headers=admin)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{served.base}/admin/v1/accounts/{account}/keys", json={"name": "ops"}, headers=admin)
    assert r.status_code == 201, r.text
    secret = r.json()["key"]
    client = openai.OpenAI(base_url=served.base + "/v1", api_key=secret, max_retries=0, timeout=20)
    msg = [{"role": "user", "content": prompt}]
    whole = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msg, max_tokens=30)
    assert prompt in whole.parse().choices[0].message.content   # the fake echoes it: in the answer, not the log
    list(client.chat.completions.create(model="claude-sonnet-4-5", messages=msg, max_tokens=30, stream=True))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "nobody", "content": prompt}])
    traced = httpx.post(served.base + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": msg},
                        headers={"Authorization": f"Bearer {secret}", "X-Request-Id": "client-trace-7"})
    assert traced.headers["x-request-id"] == "client-trace-7"
    for _ in range(3):
        httpx.get(served.base + "/healthz")
    time.sleep(0.5)  # request lines are written in batches, within 0.2 s
    served.stop()
    log = served.log()
    for needle in (secret, secret[12:], ADMIN_TOKEN, password, prompt, "secret plan"):
        assert needle not in log, f"{needle!r} is in the log"
    lines = _lines(log)
    requests = [x for x in lines if x.get("logger") == "gateway.request"]
    by_path: dict[str, list[dict]] = {}
    for x in requests:
        by_path.setdefault(x["path"], []).append(x)
    assert "/healthz" not in by_path, "health checks are not logged"
    chats = by_path["/v1/chat/completions"]
    assert len(chats) == 4
    ok = next(x for x in chats if x["request_id"] == whole.headers["x-request-id"])
    assert ok["account_id"] == account and ok["key_prefix"] == secret[:11] and ok["key_id"].startswith("key_")
    assert ok["provider"] == "openai" and ok["endpoint"] == "chat" and "error_type" not in ok
    assert ok["input_tokens"] > 0 and ok["output_tokens"] > 0 and ok["cost_usd"] > 0
    assert ok["upstream_ms"] >= 0 and ok["overhead_ms"] >= 0 and ok["duration_ms"] >= ok["upstream_ms"]
    assert ok["stream"] is False and ok["time"].endswith("Z")
    stream = next(x for x in chats if x["stream"])
    assert stream["model"] == "claude-sonnet-4-5" and stream["status"] == 200 and stream["ttft_ms"] > 0
    bad = next(x for x in chats if x["status"] == 400)
    assert bad["error_type"] == "caller_bad_request"
    assert any(x.get("client_request_id") == "client-trace-7" for x in chats)
    assert by_path["/signup"] and by_path["/admin/v1/accounts/" + account + "/keys"][0]["endpoint"] == "admin"


def test_metrics_add_up_across_workers(tmp_path: Path, fakes, redis_env) -> None:
    env = fake_env(fakes) | redis_env | {"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_LOG_FORMAT": "text"}
    gw = Serve(REPO, env, workers=2)
    try:
        gw.wait_up()
        # index requests on fresh connections: the kernel spreads them over both workers
        n = 40
        for _ in range(n):
            assert httpx.get(gw.base + "/v1").status_code == 200
        time.sleep(2.5)  # each worker writes its figures once a second
        seen = set()
        for _ in range(8):
            samples = scrape(gw.base + "/metrics")
            seen.add(value(samples, "gateway_requests_total", endpoint="v1", status_class="2xx"))
        # wait_up's own probes are among them; every scrape, whichever worker answers, sees the same total
        assert len(seen) == 1 and seen.pop() >= n, seen
    finally:
        gw.stop()
