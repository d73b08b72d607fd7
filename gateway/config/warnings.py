"""What a config that loads may still get wrong in practice, said once at start-up (and on reload): a
provider with enabled models and no API key answers 503 to every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.config.model import Config

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def config_warnings(config: Config) -> list[str]:
    out = []
    for provider in config.providers.values():
        if provider.configured:
            continue
        served = [m.name for m in config.enabled_models
                  if (route := next((r for r in config.routes if r.matches(m.name)), None)) is not None
                  and provider.name in (route.primary, route.fallback)]
        if not served:
            continue
        names = _key_variables(Path(config.root) / provider.source)
        where = f"set {' or '.join(names)}" if names else f"give `api_key` in {provider.source}"
        out.append(f"provider '{provider.name}' has no API key: its {len(served)} enabled model(s) "
                   f"({', '.join(served[:3])}{', ...' if len(served) > 3 else ''}) answer 503 until you {where}")
    return out


def _key_variables(path: Path) -> list[str]:
    """The environment variables the provider file's `api_key` is taken from."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    return _VAR.findall(str(raw.get("api_key", ""))) if isinstance(raw, dict) else []
