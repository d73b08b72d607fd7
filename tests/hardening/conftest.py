"""Fixtures for the hardening tests: a scripted raw upstream and a gateway whose OpenAI provider is it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway_server import GatewayServer
from tests.support.raw_upstream import RawRequest, RawUpstream, Step, answer, chat_json, last_user_text
from tests.support import REPO


def echo_script(req: RawRequest) -> list[Step]:
    return [answer(200, chat_json(f"answer to {last_user_text(req)}"), {"Content-Type": "application/json"})]


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    with RawUpstream(echo_script) as up:
        yield up


@pytest.fixture()
def raw_up(raw: RawUpstream) -> RawUpstream:
    """The module's raw upstream, back to echoing, with its request log cleared."""
    raw.script = echo_script
    raw.requests.clear()
    return raw


@pytest.fixture(scope="module")
def raw_gateway(raw: RawUpstream, gateway_env: dict[str, str]) -> Iterator[GatewayServer]:
    """The repo's config with the OpenAI provider (no fallback) pointed at the raw upstream."""
    with GatewayServer(REPO, gateway_env | {"OPENAI_BASE_URL": raw.base_url + "/v1"}) as server:
        yield server
