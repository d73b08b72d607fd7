"""GET /metrics: the workers' figures added up and rendered by prometheus_client (text format 0.0.4).

The names follow Prometheus conventions (`_total`, `_seconds`); token usage follows the OpenTelemetry GenAI
semantic conventions (`gen_ai.client.token.usage` → `gen_ai_client_token_usage`, with `gen_ai_token_type`,
`gen_ai_request_model`, `gen_ai_provider_name`, `gen_ai_operation_name`). README "Running in production" lists
every metric and what it means.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from gateway.observability.metrics import (
    DURATION_BOUNDS,
    METRICS,
    OVERHEAD_BOUNDS,
    REDIS_BOUNDS,
    TOKEN_BOUNDS,
    TOKEN_TYPES,
    TTFT_BOUNDS,
    Metrics,
    merge,
)

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
METRICS_DIR_ENV = "GATEWAY_METRICS_DIR"   # set by `gateway serve --workers N` for its workers


def _buckets(h: list[float], bounds: tuple[float, ...]) -> tuple[list[tuple[str, float]], float]:
    out, total = [], 0.0
    for bound, n in zip(bounds, h, strict=False):
        total += n
        out.append((repr(float(bound)), total))
    total += h[len(bounds)]
    out.append(("+Inf", total))
    return out, h[-1]


def _hist(family: HistogramMetricFamily, labels: list[str], h: list[float], bounds: tuple[float, ...]) -> None:
    buckets, total = _buckets(h, bounds)
    if buckets[-1][1]:
        family.add_metric(labels, buckets, total)


def _live(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gathered(metrics: Metrics, folder: str | None) -> dict[str, Any]:
    """This process's live figures plus, with several workers, every other worker's last file."""
    snaps = [metrics.snapshot()]
    me = snaps[0]["pid"]
    live = {me}
    if folder:
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if not name.endswith(".json") or name == f"{me}.json":
                    continue
                try:
                    with open(os.path.join(folder, name), "rb") as f:
                        snap = orjson.loads(f.read())
                except (OSError, orjson.JSONDecodeError):
                    continue  # a file being replaced: its worker writes it again within a second
                snaps.append(snap)
                if _live(snap["pid"]):
                    live.add(snap["pid"])
    return merge(snaps, live)


class GatewayCollector:
    """prometheus_client collector over the merged figures (asked once per scrape)."""

    def __init__(self, metrics: Metrics, folder: str | None, redis_up: Callable[[], bool],
                 operation_of: Callable[[str], str]) -> None:
        self._metrics = metrics
        self._folder = folder
        self._redis_up = redis_up
        self._operation_of = operation_of   # endpoint name → gen_ai.operation.name

    def collect(self) -> Iterator[Metric]:
        m = gathered(self._metrics, self._folder)
        labels = ["endpoint", "model", "provider"]
        requests = CounterMetricFamily("gateway_requests", "Requests answered, by status class", labels=[
            *labels, "status_class"])
        errors = CounterMetricFamily("gateway_errors", "Failed requests by whose fault: caller_*, policy_*, "
                                     "provider_* or gateway_*", labels=[*labels, "error_type"])
        duration = HistogramMetricFamily("gateway_request_duration_seconds",
                                         "From the request's arrival to the end of its answer (a stream's last "
                                         "byte)", labels=labels)
        upstream = HistogramMetricFamily("gateway_upstream_duration_seconds",
                                         "Time spent waiting on the provider (all attempts; a stream to its end)",
                                         labels=labels)
        overhead = HistogramMetricFamily("gateway_overhead_seconds",
                                         "The gateway's own time: duration minus upstream time", labels=labels)
        ttft = HistogramMetricFamily("gateway_time_to_first_token_seconds",
                                     "Streams: from the request's arrival to the first event sent", labels=labels)
        tokens = HistogramMetricFamily("gen_ai_client_token_usage", "Tokens per request by type (OpenTelemetry "
                                       "GenAI gen_ai.client.token.usage)", labels=[
                                           "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model",
                                           "gen_ai_token_type", "endpoint"])
        cost = CounterMetricFamily("gateway_cost_usd", "USD charged to customers", labels=labels)
        for (endpoint, model, provider), dump in sorted(m["series"].items()):
            statuses, errs, dur, up, ovh, tt, toks, nano = dump
            lv = [endpoint, model, provider]
            for sc, n in sorted(statuses.items()):
                requests.add_metric([*lv, sc], n)
            for et, n in sorted(errs.items()):
                errors.add_metric([*lv, et], n)
            _hist(duration, lv, dur, DURATION_BOUNDS)
            _hist(upstream, lv, up, DURATION_BOUNDS)
            _hist(overhead, lv, ovh, OVERHEAD_BOUNDS)
            _hist(ttft, lv, tt, TTFT_BOUNDS)
            operation = self._operation_of(endpoint)
            for kind, h in zip(TOKEN_TYPES, toks, strict=True):
                _hist(tokens, [operation, provider, model, kind, endpoint], h, TOKEN_BOUNDS)
            if nano:
                cost.add_metric(lv, nano / 1e9)
        yield from (requests, errors, duration, upstream, overhead, ttft, tokens, cost)

        fallbacks = CounterMetricFamily("gateway_fallbacks", "Calls moved to the fallback provider",
                                        labels=["endpoint", "model", "from_provider", "to_provider"])
        for key, n in sorted(m["fallbacks"].items()):
            fallbacks.add_metric(list(key), n)
        yield fallbacks
        failures = CounterMetricFamily("gateway_provider_failures", "Provider attempts that failed (timeout, "
                                       "connection, 5xx...), fallback or not", labels=["provider", "error_type"])
        for key, n in sorted(m["provider_failures"].items()):
            failures.add_metric(list(key), n)
        yield failures
        up_g = GaugeMetricFamily("gateway_provider_up", "1 when the provider's last attempt succeeded (or none "
                                 "failed yet), 0 when it failed", labels=["provider"])
        ok_g = GaugeMetricFamily("gateway_provider_last_success_timestamp_seconds",
                                 "Unix time of the provider's last answer", labels=["provider"])
        fail_g = GaugeMetricFamily("gateway_provider_last_failure_timestamp_seconds",
                                   "Unix time of the provider's last failed attempt", labels=["provider"])
        for name in sorted(set(m["provider_ok"]) | set(m["provider_failed_at"])):
            ok, failed = m["provider_ok"].get(name, 0.0), m["provider_failed_at"].get(name, 0.0)
            up_g.add_metric([name], 1.0 if ok >= failed else 0.0)
            if ok:
                ok_g.add_metric([name], ok)
            if failed:
                fail_g.add_metric([name], failed)
        yield from (up_g, ok_g, fail_g)

        rtt = HistogramMetricFamily("gateway_redis_rtt_seconds", "Round trip of a PING to Redis (every 5 s per "
                                    "worker)", labels=[])
        _hist(rtt, [], m["redis_rtt"], REDIS_BOUNDS)
        yield rtt
        rfail = CounterMetricFamily("gateway_redis_failures", "Redis failures: probe (a PING failed or missed its "
                                    "deadline), breaker_open (the paid path stopped calling Redis)", labels=["kind"])
        for kind, n in sorted(m["redis_failures"].items()):
            rfail.add_metric([kind], n)
        yield rfail
        yield GaugeMetricFamily("gateway_redis_up", "1 while this worker's Redis circuit breaker is closed",
                                value=1.0 if self._redis_up() else 0.0)
        yield GaugeMetricFamily("gateway_requests_in_flight", "Requests being answered (all workers)",
                                value=m["in_flight"])
        yield GaugeMetricFamily("gateway_streams_in_flight", "SSE streams being relayed (all workers)",
                                value=m["streams_in_flight"])
        yield CounterMetricFamily("gateway_shutdown_cut_streams", "Streams closed with an error event because "
                                  "the shutdown grace period ended", value=m["shutdown_cut_streams"])
        yield CounterMetricFamily("gateway_log_lines_dropped", "Request log lines dropped because stderr did not "
                                  "take them (a full pipe nobody reads)", value=m["log_lines_dropped"])
        info = GaugeMetricFamily("gateway_config_info", "The configuration in force (version: a hash of its "
                                 "files)", labels=["version"])
        info.add_metric([m["config_version"] or "unknown"], 1.0)
        yield info
        yield GaugeMetricFamily("gateway_config_loaded_timestamp_seconds", "When the configuration in force was "
                                "loaded", value=m["config_loaded_at"])
        reloads = CounterMetricFamily("gateway_config_reloads", "Configuration reloads by result",
                                      labels=["result"])
        for result in ("success", "failure"):
            reloads.add_metric([result], m["config_reloads"].get(result, 0))
        yield reloads


def registry_for(collector: GatewayCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def metrics_folder() -> str | None:
    return os.environ.get(METRICS_DIR_ENV) or None


__all__ = ["CONTENT_TYPE", "METRICS", "GatewayCollector", "metrics_folder", "registry_for", "render"]
