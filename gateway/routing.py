"""Model name → catalogue entry + provider candidates (primary, then at most one fallback)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.load import KIND_OPERATION
from gateway.config.model import CatalogueModel, Config, Provider
from gateway.errors import BadRequest, NotFound

ENDPOINT_OF_KIND = {
    "chat": "/v1/chat/completions", "responses": "/v1/responses", "image": "/v1/images/generations",
    "completion": "/v1/text/generations",
}


@dataclass(frozen=True, slots=True)
class RouteDecision:
    model: CatalogueModel
    operation: str
    candidates: tuple[Provider, ...]


class Router:
    """Resolved once per model name and memoised: routing is pure config."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._cache: dict[tuple[str, str], RouteDecision] = {}
        self._decide_all()

    def _decide_all(self) -> None:
        cfg = self._config
        for name, model in cfg.models.items():
            if not model.enabled:
                continue
            route = next((r for r in cfg.routes if r.matches(name)), None)
            if route is None:
                continue
            candidates = tuple(cfg.providers[p] for p in (route.primary, route.fallback) if p)
            self._cache[(name, KIND_OPERATION[model.kind])] = RouteDecision(model, KIND_OPERATION[model.kind], candidates)

    def resolve(self, model_name: object, operation: str) -> RouteDecision:
        """The decision for `model_name` on an endpoint served by `operation` (chat, image...)."""
        if not isinstance(model_name, str) or not model_name:
            raise BadRequest("'model' is required and must be a string")
        hit = self._cache.get((model_name, operation))
        if hit is not None:
            return hit
        model = self._config.models.get(model_name)
        if model is None or not model.enabled:
            raise NotFound(f"model '{model_name}' not found among enabled models")
        endpoint = ENDPOINT_OF_KIND.get(model.kind, "")
        raise BadRequest(f"model '{model_name}' is a {model.kind} model: use {endpoint or 'another endpoint'}")
