"""pytest fixtures for the fake upstreams.

Use from a test module (``from tests.support.fakes.fixtures import fake_openai, fake_anthropic``)
or register for the whole suite in the root conftest (``pytest_plugins =
["tests.support.fakes.fixtures"]``).

Each fake server is started once per session (``fake_*_server``) and ``reset()`` before
every test that uses the function-scoped ``fake_*`` fixture, so tests start with no
scripted answers, no recorded requests and no delay.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import FakeUpstream, start_fake

__all__ = [
    "fake_openai_server",
    "fake_anthropic_server",
    "fake_gemini_server",
    "fake_xai_server",
    "fake_openai",
    "fake_anthropic",
    "fake_gemini",
    "fake_xai",
]


def _session(wire: str) -> Iterator[FakeUpstream]:
    fake = start_fake(wire)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeUpstream]:
    yield from _session("openai")


@pytest.fixture(scope="session")
def fake_anthropic_server() -> Iterator[FakeUpstream]:
    yield from _session("anthropic")


@pytest.fixture(scope="session")
def fake_gemini_server() -> Iterator[FakeUpstream]:
    yield from _session("gemini")


@pytest.fixture(scope="session")
def fake_xai_server() -> Iterator[FakeUpstream]:
    yield from _session("xai")


@pytest.fixture
def fake_openai(fake_openai_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_anthropic_server.reset()
    yield fake_anthropic_server
    fake_anthropic_server.reset()


@pytest.fixture
def fake_gemini(fake_gemini_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_gemini_server.reset()
    yield fake_gemini_server
    fake_gemini_server.reset()


@pytest.fixture
def fake_xai(fake_xai_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_xai_server.reset()
    yield fake_xai_server
    fake_xai_server.reset()
