"""Headless Chromium (Debian's `chromium`, driven by Playwright's Python API; no browser download) and the
gateway with a fake payment provider, for the cabinet's browser tests. Screenshots go to
tests/artifacts/browser/ (gitignored).

No browser at `GATEWAY_CHROMIUM` (default /usr/bin/chromium): the tests are skipped, saying which package to
install; with `GATEWAY_REQUIRE_BROWSER=1` (as in .ci/run) a missing browser fails them instead."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.web import Stack, web_stack

CHROMIUM = os.environ.get("GATEWAY_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser's path; skips (or, with GATEWAY_REQUIRE_BROWSER=1, fails) when there is none."""
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"no browser at {CHROMIUM}: apt-get install chromium (or set GATEWAY_CHROMIUM)"
        if os.environ.get("GATEWAY_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; GATEWAY_REQUIRE_BROWSER=1 requires it", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def stack(chromium: str, fakes: Any) -> Iterator[Stack]:
    # asks for the browser first: without one, no gateway is started for nothing
    with web_stack(fakes) as s:
        yield s


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
