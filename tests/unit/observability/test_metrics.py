"""The metrics' own arithmetic: buckets, the workers' files added up, the reload hook, bounded labels."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from gateway.observability.exposition import GatewayCollector, gathered, registry_for, render
from gateway.observability.metrics import DURATION_BOUNDS, Metrics, merge
from gateway.observability.reload import config_reloaded
from gateway.usage import Usage
from tests.support import REPO


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _render(m: Metrics, folder: str | None = None) -> dict[tuple[str, frozenset], float]:
    return _samples(render(registry_for(GatewayCollector(m, folder, lambda: True, lambda e: e))).decode())


def test_a_request_lands_in_its_buckets() -> None:
    m = Metrics()
    m.request("chat", "gpt-4o-mini", "openai", 200, "", 0.3, 0.29, -1.0, Usage(100, 0, 0, 20, 5), 1500)
    m.request("chat", "gpt-4o-mini", "openai", 503, "provider_timeout", 8.0, 8.0, -1.0, None, 0)
    s = _render(m)
    labels = {("endpoint", "chat"), ("model", "gpt-4o-mini"), ("provider", "openai")}
    assert s[("gateway_requests_total", frozenset(labels | {("status_class", "2xx")}))] == 1
    assert s[("gateway_requests_total", frozenset(labels | {("status_class", "5xx")}))] == 1
    assert s[("gateway_errors_total", frozenset(labels | {("error_type", "provider_timeout")}))] == 1
    assert s[("gateway_request_duration_seconds_bucket", frozenset(labels | {("le", "0.25")}))] == 0
    assert s[("gateway_request_duration_seconds_bucket", frozenset(labels | {("le", "0.5")}))] == 1
    assert s[("gateway_request_duration_seconds_bucket", frozenset(labels | {("le", "+Inf")}))] == 2
    assert abs(s[("gateway_request_duration_seconds_sum", frozenset(labels))] - 8.3) < 1e-9
    assert abs(s[("gateway_cost_usd_total", frozenset(labels))] - 1.5e-6) < 1e-15
    out = frozenset({("gen_ai_operation_name", "chat"), ("gen_ai_provider_name", "openai"), ("endpoint", "chat"),
                     ("gen_ai_request_model", "gpt-4o-mini"), ("gen_ai_token_type", "reasoning")})
    assert s[("gen_ai_client_token_usage_sum", out)] == 5 and s[("gen_ai_client_token_usage_count", out)] == 1
    assert len(DURATION_BOUNDS) + 1 == sum(1 for k in s if k[0] == "gateway_request_duration_seconds_bucket"
                                           and ("status_class", "2xx") not in k[1])


def test_workers_files_add_up_and_dead_workers_keep_their_counts(tmp_path: Path) -> None:
    mine, theirs = Metrics(), Metrics()
    for m in (mine, theirs):
        m.request("chat", "m", "p", 200, "", 0.1, 0.05, 0.02, Usage(10, 0, 0, 5, 0), 10)
        m.in_flight = 3
    theirs.provider_failed("p", "provider_5xx")
    snap = theirs.snapshot()
    snap["pid"] = 2 ** 22 + 12345   # a worker that is gone
    (tmp_path / f"{snap['pid']}.json").write_bytes(orjson.dumps(snap))
    total = gathered(mine, str(tmp_path))
    [(key, dump)] = total["series"].items()
    assert key == ("chat", "m", "p") and dump[0] == {"2xx": 2} and dump[7] == 20
    assert total["in_flight"] == 3, "a dead worker's gauges are dropped"
    assert total["provider_failures"] == {("p", "provider_5xx"): 1}
    mine.write_to(str(tmp_path))
    assert (tmp_path / f"{os.getpid()}.json").exists()
    both = merge([mine.snapshot(), snap], {os.getpid(), snap["pid"]})
    assert both["in_flight"] == 6


def test_provider_up_follows_the_last_attempt() -> None:
    m = Metrics()
    m.provider_answered("p")
    assert _render(m)[("gateway_provider_up", frozenset({("provider", "p")}))] == 1
    m.provider_failed("p", "provider_timeout")
    assert _render(m)[("gateway_provider_up", frozenset({("provider", "p")}))] == 0
    m.provider_answered("p")
    assert _render(m)[("gateway_provider_up", frozenset({("provider", "p")}))] == 1


def test_config_reload_hook() -> None:
    from gateway.observability import metrics as module

    config = load_config(REPO)
    before = _render(module.METRICS)
    config_reloaded(config, ok=True)
    config_reloaded(config, ok=False)
    after = _render(module.METRICS)
    for result in ("success", "failure"):
        key = ("gateway_config_reloads_total", frozenset({("result", result)}))
        assert after[key] - before.get(key, 0) == 1
    [version] = [dict(k[1])["version"] for k in after if k[0] == "gateway_config_info"]
    assert version == config.version   # the version the reload machinery and the admin API name
