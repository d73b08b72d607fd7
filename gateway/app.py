"""The composition root: the ASGI application built from its parts, and the route table.

    /v1/...        raw ASGI (no framework on the hot path): the paid endpoints of gateway.proxy.endpoints,
                   served by gateway.proxy.paid_call; the gateway's own answers (gateway.v1_info)
    /admin/v1/...  the operator's API (FastAPI, gateway.admin_api)
    everything else  the cabinet and the console (FastAPI, gateway.web)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.admin_api import build_admin_app
from gateway.archive.service import archiver_for, history_cap, open_archive
from gateway.archive.service import migrate as migrate_archive
from gateway.auth import Authenticator
from gateway.config.model import Config
from gateway.errors import (
    ERROR_SHAPES,
    ErrorShape,
    GatewayError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    UpstreamUnavailable,
)
from gateway.generation import Generation, Shared
from gateway.generation import build as build_generation
from gateway.http.asgi import ClientGone, Receive, Scope, Send, new_request_id, send_error
from gateway.http.upstreams import UpstreamPool
from gateway.memory import return_freed_memory
from gateway.observability.observer import Observer
from gateway.observability.reload import config_reloaded
from gateway.pricing import PriceBook
from gateway.proxy.billing import BillingGate
from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.key_slots import KeySlots
from gateway.proxy.large_bodies import LargeBodies
from gateway.proxy.routing import Router
from gateway.reload import Follower, coordinate, status
from gateway.reload import Keys as ReloadKeys
from gateway.store.accounts import Accounts
from gateway.store.connection import async_client, journal_dir
from gateway.store.keys import KeySpace
from gateway.store.ledger import Caller, Ledger
from gateway.store.precheck import can_spend
from gateway.store.replicated import ReplicaAcks
from gateway.store.sweeper import Sweeper
from gateway.web import build_web_app
from gateway.web.site import Web

log = logging.getLogger("gateway.app")

Handler = Callable[[Scope, Receive, Send, str, dict[str, str]], Awaitable[object]]  # a paid call returns its Outcome
_OLD_POOL_GRACE_S = 600.0   # a replaced generation's idle upstream connections are closed this long after


class _Refusing:
    """The 'generation' of a worker that cannot load the version in force: paid calls get 503."""

    version = "-"


_REFUSING: Any = _Refusing()


async def _refuse(scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> object:
    raise UpstreamUnavailable("the gateway is being reconfigured; nothing was charged, try again",
                              headers={"Retry-After": "5"})


CHAT_IN_PATH = "/chat/completions"   # /v1/models/{model}/chat/completions: chat, the model named in the path


class GatewayApp:
    def __init__(self, config: Config, redis_url: str | None = None) -> None:
        s = config.settings
        self.redis_url = redis_url or s.redis_url
        if not self.redis_url:
            raise ValueError("no Redis URL: set REDIS_URL or run `gateway serve`, which starts the embedded Redis")
        self.server_limits = s.limits  # read by the HTTP protocol (gateway.http.server_protocol)
        self.keyspace = KeySpace(s.redis_prefix)
        self.redis = async_client(self.redis_url, max_connections=max(64, s.pool_size),
                                  connect_timeout_ms=s.redis_connect_timeout_ms,
                                  command_timeout_ms=s.redis_command_timeout_ms)
        self.archive = open_archive(config)   # history and ledger kept in a database (gateway.archive)
        self.archiver = (archiver_for(config, self.redis, self.keyspace, self.archive)
                         if self.archive and s.archive_worker else None)
        self.ledger = Ledger(self.redis, self.keyspace, history_max=history_cap(config),
                             archive_index=self.archive is not None,
                             reservation_ttl_ms=s.reservation_ttl_s * 1000,
                             late_settlement_window_ms=s.late_settlement_window_s * 1000,
                             connect_timeout_ms=s.redis_connect_timeout_ms, command_timeout_ms=s.redis_command_timeout_ms,
                             max_unconfirmed=s.max_unconfirmed_settlements)
        self.sweeper = Sweeper(self.ledger, s.sweep_interval_s)
        self.accounts = Accounts(self.redis, self.keyspace, s.usd_rub_default, replica_acks=ReplicaAcks(
            s.redis_replica_acks, min(s.redis_replica_wait_ms, s.redis_command_timeout_ms // 2)))
        self.accounts.archive = self.archive
        self.auth = Authenticator(self.redis, self.keyspace, ttl_s=s.token_cache_ms / 1000,
                                  down=lambda: self.ledger.down)
        self.large = LargeBodies(s.limits)
        self.shared = Shared(self.ledger, self.auth, self.accounts, self.large,
                             KeySlots(s.limits.max_concurrent_per_key), self._can_spend)
        # the config generation serving /v1 (gateway.generation), and a reload's next one (gateway.reload)
        self.gen = build_generation(config, self.shared)
        self._use(self.gen)
        self.info = self.gen.info
        self._next: Generation | None = None
        self._switch_at = 0.0        # while a switch is armed: the instant (epoch s) every worker takes it
        self._old: list[Generation] = []
        self._stale_version: str | None = None
        self.config_keys = ReloadKeys.of(s.redis_prefix, config.root)
        self.follower: Follower | None = None
        self.web_state = Web(self.accounts, config, self.redis, self.keyspace)
        self.web_state.config_status = self.config_status
        self.admin = build_admin_app(self.accounts, s.admin_token, config_status=self.config_status)
        self.web = build_web_app(self.accounts, config, self.redis, self.keyspace, web=self.web_state)
        # metrics, the request log, traces, /healthz /readyz /metrics (gateway.observability)
        self.obs = Observer(config, self.redis.ping, lambda: not self.ledger.down)
        # the error body of the paths that speak another API than OpenAI's (the endpoint records say which)
        generate = ENDPOINTS["generate"]
        self._generate_shape = ERROR_SHAPES[generate.errors]
        self._generate_models_prefix = generate.path.partition("{model}")[0]          # /v1beta/models/
        self._other_root = "/" + generate.path.split("/")[1] + "/"                     # /v1beta/
        self._shapes: dict[str, ErrorShape] = {self._generate_models_prefix.rstrip("/"): self._generate_shape}
        for endpoint in ENDPOINTS.values():
            if endpoint.errors:
                self._shapes.update({p: ERROR_SHAPES[endpoint.errors] for p in endpoint.paths if "{model}" not in p})

    # what tests and tools read: the generation in force
    @property
    def router(self) -> Router:
        return self.gen.router

    @property
    def prices(self) -> PriceBook:
        return self.gen.prices

    @property
    def billing(self) -> BillingGate:
        return self.gen.billing

    @property
    def pool(self) -> UpstreamPool:
        return self.gen.pool

    def _use(self, gen: Generation) -> None:
        self._exact, self._chat_in_path, self._one_model = gen.exact, gen.chat_in_path, gen.one_model
        self._templated, self._generate_one_model = gen.templated, gen.generate_one_model

    # -- reload (gateway.reload) -------------------------------------------------------------------------

    async def _prepare(self, config: Config) -> Generation:
        gen = build_generation(config, self.shared)
        await gen.pool.start()
        return gen

    def _arm(self, version: str, gen: Generation, switch_at: float) -> None:
        """Switch to `gen` at `switch_at` (checked at the start of each request: see _http)."""
        self._next, self._switch_at = gen, max(switch_at, 1e-9)
        log.info("config version %s armed; switching at %.3f", version, switch_at)

    def _stale(self, version: str) -> None:
        if self._stale_version != version:  # once per version, not every watch round
            self._stale_version = version
            log.error("config version %s is in force but cannot be loaded here: paid calls answer 503 until it can",
                      version)
            self._next, self._switch_at = _REFUSING, 1e-9

    def _switch(self) -> None:
        nxt, self._next, self._switch_at = self._next, None, 0.0
        if nxt is _REFUSING:
            self._exact = {**self._exact, **{p: {"POST": _refuse} for e in ENDPOINTS.values() for p in e.paths}}
            self._templated = {prefix: {suffix: {"POST": _refuse} for suffix in by_suffix}
                               for prefix, by_suffix in self._templated.items()}
            self._chat_in_path = {"POST": _refuse}
            return
        assert nxt is not None
        self._stale_version = None
        old, self.gen = self.gen, nxt
        self._use(nxt)
        self.web_state.use(nxt.config, nxt.prices)
        self.info = nxt.info
        self._old.append(old)
        # requests of the old generation may still be reading from its upstream connections: its idle ones
        # are closed once they are surely done, and the generation is let go
        asyncio.get_running_loop().call_later(_OLD_POOL_GRACE_S, lambda: asyncio.ensure_future(self._retire(old)))
        config_reloaded(nxt.config, ok=True)   # gateway_config_info, loaded time, reloads_total{success}
        log.info("config version %s in force (was %s)", nxt.version, old.version)

    async def _retire(self, old: Generation) -> None:
        if old in self._old:
            self._old.remove(old)
        await old.pool.close()

    async def config_status(self) -> dict[str, Any]:
        """GET /admin/v1/config and the console: the version in force, when it was loaded, what this worker
        serves, and the outcome of the last load or reload."""
        return await status(self.redis, self.config_keys, self.gen, self._next)

    async def reload_here(self, trigger: str = "SIGHUP") -> dict[str, Any]:
        """A reload coordinated by this process (the single-process server on SIGHUP)."""
        return await coordinate(self.redis, self.config_keys, self.gen.config.root, trigger)

    async def _can_spend(self, caller: Caller) -> None:
        await can_spend(self.redis, self.keyspace, caller, int(time.time() * 1000))

    # -- ASGI ------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # report, so uvicorn exits instead of serving half-started
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def begin_shutdown(self) -> None:
        """The server stops accepting (SIGTERM; called by the HTTP protocol as uvicorn shuts down): /readyz
        answers 503 from now on; requests and streams in flight get `server.shutdown_grace_s` to finish,
        then the streams still running are ended with an error event, each settled for what it produced."""
        if self.obs.shutting_down:
            return
        self.obs.shutting_down = True
        grace = self.config.settings.shutdown_grace_s
        log.info("shutting down: %d requests in flight get %g s to finish", self.obs.in_flight(), grace)
        asyncio.get_running_loop().call_later(grace, self._grace_over)

    def _grace_over(self) -> None:
        n = sum(gen.paid.stop_streams() for gen in (self.gen, *self._old))  # a reload's old streams too
        if n:
            log.warning("shutdown grace period over: %d streams ended with an error event (billed for what they "
                        "produced)", n)

    async def startup(self) -> None:
        return_freed_memory()
        await self.redis.ping()
        await self.ledger.connect()
        self.ledger.open_journal(journal_dir(self.config))  # and replay what dead processes left there
        self.sweeper.start()
        if self.archiver is not None:
            self.archiver.migrated = await migrate_archive(self.archiver.db)
            self.archiver.start()
        await self.gen.pool.start()
        await self.obs.startup()
        self.follower = Follower(self.redis, self.config_keys, self.config.root, self.gen.version,
                                 self._prepare, self._arm, self._stale,
                                 refused=lambda: config_reloaded(self.gen.config, ok=False))
        await self.follower.join()  # refuses to start on files another version than the one in force
        self.follower.start()
        if os.environ.get("GATEWAY_RELOAD_IN_PROCESS") == "1":  # the single-process server: SIGHUP reloads here
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload_here()))
        # Everything built so far (config, compiled templates, price book) lives as long as the process:
        # keep it out of the cyclic collector's full passes, which would otherwise walk it again and
        # again under load.
        gc.collect()
        gc.freeze()

    @property
    def config(self) -> Config:
        return self.gen.config

    async def shutdown(self) -> None:
        await self.obs.shutdown()
        if self.follower is not None:
            await self.follower.stop()
        self.large.close()
        for gen in {id(g): g for g in (self.gen, *self._old, *([self._next] if isinstance(self._next, Generation)
                                                              else []))}.values():
            await gen.pool.close()
        await self.sweeper.stop()
        if self.archiver is not None:
            await self.archiver.stop()
        if self.archive is not None:
            self.archive.close()
        await self.ledger.close(drain_s=2.0)  # what Redis does not confirm by then stays in the journal
        await self.accounts.close()
        await self.redis.aclose()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        obs = self.obs
        if path != "/v1" and not path.startswith("/v1/") and not path.startswith(self._other_root):
            if obs.handles(path):  # health checks and scrapes: not counted, logged or billed
                await obs.serve(scope, receive, send)
                return
            admin = path.startswith("/admin/")
            rec = obs.start(scope, send, new_request_id(), "admin" if admin else "web", False)
            try:
                await (self.admin if admin else self.web)(scope, receive, rec.send)
            finally:
                obs.finish(rec)
            return
        if self._switch_at and time.time() >= self._switch_at:  # a reload's instant has come (gateway.reload)
            self._switch()
        request_id = new_request_id()
        rec = obs.start(scope, send, request_id, "v1", True)
        send = rec.send
        try:
            handler, params = self._find(scope["path"], scope["method"])
            outcome = await handler(scope, receive, send, request_id, params)
            if outcome is not None:
                rec.outcome(outcome)
        except ClientGone:
            rec.error_type = "caller_disconnected"
        except GatewayError as err:
            rec.failed(err)
            await send_error(send, err, request_id, self._error_shape(path))
        except Exception:
            log.exception("unhandled error in %s", request_id)
            rec.error_type = "gateway_internal"
            await send_error(send, InternalError(f"internal error; quote request id {request_id}"), request_id,
                             self._error_shape(path))
        finally:
            obs.finish(rec)

    def _error_shape(self, path: str) -> ErrorShape | None:
        """The error body the client's API expects on `path` (the seed's unless the path speaks another)."""
        shape = self._shapes.get(path)
        if shape is None and (path.startswith(self._generate_models_prefix) or path.startswith("/v1/models/")
                              and ":" in path):
            shape = self._generate_shape
        return shape

    def _find(self, path: str, method: str) -> tuple[Handler, dict[str, str]]:
        methods = self._exact.get(path)
        params: dict[str, str] = {}
        if methods is None and ":" in path:  # <prefix>{model}:method (the Gemini API)
            prefix, _, rest = path.rpartition("/")
            model, colon, action = rest.partition(":")
            hit = self._templated.get(prefix + "/", {}).get(colon + action)
            if hit is not None and model:
                params["model"] = model
                methods = hit
        if methods is None and path.startswith(self._generate_models_prefix) and path != self._generate_models_prefix:
            params["model"] = path[len(self._generate_models_prefix):]
            methods = self._generate_one_model
        elif methods is None and path.startswith("/v1/models/"):
            rest = path[len("/v1/models/"):]
            if rest.endswith(CHAT_IN_PATH):
                params["model"] = rest[: -len(CHAT_IN_PATH)]
                methods = self._chat_in_path
            elif rest and "/" not in rest.rstrip("/"):
                params["model"] = rest.rstrip("/")
                methods = self._one_model
        if methods is None:
            raise NotFound(f"no such endpoint: {path}")
        handler = methods.get(method)
        if handler is None:
            raise MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(methods)}",
                                   headers={"Allow": ", ".join(methods)})
        return handler, params
