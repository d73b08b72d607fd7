"""Read, validate and cross-check the config root; report every error at once.

Errors read `file: path.to.field: message`. Nothing half-loads: either a complete Config or
ConfigError with the full list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from gateway.config.model import (
    CatalogueModel,
    Config,
    Observability,
    PaymentProvider,
    Price,
    Provider,
    Route,
    ServerLimits,
    Settings,
    pattern_matches,
)
from gateway.config.outbound import outbound
from gateway.config.render_check import render_errors
from gateway.config.schemas import did_you_mean, schema_errors
from gateway.config.yaml_load import DuplicateKeys, load_yaml
from gateway.envsubst import substitute_tree
from gateway.http.client_address import parse_network
from gateway.translate.adapters import load_adapters
from gateway.translate.environment import make_environment
from gateway.translate.tree import TreeError
from gateway.translate.wire_operation import Wire


class ConfigError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Loader:
    def __init__(self, root: Path, env: Mapping[str, str]) -> None:
        self.root = root
        self.env = env
        self.errors: list[str] = []
        self.files: list[str] = []
        self.failed: set[str] = set()       # files that did not load: what follows from them is not reported
        self.suppressed = 0                  # follow-on errors not reported (counted in the summary line)
        self.loose: dict[str, Any] = {}     # a failed file's parsed YAML, when it parsed (to know what it names)
        self.digest = hashlib.sha256()      # over every file read: the config's version

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def err(self, file: str, path: str, message: str) -> None:
        self.errors.append(f"{file}: {path or '<root>'}: {message}")

    def follow_on(self, file: str, path: str, message: str, *, because: bool) -> None:
        """An error that may only follow from a file that failed to load: counted, not shown, when it does."""
        if because:
            self.suppressed += 1
        else:
            self.err(file, path, message)

    def read(self, path: Path, kind: str, *, substitute: bool = True) -> Any:
        """Parse one YAML file, substitute ${VAR}s and validate against its kind's schema."""
        file = self.rel(path)
        self.files.append(file)
        try:
            data = path.read_bytes()
            self.digest.update(f"{file}\0{len(data)}\0".encode() + data)
            doc = load_yaml(data.decode("utf-8"))
        except OSError as exc:
            self.err(file, "", f"cannot read: {exc.strerror}")
            return None
        except UnicodeDecodeError as exc:
            self.err(file, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")
            self.failed.add(file)
            return None
        except DuplicateKeys as exc:
            for where, key, first, second in sorted(exc.duplicates, key=lambda d: d[3]):
                self.err(file, f"{where}.{key}" if where else key,
                         f"duplicate key '{key}' at lines {first} and {second} (YAML would silently keep the "
                         "second); remove one")
            self.failed.add(file)
            return None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else ""
            self.err(file, where, f"invalid YAML: {getattr(exc, 'problem', exc)}")
            self.failed.add(file)
            return None
        origins: dict[str, tuple[str, ...]] = {}
        if substitute:
            sub_errors: list[str] = []
            doc = substitute_tree(doc, self.env, "", sub_errors, origins)
            for e in sub_errors:
                self.errors.append(f"{file}: {e}")
        errors = schema_errors(kind, doc)
        for path_, message in errors:
            names = origins.get(path_)
            if names:  # the file only names the variable: the value at fault is the environment's
                message += f" (the value comes from the environment variable {', '.join(names)})"
            self.err(file, path_, message)
        if errors:
            self.failed.add(file)
            self.loose[file] = doc
            return None
        return doc


def load_config(root: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load the config root (holding config/, providers.d/, pricing.d/) or raise ConfigError."""
    env = os.environ if env is None else env
    base = Path(root).resolve()
    ld = _Loader(base, env)
    if not (base / "config").is_dir():
        raise ConfigError([f"{base}: <root>: no config/ folder here (set --root or GATEWAY_ROOT)"])

    settings_doc = ld.read(base / "config" / "gateway.yaml", "gateway") if (base / "config" / "gateway.yaml").exists() else {}
    routing_doc = ld.read(base / "config" / "routing.yaml", "routing")
    models_doc = ld.read(base / "config" / "models.yaml", "models")
    payments_path = base / "config" / "payments.yaml"
    payments_doc = ld.read(payments_path, "payments") if payments_path.exists() else {}

    settings = _settings(settings_doc or {}, env)
    _check_settings(ld, settings)
    models = {name: CatalogueModel(name=name, **spec) for name, spec in ((models_doc or {}).get("models") or {}).items()}
    routes = tuple(Route(tuple(r["match"]), r["primary"], r.get("fallback"))
                   for r in (routing_doc or {}).get("routes", []))

    jinja = make_environment()
    wires: dict[str, Wire] = {}
    wire_docs: dict[str, dict[str, Any]] = {}
    for path in sorted((base / "providers.d" / "wire").glob("*.yaml")):
        doc = ld.read(path, "wire", substitute=False)
        if doc is None:
            continue
        name = doc["wire"]
        if name != path.stem:
            ld.err(ld.rel(path), "wire", f"'{name}' must equal the file name '{path.stem}'")
            continue
        wire_docs[name] = doc
        _compile_wire(ld, wires, name, doc, jinja, ld.rel(path))

    providers: dict[str, Provider] = {}
    variants: dict[str, Wire] = {}
    for path in sorted((base / "providers.d").glob("*.yaml")):
        doc = ld.read(path, "provider")
        if doc is None:
            continue
        name = doc.get("name", path.stem)
        file = ld.rel(path)
        if name in providers:
            ld.err(file, "name", f"provider '{name}' is already defined in {providers[name].source}")
            continue
        if doc["wire"] not in wires and not (base / "providers.d" / "wire" / f"{doc['wire']}.yaml").exists():
            known = [p.stem for p in (base / "providers.d" / "wire").glob("*.yaml")]
            ld.err(file, "wire", f"no wire format '{doc['wire']}' (expected providers.d/wire/{doc['wire']}.yaml)"
                                 f"{did_you_mean(doc['wire'], known)}")
        wire_name = doc["wire"]
        # the wire's defaults (auth scheme, required headers), then what the provider's file says
        defaults = (wire_docs.get(wire_name) or {}).get("provider_defaults") or {}
        auth = doc.get("auth") or defaults.get("auth") or {"header": "Authorization", "prefix": "Bearer "}
        headers = {**(defaults.get("headers") or {}), **(doc.get("headers") or {})}
        if doc.get("overrides") and wire_name in wire_docs:
            # this provider's own variant of the wire: its operation overrides merged over the shared ones
            merged = _merge(wire_docs[wire_name], {"operations": doc["overrides"]})
            _compile_wire(ld, variants, name, merged, jinja, file, wire_name)
        reach = outbound(doc, doc["base_url"], env, base, lambda where, msg, file=file: ld.err(file, where, msg))
        providers[name] = Provider(
            name=name, wire=wire_name, base_url=doc["base_url"].rstrip("/"), api_key=doc.get("api_key", ""),
            auth_header=auth["header"], auth_prefix=auth.get("prefix", ""),
            headers=tuple((k, str(v)) for k, v in headers.items()),
            timeout_ms=int(doc.get("timeout_ms", settings.timeout_ms)),
            pool_size=int(doc.get("pool_size", settings.pool_size)), source=file,
            proxy=reach.proxy, ca_file=reach.ca_file, ca_dir=reach.ca_dir)

    prices: dict[str, Price] = {}
    for path in sorted((base / "pricing.d").glob("*.yaml")):
        doc = ld.read(path, "pricing")
        if doc is None:
            continue
        file = ld.rel(path)
        for model, spec in doc["models"].items():
            if model in prices:
                ld.err(file, f"models.{model}", f"price already given in {prices[model].source}")
                continue
            if model not in models:
                ld.follow_on(file, f"models.{model}",
                             f"no such model in config/models.yaml{did_you_mean(model, models)}",
                             because="config/models.yaml" in ld.failed)
                continue
            prices[model] = _price(model, spec, doc, file)

    try:
        adapters = load_adapters(jinja)
    except (TreeError, OSError, yaml.YAMLError, KeyError) as exc:
        ld.errors.append(f"gateway/adapters: {exc}")
        adapters = {}
    payments = {name: _payment(name, spec) for name, spec in ((payments_doc or {}).get("providers") or {}).items()}
    _cross_check(ld, models, routes, providers, {**{p: wires[d.wire] for p, d in providers.items() if d.wire in wires},
                                                 **variants}, prices)
    if ld.errors:
        if ld.suppressed:
            ld.errors.append(f"(and {ld.suppressed} more error(s) not shown: they only follow from the ones above, "
                             "and go away with them)")
        raise ConfigError(ld.errors)
    config = Config(root=str(base), settings=settings, models=models, routes=routes, providers=providers,
                    wires=wires, prices=prices, adapters=adapters, files=tuple(ld.files), payments=payments,
                    variants=variants, version=ld.digest.hexdigest()[:16])
    errors = render_errors(config)  # templates that compile but fail on representative requests
    if errors:
        raise ConfigError(errors)
    return config


def load_settings(root: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Only config/gateway.yaml (Redis, data folder, prefix...): what commands that talk to Redis alone need.
    They then work when a provider's variable is unset in the operator's shell."""
    env = os.environ if env is None else env
    base = Path(root).resolve()
    ld = _Loader(base, env)
    if not (base / "config").is_dir():
        raise ConfigError([f"{base}: <root>: no config/ folder here (set --root or GATEWAY_ROOT)"])
    path = base / "config" / "gateway.yaml"
    doc = ld.read(path, "gateway") if path.exists() else {}
    if ld.errors:
        raise ConfigError(ld.errors)
    settings = _settings(doc or {}, env)
    _check_settings(ld, settings)
    if ld.errors:
        raise ConfigError(ld.errors)
    return Config(root=str(base), settings=settings, models={}, routes=(), providers={}, wires={}, prices={},
                  files=tuple(ld.files))


def _compile_wire(ld: _Loader, wires: dict[str, Wire], key: str, doc: dict[str, Any], jinja: Any, file: str,
                  name: str | None = None) -> None:
    """Compile a wire document into wires[key] (a variant is kept under its provider's name)."""
    try:
        wires[key] = Wire(name or key, doc, jinja, "")
        wires[key].source = file
    except TreeError as exc:
        ld.err(file, exc.path.lstrip("."), str(exc).split(": ", 1)[1])


def _merge(base: Any, over: Any) -> Any:
    """Deep merge of mappings; anything else in `over` replaces what `base` has."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over


def _cross_check(ld: _Loader, models: dict[str, CatalogueModel], routes: tuple[Route, ...],
                 providers: dict[str, Provider], provider_wires: dict[str, Wire], prices: dict[str, Price]) -> None:
    """`provider_wires`: each provider's wire (its own variant, if any)."""
    # the endpoint table imports config.model: importing it here, not at the top, keeps the two packages
    # from importing each other while they initialise
    from gateway.proxy.endpoints import native_endpoint
    routing = "config/routing.yaml"
    seen: list[tuple[str, int]] = []
    for i, route in enumerate(routes):
        for j, pattern in enumerate(route.patterns):
            where = f"routes[{i}].match[{j}]"
            shadow = next((p for p, k in seen if _covers(p, pattern)), None)
            if shadow is not None:
                ld.err(routing, where, f"'{pattern}' can never match: '{shadow}' of an earlier route takes every name it would")
            elif not any(pattern_matches(pattern, m) for m in models):
                ld.follow_on(routing, where, f"'{pattern}' matches no model in config/models.yaml",
                             because="config/models.yaml" in ld.failed)
            seen.append((pattern, i))
        for role in ("primary", "fallback"):
            name = getattr(route, role)
            if name is not None and name not in providers:
                ld.follow_on(routing, f"routes[{i}].{role}",
                             f"no provider '{name}' in providers.d/{did_you_mean(name, providers)}",
                             because=f"providers.d/{name}.yaml" in ld.failed)

    for name, model in models.items():
        if not model.enabled:
            continue
        where = f"models.{name}"
        matched = next((r for r in routes if r.matches(name)), None)
        if matched is None:
            ld.follow_on("config/models.yaml", where, "enabled but no route in config/routing.yaml matches it",
                         because="config/routing.yaml" in ld.failed)
            continue
        endpoint = native_endpoint(model.kind)
        if endpoint is None:
            ld.err("config/models.yaml", f"{where}.kind", f"the gateway has no endpoint for kind '{model.kind}'; disable it")
            continue
        for pname in filter(None, (matched.primary, matched.fallback)):
            provider = providers.get(pname)
            wire = provider_wires.get(pname)
            if provider is not None and wire is not None and endpoint.plan(model.kind, set(wire.operations)) is None:
                ld.err("config/models.yaml", where,
                       f"provider '{pname}' (wire '{provider.wire}') cannot serve this {model.kind} model on "
                       f"{endpoint.path}: it has no operation for it")
        if name not in prices:
            ld.follow_on("config/models.yaml", where,
                         "enabled but has no price in pricing.d/ (give one or mark it `free: true`)",
                         because=_price_file_failed(ld, name))
        else:
            _check_price_units(ld, prices[name], model.kind, endpoint.billed)


def _price_file_failed(ld: _Loader, model: str) -> bool:
    """A pricing.d/ file that did not load may have held this model's price: it names the model, or it
    could not even be parsed (so nobody knows what it names)."""
    for file in ld.failed:
        if file.startswith("pricing.d/"):
            doc = ld.loose.get(file)
            named = doc.get("models") if isinstance(doc, dict) else None
            if not isinstance(named, dict) or model in named:
                return True
    return False


def _check_price_units(ld: _Loader, price: Price, kind: str, billed: str) -> None:
    """A price unit the model's endpoint never reports would never be charged: say so (issue 20)."""
    where, file = f"models.{price.model}", price.file
    if price.characters and billed != "speech":
        ld.err(file, where + ".characters", f"a {kind} model is not billed per character (speech models only)")
    if price.per_audio_minute and billed != "audio":
        ld.err(file, where + ".per_audio_minute",
               f"a {kind} model is not billed per audio minute (transcription models only)")
    if price.input_audio is not None and billed != "audio":
        ld.err(file, where + ".input_audio", f"a {kind} model takes no audio input here (transcription only)")
    if price.output_audio is not None and billed != "speech":
        ld.err(file, where + ".output_audio", f"a {kind} model gives no audio output here (speech only)")
    if billed == "audio" and not (price.free or price.per_audio_minute or price.input or price.per_request):
        ld.err(file, where, "a transcription model needs per_audio_minute (or _second) or token prices")
    if billed == "speech" and not (price.free or price.characters or price.input or price.output or price.per_request):
        ld.err(file, where, "a speech model needs a `characters` price or token prices")


def _covers(earlier: str, later: str) -> bool:
    """True when every name `later` matches is matched by `earlier` (patterns: exact or prefix*)."""
    if earlier.endswith("*"):
        return later.startswith(earlier[:-1])
    return earlier == later


def _as_bool(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ("true", "1", "yes")


def _list(v: Any) -> tuple[str, ...]:
    """A YAML list, or one comma-separated string (what an environment variable can carry)."""
    items = v if isinstance(v, (list, tuple)) else str(v).split(",")
    return tuple(str(i).strip() for i in items if str(i).strip())


def _check_settings(ld: _Loader, s: Settings) -> None:
    for entry in s.forwarded_allow_ips:
        if entry != "*":
            try:
                parse_network(entry)
            except ValueError as exc:
                ld.err("config/gateway.yaml", "server.forwarded_allow_ips", str(exc))


def _settings(doc: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    server, upstream, redis = doc.get("server", {}), doc.get("upstream", {}), doc.get("redis", {})
    auth, billing, web = doc.get("auth", {}), doc.get("billing", {}), doc.get("web", {})
    mail = web.get("smtp") or {}
    archive = doc.get("archive", {})
    d = Settings()
    acks = str(redis.get("replica_acks", "auto"))
    return Settings(
        host=server.get("host", d.host), port=int(server.get("port", d.port)),
        workers=int(server.get("workers", d.workers)),
        max_body_bytes=int(server.get("max_body_bytes", d.max_body_bytes)),
        max_upload_bytes=int(server.get("max_upload_bytes", d.max_upload_bytes)),
        upload_timeout_ms=int(server.get("upload_timeout_ms", d.upload_timeout_ms)),
        streaming=_as_bool(server.get("streaming", d.streaming)), log_level=server.get("log_level", d.log_level),
        forwarded_allow_ips=_list(server.get("forwarded_allow_ips", d.forwarded_allow_ips)),
        forwarded_header=server.get("forwarded_header", d.forwarded_header),
        timeout_ms=int(upstream.get("timeout_ms", d.timeout_ms)), pool_size=int(upstream.get("pool_size", d.pool_size)),
        redis_url=redis.get("url", d.redis_url), data_dir=redis.get("data_dir", d.data_dir),
        redis_prefix=redis.get("prefix", d.redis_prefix),
        redis_connect_timeout_ms=int(redis.get("connect_timeout_ms", d.redis_connect_timeout_ms)),
        redis_command_timeout_ms=int(redis.get("command_timeout_ms", d.redis_command_timeout_ms)),
        redis_replica_acks=-1 if acks == "auto" else int(acks),
        redis_replica_wait_ms=int(redis.get("replica_wait_ms", d.redis_replica_wait_ms)),
        archive_enabled=_as_bool(archive.get("enabled", d.archive_enabled)),
        archive_url=str(archive.get("url", d.archive_url)),
        archive_worker=_as_bool(archive.get("worker", d.archive_worker)),
        archive_redis_keep_s=int(archive.get("redis_keep_s", d.archive_redis_keep_s)),
        archive_redis_cap=int(archive.get("redis_cap", d.archive_redis_cap)),
        archive_interval_s=float(archive.get("interval_s", d.archive_interval_s)),
        archive_batch=int(archive.get("batch", d.archive_batch)),
        archive_full_scan_s=float(archive.get("full_scan_s", d.archive_full_scan_s)),
        token_cache_ms=int(auth.get("token_cache_ms", d.token_cache_ms)),
        admin_token=auth.get("admin_token", d.admin_token),
        usd_rub_default=Decimal(billing.get("usd_rub_default", d.usd_rub_default)),
        default_max_output_tokens=int(billing.get("default_max_output_tokens", d.default_max_output_tokens)),
        history_max=int(billing.get("history_max", d.history_max)),
        reservation_ttl_s=int(billing.get("reservation_ttl_s", d.reservation_ttl_s)),
        sweep_interval_s=float(billing.get("sweep_interval_s", d.sweep_interval_s)),
        journal_dir=str(billing.get("journal_dir", d.journal_dir)),
        late_settlement_window_s=int(billing.get("late_settlement_window_s", d.late_settlement_window_s)),
        max_unconfirmed_settlements=int(billing.get("max_unconfirmed_settlements", d.max_unconfirmed_settlements)),
        web_session_ttl_s=int(web.get("session_ttl_s", d.web_session_ttl_s)),
        web_cookie_secure=_as_bool(web.get("cookie_secure", d.web_cookie_secure)),
        web_login_max_failures=int(web.get("login_max_failures", d.web_login_max_failures)),
        web_login_window_s=int(web.get("login_window_s", d.web_login_window_s)),
        web_public_url=str(web.get("public_url", d.web_public_url)).rstrip("/"),
        web_default_locale=str(web.get("default_locale", d.web_default_locale)),
        web_payment_poll_s=float(web.get("payment_poll_s", d.web_payment_poll_s)),
        web_require_verified_email=_as_bool(web.get("require_verified_email", d.web_require_verified_email)),
        web_signups_per_hour=int(web.get("signups_per_hour", d.web_signups_per_hour)),
        web_verify_ttl_s=int(web.get("verify_ttl_s", d.web_verify_ttl_s)),
        web_reset_ttl_s=int(web.get("reset_ttl_s", d.web_reset_ttl_s)),
        smtp_host=str(mail.get("host", d.smtp_host)), smtp_port=int(mail.get("port", d.smtp_port)),
        smtp_username=str(mail.get("username", d.smtp_username)),
        smtp_password=str(mail.get("password", d.smtp_password)),
        smtp_from=str(mail.get("from", d.smtp_from)),
        smtp_starttls=_as_bool(mail.get("starttls", d.smtp_starttls)),
        alerts_allow_loopback=_as_bool(web.get("alerts_allow_loopback", d.alerts_allow_loopback)),
        limits=_limits(server.get("limits") or {}),
        shutdown_grace_s=float(server.get("shutdown_grace_s", d.shutdown_grace_s)),
        observability=_observability(doc.get("observability") or {}),
    )


def _limits(doc: Mapping[str, Any]) -> ServerLimits:
    """`server.limits`: each value converted to the type of its default (the schema has checked it)."""
    kinds: dict[str, Any] = {f.name: type(f.default) for f in dataclasses.fields(ServerLimits)}
    return ServerLimits(**{name: kinds[name](value) for name, value in doc.items() if name in kinds})


def _observability(doc: Mapping[str, Any]) -> Observability:
    """`observability:` — each value converted to the type of its default (the schema has checked it)."""
    kinds: dict[str, Any] = {f.name: type(f.default) for f in dataclasses.fields(Observability)}
    return Observability(**{name: _as_bool(value) if kinds[name] is bool else kinds[name](value)  # type: ignore[arg-type]
                            for name, value in doc.items() if name in kinds})  # (mypy checks each value against every field)


def _payment(name: str, spec: Mapping[str, Any]) -> PaymentProvider:
    return PaymentProvider(
        name=name, kind=spec["kind"], title=spec.get("title", name), api_url=spec["api_url"].rstrip("/"),
        shop_id=spec.get("shop_id", ""), secret_key=spec.get("secret_key", ""),
        webhook_secret=spec.get("webhook_secret", ""), currency=spec.get("currency", "RUB"),
        min_amount=Decimal(spec.get("min_amount", "1")), max_amount=Decimal(spec.get("max_amount", "1000000")),
    )


def _price(model: str, spec: Mapping[str, Any], doc: Mapping[str, Any], file: str) -> Price:
    def dec(key: str) -> Decimal | None:
        return Decimal(spec[key]) if key in spec else None

    per_image = tuple((k.split("/", 1)[0], k.split("/", 1)[1], Decimal(v)) for k, v in (spec.get("per_image") or {}).items())
    return Price(
        model=model, free=bool(spec.get("free", False)), input=dec("input") or Decimal(0),
        cached_input=dec("cached_input"), cache_write=dec("cache_write"), output=dec("output") or Decimal(0),
        per_request=dec("per_request") or Decimal(0), per_image=per_image,
        characters=dec("characters") or Decimal(0), input_audio=dec("input_audio"), output_audio=dec("output_audio"),
        per_audio_minute=dec("per_audio_minute") or (dec("per_audio_second") or Decimal(0)) * 60,
        markup_percent=Decimal(spec.get("markup_percent", doc.get("markup_percent", "0"))),
        source=spec.get("source", doc.get("source", file)), effective=spec.get("effective", doc.get("effective", "")),
        file=file,
    )
