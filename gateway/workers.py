"""`gateway serve --workers N`: N worker processes, each with a listening socket of its own (SO_REUSEPORT).

Why not uvicorn's own `workers=`: it binds one socket and hands it to every worker, and the worker that
wakes first accepts. Measured with wrk's 64 keep-alive connections and 2 workers, one worker took ~80 %
of them — a client that holds its connections (every SDK does) then loads one core while the others idle.
With a socket per worker the kernel spreads new connections over the workers by a hash of the addresses.

The supervisor restarts a worker that dies while serving, and on SIGTERM or SIGINT stops all of them
gracefully (uvicorn's shutdown in each: open requests finish). A worker that exits before it said it is
ready (bad config, Redis unreachable) stops the whole service with an error instead of a restart loop.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

log = logging.getLogger("gateway.workers")

STOP_TIMEOUT = 30.0  # seconds a worker gets to finish its open requests before it is killed
RESTART_DELAY = 1.0  # between a worker's death and its replacement (no busy loop on a persistent fault)


class WorkersError(RuntimeError):
    pass


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket that shares its port with the other workers' sockets."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def ensure_port_free(host: str, port: int) -> None:
    """SO_REUSEPORT would let our workers join a listener left behind by an earlier run of the same user
    and silently split the traffic with it, so refuse to start when something already answers there."""
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        with socket.create_connection((probe, port), timeout=0.5):
            pass
    except OSError:
        return
    raise WorkersError(f"something already listens on {host}:{port}; stop it or choose another --port")


class Supervisor:
    """Starts `n` processes running `target(host, port, ready)`, keeps them running, stops them on a signal.
    `target` serves on a `reuseport_socket(host, port)` of its own and sets `ready` once it accepts."""

    def __init__(self, n: int, target: Callable[[str, int, Event], None], host: str, port: int) -> None:
        if not hasattr(socket, "SO_REUSEPORT"):
            raise WorkersError("--workers > 1 needs SO_REUSEPORT (Linux, BSD, macOS); run one worker per port")
        self.n, self.target, self.host, self.port = n, target, host, port
        self._ctx = multiprocessing.get_context("spawn")  # a clean interpreter per worker, no forked state
        self._procs: list[tuple[BaseProcess, Event]] = []
        self._stopping = False

    def run(self) -> int:
        ensure_port_free(self.host, self.port)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._procs = [self._start() for _ in range(self.n)]
            log.info("started %d workers on %s:%d: pids %s", self.n, self.host, self.port,
                     " ".join(str(p.pid) for p, _ in self._procs))
            return self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self) -> tuple[BaseProcess, Event]:
        ready = self._ctx.Event()
        proc = self._ctx.Process(target=self.target, args=(self.host, self.port, ready), daemon=False)
        proc.start()
        return proc, ready

    def _watch(self) -> int:
        while not self._stopping:
            for i, (proc, ready) in enumerate(self._procs):
                if proc.is_alive() or self._stopping:
                    continue
                if not ready.is_set():
                    log.error("worker %d exited with code %s during start-up; stopping the service",
                              proc.pid, proc.exitcode)
                    return 1
                log.warning("worker %d exited with code %s; starting a new one", proc.pid, proc.exitcode)
                time.sleep(RESTART_DELAY)
                if not self._stopping:
                    self._procs[i] = self._start()
            time.sleep(0.2)
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _stop_all(self) -> None:
        for proc, _ in self._procs:
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()  # SIGTERM: uvicorn's graceful shutdown in the worker
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc, _ in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("worker %d did not stop in %.0f s; killing it", proc.pid, STOP_TIMEOUT)
                proc.kill()
                proc.join(5)
