"""Model name + endpoint → catalogue entry and the provider candidates, each with its plan: which wire
operation serves the call and which adapters (Responses ↔ chat, text → chat) wrap it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import CatalogueModel, Config, Provider
from gateway.errors import BadRequest, NotFound
from gateway.proxy.endpoints import ENDPOINTS, Endpoint, Plan, native_path


@dataclass(frozen=True, slots=True)
class RouteDecision:
    model: CatalogueModel
    endpoint: Endpoint
    candidates: tuple[tuple[Provider, Plan], ...]


class Router:
    """Every (enabled model, endpoint) decision is made once at start-up: routing is pure config."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._cache: dict[tuple[str, str], RouteDecision] = {}
        for name, model in config.models.items():
            if not model.enabled:
                continue
            route = next((r for r in config.routes if r.matches(name)), None)
            if route is None:
                continue
            providers = [config.providers[p] for p in (route.primary, route.fallback) if p]
            for endpoint in ENDPOINTS.values():
                candidates = []
                for provider in providers:
                    plan = endpoint.plan(model.kind, set(config.wire_of(provider).operations))
                    if plan is not None:
                        candidates.append((provider, plan))
                if candidates:
                    self._cache[(name, endpoint.name)] = RouteDecision(model, endpoint, tuple(candidates))

    def resolve(self, model_name: object, endpoint: Endpoint) -> RouteDecision:
        """The decision for `model_name` on `endpoint`."""
        if not isinstance(model_name, str) or not model_name:
            raise BadRequest("'model' is required and must be a string")
        hit = self._cache.get((model_name, endpoint.name))
        if hit is not None:
            return hit
        model = self._config.models.get(model_name)
        if model is None or not model.enabled:
            raise NotFound(unavailable_model(model_name, model))
        native = native_path(model.kind)
        raise BadRequest(f"model '{model_name}' is a {model.kind} model and cannot be used on {endpoint.path}"
                         + (f": use {native}" if native else ""))


def unavailable_model(name: str, model: CatalogueModel | None) -> str:
    """The 404's message: a disabled model says why (its `reason` in config/models.yaml)."""
    if model is not None and not model.enabled:
        reason = model.reason.strip().rstrip(".")
        return f"model '{name}' is disabled: {reason}" if reason else f"model '{name}' is disabled"
    return f"model '{name}' not found among enabled models"
