"""The Grafana dashboard, the alert rules and the scrape config in deploy/ ask only for metrics the gateway
exports (a renamed metric would leave an empty panel or an alert that never fires)."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.exposition import GatewayCollector, registry_for, render
from gateway.observability.metrics import Metrics
from gateway.usage import Usage
from tests.support import REPO

NAME = re.compile(r"\b((?:gateway|gen_ai)_[a-z_]+)\b")


def exported() -> set[str]:
    m = Metrics()
    m.request("chat", "m", "p", 200, "", 0.1, 0.05, 0.02, Usage(1, 1, 0, 1, 1), 1)
    m.request("chat", "m", "p", 503, "provider_5xx", 0.1, 0.05, -1, None, 0)
    m.provider_answered("p")
    m.provider_failed("p", "provider_5xx")
    m.fallback("chat", "m", "p", "q")
    m.redis_answered(0.001)
    m.redis_failed("probe")
    m.config_loaded("v", reloaded=True)
    text = render(registry_for(GatewayCollector(m, None, lambda: True, lambda e: e))).decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return {s.name for s in samples} | {label for s in samples for label in s.labels}   # metric and label names


def asked(text: str) -> set[str]:
    return {n for n in NAME.findall(text) if not n.startswith("gateway_metrics")}


def test_dashboard_queries_exported_metrics() -> None:
    doc = json.loads((REPO / "deploy" / "grafana" / "gateway-dashboard.json").read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"]]
    assert len(exprs) > 20
    missing = set().union(*(asked(e) for e in exprs)) - exported()
    assert not missing, f"the dashboard asks for metrics nobody exports: {sorted(missing)}"


def test_alert_rules_use_exported_metrics() -> None:
    doc = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"GatewayProviderDown", "GatewayErrorRatioHigh", "GatewayRedisDown", "GatewayRedisUnhealthy"} <= names
    missing = set().union(*(asked(r["expr"]) for r in rules)) - exported()
    assert not missing, f"alert rules on metrics nobody exports: {sorted(missing)}"


def test_scrape_config_parses() -> None:
    doc = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    [job] = doc["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and doc["rule_files"] == ["alerts.yml"]
