"""Run the real gateway app under uvicorn on a loopback port, in a background thread."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import uvicorn

from gateway.app import GatewayApp
from gateway.config import load_config
from tests.support import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayServer:
    def __init__(self, root: Path | str, env: Mapping[str, str]) -> None:
        self.config = load_config(root, env)
        self.app = GatewayApp(self.config)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, loop="asyncio", http="httptools",
                             lifespan="on", log_level="warning", access_log=False)
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self._server.run, name=f"gateway-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "GatewayServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def copy_root(dest: Path) -> Path:
    """A private copy of the repo's config root that a test may edit."""
    for folder in ("config", "providers.d", "pricing.d"):
        shutil.copytree(REPO / folder, dest / folder)
    return dest
