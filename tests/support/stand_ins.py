"""Stand-in values for the `${VAR}`s without default that a config root uses and the test environment
leaves unset, so an operator's provider whose key or URL variable has no default (`${DEEPSEEK_API_KEY}`)
loads in the tests as it would in their deployment. A URL-ish name gets a loopback address nobody listens
on (port 9, discard), so nothing is ever sent off the machine; any other name a placeholder string.

The one place that decides them: tests.support.config_env (hence repo_config), GatewayServer, and the
session's own environment (tests/conftest.py, for `gateway` subprocesses and in-process CLI calls)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import yaml

from gateway.envsubst import without_default

LOOPBACK_URL = "http://127.0.0.1:9"
_URLISH = ("URL", "URI", "HOST", "ENDPOINT", "BASE")
# the files the config loader substitutes ${VAR}s in (wire formats are not substituted)
_GLOBS = ("config/*.yaml", "providers.d/*.yaml", "pricing.d/*.yaml")


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=256)
def _file_variables(path: Path, mtime_ns: int, size: int) -> frozenset[str]:
    # keyed by mtime and size too: a test may edit a copied root between two loads
    try:
        return frozenset(without_default(yaml.load(path.read_bytes(), Loader=_Loader)))  # a safe loader (C or Python)
    except (OSError, yaml.YAMLError):
        return frozenset()  # the config loader reports it


def required_variables(root: Path) -> frozenset[str]:
    """Every ${VAR} without default in the substituted files under `root`."""
    names: set[str] = set()
    for pattern in _GLOBS:
        for path in sorted(root.glob(pattern)):
            st = path.stat()
            names |= _file_variables(path, st.st_mtime_ns, st.st_size)
    return frozenset(names)


def stand_in(name: str) -> str:
    if any(part in name.upper() for part in _URLISH):
        return LOOPBACK_URL
    return f"stand-in-{name.lower().replace('_', '-')}"


def with_stand_ins(root: str | Path, env: Mapping[str, str]) -> dict[str, str]:
    """`env` plus a stand-in for every variable `root` requires that `env` leaves unset or empty."""
    out = dict(env)
    for name in sorted(required_variables(Path(root).resolve())):
        if not out.get(name):
            out[name] = stand_in(name)
    return out
