"""The operator's HTTP API under /admin/v1: the same operations as the `gateway accounts|keys|fx|history`
commands, over `Accounts`, behind one bearer token (GATEWAY_ADMIN_TOKEN).

Unlike the /v1 hot path this is a FastAPI app (rare calls: validation matters more than CPU per call).
Every answer that is not a 2xx is the seed's error shape {"statusCode", "error", "message"}: a missing or
wrong token 401, the API disabled (no token configured) 403, bad JSON or wrong types 400, an unknown
account/key/path 404, a duplicate login 409. Money in requests is a JSON string or number read through its
text (Decimal, at most 9 decimals); money in answers is a JSON number in USD with its RUB twin.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.account_admin import (
    ID_RE,
    Money,
    account_doc,
    check_limit,
    check_models,
    correct,
    decimal_of,
    history_doc,
    key_doc,
    ledger_doc,
    topup,
)
from gateway.errors import error_body
from gateway.money import MoneyError, parse_rate, usd_to_nano
from gateway.store.accounts import Accounts, ConflictError, InvalidInput, NotFoundError
from gateway.store.replicated import NotReplicated

PREFIX = "/admin/v1"
MAX_BODY = 64 * 1024
ACTOR = "admin-api"


def _amount(value: Any) -> Decimal:
    try:
        return decimal_of(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


Amount = Annotated[Decimal, BeforeValidator(_amount)]
Count = Annotated[StrictInt, Field(ge=0)]
Text = Annotated[StrictStr, Field(max_length=500)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewAccount(_Body):
    login: Annotated[StrictStr, Field(max_length=320)]
    role: Literal["customer", "admin"] = "customer"


class TopUp(_Body):
    usd: Amount | None = None
    rub: Amount | None = None
    reason: Text = ""
    operation_id: Annotated[StrictStr, Field(max_length=200)] = ""


class Correction(_Body):
    usd: Amount
    reason: Text
    operation_id: Annotated[StrictStr, Field(max_length=200)] = ""


class Rate(_Body):
    usd_rub: Amount


class NewKey(_Body):
    name: Annotated[StrictStr, Field(max_length=100)] = ""
    monthly_limit_usd: Amount | None = None
    models: list[StrictStr] = []
    rpm: Count = 0
    tpm: Count = 0


class KeyLimits(_Body):
    monthly_limit_usd: Amount | None = None   # null removes the limit; absent leaves it
    models: list[StrictStr] | None = None     # [] or null: every model
    rpm: Count | None = None
    tpm: Count | None = None


class _Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(error_body(status, message), status_code=status, media_type="application/json",
                    headers=headers)


def _check_id(value: str, what: str) -> str:
    if not ID_RE.match(value):
        raise NotFoundError(f"no {what} {value}")
    return value


def _nano(amount: Decimal | None) -> int | None:
    return None if amount is None else usd_to_nano(amount)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        if e.get("type") == "json_invalid":
            return f"malformed JSON body: {e.get('ctx', {}).get('error', 'cannot parse')}"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "missing" and not loc:
            msg = "a JSON body is required"
        elif e.get("type") in ("model_attributes_type", "dict_type") and not loc:
            msg = "the body must be a JSON object, sent with Content-Type: application/json"
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


class _Guard:
    """Bearer-token check in front of everything (so a stranger learns nothing, not even a 404 or 400)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reply: Response | None = None
        if not self.token:
            reply = _error(403, "admin API disabled: set GATEWAY_ADMIN_TOKEN")
        else:
            headers = dict(scope.get("headers") or ())
            auth = headers.get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if not auth:
                reply = _error(401, "missing admin token: send Authorization: Bearer <GATEWAY_ADMIN_TOKEN>",
                               {"WWW-Authenticate": "Bearer"})
            elif scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                reply = _error(401, "invalid admin token", {"WWW-Authenticate": "Bearer"})
            else:
                length = headers.get(b"content-length")
                if length is not None and length.isdigit() and int(length) > MAX_BODY:
                    reply = _error(413, f"request body exceeds the {MAX_BODY} byte limit")
        if reply is not None:
            await reply(scope, receive, send)
            return
        await self.app(scope, receive, send)


def build_admin_app(accounts: Accounts, admin_token: str,
                    config_status: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> FastAPI:
    """`config_status`: the config in force and the last load or reload (GET /admin/v1/config)."""
    app = FastAPI(title="Botech AI Gateway admin API", docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=_Json)
    api = APIRouter(prefix=PREFIX)

    if config_status is not None:
        @api.get("/config")
        async def show_config() -> Any:
            return await config_status()

    async def money() -> Money:
        return Money(await accounts.usd_rub())

    # -- accounts ----------------------------------------------------------------------------------------

    @api.post("/accounts", status_code=201)
    async def create_account(body: NewAccount) -> Any:
        return account_doc(await accounts.create_account(body.login, body.role), await money())

    @api.get("/accounts")
    async def list_accounts(query: str = "", offset: Annotated[int, Query(ge=0)] = 0,
                            limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Any:
        views, total = await accounts.list_accounts(query, offset, limit)
        m = await money()
        return {"object": "list", "data": [account_doc(v, m) for v in views], "total": total,
                "offset": offset, "limit": limit}

    @api.get("/accounts/{account_id}")
    async def show_account(account_id: str) -> Any:
        view = await accounts.account(_check_id(account_id, "account"))
        keys = await accounts.list_keys(account_id)
        return account_doc(view, await money()) | {
            "keys": len(keys), "active_keys": sum(k.status == "ACTIVE" for k in keys)}

    @api.post("/accounts/{account_id}/topup")
    async def topup_account(account_id: str, body: TopUp) -> Any:
        done = await topup(accounts, _check_id(account_id, "account"), usd=body.usd, rub=body.rub,
                           reason=body.reason, operation_id=body.operation_id, actor=ACTOR)
        return done.doc()

    @api.post("/accounts/{account_id}/corrections")
    async def correct_account(account_id: str, body: Correction) -> Any:
        done = await correct(accounts, _check_id(account_id, "account"), body.usd, body.reason,
                             operation_id=body.operation_id, actor=ACTOR)
        return done.doc()

    @api.post("/accounts/{account_id}/block")
    async def block(account_id: str) -> Any:
        return account_doc(await accounts.set_account_status(_check_id(account_id, "account"), "BLOCKED"),
                           await money())

    @api.post("/accounts/{account_id}/unblock")
    async def unblock(account_id: str) -> Any:
        return account_doc(await accounts.set_account_status(_check_id(account_id, "account"), "ACTIVE"),
                           await money())

    @api.get("/accounts/{account_id}/ledger")
    async def ledger(account_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
        await accounts.account(_check_id(account_id, "account"))
        m = await money()
        entries = await accounts.ledger_entries(account_id, limit)
        return {"object": "list", "data": [ledger_doc(e, m) for e in entries], "usd_rub_rate": m.rate_value()}

    @api.get("/accounts/{account_id}/history")
    async def history(account_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                      before: Annotated[str | None, Query(pattern=r"^\d{1,20}(-\d{1,20})?$")] = None) -> Any:
        await accounts.account(_check_id(account_id, "account"))
        m = await money()
        rows = [history_doc(e, m) for e in await accounts.history(account_id, limit, before)]
        return {"object": "list", "data": rows, "next_before": rows[-1]["id"] if len(rows) == limit else None,
                "usd_rub_rate": m.rate_value()}

    # -- exchange rate -----------------------------------------------------------------------------------

    @api.get("/fx")
    async def show_fx() -> Any:
        return {"usd_rub": float(await accounts.usd_rub())}

    @api.post("/fx")
    async def set_fx(body: Rate) -> Any:
        return {"usd_rub": float(await accounts.set_usd_rub(parse_rate(body.usd_rub)))}

    # -- keys ----------------------------------------------------------------------------------------------

    @api.post("/accounts/{account_id}/keys", status_code=201)
    async def create_key(account_id: str, body: NewKey) -> Any:
        limit = _nano(body.monthly_limit_usd)
        check_limit("monthly_limit_usd", limit)
        created = await accounts.create_key(_check_id(account_id, "account"), name=body.name,
                                            monthly_limit=limit, models=check_models(body.models),
                                            rpm=body.rpm, tpm=body.tpm)
        # the only answer that ever carries the secret: it is stored as a hash and cannot be shown again
        return key_doc(created.key, await money()) | {"key": created.secret}

    @api.get("/accounts/{account_id}/keys")
    async def list_keys(account_id: str) -> Any:
        m = await money()
        keys = await accounts.list_keys(_check_id(account_id, "account"))
        return {"object": "list", "data": [key_doc(k, m) for k in keys]}

    @api.post("/keys/{key_id}/revoke")
    async def revoke_key(key_id: str) -> Any:
        return key_doc(await accounts.revoke_key(_check_id(key_id, "key")), await money())

    @api.patch("/keys/{key_id}")
    async def update_key(key_id: str, body: KeyLimits) -> Any:
        given = body.model_fields_set
        limit = _nano(body.monthly_limit_usd)
        check_limit("monthly_limit_usd", limit)
        view = await accounts.update_key_limits(
            _check_id(key_id, "key"), monthly_limit=limit,
            clear_limit="monthly_limit_usd" in given and body.monthly_limit_usd is None,
            models=check_models(body.models or []) if "models" in given else None, rpm=body.rpm, tpm=body.tpm)
        return key_doc(view, await money())

    app.include_router(api)

    # -- errors, all in the seed's shape -------------------------------------------------------------------

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error(404, f"no such endpoint: {request.url.path}")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}", exc.headers)
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error(400, _validation_message(exc))

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> Response:
        return _error(404, str(exc.args[0]) if exc.args else "not found")

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, exc: ConflictError) -> Response:
        return _error(409, str(exc))

    @app.exception_handler(InvalidInput)
    @app.exception_handler(MoneyError)
    async def bad_input(request: Request, exc: ValueError) -> Response:
        return _error(400, str(exc))

    @app.exception_handler(ConnectionError)
    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def unavailable(request: Request, exc: Exception) -> Response:
        # Redis down, a failover under way, or money a replica has not confirmed (gateway.store.replicated):
        # nothing acknowledged; an operation id makes the retry safe
        message = str(exc) if isinstance(exc, NotReplicated) else "Redis is temporarily unavailable; try again"
        return _error(503, message, {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this answer is sent, so the server logs the traceback once
        return _error(500, "internal error")

    app.add_middleware(_Guard, token=admin_token)
    return app
