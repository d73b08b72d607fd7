"""Run the app under uvicorn (uvloop, our own httptools protocol); the factory loads config from GATEWAY_ROOT.

With REDIS_URL unset, `gateway serve` starts the embedded redis-server first and hands its socket to
the workers through REDIS_URL, so every worker (and every host) shares state only through Redis.
More than one worker: `gateway.http.workers` runs them, each on a socket of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import sys
import tempfile
from multiprocessing.synchronize import Event
from pathlib import Path

import uvicorn

from gateway.app import GatewayApp
from gateway.archive.process import start_beside
from gateway.config import Config, ConfigError, load_config
from gateway.config.warnings import config_warnings
from gateway.http.workers import Supervisor, WorkersError, reuseport_socket
from gateway.observability.exposition import METRICS_DIR_ENV
from gateway.observability.log_format import configure_logging
from gateway.reload import run_coordinator, run_publish_start
from gateway.store.connection import data_dir, embedded_redis_for

log = logging.getLogger("gateway.http.serve")
SHUTDOWN_MARGIN_S = 10.0   # beyond server.shutdown_grace_s: to end the streams, settle them and close


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
    os.environ["GATEWAY_LOG_FORMAT"] = s.observability.log_format   # what the workers log in
    configure_logging(s.log_level)
    raise_fd_limit()
    embedded = embedded_redis_for(config, die_with_parent=True)
    if embedded is not None:
        os.environ["REDIS_URL"] = embedded.url
    else:
        log.info("using Redis at %s", _redact(s.redis_url))
    os.environ["GATEWAY_ROOT"] = config.root
    os.environ["GATEWAY_LOG_LEVEL"] = s.log_level  # what the workers log at
    os.environ["GATEWAY_SHUTDOWN_GRACE_S"] = str(s.shutdown_grace_s)   # ... and how long they drain
    n = workers or s.workers
    host, port = host or s.host, port or s.port
    redis_url = os.environ.get("REDIS_URL") or s.redis_url
    try:  # a start is a reload for every worker of this config root (gateway.reload)
        run_publish_start(redis_url, config)
    except Exception as exc:  # noqa: BLE001  Redis unreachable: the workers say so at their start
        log.warning("could not record config version %s in Redis: %s", config.version, exc)
    log.info("config version %s: %d models (%d enabled), %d providers", config.version, len(config.models),
             len(config.enabled_models), len(config.providers))
    for warning in config_warnings(config):  # once per provider, here in the serving process, not per worker
        log.warning("%s", warning)
    pidfile = write_pidfile(config)
    # history and ledger into the database, from a process of its own (never a worker's event loop)
    archiver = start_beside(config.root, s.archive_enabled, s.archive_worker)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again so the process dies of it;
    # with the default action that would skip the `finally` below and leave the embedded redis-server
    # running. Turn that last SIGTERM into a normal exit instead.
    signal.signal(signal.SIGTERM, _exit_normally)
    signal.signal(signal.SIGHUP, _exit_normally)   # a closed terminal stops the service cleanly too
    metrics_dir = None
    try:
        if n > 1:  # each worker writes its figures here; the one a scrape reaches adds them up
            metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
            os.environ[METRICS_DIR_ENV] = metrics_dir
            os.environ.pop("GATEWAY_RELOAD_IN_PROCESS", None)

            def reload_all() -> None:  # SIGHUP to the supervisor: one coordinated reload of every worker
                result = run_coordinator(redis_url, s.redis_prefix, config.root, "SIGHUP")
                log.info("reload: %s", result.get("message", result))

            return Supervisor(n, run_worker, host, port, on_reload=reload_all,
                              stop_timeout=s.shutdown_grace_s + SHUTDOWN_MARGIN_S).run()
        os.environ["GATEWAY_RELOAD_IN_PROCESS"] = "1"  # the one process coordinates its own reload on SIGHUP
        server = uvicorn.Server(_uvicorn_config(host, port, s.log_level))
        server.run()
        return 0 if server.started else 1
    except WorkersError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 1
    finally:
        if archiver is not None:
            archiver.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            pidfile.unlink()
        if embedded is not None:
            embedded.stop()


def write_pidfile(config: Config) -> Path:
    """<data_dir>/gateway.pid: where `gateway reload` sends its SIGHUP."""
    path = data_dir(config) / "gateway.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    return path


def run_worker(host: str, port: int, ready: Event) -> None:
    """One of `--workers N` (a fresh process): serve on a SO_REUSEPORT socket of its own, say when ready."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is the supervisor's to coordinate
    level = os.environ.get("GATEWAY_LOG_LEVEL", "info")
    configure_logging(level)
    server = _ReadyServer(_uvicorn_config(host, port, level), ready)
    try:
        server.run(sockets=[reuseport_socket(host, port)])
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the group; the supervisor stops us
        pass


class _ReadyServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._ready.set()


def _uvicorn_config(host: str, port: int, log_level: str) -> uvicorn.Config:
    # SIGTERM: the app ends what still streams once its grace period is over (GatewayApp.begin_shutdown);
    # uvicorn cancels whatever is left a margin later, so a stuck request cannot hold the exit forever
    grace = float(os.environ.get("GATEWAY_SHUTDOWN_GRACE_S", "30"))
    return uvicorn.Config("gateway.http.serve:create_app", factory=True, host=host, port=port,
                          loop="uvloop", lifespan="on",
                          http="gateway.http.server_protocol:HttpProtocol",  # ours: cheaper per request than uvicorn's
                          access_log=False, log_level=log_level, timeout_keep_alive=30,
                          log_config=None,  # uvicorn's lines go through our handler (JSON or text) too
                          timeout_graceful_shutdown=int(grace + SHUTDOWN_MARGIN_S) + 1,  # whole seconds
                          proxy_headers=False, server_header=False)


def _exit_normally(signum: int, frame: object) -> None:
    raise SystemExit(0)


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one (workers inherit it): the default 1,024 would
    let a few hundred idle clients starve everyone of sockets. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                target = int(f.read())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)
    log.info("open-files limit %d", soft)
    return soft


def _redact(url: str) -> str:
    """A Redis URL without its password, for the log."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
