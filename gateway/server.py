"""Run the app under uvicorn (uvloop, our own httptools protocol); the factory loads config from GATEWAY_ROOT.

With REDIS_URL unset, `gateway serve` starts the embedded redis-server first and hands its socket to
the workers through REDIS_URL, so every worker (and every host) shares state only through Redis.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import uvicorn

from gateway.app import GatewayApp
from gateway.config import ConfigError, load_config
from gateway.store.connection import embedded_redis_for

log = logging.getLogger("gateway.server")


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
    embedded = embedded_redis_for(config)
    if embedded is not None:
        os.environ["REDIS_URL"] = embedded.url
    else:
        log.info("using Redis at %s", _redact(s.redis_url))
    os.environ["GATEWAY_ROOT"] = config.root
    n = workers or s.workers
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again so the process dies of it;
    # with the default action that would skip the `finally` below and leave the embedded redis-server
    # running. Turn that last SIGTERM into a normal exit instead.
    signal.signal(signal.SIGTERM, _exit_normally)
    try:
        uvicorn.run("gateway.server:create_app", factory=True, host=host or s.host, port=port or s.port,
                    workers=n if n > 1 else None, loop="uvloop", lifespan="on",
                    http="gateway.http_protocol:HttpProtocol",  # ours: cheaper per request than uvicorn's
                    access_log=False, log_level=s.log_level, timeout_keep_alive=30,
                    proxy_headers=False, server_header=False)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _exit_normally(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _redact(url: str) -> str:
    """A Redis URL without its password, for the log."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
