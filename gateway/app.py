"""The composition root: the ASGI application built from its parts, and the route table.

    /v1/...        raw ASGI (no framework on the hot path): the paid endpoints of gateway.proxy.endpoints,
                   served by gateway.proxy.paid_call; the gateway's own answers (gateway.v1_info)
    /admin/v1/...  the operator's API (FastAPI, gateway.admin_api)
    everything else  the cabinet and the console (FastAPI, gateway.web)
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from gateway.admin_api import build_admin_app
from gateway.archive.service import archiver_for, history_cap, open_archive
from gateway.archive.service import migrate as migrate_archive
from gateway.auth import Authenticator
from gateway.config.model import Config
from gateway.errors import GatewayError, InternalError, MethodNotAllowed, NotFound
from gateway.http.asgi import ClientGone, Receive, Scope, Send, new_request_id, send_error
from gateway.http.upstreams import UpstreamPool
from gateway.memory import return_freed_memory
from gateway.pricing import PriceBook
from gateway.proxy.billing import BillingGate
from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.forwarding import Forwarder
from gateway.proxy.key_slots import KeySlots
from gateway.proxy.large_bodies import LargeBodies
from gateway.proxy.paid_call import PaidCalls
from gateway.proxy.routing import Router
from gateway.store.accounts import Accounts
from gateway.store.connection import async_client, journal_dir
from gateway.store.keys import KeySpace
from gateway.store.ledger import Caller, Ledger
from gateway.store.precheck import can_spend
from gateway.store.replicated import ReplicaAcks
from gateway.store.sweeper import Sweeper
from gateway.v1_info import InfoEndpoints
from gateway.web import build_web_app

log = logging.getLogger("gateway.app")

Handler = Callable[[Scope, Receive, Send, str, dict[str, str]], Awaitable[None]]
CHAT_IN_PATH = "/chat/completions"   # /v1/models/{model}/chat/completions: chat, the model named in the path


class GatewayApp:
    def __init__(self, config: Config, redis_url: str | None = None) -> None:
        self.config = config
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
        self.router = Router(config)
        self.pool = UpstreamPool(config.providers)
        self.large = LargeBodies(s.limits)
        self.prices = PriceBook(config.prices)
        self.billing = BillingGate(self.ledger, self.prices, s)
        self.paid = PaidCalls(config, self.auth, self.billing, self.router, Forwarder(config, self.pool, self.large),
                              self.large, KeySlots(s.limits.max_concurrent_per_key), self._can_spend)
        self.info = InfoEndpoints(config, self.auth, self.accounts)
        self.admin = build_admin_app(self.accounts, s.admin_token)
        self.web = build_web_app(self.accounts, config, self.redis, self.keyspace)  # cabinet + console pages
        # the route table of /v1: exact paths, then /v1/models/{model}[/chat/completions]
        self._exact: dict[str, dict[str, Handler]] = {
            "/v1": {"GET": self.info.index}, "/v1/": {"GET": self.info.index},
            "/v1/models": {"GET": self.info.list_models},
            "/v1/me": {"GET": self.info.me}, "/v1/balance": {"GET": self.info.balance},
            "/v1/usage": {"GET": self.info.usage},
        }
        for endpoint in ENDPOINTS.values():
            self._exact[endpoint.path] = {"POST": partial(self.paid, endpoint)}
        self._chat_in_path: dict[str, Handler] = {"POST": partial(self.paid, ENDPOINTS["chat"])}
        self._one_model: dict[str, Handler] = {"GET": self.info.get_model}

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

    async def startup(self) -> None:
        return_freed_memory()
        await self.redis.ping()
        await self.ledger.connect()
        self.ledger.open_journal(journal_dir(self.config))  # and replay what dead processes left there
        self.sweeper.start()
        if self.archiver is not None:
            self.archiver.migrated = await migrate_archive(self.archiver.db)
            self.archiver.start()
        await self.pool.start()
        # Everything built so far (config, compiled templates, price book) lives as long as the process:
        # keep it out of the cyclic collector's full passes, which would otherwise walk it again and
        # again under load.
        gc.collect()
        gc.freeze()

    async def shutdown(self) -> None:
        self.large.close()
        await self.pool.close()
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
        if path.startswith("/admin/"):
            await self.admin(scope, receive, send)
            return
        if path != "/v1" and not path.startswith("/v1/"):
            await self.web(scope, receive, send)
            return
        request_id = new_request_id()
        try:
            handler, params = self._find(scope["path"], scope["method"])
            await handler(scope, receive, send, request_id, params)
        except ClientGone:
            return
        except GatewayError as err:
            await send_error(send, err, request_id)
        except Exception:
            log.exception("unhandled error in %s", request_id)
            await send_error(send, InternalError(f"internal error; quote request id {request_id}"), request_id)

    def _find(self, path: str, method: str) -> tuple[Handler, dict[str, str]]:
        methods = self._exact.get(path)
        params: dict[str, str] = {}
        if methods is None and path.startswith("/v1/models/"):
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
