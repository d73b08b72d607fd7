"""Typed, frozen records of the loaded configuration."""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # compiled objects the config holds; their modules do not import this one back at run time
    from gateway.translate.adapters import Adapter
    from gateway.translate.wire_operation import Wire


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may cost a worker before it is cut off (config/gateway.yaml `server.limits`).
    The HTTP protocol applies the connection, head and body limits; the app the request-shape ones."""

    max_head_bytes: int = 64 * 1024        # raw bytes of request line + headers; more → 431
    head_timeout_s: float = 10.0           # from a head's first byte to its end; slower → 408
    body_min_rate: int = 1024              # bytes/s a request body must average once the grace is over
    body_grace_s: float = 5.0              # → 408 for a body that trickles
    max_connections: int = 0               # per worker; 0: from the file-descriptor limit
    health_reserve: int = 16               # connections beyond the cap that may still ask /healthz, /readyz
    max_inflight_body_bytes: int = 256 * 1024 * 1024   # request bodies held per worker; more → 503
    max_concurrent_per_key: int = 256      # requests in flight per API key and worker; more → 429
    max_messages: int = 10_000             # chat messages / Responses input items per request → 400
    max_content_parts: int = 10_000        # content parts over all messages of a request → 400
    max_tools: int = 512                   # tool definitions per request → 400
    max_json_depth: int = 64               # nesting of objects and arrays → 400
    max_json_values: int = 200_000         # JSON values in a large body (checked before this process parses it)

    def connection_cap(self) -> int:
        """Open client connections a worker accepts for any request. Each one may need an upstream
        connection too, and Redis, logs and the journal need a few: half of what is left of the
        process's file descriptors, when not set."""
        if self.max_connections > 0:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return max(16, (soft - 64 - self.health_reserve) // 2)


@dataclass(frozen=True, slots=True)
class Observability:
    """config/gateway.yaml `observability:` — what the operator sees (gateway.observability)."""

    metrics: bool = True                   # /metrics and the per-request counters behind it
    metrics_port: int = 0                  # 0: /metrics on the main port; else a listener of its own
    metrics_host: str = ""                 # "" : server.host
    metrics_token: str = ""                # when set, /metrics wants `Authorization: Bearer <token>`
    request_log: bool = True               # one line per request on stderr
    log_format: str = "json"               # json | text (the request line and every other log line)
    ready_timeout_ms: int = 1000           # /readyz: Redis must answer a PING within this
    otlp_endpoint: str = ""                # OpenTelemetry traces over OTLP/HTTP to <this>/v1/traces; "" : off
    service_name: str = "botech-gateway"   # the traces' service.name


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_bytes: int = 20 * 1024 * 1024
    max_upload_bytes: int = 25 * 1024 * 1024   # multipart uploads (transcription, image edits)
    upload_timeout_ms: int = 120_000           # the upstream deadline of an upload (long audio takes long)
    streaming: bool = True
    log_level: str = "info"
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")   # reverse proxies whose headers are believed
    forwarded_header: str = "x-forwarded-for"                    # or "forwarded" (RFC 7239)
    timeout_ms: int = 8000
    pool_size: int = 256
    redis_url: str = ""
    data_dir: str = "./data"
    redis_prefix: str = "gw"
    redis_connect_timeout_ms: int = 1000    # a (re)connect to Redis that takes longer fails
    redis_command_timeout_ms: int = 2000    # a Redis reply later than this fails the call, drops the connection
    redis_replica_acks: int = -1            # credits wait for this many replicas (WAIT); -1 auto, 0 never
    redis_replica_wait_ms: int = 1000
    archive_enabled: bool = True            # history and ledger drained into a database (gateway.archive)
    archive_url: str = ""                   # DATABASE_URL; empty: SQLite under data_dir
    archive_worker: bool = True             # this process may run the archiver (false: `gateway archive run` elsewhere)
    archive_redis_keep_s: int = 86400       # archived history older than this leaves Redis
    archive_redis_cap: int = 1_000_000      # settle.lua's MAXLEN while archiving (billing.history_max otherwise)
    archive_interval_s: float = 5.0
    archive_batch: int = 5000
    archive_full_scan_s: float = 3600.0
    token_cache_ms: int = 60_000           # how long a worker keeps a token → key lookup
    admin_token: str = ""
    usd_rub_default: Decimal = Decimal(95)
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
    web_default_locale: str = "ru"          # the cabinet's language until a customer picks one (ru, en)
    web_payment_poll_s: float = 15.0        # how often pending top-ups are asked about at the provider
    web_require_verified_email: bool = True  # a signed-up customer confirms the address before making a key
    web_signups_per_hour: int = 5           # sign-ups (and reset requests) per client address and hour
    web_verify_ttl_s: int = 3 * 86400       # how long an address confirmation link works
    web_reset_ttl_s: int = 3600             # how long a password reset link works (once)
    smtp_host: str = ""                     # empty: no e-mail is sent (and the verification gate is off)
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "Botech AI Gateway <noreply@botech.pro>"
    smtp_starttls: bool = True              # STARTTLS when the server offers it (plain on loopback tests)
    alerts_allow_loopback: bool = False     # webhook alerts to 127.0.0.1/::1 (tests only; never private nets)
    limits: ServerLimits = field(default_factory=ServerLimits)
    shutdown_grace_s: float = 30.0          # SIGTERM: requests and streams in flight get this long to finish
    observability: Observability = field(default_factory=Observability)


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
    proxy: str = ""         # http:// proxy URL (from the file or the environment), "" for direct
    ca_file: str = ""       # TLS trust: only these CAs when set (gateway.config.outbound)
    ca_dir: str = ""

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
    characters: Decimal = Decimal(0)        # per 1M input characters (speech)
    input_audio: Decimal | None = None      # per 1M input audio tokens (else the input price)
    output_audio: Decimal | None = None     # per 1M output audio tokens (else the output price)
    per_audio_minute: Decimal = Decimal(0)  # per minute of audio (`per_audio_second` × 60 in the file)
    markup_percent: Decimal = Decimal(0)
    source: str = ""
    effective: str = ""
    file: str = ""                          # the pricing.d/ file that gives it (config errors name it)


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
    wires: dict[str, Wire]                    # providers.d/wire/*.yaml, compiled
    prices: dict[str, Price]
    adapters: dict[str, Adapter] = field(default_factory=dict)   # gateway/adapters/*.yaml, compiled
    payments: dict[str, PaymentProvider] = field(default_factory=dict)   # config/payments.yaml
    files: tuple[str, ...] = field(default=())
    variants: dict[str, Wire] = field(default_factory=dict)  # a provider's own variant of its wire (`overrides:`)
    version: str = ""   # a hash of the files' bytes as read: the same in every process that read the same files

    def wire_of(self, provider: Provider) -> Wire:
        """The wire a provider speaks: its own variant when its file overrides operations, else the shared one."""
        return self.variants.get(provider.name) or self.wires[provider.wire]

    @property
    def enabled_models(self) -> list[CatalogueModel]:
        return [m for m in self.models.values() if m.enabled]
