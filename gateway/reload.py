"""Reloading the config without a restart, with every worker on one version at every admission.

The version is a hash of the config files (Config.version). Redis holds, per config group (the processes
serving one config root; `GATEWAY_CONFIG_GROUP`, default: the root's absolute path), the version in force:

    <prefix>:config:<group>            hash: version, loaded_at (ms), switch_at (ms), previous, pending
    <prefix>:config:<group>:workers    sorted set: worker id → last seen (ms), refreshed every WATCH_S
    <prefix>:config:<group>:ready:<v>  set: workers that have version v loaded and ready to switch
    <prefix>:config:<group>:last       hash: the last load or reload: ok, version, at, errors (JSON), trigger

A reload is a two-phase swap run by a coordinator (the supervisor on SIGHUP, the single server process on
SIGHUP, `gateway reload` through them):

1. it loads and checks the config (an invalid one is refused, logged with its errors, recorded in `last`;
   the old one keeps serving), and sets `pending` to its version;
2. every worker (watching the hash every WATCH_S, off the hot path) loads the same files itself, in a thread,
   and reports ready when its own hash is the same;
3. once every live worker is ready, the coordinator sets `version` and `switch_at` = Redis's clock + SWITCH_MS;
   each worker switches at that instant, read from its clock at the start of each request (one float
   comparison while a switch is armed, none otherwise). Workers of one host share its clock, so they agree
   at any moment; hosts agree to within their clock offset (NTP).

A request runs to its end on the generation it started on: routing, reservation, translation and the price it
is charged, and its history entry records that version. A worker that cannot load the version in force (its
files differ) answers paid calls 503 until it can, rather than bill at another price; a worker that starts
while another version is in force (its files were edited but not reloaded) refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config import Config, ConfigError, load_config
from gateway.config.warnings import config_warnings

log = logging.getLogger("gateway.reload")

WATCH_S = 0.5          # how often a worker reads the config hash and says it is alive
LIVE_MS = 2500         # a worker not seen for this long is not waited for
SWITCH_MS = 1000       # between the commit and the switch: every worker sees the commit before the instant
READY_TIMEOUT_S = 30.0  # a reload whose workers are not all ready by then is abandoned (nothing switches)


def group_of(root: str) -> str:
    name = os.environ.get("GATEWAY_CONFIG_GROUP") or os.path.abspath(root)
    return hashlib.sha256(name.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Keys:
    base: str

    @classmethod
    def of(cls, prefix: str, root: str) -> Keys:
        return cls(f"{prefix}:config:{group_of(root)}")

    @property
    def workers(self) -> str:
        return f"{self.base}:workers"

    @property
    def last(self) -> str:
        return f"{self.base}:last"

    def ready(self, version: str) -> str:
        return f"{self.base}:ready:{version}"

    @property
    def lock(self) -> str:
        return f"{self.base}:lock"


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


async def state(client: Any, keys: Keys) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in (await client.hgetall(keys.base)).items()}


async def last_load(client: Any, keys: Keys) -> dict[str, Any]:
    raw = {_s(k): _s(v) for k, v in (await client.hgetall(keys.last)).items()}
    if not raw:
        return {}
    return {"ok": raw.get("ok") == "1", "version": raw.get("version", ""), "at": _iso(int(raw.get("at") or 0) / 1000),
            "trigger": raw.get("trigger", ""), "errors": orjson.loads(raw.get("errors") or "[]"),
            "message": raw.get("message", "")}


async def record(client: Any, keys: Keys, ok: bool, version: str, trigger: str, message: str,
                 errors: list[str] | None = None) -> None:
    await client.hset(keys.last, mapping={"ok": "1" if ok else "0", "version": version, "at": int(time.time() * 1000),
                                          "trigger": trigger, "message": message,
                                          "errors": orjson.dumps((errors or [])[:500]).decode()})


async def publish_start(client: Any, keys: Keys, config: Config) -> None:
    """`gateway serve` starting: its config is the one in force for the group (a start is a reload)."""
    now = int(time.time() * 1000)
    current = await state(client, keys)
    await client.hset(keys.base, mapping={"version": config.version, "loaded_at": now, "switch_at": 0,
                                          "previous": current.get("version", "")})
    await client.hdel(keys.base, "pending")
    await record(client, keys, True, config.version, "start", f"started with version {config.version}")


async def coordinate(client: Any, keys: Keys, root: str, trigger: str,
                     load: Callable[[str], Config] = load_config) -> dict[str, Any]:
    """One reload (see the module's docstring); the outcome as recorded in `last`."""
    if not await client.set(keys.lock, trigger, nx=True, ex=int(READY_TIMEOUT_S) + 30):
        return {"ok": False, "message": "another reload is in progress", "errors": []}
    try:
        return await _coordinate(client, keys, root, trigger, load)
    finally:
        await client.delete(keys.lock)


async def _coordinate(client: Any, keys: Keys, root: str, trigger: str,
                      load: Callable[[str], Config]) -> dict[str, Any]:
    try:
        config = await asyncio.to_thread(load, root)
    except ConfigError as exc:
        log.error("reload refused: the configuration is invalid; version %s keeps serving",
                  (await state(client, keys)).get("version", "?"))
        for line in exc.errors:
            log.error("%s", line)
        await record(client, keys, False, "", trigger, "refused: the configuration is invalid", exc.errors)
        return await last_load(client, keys)
    version = config.version
    for warning in config_warnings(config):
        log.warning("%s", warning)
    current = await state(client, keys)
    if current.get("version") == version:
        log.info("reload: the configuration is unchanged (version %s)", version)
        await record(client, keys, True, version, trigger, f"unchanged: version {version} is in force")
        return await last_load(client, keys)
    await client.hset(keys.base, "pending", version)
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting: list[str] = []
    while time.monotonic() < deadline:
        now = int(time.time() * 1000)
        live = {_s(m) for m in await client.zrangebyscore(keys.workers, now - LIVE_MS, "+inf")}
        ready = {_s(m) for m in await client.smembers(keys.ready(version))}
        waiting = sorted(live - ready)
        if not waiting:
            break
        await asyncio.sleep(0.1)
    if waiting:
        await client.hdel(keys.base, "pending")
        message = f"abandoned: worker(s) {', '.join(waiting)} did not load version {version} in {READY_TIMEOUT_S:.0f} s"
        log.error("reload %s; version %s keeps serving", message, current.get("version", "?"))
        await record(client, keys, False, version, trigger, message)
        return await last_load(client, keys)
    now = await client.time()
    if isinstance(now, dict):  # a cluster answers per node: any master's clock will do
        now = next(iter(now.values()))
    secs, micros = now
    switch_at = int(secs) * 1000 + int(micros) // 1000 + SWITCH_MS
    await client.hset(keys.base, mapping={"version": version, "switch_at": switch_at, "loaded_at": switch_at,
                                          "previous": current.get("version", "")})
    await client.hdel(keys.base, "pending")
    log.info("reload: version %s replaces %s in every worker at %d", version, current.get("version", "-"), switch_at)
    await record(client, keys, True, version, trigger, f"version {version} in force (was {current.get('version', '-')})")
    return await last_load(client, keys)


class Follower:
    """A worker's side: say it is alive, prepare a pending version, arm the switch to the one in force."""

    def __init__(self, client: Any, keys: Keys, root: str, version: str,
                 prepare: Callable[[Config], Awaitable[Any]], arm: Callable[[str, Any, float], None],
                 stale: Callable[[str], None], load: Callable[[str], Config] = load_config,
                 refused: Callable[[], None] | None = None) -> None:
        self.client, self.keys, self.root = client, keys, root
        self.version = version               # the version this worker serves (or has armed)
        self._prepare, self._arm, self._stale, self._load = prepare, arm, stale, load
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xffff:x}"
        self._prepared: dict[str, Any] = {}   # version → generation built and ready
        self._failed: dict[str, float] = {}   # version → when loading it may be tried again (monotonic)
        self._task: asyncio.Task[None] | None = None
        self._refused = refused               # told of each reload the coordinator refused (metrics)
        self._last_at: str | None = None      # the last load or reload seen (its time)

    async def join(self) -> None:
        """At start: take part in the group. Refuses (ConfigError) when another version is in force."""
        current = await state(self.client, self.keys)
        if not current.get("version"):
            await self.client.hsetnx(self.keys.base, "version", self.version)
            await self.client.hsetnx(self.keys.base, "loaded_at", int(time.time() * 1000))
            current = await state(self.client, self.keys)
        if current.get("version") != self.version:
            message = (f"the config files (version {self.version}) differ from version {current.get('version')} "
                       "that the other workers serve: run `gateway reload` to switch every worker to the files "
                       "as they are now")
            raise ConfigError([message])
        await self._beat()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Bounded: a shutdown never waits on the watch (Redis may be away)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.zrem(self.keys.workers, self.id), 2)

    async def _beat(self) -> None:
        now = int(time.time() * 1000)
        await self.client.zadd(self.keys.workers, {self.id: now})
        await self.client.zremrangebyscore(self.keys.workers, "-inf", now - 60_000)

    async def _run(self) -> None:
        while True:
            try:
                await self._beat()
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  Redis away: the next round tries again
                log.debug("config watch: %s", exc)
            await asyncio.sleep(WATCH_S)

    async def step(self) -> None:
        if self._refused is not None:
            last = await last_load(self.client, self.keys)
            seen, self._last_at = self._last_at, last.get("at")
            if seen is not None and last.get("at") != seen and last.get("ok") is False:
                self._refused()
        current = await state(self.client, self.keys)
        pending = current.get("pending", "")
        if pending and pending != self.version and pending not in self._prepared and await self._ready(pending):
            await self.client.sadd(self.keys.ready(pending), self.id)
            await self.client.expire(self.keys.ready(pending), 3600)
        version = current.get("version", "")
        if version and version != self.version:
            if version in self._prepared or await self._ready(version):
                self._arm(version, self._prepared.pop(version), int(current.get("switch_at") or 0) / 1000)
                self.version = version
                self._prepared.clear()
                self._failed.clear()
            else:
                self._stale(version)

    async def _ready(self, version: str) -> bool:
        """Load the files (in a thread); True when they are `version` (the generation is then kept)."""
        if version in self._prepared:
            return True
        if self._failed.get(version, 0.0) > time.monotonic():  # loading costs CPU: not every round
            return False
        try:
            config = await asyncio.to_thread(self._load, self.root)
        except ConfigError as exc:
            log.error("cannot load config version %s here: %s", version, "; ".join(exc.errors[:5]))
            self._failed[version] = time.monotonic() + 10
            return False
        if config.version != version:
            log.error("cannot follow config version %s: the files here are version %s (edited since?)",
                      version, config.version)
            self._failed[version] = time.monotonic() + 10
            return False
        self._prepared[version] = await self._prepare(config)
        return True


async def status(client: Any, keys: Keys, gen: Any, armed: Any = None) -> dict[str, Any]:
    """The config in force for the group, this worker's, and the last load or reload."""
    current = await state(client, keys)
    loaded_ms = int(current.get("loaded_at") or 0)
    return {
        "version": current.get("version", "") or gen.version,
        "loaded_at": _iso(loaded_ms / 1000) if loaded_ms else _iso(gen.loaded_at),
        "previous": current.get("previous", "") or None,
        "pending": current.get("pending", "") or None,
        "root": gen.config.root,
        "worker": {"pid": os.getpid(), "version": gen.version, "loaded_at": _iso(gen.loaded_at),
                   "switching_to": getattr(armed, "version", None)},
        "last_reload": await last_load(client, keys) or None,
    }


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def run_coordinator(redis_url: str, prefix: str, root: str, trigger: str) -> dict[str, Any]:
    """One reload from a process without an event loop of its own (the supervisor, on SIGHUP)."""
    from gateway.store.connection import async_client

    async def go() -> dict[str, Any]:
        client = async_client(redis_url, max_connections=4)
        try:
            return await coordinate(client, Keys.of(prefix, root), root, trigger)
        finally:
            await client.aclose()

    return asyncio.run(go())


def run_publish_start(redis_url: str, config: Config) -> None:
    """`gateway serve` at start: its config is the group's version in force."""
    from gateway.store.connection import async_client

    async def go() -> None:
        client = async_client(redis_url, max_connections=2)
        try:
            await publish_start(client, Keys.of(config.settings.redis_prefix, config.root), config)
        finally:
            await client.aclose()

    asyncio.run(go())
