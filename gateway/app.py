"""The ASGI application: the /v1 API on raw ASGI; start-up of upstream pools and the Redis client."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson

from gateway import __version__
from gateway.admin_api import build_admin_app
from gateway.http.asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    header,
    new_request_id,
    read_body,
    send_bytes,
    send_error,
)
from gateway.auth import Authenticator
from gateway.proxy.billing import Admitting, BillingGate, Ticket, rate_headers
from gateway.config.model import Config
from gateway.errors import BadRequest, GatewayError, InternalError, MethodNotAllowed, NotFound, Unauthorized
from gateway.proxy.key_slots import KeySlots
from gateway.proxy.large_bodies import INLINE_PARSE_BYTES, LargeBodies
from gateway.memory import return_freed_memory
from gateway.proxy.forwarding import Outcome, Pipeline, Reply, count_images
from gateway.pricing import PriceBook
from gateway.proxy.request_body import BODY_CHECKS, parse_json_body
from gateway.proxy.routing import ENDPOINT_OF_KIND, ENDPOINTS, Router
from gateway.store.accounts import Accounts, InvalidInput
from gateway.store.connection import async_client, journal_dir
from gateway.store.keys import KeySpace
from gateway.store.ledger import Ledger
from gateway.store.precheck import can_spend
from gateway.store.sweeper import Sweeper
from gateway.proxy.streaming import StreamCall, StreamFailed, estimate
from gateway.translate.json_pieces import dumps
from gateway.http.upstreams import UpstreamFailure, UpstreamPool
from gateway.web import build_web_app

log = logging.getLogger("gateway.app")

T = TypeVar("T")
Handler = Callable[[Scope, Receive, Send, str, dict[str, str]], Awaitable[None]]


class GatewayApp:
    def __init__(self, config: Config, redis_url: str | None = None) -> None:
        self.config = config
        self.router = Router(config)
        self.pool = UpstreamPool(config.providers)
        self.large = LargeBodies(config.settings.limits)
        self.key_slots = KeySlots(config.settings.limits.max_concurrent_per_key)
        self.pipeline = Pipeline(config, self.router, self.pool, self.large)
        self.prices = PriceBook(config.prices)
        self.keyspace = KeySpace(config.settings.redis_prefix)
        self.redis_url = redis_url or config.settings.redis_url
        if not self.redis_url:
            raise ValueError("no Redis URL: set REDIS_URL or run `gateway serve`, which starts the embedded Redis")
        s = config.settings
        self.redis = async_client(self.redis_url, max_connections=max(64, s.pool_size),
                                  connect_timeout_ms=s.redis_connect_timeout_ms,
                                  command_timeout_ms=s.redis_command_timeout_ms)
        self.ledger = Ledger(self.redis, self.keyspace, history_max=s.history_max,
                             reservation_ttl_ms=s.reservation_ttl_s * 1000,
                             late_settlement_window_ms=s.late_settlement_window_s * 1000,
                             connect_timeout_ms=s.redis_connect_timeout_ms, command_timeout_ms=s.redis_command_timeout_ms,
                             max_unconfirmed=s.max_unconfirmed_settlements)
        self.sweeper = Sweeper(self.ledger, s.sweep_interval_s)
        self.accounts = Accounts(self.redis, self.keyspace, s.usd_rub_default)
        self.admin = build_admin_app(self.accounts, s.admin_token)
        self.web = build_web_app(self.accounts, config, self.redis, self.keyspace)  # cabinet + console pages
        self.auth = Authenticator(self.redis, self.keyspace, down=lambda: self.ledger.down)
        self.billing = BillingGate(self.ledger, self.prices, s)
        self._limit = config.settings.max_body_bytes
        self.server_limits = s.limits  # read by the HTTP protocol (gateway.http.server_protocol)
        self._models_body = orjson.dumps({"object": "list", "data": [self._model_card(m) for m in config.enabled_models]})
        self._exact: dict[str, dict[str, Handler]] = {
            "/v1": {"GET": self.index}, "/v1/": {"GET": self.index},
            "/v1/models": {"GET": self.list_models},
            "/v1/chat/completions": {"POST": self.chat},
            "/v1/responses": {"POST": self.responses},
            "/v1/text/generations": {"POST": self.text},
            "/v1/images/generations": {"POST": self.images},
            "/v1/me": {"GET": self.me}, "/v1/balance": {"GET": self.balance}, "/v1/usage": {"GET": self.usage},
        }

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
            if rest.endswith("/chat/completions"):
                params["model"] = rest[: -len("/chat/completions")]
                methods = {"POST": self.chat}
            elif rest and "/" not in rest.rstrip("/"):
                params["model"] = rest.rstrip("/")
                methods = {"GET": self.get_model}
        if methods is None:
            raise NotFound(f"no such endpoint: {path}")
        handler = methods.get(method)
        if handler is None:
            raise MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(methods)}",
                                   headers={"Allow": ", ".join(methods)})
        return handler, params

    # -- endpoints -------------------------------------------------------------------------------------

    async def index(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        body = {
            "object": "api_index", "name": "Botech AI Gateway", "version": __version__,
            "auth": "Authorization: Bearer bt_...",
            "endpoints": [
                {"method": "GET", "path": "/v1/models", "description": "enabled models"},
                {"method": "GET", "path": "/v1/models/{model}", "description": "one model"},
                {"method": "POST", "path": "/v1/chat/completions", "description": "chat completions (main endpoint)"},
                {"method": "POST", "path": "/v1/models/{model}/chat/completions", "description": "same, model in the URL"},
                {"method": "POST", "path": "/v1/responses", "description": "Responses API in OpenAI's format"},
                {"method": "POST", "path": "/v1/text/generations", "description": "text by prompt (text_completion)"},
                {"method": "POST", "path": "/v1/images/generations", "description": "image generation"},
                {"method": "GET", "path": "/v1/me", "description": "the current token's profile"},
                {"method": "GET", "path": "/v1/balance", "description": "balance and spend"},
                {"method": "GET", "path": "/v1/usage", "description": "usage snapshot; ?from=YYYY-MM-DD&to=YYYY-MM-DD"},
            ],
        }
        await send_bytes(send, 200, orjson.dumps(body), request_id)

    async def list_models(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        await self.auth.caller(header(scope, b"authorization"))
        await send_bytes(send, 200, self._models_body, request_id)

    async def get_model(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        await self.auth.caller(header(scope, b"authorization"))
        model = self.config.models.get(params["model"])
        if model is None or not model.enabled:
            raise NotFound(f"model '{params['model']}' not found among enabled models")
        await send_bytes(send, 200, orjson.dumps(self._model_card(model)), request_id)

    async def chat(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        await self._proxied("chat", scope, receive, send, request_id, params)

    async def responses(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        await self._proxied("responses", scope, receive, send, request_id, params)

    async def text(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        await self._proxied("completion", scope, receive, send, request_id, params)

    async def images(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        await self._proxied("image", scope, receive, send, request_id, params)

    async def _proxied(self, endpoint: str, scope: Scope, receive: Receive, send: Send, request_id: str,
                       params: dict[str, str]) -> None:
        """One paid call: auth → body → route → admit (sent) → prepare upstream request → (admitted) → forward →
        settle (sent) → answer → (settled)."""
        caller = await self.auth.caller(header(scope, b"authorization"))
        # requests in flight per key (gateway.proxy.key_slots), counted before the body is read; inline: per request
        slots, kid = self.key_slots.used, caller.key_id
        n = slots.get(kid, 0)
        if n >= self.key_slots.limit:
            self.key_slots.refuse()
        slots[kid] = n + 1
        try:
            raw = await read_body(scope, receive, self._limit)
            if len(raw) > INLINE_PARSE_BYTES:  # refuse a key that can spend nothing before reading megabytes for it
                await can_spend(self.redis, self.keyspace, caller, int(time.time() * 1000))
            body = parse_json_body(raw, self.server_limits.max_json_depth) if len(raw) <= INLINE_PARSE_BYTES \
                else await self.large.parse(raw)
            changed = False
            if "model" in params:
                body["model"] = params["model"]
                changed = True
            BODY_CHECKS[endpoint](body, self.server_limits)
            decision = self.pipeline.route(body, endpoint)
            streaming = body.get("stream") is True
            if streaming and not self.config.settings.streaming:  # the seed's behaviour: plain JSON
                body["stream"] = False
                body.pop("stream_options", None)
                changed, streaming = True, False
            if changed:
                raw = orjson.dumps(body) if len(raw) <= INLINE_PARSE_BYTES else await self.large.run(dumps, body)
            admitting = self.billing.admit(caller, decision, body, raw, request_id, ENDPOINTS[endpoint])
            if streaming:
                await self._stream(endpoint, decision, body, raw, request_id, admitting, receive, send)
                return
            outcome = Outcome()
            call = self.pipeline.forward(decision, body, raw, request_id, outcome, admitting.ticket)
            reply, ticket = await self._answered(admitting, outcome, with_image_count(call, outcome) if endpoint == "image"
                                                 else call)
            # The settlement is written to Redis before the answer goes out, so whatever the client does next
            # sees the charge; the answer does not wait for Redis's reply (one round trip off every call).
            settling = self.billing.settle(ticket, outcome, len(raw), len(reply.body), image_size=str(body.get("size") or "*"),
                                           image_quality=str(body.get("quality") or "*"))
            try:
                extra = ((b"x-gateway-provider", outcome.provider.encode()),) + rate_headers(ticket.admission)
                await send_bytes(send, reply.status, reply.body, request_id, extra)
            finally:
                await settling
        finally:
            n = slots[kid] - 1
            if n:
                slots[kid] = n
            else:
                del slots[kid]

    async def _stream(self, endpoint: str, decision: Any, body: dict[str, Any], raw: bytes, request_id: str,
                      admitting: Admitting, receive: Receive, send: Send) -> None:
        """Relay an SSE stream; bill what the provider reports (or, if cut short, what was produced)."""
        outcome = Outcome()
        # a failure before the first byte is answered with the seed's error JSON (fallback already tried)
        call, ticket = await self._answered(admitting, outcome, self.pipeline.open_stream(
            decision, body, raw, request_id, endpoint, outcome, admitting.ticket))
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                   (b"x-request-id", ticket.request_id.encode()), (b"x-gateway-provider", call.provider.encode()),
                   *rate_headers(ticket.admission)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        relay = asyncio.ensure_future(relay_stream(call, send))
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        cut, error = False, None
        try:
            done, _ = await asyncio.wait({relay, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if relay in done:
                error = relay.result()
            else:  # the client went away: stop reading and close the upstream connection at once
                cut = True
                relay.cancel()
                await asyncio.gather(relay, return_exceptions=True)
        finally:
            watcher.cancel()
            if cut or error is not None:
                call.upstream.close()
            else:
                call.upstream.finish()
            source = call.source
            complete = not cut and error is None and source.usage is not None
            outcome.status = 200
            outcome.usage = source.usage if complete else estimate(len(raw), source.out_chars, source.usage)
            outcome.error = error or ("client disconnected mid-stream" if cut else "")
            settling = self.billing.settle(ticket, outcome, extra={"stream": 1, **({"cut": 1} if cut else {})})
            try:  # as for a plain answer: the settlement is on the wire before the end of the stream
                if not cut:
                    tail = call.framer.error(error) if error is not None else call.end()
                    await send({"type": "http.response.body", "body": tail, "more_body": False})
            finally:
                await settling

    async def _answered(self, admitting: Admitting, outcome: Outcome, call: Awaitable[T]) -> tuple[T, Ticket]:
        """Await the upstream part of a paid call and its admission. A failure is recorded at no cost
        and raised again (a refused admission raises its refusal instead)."""
        try:
            result = await call
        except GatewayError as err:
            await self._settle_failure(admitting, outcome, err)
            raise
        except BaseException:
            outcome.status, outcome.error = 500, "internal error"
            with contextlib.suppress(GatewayError):  # a refusal here changes nothing: the crash is the answer
                await self._settle_failure(admitting, outcome, None)
            raise
        return result, await admitting.ticket()

    async def _settle_failure(self, admitting: Admitting, outcome: Outcome, err: GatewayError | None) -> None:
        """A call that ends in an error: recorded at no cost; a client-visible error carries the key's
        rate-limit headers like a success would. An admission that was refused raises its refusal here
        instead (nothing was reserved, and the refusal is what the client must see)."""
        ticket = await admitting.ticket()
        if err is not None:
            outcome.status, outcome.error = err.status, err.message
        await self.billing.settle(ticket, outcome)
        if err is not None:
            err.headers.update({k.decode(): v.decode() for k, v in rate_headers(ticket.admission)})

    async def me(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        caller = await self.auth.caller(header(scope, b"authorization"))
        await self._check_active(caller)
        await send_bytes(send, 200, orjson.dumps(await self.accounts.me(caller.account_id, caller.key_id)), request_id)

    async def balance(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        caller = await self.auth.caller(header(scope, b"authorization"))
        await self._check_active(caller)
        doc = await self.accounts.balance(caller.account_id, caller.key_id)
        await send_bytes(send, 200, orjson.dumps(doc), request_id)

    async def usage(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        caller = await self.auth.caller(header(scope, b"authorization"))
        await self._check_active(caller)
        query = parse_qs(scope.get("query_string", b"").decode())
        try:
            start = date.fromisoformat(query["from"][0]) if "from" in query else None
            end = date.fromisoformat(query["to"][0]) if "to" in query else None
            doc = await self.accounts.usage(caller.account_id, start, end)
        except ValueError as exc:  # bad dates and InvalidInput
            raise BadRequest(str(exc) if isinstance(exc, InvalidInput) else "from/to must be dates as YYYY-MM-DD") from None
        await send_bytes(send, 200, orjson.dumps(doc), request_id)

    async def _check_active(self, caller: Any) -> None:
        key = await self.accounts.key(caller.account_id, caller.key_id)
        if key.status != "ACTIVE":
            raise Unauthorized("token revoked" if key.status == "REVOKED" else "token blocked")

    @staticmethod
    def _model_card(model: Any) -> dict[str, Any]:
        return {"id": model.name, "object": "model", "created": 0, "owned_by": model.owned_by,
                "endpoint": ENDPOINT_OF_KIND.get(model.kind, ""), "kind": model.kind,
                "context_window": model.context_window, "max_output_tokens": model.max_output_tokens}


async def with_image_count(call: Awaitable[Reply], outcome: Outcome) -> Reply:
    reply = await call
    count_images(outcome)
    return reply


async def relay_stream(call: StreamCall, send: Send) -> str | None:
    """Send the stream's frames as they come; returns the error that ended it early, if any (the
    closing frames or the error event are sent by the caller once the settlement is on its way)."""
    try:
        async for data in call.frames():
            await send({"type": "http.response.body", "body": data, "more_body": True})
    except (StreamFailed, UpstreamFailure) as exc:
        detail = getattr(exc, "detail", "")
        log.warning("stream from %s failed: %s%s", call.provider, exc, f" ({detail})" if detail else "")
        return str(exc)
    except Exception:  # the headers are out: the only way left to tell the client is an error event
        log.exception("stream from %s broke in the gateway", call.provider)
        return "the gateway could not translate the provider's stream"
    return None


async def wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
