"""Fixtures: fake upstreams for every provider and the gateway in front of them, on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.fakes.server import FakeUpstream, start_fake
from tests.gateway_server import GatewayServer
from tests.support import REPO

FAKE_KEY = "test-key"


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    started = {name: start_fake(name, FAKE_KEY) for name in ("openai", "anthropic", "gemini", "xai")}
    yield started
    for fake in started.values():
        fake.close()


def fake_env(fakes: dict[str, FakeUpstream]) -> dict[str, str]:
    env = {}
    for provider, prefix in (("openai", "OPENAI"), ("anthropic", "ANTHROPIC"), ("gemini", "GEMINI"), ("xai", "XAI")):
        env[f"{prefix}_BASE_URL"] = fakes[provider].base_url
        env[f"{prefix}_API_KEY"] = FAKE_KEY
    return env


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> None:
    if "fakes" in request.fixturenames:
        for fake in request.getfixturevalue("fakes").values():
            fake.reset()


@pytest.fixture(scope="session")
def gateway(fakes: dict[str, FakeUpstream]) -> Iterator[GatewayServer]:
    with GatewayServer(REPO, fake_env(fakes)) as server:
        yield server


@pytest.fixture()
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="bt_test", max_retries=0, timeout=20)
