"""Token counts (POST /v1/messages/count_tokens, :countTokens): free — no admission, no charge, no rate limit,
no history entry. A model whose provider speaks the client's API asks the provider (its count endpoint, a
pass-through like the paid call's); any other model gets an estimate, marked as one by the header
`x-gateway-token-count: estimate`.

The estimate: the request translated to chat as the model would receive it, then one token per 4 bytes of
UTF-8 text (rounded up) over the system prompt, the messages' text and tool results, the tool call arguments
and the tool definitions (as compact JSON), plus 1,000 tokens per image or file part and 4 per message. It
is meant for budgeting a context window, not for billing: the call itself is billed on the provider's count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.auth import Authenticator, credential
from gateway.config.model import Config
from gateway.http.asgi import Receive, Scope, Send, read_body, send_bytes
from gateway.proxy.endpoints import Endpoint
from gateway.proxy.forwarding import Forwarder
from gateway.proxy.request_body import parse_json_body
from gateway.proxy.routing import Router
from gateway.store.ledger import Caller

ESTIMATE_HEADER = ((b"x-gateway-token-count", b"estimate"),)
IMAGE_TOKENS = 1000
MESSAGE_TOKENS = 4


def estimate_tokens(chat: dict[str, Any]) -> int:
    """The estimate above, over an OpenAI chat request."""
    size, extra = 0, 0
    for m in chat.get("messages") or ():
        extra += MESSAGE_TOKENS
        content = m.get("content")
        if isinstance(content, str):
            size += len(content.encode())
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("text"), str):
                    size += len(part["text"].encode())
                elif part.get("type") != "text":
                    extra += IMAGE_TOKENS
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            size += len(str(fn.get("name") or "").encode()) + len(str(fn.get("arguments") or "").encode())
    if chat.get("tools"):
        size += len(orjson.dumps(chat["tools"]))
    return -(-size // 4) + extra


class TokenCounts:
    def __init__(self, config: Config, auth: Authenticator, router: Router, forwarder: Forwarder,
                 can_spend: Callable[[Caller], Awaitable[None]]) -> None:
        self._config = config
        self._settings = config.settings
        self._auth = auth
        self._router = router
        self._forwarder = forwarder
        self._can_spend = can_spend

    async def __call__(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send, request_id: str,
                       params: dict[str, str]) -> None:
        caller = await self._auth.caller(credential(scope, endpoint.auth))
        await self._can_spend(caller)   # a revoked key, a blocked or empty account: refused like a paid call
        raw = await read_body(scope, receive, self._settings.max_body_bytes)
        body = parse_json_body(raw, self._settings.limits.max_json_depth)
        endpoint.check(body, self._settings.limits)
        decision = self._router.resolve(params["model"] if endpoint.model_in_path else body.get("model"), endpoint)
        _, plan = decision.candidates[0]
        if not plan.adapters:  # the provider counts (fallbacks as for a paid call)
            answer = await self._forwarder.forward(decision, body, raw, request_id, _admitted, headers=scope["headers"])
            await send_bytes(send, 200, answer.body, request_id, ((b"x-gateway-provider", answer.provider.encode()),))
            return
        adapters = self._config.adapters
        variables = self._forwarder.variables(decision, request_id)
        inner = adapters[plan.adapters[0]]
        chat = inner.render_request(body, variables)
        tokens = estimate_tokens(chat)
        doc = inner.count_answer(tokens, body, variables)
        await send_bytes(send, 200, orjson.dumps(doc), request_id, ESTIMATE_HEADER)


async def _admitted() -> None:
    return None
