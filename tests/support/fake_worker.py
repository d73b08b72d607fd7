"""A stand-in for the gateway's worker process in supervisor tests (`gateway.workers.Supervisor` target):
it starts only when $FAKE_WORKER_DIR/mode says "ok", then says it is ready and serves until SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import time
from multiprocessing.synchronize import Event
from pathlib import Path


def serve(host: str, port: int, ready: Event) -> None:
    folder = Path(os.environ["FAKE_WORKER_DIR"])
    if folder.joinpath("mode").read_text().strip() != "ok":
        sys.exit(3)  # what uvicorn exits with when the app's start-up fails
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ready.set()
    folder.joinpath(f"ready-{os.getpid()}").touch()  # after: a test that sees the file may kill us
    while True:
        time.sleep(1)
