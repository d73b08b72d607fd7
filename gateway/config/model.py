"""Typed, frozen records of the loaded configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_bytes: int = 20 * 1024 * 1024
    streaming: bool = True
    log_level: str = "info"
    timeout_ms: int = 8000
    pool_size: int = 256
    redis_url: str = ""
    data_dir: str = "./data"
    redis_prefix: str = "gw"
    redis_connect_timeout_ms: int = 1000    # a (re)connect to Redis that takes longer fails
    redis_command_timeout_ms: int = 2000    # a Redis reply later than this fails the call, drops the connection
    token_cache_ms: int = 2000
    admin_token: str = ""
    usd_rub_default: Decimal = Decimal("95")
    default_max_output_tokens: int = 4096
    history_max: int = 100000
    reservation_ttl_s: int = 900            # an unsettled reservation (its process died) is released after this
    sweep_interval_s: float = 30.0          # each process releases expired reservations of every account this often
    journal_dir: str = ""                   # unconfirmed settlements; empty: <data_dir>/journal
    late_settlement_window_s: int = 7 * 86400   # an expired reservation's record is kept this long for a late settlement
    max_unconfirmed_settlements: int = 100_000  # beyond this, new paid calls get 503 until Redis confirms
    web_session_ttl_s: int = 8 * 3600       # the cabinet's session cookie (idle time out)
    web_cookie_secure: bool = True          # off only for plain-http testing on loopback
    web_login_max_failures: int = 5         # per login (and 4x per client address) in the window
    web_login_window_s: int = 900
    web_public_url: str = ""                # base of the payment return URL; empty: from the request


@dataclass(frozen=True, slots=True)
class CatalogueModel:
    name: str
    kind: str
    enabled: bool
    reason: str = ""
    upstream: str = ""
    owned_by: str = "system"
    context_window: int | None = None
    max_output_tokens: int | None = None

    @property
    def upstream_name(self) -> str:
        return self.upstream or self.name


@dataclass(frozen=True, slots=True)
class Route:
    patterns: tuple[str, ...]
    primary: str
    fallback: str | None = None

    def matches(self, model: str) -> bool:
        return any(pattern_matches(p, model) for p in self.patterns)


def pattern_matches(pattern: str, model: str) -> bool:
    """Patterns are exact names or a literal prefix followed by one '*'."""
    if pattern.endswith("*"):
        return model.startswith(pattern[:-1])
    return model == pattern


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    wire: str
    base_url: str
    api_key: str
    auth_header: str
    auth_prefix: str
    headers: tuple[tuple[str, str], ...]
    timeout_ms: int
    pool_size: int
    source: str

    @property
    def configured(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True, slots=True)
class Price:
    """USD prices as Decimals; converted to integer nano-USD arithmetic by the pricing module."""

    model: str
    free: bool = False
    input: Decimal = Decimal(0)
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    output: Decimal = Decimal(0)
    per_request: Decimal = Decimal(0)
    per_image: tuple[tuple[str, str, Decimal], ...] = ()
    markup_percent: Decimal = Decimal(0)
    source: str = ""
    effective: str = ""


@dataclass(frozen=True, slots=True)
class PaymentProvider:
    """One top-up provider from config/payments.yaml; configured once it has its keys."""

    name: str
    kind: str
    title: str
    api_url: str
    shop_id: str
    secret_key: str
    webhook_secret: str
    currency: str
    min_amount: Decimal
    max_amount: Decimal

    @property
    def configured(self) -> bool:
        return bool(self.shop_id and self.secret_key and self.webhook_secret)


@dataclass(frozen=True)
class Config:
    root: str
    settings: Settings
    models: dict[str, CatalogueModel]
    routes: tuple[Route, ...]
    providers: dict[str, Provider]
    wires: dict[str, dict[str, Any]]          # raw wire documents; compiled by gateway.translate
    prices: dict[str, Price]
    adapters: dict[str, Any] = field(default_factory=dict)   # compiled gateway/adapters/*.yaml
    payments: dict[str, PaymentProvider] = field(default_factory=dict)   # config/payments.yaml
    files: tuple[str, ...] = field(default=())

    @property
    def enabled_models(self) -> list[CatalogueModel]:
        return [m for m in self.models.values() if m.enabled]
