"""One config generation: everything a worker builds from a Config to serve /v1 with it — routing, upstream
pools, prices, admission and settlement, the paid calls and the route table. A reload builds a new one
beside the old (gateway.reload); a request keeps the one it started on to its end."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gateway.auth import Authenticator
from gateway.config.model import Config
from gateway.http.upstreams import UpstreamPool
from gateway.pricing import PriceBook
from gateway.proxy.billing import BillingGate
from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.forwarding import Forwarder
from gateway.proxy.key_slots import KeySlots
from gateway.proxy.large_bodies import LargeBodies
from gateway.proxy.paid_call import PaidCalls
from gateway.proxy.routing import Router
from gateway.proxy.token_count import TokenCounts
from gateway.store.accounts import Accounts
from gateway.store.ledger import Caller, Ledger
from gateway.v1_info import InfoEndpoints

Handler = Callable[..., Awaitable[Any]]


@dataclass
class Shared:
    """What outlives generations: Redis and its ledger, tokens, accounts, per-key slots, large bodies."""

    ledger: Ledger
    auth: Authenticator
    accounts: Accounts
    large: LargeBodies
    key_slots: KeySlots
    can_spend: Callable[[Caller], Awaitable[None]]


@dataclass(eq=False)  # compared by identity
class Generation:
    config: Config
    router: Router
    pool: UpstreamPool
    prices: PriceBook
    billing: BillingGate
    paid: PaidCalls
    info: InfoEndpoints
    loaded_at: float = field(default_factory=time.time)
    # the /v1 route table: exact paths, /v1/models/{model}/chat/completions, /v1/models/{model}
    exact: dict[str, dict[str, Handler]] = field(default_factory=dict)
    chat_in_path: dict[str, Handler] = field(default_factory=dict)
    one_model: dict[str, Handler] = field(default_factory=dict)
    # paths of the form <prefix>{model}<suffix> (Gemini's /v1beta/models/{model}:generateContent): prefix →
    # suffix → methods; and the Gemini API's own catalogue entry (/v1beta/models/{model})
    templated: dict[str, dict[str, dict[str, Handler]]] = field(default_factory=dict)
    generate_one_model: dict[str, Handler] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.config.version


def build(config: Config, shared: Shared) -> Generation:
    s = config.settings
    router = Router(config)
    pool = UpstreamPool(config.providers)
    prices = PriceBook(config.prices)
    billing = BillingGate(shared.ledger, prices, s, version=config.version)
    paid = PaidCalls(config, shared.auth, billing, router, Forwarder(config, pool, shared.large), shared.large,
                     shared.key_slots, shared.can_spend)
    info = InfoEndpoints(config, shared.auth, shared.accounts)
    gen = Generation(config, router, pool, prices, billing, paid, info)
    gen.exact = {
        "/v1": {"GET": info.index}, "/v1/": {"GET": info.index},
        "/v1/models": {"GET": info.list_models},
        "/v1/me": {"GET": info.me}, "/v1/balance": {"GET": info.balance},
        "/v1/usage": {"GET": info.usage},
    }
    counts = TokenCounts(config, shared.auth, router, paid.forwarder, shared.can_spend)  # free token counts
    for endpoint in ENDPOINTS.values():
        serve = counts if endpoint.billed == "free" else paid
        for path in endpoint.paths:
            methods: dict[str, Handler] = {"POST": partial(serve, endpoint)}
            if "{model}" in path:
                prefix, _, suffix = path.partition("{model}")
                gen.templated.setdefault(prefix, {})[suffix] = methods
            else:
                gen.exact[path] = methods
    gen.chat_in_path = {"POST": partial(paid, ENDPOINTS["chat"])}
    gen.one_model = {"GET": info.get_model}
    # the Gemini API's catalogue (google-genai's models.list / models.get)
    generate = ENDPOINTS["generate"]
    gen.exact[generate.path.partition("{model}")[0].rstrip("/")] = {"GET": partial(info.generate_models, generate)}
    gen.generate_one_model = {"GET": partial(info.generate_model, generate)}
    return gen
