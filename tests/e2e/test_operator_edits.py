"""The suite is the operators' CI: edits `gateway config validate` accepts must not break it. A copy of the
config root gets what an operator adds — an OpenAI-compatible provider whose key variable has no default
(`${DEEPSEEK_API_KEY}`), a provider used only as a fallback, and a price change — and the snapshot grid and
the billing checks run against that copy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from gateway.config import ConfigError, load_config
from gateway.money import NANO
from tests.conftest import FAKE_KEY
from tests.support import REPO, chat_model_for, config_env
from tests.support.gateway_server import GatewayServer, accounts_call, copy_root, make_customer
from tests.support.snapshot_grid import GRID_PROVIDERS, Grid

MSG = [{"role": "user", "content": "Привет"}]
# the operator's new prices (USD per 1M tokens), unlike the repo's
GPT_PRICE = {"input": "0.2", "output": "0.8"}
DEEPSEEK_PRICE = {"input": "0.27", "output": "1.1"}
# the variables the new providers need, none with a default
OPERATOR_VARS = ("DEEPSEEK_API_KEY", "AZURE_OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY")


def _edit(path: Path, change: Any) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _pricing_file(root: Path, model: str) -> Path:
    return next(p for p in sorted((root / "pricing.d").glob("*.yaml"))
                if model in (yaml.safe_load(p.read_text(encoding="utf-8")).get("models") or {}))


def operator_edits(root: Path) -> Path:
    """The repo's config root copied to `root`, with the operator's three edits."""
    copy_root(root)
    providers = root / "providers.d"
    # the README's OpenAI-compatible provider, its key without a default
    (providers / "deepseek.yaml").write_text(
        'wire: openai\nbase_url: "${DEEPSEEK_BASE_URL:-https://api.deepseek.com/v1}"\napi_key: "${DEEPSEEK_API_KEY}"\n')
    # a provider that is only ever a fallback; sorts before "openai", on the same wire
    (providers / "azure-openai.yaml").write_text(
        'wire: openai\nbase_url: "${AZURE_OPENAI_BASE_URL}"\napi_key: "${AZURE_OPENAI_API_KEY}"\n')

    def models(doc: dict[str, Any]) -> None:
        doc["models"]["deepseek-chat"] = {**doc["models"]["gpt-4o-mini"], "owned_by": "deepseek"}

    def routing(doc: dict[str, Any]) -> None:
        gpt = next(r for r in doc["routes"] if "gpt-*" in r["match"])
        gpt["fallback"] = "azure-openai"
        doc["routes"].append({"note": "DeepSeek", "match": ["deepseek-*"], "primary": "deepseek"})

    def prices(doc: dict[str, Any]) -> None:
        doc["models"]["gpt-4o-mini"] = dict(GPT_PRICE)
        doc["models"]["deepseek-chat"] = dict(DEEPSEEK_PRICE)

    _edit(root / "config" / "models.yaml", models)
    _edit(root / "config" / "routing.yaml", routing)
    _edit(_pricing_file(root, "gpt-4o-mini"), prices)
    return root


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return operator_edits(tmp_path_factory.mktemp("operator"))


def _without_operator_vars() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in OPERATOR_VARS}


def test_config_validate_accepts_the_edits(edited: Path) -> None:
    env = _without_operator_vars() | {name: "set-by-the-operator" for name in OPERATOR_VARS}
    env["AZURE_OPENAI_BASE_URL"] = "https://azure.example/v1"
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "--root", str(edited), "config", "validate"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 providers" in done.stdout
    # without their variables the config does not load: what the tests' stand-ins stand in for
    with pytest.raises(ConfigError) as refused:
        load_config(edited, {k: v for k, v in config_env().items() if k not in OPERATOR_VARS})
    assert all(name in str(refused.value) for name in OPERATOR_VARS)


def test_the_edits_are_the_traps_the_grid_avoids(edited: Path) -> None:
    grid = Grid(edited)
    openai_wire = sorted(p for p, prov in grid.config.providers.items() if prov.wire == "openai")
    assert openai_wire[0] == "azure-openai", "the first provider of the wire by name is no longer openai"
    with pytest.raises(LookupError):
        chat_model_for("azure-openai", grid.config)  # primary of no route
    assert grid.providers() == list(GRID_PROVIDERS)


def test_snapshot_tests_pass_on_the_edited_config(edited: Path) -> None:
    """The real golden tests, run against the copy (GATEWAY_SNAPSHOT_ROOT), match the recorded snapshots."""
    env = _without_operator_vars() | {"GATEWAY_SNAPSHOT_ROOT": str(edited), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/golden/test_translation_snapshots.py", "tests/golden/test_stream_snapshots.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "snapshots passed" in done.stdout and "failed" not in done.stdout


def _cost(price: dict[str, str], markup_percent: str, prompt: int, completion: int) -> int:
    """nano-USD for a usage at USD-per-1M prices, markup included, rounded up once."""
    usd = (prompt * Decimal(price["input"]) + completion * Decimal(price["output"])) / 1_000_000
    return int((usd * (100 + Decimal(markup_percent)) / 100 * NANO).to_integral_value(rounding=ROUND_CEILING))


@pytest.fixture(scope="module")
def edited_gateway(edited: Path, fakes: Any, gateway_env: dict[str, str]) -> Iterator[GatewayServer]:
    env = gateway_env | {"DEEPSEEK_BASE_URL": fakes["openai"].base_url, "DEEPSEEK_API_KEY": FAKE_KEY,
                         "AZURE_OPENAI_BASE_URL": fakes["xai"].base_url, "AZURE_OPENAI_API_KEY": FAKE_KEY}
    with GatewayServer(edited, env) as server:
        yield server


@pytest.mark.parametrize("model, provider, price", [("gpt-4o-mini", "openai", GPT_PRICE),
                                                    ("deepseek-chat", "deepseek", DEEPSEEK_PRICE)])
def test_the_charge_follows_the_edited_price(edited: Path, edited_gateway: GatewayServer, fakes: Any,
                                             model: str, provider: str, price: dict[str, str]) -> None:
    c = make_customer(edited_gateway, usd="5")
    client = openai.OpenAI(base_url=edited_gateway.base_url + "/v1", api_key=c.secret, max_retries=0, timeout=30)
    resp = client.chat.completions.create(model=model, messages=MSG, max_tokens=40)
    assert fakes["openai"].last.body["model"] == model
    [entry] = accounts_call(edited_gateway, lambda acc: acc.history(c.account_id, 10))
    markup = yaml.safe_load(_pricing_file(edited, model).read_text(encoding="utf-8"))["markup_percent"]
    expected = _cost(price, markup, resp.usage.prompt_tokens, resp.usage.completion_tokens)
    assert expected > 0
    assert (entry["status"], entry["provider"], entry["cost"]) == (200, provider, expected)


def test_the_fallback_only_provider_answers_at_the_model_price(edited: Path, edited_gateway: GatewayServer,
                                                               fakes: Any) -> None:
    c = make_customer(edited_gateway, usd="5")
    client = openai.OpenAI(base_url=edited_gateway.base_url + "/v1", api_key=c.secret, max_retries=0, timeout=30)
    fakes["openai"].fail(500)
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=40)
    assert fakes["xai"].last.body["model"] == "gpt-4o-mini"  # azure-openai's URL is the xai fake
    [entry] = accounts_call(edited_gateway, lambda acc: acc.history(c.account_id, 10))
    markup = yaml.safe_load(_pricing_file(edited, "gpt-4o-mini").read_text(encoding="utf-8"))["markup_percent"]
    expected = _cost(GPT_PRICE, markup, resp.usage.prompt_tokens, resp.usage.completion_tokens)
    assert (entry["status"], entry["provider"], entry["cost"]) == (200, "azure-openai", expected)
