"""`gateway serve --workers N`: N worker processes, each with a listening socket of its own (SO_REUSEPORT).

Why not uvicorn's own `workers=`: it binds one socket and hands it to every worker, and the worker that
wakes first accepts. Measured with wrk's 64 keep-alive connections and 2 workers: 58 / 6, 27 / 37 and
63 / 1 in three runs — a client that holds its connections (every SDK does) then loads one core while
the others idle. With sockets of their own: 30 / 34, 33 / 31, 35 / 29, 32 / 32 (bench/RESULTS.md, w).
The kernel spreads new connections over the sockets by a hash of the addresses.

The supervisor restarts a worker that dies while serving (waiting longer each time its replacement fails
to start: Redis may be down for a while), and on SIGTERM or SIGINT stops all of them gracefully (uvicorn's
shutdown in each: open requests finish). A worker of the first set that exits before it said it is ready
(bad config, Redis unreachable at start) stops the whole service with an error instead of a restart loop.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

log = logging.getLogger("gateway.http.workers")

STOP_TIMEOUT = 30.0  # seconds a worker gets to finish its open requests before it is killed
RESTART_DELAY = 1.0  # between a worker's death and its replacement, doubled while replacements fail ...
MAX_RESTART_DELAY = 30.0  # ... up to this


class WorkersError(RuntimeError):
    pass


def _address(host: str, port: int) -> tuple[int, tuple]:
    """The family and socket address to bind for `host` (an IP of either family, or a name)."""
    family, _, _, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                               flags=socket.AI_PASSIVE)[0]
    return family, addr


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket that shares its port with the other workers' sockets."""
    family, addr = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def ensure_port_free(host: str, port: int) -> None:
    """SO_REUSEPORT would let our workers join a listener left behind by an earlier run of the same user
    and silently split the traffic with it. A bind without SO_REUSEPORT fails when anything holds the
    address (a listener on the wildcard, on this address, or on the other family's wildcard for a
    dual-stack bind), and succeeds over connections that are only closing (SO_REUSEADDR)."""
    family, addr = _address(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as exc:
            raise WorkersError(f"cannot listen on {host}:{port} ({exc.strerror}); stop what holds it or "
                               "choose another --port") from None


class _Slot:
    """One worker place: its current process, and how its restarts are going."""

    def __init__(self, proc: BaseProcess, ready: Event, first: bool) -> None:
        self.proc, self.ready, self.first = proc, ready, first
        self.delay = RESTART_DELAY
        self.restart_at: float | None = None


class Supervisor:
    """Starts `n` processes running `target(host, port, ready)`, keeps them running, stops them on a signal.
    `target` serves on a `reuseport_socket(host, port)` of its own and sets `ready` once it accepts."""

    def __init__(self, n: int, target: Callable[[str, int, Event], None], host: str, port: int,
                 on_reload: Callable[[], None] | None = None, stop_timeout: float = STOP_TIMEOUT) -> None:
        if not hasattr(socket, "SO_REUSEPORT"):
            raise WorkersError("--workers > 1 needs SO_REUSEPORT (Linux, BSD, macOS); run one worker per port")
        self.n, self.target, self.host, self.port = n, target, host, port
        self.stop_timeout = stop_timeout  # a worker's own grace period and then some
        self._ctx = multiprocessing.get_context("spawn")  # a clean interpreter per worker, no forked state
        self._slots: list[_Slot] = []
        self._stopping = False
        self._on_reload = on_reload          # SIGHUP: run in a thread, so the watch goes on meanwhile
        self._reload_wanted = False
        self._reloading: threading.Thread | None = None

    def run(self) -> int:
        ensure_port_free(self.host, self.port)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        try:
            for _ in range(self.n):
                self._slots.append(_Slot(*self._start(), first=True))  # kept at once: stopped on any exit
            log.info("started %d workers on %s:%d: pids %s", self.n, self.host, self.port,
                     " ".join(str(slot.proc.pid) for slot in self._slots))
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
            self._maybe_reload()
            now = time.monotonic()
            for slot in self._slots:
                if self._stopping:
                    break
                if slot.restart_at is not None:
                    if now >= slot.restart_at:
                        slot.proc, slot.ready = self._start()
                        slot.restart_at = None
                    continue
                alive, started = slot.proc.is_alive(), slot.ready.is_set()
                if alive:
                    if started:
                        slot.first, slot.delay = False, RESTART_DELAY  # serving: a later death starts afresh
                    continue
                if started:
                    log.warning("worker %d exited with code %s; starting a new one", slot.proc.pid,
                                slot.proc.exitcode)
                    slot.restart_at = now + slot.delay
                elif slot.first:
                    log.error("worker %d exited with code %s during start-up; stopping the service",
                              slot.proc.pid, slot.proc.exitcode)
                    return 1
                else:  # a replacement that could not start: try again, less often
                    log.error("replacement worker %d could not start (code %s); trying again in %.0f s",
                              slot.proc.pid, slot.proc.exitcode, slot.delay)
                    slot.restart_at = now + slot.delay
                    slot.delay = min(slot.delay * 2, MAX_RESTART_DELAY)
                slot.first = False
            time.sleep(0.2)
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _on_hangup(self, signum: int, frame: object) -> None:
        self._reload_wanted = True

    def _maybe_reload(self) -> None:
        if not self._reload_wanted:
            return
        if self._on_reload is None:
            self._reload_wanted = False
            log.warning("SIGHUP: nothing to reload")
            return
        if self._reloading is not None and self._reloading.is_alive():
            return  # one at a time; the signal that came meanwhile runs once this one ends
        self._reload_wanted = False
        log.info("SIGHUP: reloading the configuration")
        self._reloading = threading.Thread(target=self._reload_safely, name="reload", daemon=True)
        self._reloading.start()

    def _reload_safely(self) -> None:
        assert self._on_reload is not None
        try:
            self._on_reload()
        except Exception:
            log.exception("reload failed")

    def _stop_all(self) -> None:
        procs = [slot.proc for slot in self._slots]
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()  # SIGTERM: uvicorn's graceful shutdown in the worker
        deadline = time.monotonic() + self.stop_timeout
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("worker %d did not stop in %.0f s; killing it", proc.pid, self.stop_timeout)
                proc.kill()
                proc.join(5)
