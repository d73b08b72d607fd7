"""The archiver beside `gateway serve`: a process of its own, started with the service, started again if it
dies, stopped with it. Archiving writes every history entry to a database (about 0.06–0.09 ms of CPU per
request measured); in a worker that CPU would be taken from the event loop that serves requests, so the
workers never run it (`GATEWAY_ARCHIVER=false` in their environment)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

from gateway.store.connection import exit_with_parent

log = logging.getLogger("gateway.archive.process")
RESTART_AFTER_S = 5.0
STOP_TIMEOUT_S = 30.0


class ArchiverProcess:
    """`gateway archive run` for config root `root`, supervised from a thread of the serving process."""

    def __init__(self, root: str) -> None:
        self._argv = [sys.executable, "-m", "gateway.cli", "--root", root, "archive", "run"]
        self._env = {**os.environ, "GATEWAY_ARCHIVER": "true"}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watch = threading.Thread(target=self._run, name="archiver-watch", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._watch.start()

    def _spawn(self) -> None:
        # SIGTERM from the kernel if gateway serve dies, however it dies (kill -9 included)
        self._proc = subprocess.Popen(self._argv, env=self._env, stdin=subprocess.DEVNULL, preexec_fn=exit_with_parent)
        log.info("archiver started (pid %d)", self._proc.pid)

    def _run(self) -> None:
        while not self._stopping.is_set():
            assert self._proc is not None
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            log.warning("archiver (pid %d) exited with %s; starting it again in %.0f s", self._proc.pid, code,
                        RESTART_AFTER_S)
            if self._stopping.wait(RESTART_AFTER_S):
                return
            self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)   # it finishes its batch and closes the database
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("archiver (pid %d) did not stop in %.0f s; killing it", proc.pid, STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()


def start_beside(root: str, enabled: bool, here: bool) -> ArchiverProcess | None:
    """The archiver for `gateway serve`, when the archive is on and this host archives (`archive.worker`);
    the workers are told not to run one of their own."""
    os.environ["GATEWAY_ARCHIVER"] = "false"
    if not (enabled and here):
        return None
    archiver = ArchiverProcess(root)
    archiver.start()
    return archiver
