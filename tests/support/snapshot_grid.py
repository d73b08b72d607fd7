"""The snapshot grid: a config root, a router and a forwarder that sends nothing, and the route a golden
test renders for a provider on an endpoint.

The snapshots name the providers they render through (GRID_PROVIDERS; a recorded provider answer goes
through its wire's provider in WIRE_PROVIDER), so a provider an operator adds — on any wire, as a primary or
only as a fallback — renders nothing here and changes no snapshot. The root is the repo's, or
`$GATEWAY_SNAPSHOT_ROOT`: an operator's config checked against the same snapshots (their CI)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.forwarding import Forwarder
from gateway.proxy.routing import RouteDecision, Router
from tests.support import REPO, RESPONSES_ONLY_MODEL, config_env, model_for
from tests.support.stand_ins import with_stand_ins

# the providers the request snapshots are rendered through (their ids name them)
GRID_PROVIDERS = ("anthropic", "gemini", "openai", "xai")
# the provider a recorded answer of each wire (tests/golden/fixtures/{responses,streams}/<wire>/) goes through
WIRE_PROVIDER = {"anthropic": "anthropic", "gemini": "gemini", "openai": "openai"}

Found = tuple[Any, RouteDecision]  # ((provider, plan) or None, the route decision)


def snapshot_root() -> Path:
    return Path(os.environ.get("GATEWAY_SNAPSHOT_ROOT") or REPO)


class Grid:
    """One config root's router and a forwarder that only prepares and translates (nothing is sent)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config: Config = load_config(root, with_stand_ins(root, config_env()))
        self.router = Router(self.config)
        self.forwarder = Forwarder(self.config, pool=None)  # type: ignore[arg-type]  # nothing is sent

    def providers(self) -> list[str]:
        return [p for p in GRID_PROVIDERS if p in self.config.providers]

    def candidate(self, provider: str, endpoint: str) -> Found | None:
        """The plan `provider` serves `endpoint` with for its representative model (None: it serves none)."""
        model = model_for(provider, endpoint, self.config)
        if model is None:
            return None
        decision = self.router.resolve(model, ENDPOINTS[endpoint])
        return next(((p, plan) for p, plan in decision.candidates if p.name == provider), None), decision

    def responses_only(self, provider: str) -> Found | None:
        """Chat on the provider's Responses-only model (served through the Responses API)."""
        model = RESPONSES_ONLY_MODEL.get(provider)
        if model is None or model not in self.config.models:
            return None
        decision = self.router.resolve(model, ENDPOINTS["chat"])
        return decision.candidates[0], decision


GRID = Grid(snapshot_root())
CFG = GRID.config
PIPELINE = GRID.forwarder
candidate = GRID.candidate
responses_only = GRID.responses_only
ROUTER = GRID.router
