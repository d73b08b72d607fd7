"""The process's metrics, counted in plain Python on the hot path and shown through prometheus_client.

Why not prometheus_client's own Counter/Histogram objects per request: each update takes a lock and, in its
multiprocess mode, writes an mmap'd file — about ten of them per request would cost more than the 10 % of
a request's CPU this issue allows. Here a request's figures go into one `Series` (found by one dict lookup
per (endpoint, model, provider)) as integer additions and one `bisect` per histogram; prometheus_client
renders them at scrape time through a custom collector (`gateway.observability.exposition`).

`--workers N`: every worker writes its totals to `<dir>/<pid>.json` once a second (when they changed), and the
worker that answers a scrape adds up its own live figures and every other file (`snapshot` / `merge`), so
any worker gives the same coherent set (at most ~1 s old for the others). Files of dead workers stay (a
counter never goes down when a worker is replaced); their gauges (in flight) are dropped.

Labels are bounded: an endpoint name from the endpoint table, a model from the catalogue, a provider from
providers.d, a status class, an error type from a fixed vocabulary — never an account, a key or free text.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from typing import Any

import orjson

# histogram bucket bounds (seconds unless said): request duration and upstream time span LLM latencies;
# overhead is the gateway's own time, well under a millisecond on the hot path
DURATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
TTFT_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0)
OVERHEAD_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
REDIS_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
TOKEN_BOUNDS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)  # GenAI semconv advice
TOKEN_TYPES = ("input", "output", "cached_input", "reasoning")

STATUS_CLASS = {code: f"{code // 100}xx" for code in range(100, 600)}
FLUSH_S = 1.0


def new_hist(bounds: tuple[float, ...]) -> list[float]:
    """Counts per bucket (not cumulative; the last one is +Inf), then the sum."""
    return [0] * (len(bounds) + 2)


def observe(h: list[float], bounds: tuple[float, ...], v: float) -> None:
    h[bisect_left(bounds, v)] += 1
    h[-1] += v


class Series:
    """The request figures of one (endpoint, model, provider)."""

    __slots__ = ("cost_nano", "duration", "errors", "overhead", "statuses", "tokens", "ttft", "upstream")

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.duration = new_hist(DURATION_BOUNDS)
        self.upstream = new_hist(DURATION_BOUNDS)
        self.overhead = new_hist(OVERHEAD_BOUNDS)
        self.ttft = new_hist(TTFT_BOUNDS)
        self.tokens = [new_hist(TOKEN_BOUNDS) for _ in TOKEN_TYPES]
        self.cost_nano = 0

    def dump(self) -> list[Any]:
        return [self.statuses, self.errors, self.duration, self.upstream, self.overhead, self.ttft, self.tokens,
                self.cost_nano]


class Metrics:
    """This process's figures. One instance per process (`METRICS`): the hot path and the hooks of other
    modules (forwarding, the Redis client, config reload) reach it without being handed it."""

    def __init__(self) -> None:
        self.enabled = True
        self.series: dict[tuple[str, str, str], Series] = {}
        self.fallbacks: dict[tuple[str, str, str, str], int] = {}   # (endpoint, model, from, to)
        self.provider_ok: dict[str, float] = {}                      # provider → unix time of its last answer
        self.provider_failed_at: dict[str, float] = {}               # ... of its last failure
        self.provider_failures: dict[tuple[str, str], int] = {}      # (provider, error type)
        self.redis_rtt = new_hist(REDIS_BOUNDS)
        self.redis_failures: dict[str, int] = {}                     # kind → count
        self.in_flight = 0
        self.streams_in_flight = 0
        self.config_version = ""
        self.config_loaded_at = 0.0
        self.config_reloads: dict[str, int] = {}                     # "success" | "failure" → count
        self.shutdown_cut_streams = 0
        self.log_lines_dropped = 0                                   # request lines stderr did not take
        self.changed = False
        self._file: str | None = None

    # -- the hot path ---------------------------------------------------------------------------------------

    def request(self, endpoint: str, model: str, provider: str, status: int, error_type: str, duration: float,
                upstream: float, ttft: float, usage: Any, cost_nano: int) -> None:
        """One finished request (gateway.observability.record). `upstream`/`ttft` < 0: none."""
        key = (endpoint, model, provider)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series()
        sc = STATUS_CLASS.get(status, "5xx")
        st = s.statuses
        st[sc] = st.get(sc, 0) + 1
        h = s.duration
        h[bisect_left(DURATION_BOUNDS, duration)] += 1
        h[-1] += duration
        if upstream >= 0:
            h = s.upstream
            h[bisect_left(DURATION_BOUNDS, upstream)] += 1
            h[-1] += upstream
            over = duration - upstream
            if over < 0:
                over = 0.0
        else:
            over = duration
        h = s.overhead
        h[bisect_left(OVERHEAD_BOUNDS, over)] += 1
        h[-1] += over
        if ttft >= 0:
            h = s.ttft
            h[bisect_left(TTFT_BOUNDS, ttft)] += 1
            h[-1] += ttft
        if error_type:
            e = s.errors
            e[error_type] = e.get(error_type, 0) + 1
        if usage is not None:
            t = s.tokens
            n = usage.input_tokens
            h = t[0]
            h[bisect_left(TOKEN_BOUNDS, n)] += 1
            h[-1] += n
            n = usage.output_tokens
            h = t[1]
            h[bisect_left(TOKEN_BOUNDS, n)] += 1
            h[-1] += n
            n = usage.cached_input_tokens
            if n:
                h = t[2]
                h[bisect_left(TOKEN_BOUNDS, n)] += 1
                h[-1] += n
            n = usage.reasoning_tokens
            if n:
                h = t[3]
                h[bisect_left(TOKEN_BOUNDS, n)] += 1
                h[-1] += n
        if cost_nano:
            s.cost_nano += cost_nano
        self.changed = True

    # -- hooks of other modules (off the hot path) ------------------------------------------------------

    def provider_answered(self, provider: str) -> None:
        self.provider_ok[provider] = time.time()

    def provider_failed(self, provider: str, error_type: str) -> None:
        self.provider_failed_at[provider] = time.time()
        key = (provider, error_type)
        self.provider_failures[key] = self.provider_failures.get(key, 0) + 1
        self.changed = True

    def fallback(self, endpoint: str, model: str, from_provider: str, to_provider: str) -> None:
        key = (endpoint, model, from_provider, to_provider)
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1
        self.changed = True

    def redis_answered(self, rtt_s: float) -> None:
        observe(self.redis_rtt, REDIS_BOUNDS, rtt_s)
        self.changed = True

    def redis_failed(self, kind: str) -> None:
        self.redis_failures[kind] = self.redis_failures.get(kind, 0) + 1
        self.changed = True

    def config_loaded(self, version: str, reloaded: bool | None = None) -> None:
        """The config in force is `version`. `reloaded`: True/False for a reload that took effect / was
        refused (the old config stays; pass the version still in force), None for the first load."""
        self.config_version = version
        self.config_loaded_at = time.time() if reloaded is not False else self.config_loaded_at
        if reloaded is not None:
            result = "success" if reloaded else "failure"
            self.config_reloads[result] = self.config_reloads.get(result, 0) + 1
        self.changed = True

    # -- several workers: one file each, added up at scrape time ------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "time": time.time(),
            "series": [[*key, s.dump()] for key, s in self.series.items()],
            "fallbacks": [[*key, n] for key, n in self.fallbacks.items()],
            "provider_ok": self.provider_ok, "provider_failed_at": self.provider_failed_at,
            "provider_failures": [[*key, n] for key, n in self.provider_failures.items()],
            "redis_rtt": self.redis_rtt, "redis_failures": self.redis_failures,
            "in_flight": self.in_flight, "streams_in_flight": self.streams_in_flight,
            "config_version": self.config_version, "config_loaded_at": self.config_loaded_at,
            "config_reloads": self.config_reloads, "shutdown_cut_streams": self.shutdown_cut_streams,
            "log_lines_dropped": self.log_lines_dropped,
        }

    def write_to(self, folder: str | None) -> None:
        """Write this worker's totals to `<folder>/<pid>.json` (atomically) when they changed."""
        if folder is None or not (self.changed or self._file is None):
            return
        path = os.path.join(folder, f"{os.getpid()}.json")
        tmp = path + ".tmp"
        self.changed = False
        try:
            with open(tmp, "wb") as f:
                f.write(orjson.dumps(self.snapshot()))
            os.replace(tmp, path)
            self._file = path
        except OSError:
            self.changed = True  # try again at the next flush


METRICS = Metrics()


def _add(into: list[Any], more: list[Any]) -> None:
    for i, v in enumerate(more):
        into[i] += v


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def merge(snapshots: list[dict[str, Any]], live_pids: set[int]) -> dict[str, Any]:
    """Add up the snapshots of several workers: counters and histograms summed (dead workers' too), gauges
    of live workers only, last-seen times as the latest, the config as the most recently loaded."""
    out: dict[str, Any] = {"series": {}, "fallbacks": {}, "provider_ok": {}, "provider_failed_at": {},
                           "provider_failures": {}, "redis_rtt": new_hist(REDIS_BOUNDS), "redis_failures": {},
                           "in_flight": 0, "streams_in_flight": 0, "config_version": "", "config_loaded_at": 0.0,
                           "config_reloads": {}, "shutdown_cut_streams": 0, "log_lines_dropped": 0}
    for snap in snapshots:
        series = out["series"]
        for endpoint, model, provider, dump in snap["series"]:
            key = (endpoint, model, provider)
            have = series.get(key)
            if have is None:
                series[key] = [dict(dump[0]), dict(dump[1]), list(dump[2]), list(dump[3]), list(dump[4]),
                               list(dump[5]), [list(h) for h in dump[6]], dump[7]]
                continue
            _add_counts(have[0], dump[0])
            _add_counts(have[1], dump[1])
            for i in (2, 3, 4, 5):
                _add(have[i], dump[i])
            for mine, theirs in zip(have[6], dump[6], strict=True):
                _add(mine, theirs)
            have[7] += dump[7]
        for *key, n in snap["fallbacks"]:
            out["fallbacks"][tuple(key)] = out["fallbacks"].get(tuple(key), 0) + n
        for *key, n in snap["provider_failures"]:
            out["provider_failures"][tuple(key)] = out["provider_failures"].get(tuple(key), 0) + n
        for field in ("provider_ok", "provider_failed_at"):
            for name, t in snap[field].items():
                out[field][name] = max(out[field].get(name, 0.0), t)
        _add(out["redis_rtt"], snap["redis_rtt"])
        _add_counts(out["redis_failures"], snap["redis_failures"])
        _add_counts(out["config_reloads"], snap["config_reloads"])
        out["shutdown_cut_streams"] += snap["shutdown_cut_streams"]
        out["log_lines_dropped"] += snap.get("log_lines_dropped", 0)   # (files of an older worker lack it)
        if snap["pid"] in live_pids:
            out["in_flight"] += snap["in_flight"]
            out["streams_in_flight"] += snap["streams_in_flight"]
        if snap["config_loaded_at"] >= out["config_loaded_at"] and snap["config_version"]:
            out["config_version"], out["config_loaded_at"] = snap["config_version"], snap["config_loaded_at"]
    return out
