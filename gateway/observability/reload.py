"""The hook a configuration reload calls (issue 16), so /metrics shows the config in force and how reloads went:

    from gateway.observability.reload import config_reloaded
    config_reloaded(config_in_force, ok=True)    # the new config took effect
    config_reloaded(config_in_force, ok=False)   # refused (invalid): pass the old config, still in force

→ `gateway_config_info{version}` (a hash of the config files), `gateway_config_loaded_timestamp_seconds`,
`gateway_config_reloads_total{result="success"|"failure"}`. Each worker that reloads calls it once; the
workers' counts are added up at scrape time. The observability settings themselves (metrics, log format,
tracing, metrics port) are read at start-up only.
"""

from __future__ import annotations

from gateway.config.model import Config
from gateway.observability.metrics import METRICS


def config_reloaded(config: Config, ok: bool) -> None:
    METRICS.config_loaded(config.version, reloaded=ok)
