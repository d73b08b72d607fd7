"""Fixtures: fake upstreams for every provider, Redis under a private key prefix, a funded customer,
and the gateway in front of them, all on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import openai
import pytest

from tests.support import REPO, private_redis_prefix, redis_url
from tests.support.cluster import LocalCluster
from tests.support.fakes.server import FakeUpstream, start_fake
from tests.support.gateway_server import Customer, GatewayServer, make_customer
from tests.support.stand_ins import with_stand_ins

FAKE_KEY = "test-key"

# `gateway` subprocesses and in-process CLI calls read the config with this process's environment: a
# ${VAR} without default in the repo's config that it leaves unset gets its stand-in for the session
os.environ.update(with_stand_ins(REPO, os.environ))


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


@pytest.fixture(scope="session")
def test_redis_url() -> str:
    """The test Redis: $TEST_REDIS_URL, else 127.0.0.1:6379 when it answers, else an embedded redis-server
    (tests/support/redis_target.py decides, once; helpers outside fixtures call the same redis_url())."""
    return redis_url()


@pytest.fixture(scope="session")
def redis_env(test_redis_url: str) -> Iterator[dict[str, str]]:
    """The test Redis with a key prefix of this session's own; its keys are deleted afterwards."""
    with private_redis_prefix() as prefix:
        yield {"REDIS_URL": test_redis_url, "GATEWAY_REDIS_PREFIX": prefix}


@pytest.fixture(scope="session")
def gateway_env(fakes: dict[str, FakeUpstream], redis_env: dict[str, str]) -> dict[str, str]:
    # in-process gateways write no request lines (they would land between the tests' captured output);
    # tests/e2e/test_operations.py reads them from `gateway serve`
    return fake_env(fakes) | redis_env | {"GATEWAY_REQUEST_LOG": "false"}


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> None:
    if "fakes" in request.fixturenames:
        for fake in request.getfixturevalue("fakes").values():
            fake.reset()


@pytest.fixture(scope="session")
def gateway(gateway_env: dict[str, str]) -> Iterator[GatewayServer]:
    with GatewayServer(REPO, gateway_env) as server:
        yield server


@pytest.fixture(scope="session")
def customer(gateway: GatewayServer) -> Customer:
    """A customer with $1000 and one unrestricted key, shared by the translation/fault tests."""
    return make_customer(gateway, usd="1000")


@pytest.fixture()
def auth(customer: Customer) -> dict[str, str]:
    return {"Authorization": f"Bearer {customer.secret}"}


@pytest.fixture()
def client(gateway: GatewayServer, customer: Customer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=customer.secret, max_retries=0, timeout=20)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A Redis Cluster of the test run's own on loopback (3 masters, 1 replica each), stopped at the end."""
    cluster = LocalCluster().start()
    yield cluster
    cluster.stop()
