"""Batches of log lines written to a file descriptor from a thread of their own, with a bound on what waits.

A stderr that nobody reads (a full pipe: a process supervisor that stalled, a `docker logs` consumer gone)
blocks whoever writes to it. Written from the event loop, that would stop every request of the worker; written
from this thread, only the thread waits, and while it does, batches beyond MAX_PENDING_BYTES are dropped and
counted (`dropped` lines, exported as gateway_log_lines_dropped_total) rather than kept in memory.
"""

from __future__ import annotations

import os
import threading
from collections import deque

MAX_PENDING_BYTES = 8 * 1024 * 1024


class LineWriter:
    def __init__(self, fd: int, max_pending: int = MAX_PENDING_BYTES) -> None:
        # a descriptor of its own: whoever closes `fd` meanwhile cannot have a reused number (another file)
        # receive the batches still queued
        self._fd = os.dup(fd)
        self._closing = False
        self._max = max_pending
        self._pending: deque[bytes] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self.dropped = 0   # lines

    def put(self, data: bytes, lines: int) -> None:
        """Queue one batch (never blocks); dropped when MAX_PENDING_BYTES already wait."""
        with self._lock:
            if self._closing:
                return
            if self._bytes + len(data) > self._max:
                self.dropped += lines
                return
            self._pending.append(data)
            self._bytes += len(data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        """No more batches; the descriptor is closed once what is queued has been written (or failed)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._thread is not None:
                self._wake.notify()
                return
        os.close(self._fd)

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for what is queued to be written (at shutdown); False if it was not."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._bytes, timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._wake.wait_for(lambda: bool(self._pending) or self._closing)
                if not self._pending:   # closing, and everything written
                    os.close(self._fd)
                    return
                data = self._pending.popleft()
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError:   # stderr closed: the batch is lost, the service goes on
                pass
            with self._lock:
                self._bytes -= len(data)
                if not self._bytes:
                    self._idle.notify_all()
