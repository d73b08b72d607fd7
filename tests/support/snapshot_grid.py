"""The snapshot grid: the repo's config, a router and a forwarder that sends nothing, and the route a golden
test renders for a provider on an endpoint."""

from __future__ import annotations

from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.forwarding import Forwarder
from gateway.proxy.routing import Router
from tests.support import model_for, repo_config

CFG = repo_config()
ROUTER = Router(CFG)
PIPELINE = Forwarder(CFG, pool=None)  # type: ignore[arg-type]  # nothing is sent


def candidate(provider: str, endpoint: str):
    model = model_for(provider, endpoint)
    if model is None:
        return None
    decision = ROUTER.resolve(model, ENDPOINTS[endpoint])
    return next(((p, plan) for p, plan in decision.candidates if p.name == provider), None), decision


def responses_only(provider: str):
    decision = ROUTER.resolve("gpt-5-codex", ENDPOINTS["chat"]) if provider == "openai" else None
    return (decision.candidates[0], decision) if decision else None
