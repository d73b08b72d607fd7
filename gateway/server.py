"""Run the app under uvicorn (uvloop + httptools); the factory loads config from GATEWAY_ROOT."""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from gateway.app import GatewayApp
from gateway.config import ConfigError, load_config


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def create_app() -> GatewayApp:
    """uvicorn factory: every worker process loads and checks the config itself."""
    root = os.environ.get("GATEWAY_ROOT", ".")
    return GatewayApp(load_config(root))


def serve(root: str, host: str | None, port: int | None, workers: int | None) -> int:
    try:
        config = load_config(root)
    except ConfigError as exc:
        print("refusing to start: the configuration is invalid", file=sys.stderr)
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    s = config.settings
    configure_logging(s.log_level)
    os.environ["GATEWAY_ROOT"] = config.root
    n = workers or s.workers
    uvicorn.run("gateway.server:create_app", factory=True, host=host or s.host, port=port or s.port,
                workers=n if n > 1 else None, loop="uvloop", http="httptools", lifespan="on",
                access_log=False, log_level=s.log_level, timeout_keep_alive=30)
    return 0
