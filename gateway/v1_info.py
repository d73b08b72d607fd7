"""The /v1 endpoints the gateway answers itself: the index, the catalogue, and the caller's own account
(profile, balances, usage). Free: no admission, no history entry."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import parse_qs

import orjson

from gateway import __version__
from gateway.auth import Authenticator
from gateway.config.model import CatalogueModel, Config
from gateway.proxy.routing import unavailable_model
from gateway.errors import BadRequest, NotFound, Unauthorized
from gateway.http.asgi import Receive, Scope, Send, header, send_bytes
from gateway.proxy.endpoints import ENDPOINTS, native_path
from gateway.store.accounts import Accounts, InvalidInput
from gateway.store.ledger import Caller

_DESCRIPTIONS = {"chat": "chat completions (main endpoint)", "responses": "Responses API in OpenAI's format",
                 "completion": "text by prompt (text_completion)", "image": "image generation"}


def model_card(model: CatalogueModel) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": 0, "owned_by": model.owned_by,
            "endpoint": native_path(model.kind), "kind": model.kind,
            "context_window": model.context_window, "max_output_tokens": model.max_output_tokens}


class InfoEndpoints:
    def __init__(self, config: Config, auth: Authenticator, accounts: Accounts) -> None:
        self._config = config
        self._auth = auth
        self._accounts = accounts
        self._models_body = orjson.dumps({"object": "list", "data": [model_card(m) for m in config.enabled_models]})
        paid = [{"method": "POST", "path": e.path, "description": _DESCRIPTIONS.get(e.name, e.name)}
                for e in ENDPOINTS.values()]
        self._index_body = orjson.dumps({
            "object": "api_index", "name": "Botech AI Gateway", "version": __version__,
            "auth": "Authorization: Bearer bt_...",
            "endpoints": [
                {"method": "GET", "path": "/v1/models", "description": "enabled models"},
                {"method": "GET", "path": "/v1/models/{model}", "description": "one model"},
                paid[0],
                {"method": "POST", "path": "/v1/models/{model}/chat/completions", "description": "same, model in the URL"},
                *paid[1:],
                {"method": "GET", "path": "/v1/me", "description": "the current token's profile"},
                {"method": "GET", "path": "/v1/balance", "description": "balance and spend"},
                {"method": "GET", "path": "/v1/usage", "description": "usage snapshot; ?from=YYYY-MM-DD&to=YYYY-MM-DD"},
            ],
        })

    async def index(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        await send_bytes(send, 200, self._index_body, request_id)

    async def list_models(self, scope: Scope, receive: Receive, send: Send, request_id: str,
                          params: dict[str, str]) -> None:
        await self._auth.caller(header(scope, b"authorization"))
        await send_bytes(send, 200, self._models_body, request_id)

    async def get_model(self, scope: Scope, receive: Receive, send: Send, request_id: str,
                        params: dict[str, str]) -> None:
        await self._auth.caller(header(scope, b"authorization"))
        model = self._config.models.get(params["model"])
        if model is None or not model.enabled:
            raise NotFound(unavailable_model(params["model"], model))
        await send_bytes(send, 200, orjson.dumps(model_card(model)), request_id)

    async def me(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        caller = await self._active(scope)
        await send_bytes(send, 200, orjson.dumps(await self._accounts.me(caller.account_id, caller.key_id)), request_id)

    async def balance(self, scope: Scope, receive: Receive, send: Send, request_id: str,
                      params: dict[str, str]) -> None:
        caller = await self._active(scope)
        doc = await self._accounts.balance(caller.account_id, caller.key_id)
        await send_bytes(send, 200, orjson.dumps(doc), request_id)

    async def usage(self, scope: Scope, receive: Receive, send: Send, request_id: str, params: dict[str, str]) -> None:
        caller = await self._active(scope)
        query = parse_qs(scope.get("query_string", b"").decode())
        try:
            start = date.fromisoformat(query["from"][0]) if "from" in query else None
            end = date.fromisoformat(query["to"][0]) if "to" in query else None
            doc = await self._accounts.usage(caller.account_id, start, end)
        except ValueError as exc:  # bad dates and InvalidInput
            raise BadRequest(str(exc) if isinstance(exc, InvalidInput) else "from/to must be dates as YYYY-MM-DD") from None
        await send_bytes(send, 200, orjson.dumps(doc), request_id)

    async def _active(self, scope: Scope) -> Caller:
        """The caller, whose key must still be active (these answers are not admitted by Redis)."""
        caller = await self._auth.caller(header(scope, b"authorization"))
        key = await self._accounts.key(caller.account_id, caller.key_id)
        if key.status != "ACTIVE":
            raise Unauthorized("token revoked" if key.status == "REVOKED" else "token blocked")
        return caller
