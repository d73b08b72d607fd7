"""The settlement journal: settlements Redis has not confirmed, on local disk, so that none is lost when
the process stops first (SIGTERM, a crash, kill -9).

One file per process under the journal folder, `settle-<redis>-<host>-<pid>-<random>.jnl` (<redis>: a
hash of the Redis address, so a settlement is only ever replayed to the Redis it was meant for), held under
an exclusive flock(2) for as long as the process lives; the kernel drops the lock when the process dies, however it
dies. So a file whose lock can be taken belongs to a dead process: the process that takes it copies its
entries into its own file and then deletes it, and no two processes ever replay the same file.

It is written only on the slow path (a settlement Redis did not confirm in time), one JSON line per
settlement, with one write(2): in the page cache at once, so a killed process loses nothing, and fsync'd
in a thread shortly after (against a power cut). A journal whose settlements are all confirmed is emptied.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("gateway.journal")



@dataclass(frozen=True, slots=True)
class Settlement:
    """One settle.lua call exactly as first sent: replaying it is idempotent (same request id, same
    clock), so it may be sent again whatever became of the first attempt."""

    keys: tuple[str, ...]
    args: tuple[str, ...]

    @classmethod
    def of(cls, keys: Iterable[str], args: Iterable[Any]) -> Settlement:
        return cls(tuple(keys), tuple(a.decode() if isinstance(a, bytes) else str(a) for a in args))

    @property
    def request_id(self) -> str:
        return self.args[1]

    @property
    def at_ms(self) -> int:
        return int(self.args[0])

    @property
    def cost(self) -> int:
        return int(self.args[2])

    def line(self) -> bytes:
        return orjson.dumps({"k": self.keys, "a": self.args}) + b"\n"


def parse(data: bytes, source: str) -> list[Settlement]:
    """The settlements in a journal's bytes; a line cut short by a crash (or otherwise unreadable) is skipped."""
    out: list[Settlement] = []
    bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
            keys, args = doc["k"], doc["a"]
            if not (isinstance(keys, list) and isinstance(args, list) and len(args) >= 3
                    and all(isinstance(x, str) for x in keys + args)):
                raise ValueError("not a settlement")
            int(args[0]), int(args[2])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
            continue
        out.append(Settlement(tuple(keys), tuple(args)))
    if bad:
        log.error("journal %s: %d unreadable line(s) skipped (a write cut short by a crash?)", source, bad)
    return out


class Journal:
    def __init__(self, folder: str | os.PathLike[str], scope: str = "any") -> None:
        """`scope`: which Redis the settlements belong to (letters and digits); only files of the same
        scope are adopted."""
        self.folder = Path(folder)
        self.scope = scope
        self.path: Path | None = None
        self._foreign: set[str] = set()
        self._fd = -1
        self.lines = 0                  # lines in our file since it was last emptied or compacted
        self._dirty = False
        self._syncing: asyncio.Future[None] | None = None

    def open(self) -> None:
        """Create the folder and this process's file, locked. Fails loudly (OSError) if it cannot."""
        self.folder.mkdir(parents=True, exist_ok=True)
        host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:60] or "host"
        for attempt in range(3):
            self.path = self.folder / f"settle-{self.scope}-{host}-{os.getpid()}-{os.urandom(4).hex()}.jnl"
            try:
                self._fd = self._create_locked(self.path)
                return
            except (FileNotFoundError, BlockingIOError):  # another process took the half-made file for an orphan
                if attempt == 2:
                    raise

    def _create_locked(self, final: Path) -> int:
        """A new empty file at `final`, locked before it gets its name (so no one adopts it meanwhile)."""
        tmp = final.with_name(final.name + ".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, final)
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd

    # -- this process's file ---------------------------------------------------------------------------

    def append(self, entries: Iterable[Settlement]) -> None:
        """Write the entries now (one write); fsync follows in a thread."""
        data = b"".join(e.line() for e in entries)
        if not data:
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.lines += data.count(b"\n")
        self._dirty = True
        if self._syncing is None:
            self._syncing = asyncio.ensure_future(self._sync())

    async def _sync(self) -> None:
        try:
            while self._dirty and self._fd >= 0:
                self._dirty = False
                await asyncio.to_thread(os.fsync, self._fd)
        except OSError as exc:
            log.error("cannot fsync the settlement journal %s: %s", self.path, exc)
        finally:
            self._syncing = None

    def sync(self) -> None:
        """fsync now, on this thread (start-up, shutdown, adopting orphans)."""
        if self._fd >= 0:
            os.fsync(self._fd)
            self._dirty = False

    def clear(self) -> None:
        """Every settlement in the file is confirmed: empty it."""
        if self._fd >= 0 and self.lines:
            os.ftruncate(self._fd, 0)
            self.lines = 0

    def rewrite(self, entries: list[Settlement]) -> None:
        """Replace the file by one holding only `entries` (the ones still unconfirmed): bounded disk
        during a long outage. The new file is locked before it takes the name."""
        assert self.path is not None
        old = self._fd
        tmp = self.path.with_name(self.path.name + ".new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            data = b"".join(e.line() for e in entries)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.rename(tmp, self.path)
        except OSError:
            os.close(fd)
            raise
        self._fd, self.lines = fd, len(entries)
        os.close(old)

    def close(self, keep: bool) -> None:
        """At shutdown: fsync and release; the file is deleted unless it still holds settlements to replay."""
        if self._fd < 0:
            return
        try:
            if keep:
                os.fsync(self._fd)
            elif self.path is not None:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = -1

    # -- files of dead processes -----------------------------------------------------------------------

    def adopt_orphans(self) -> list[Settlement]:
        """Take over the files of dead processes: their entries are written to (and fsync'd in) this
        process's file, then the files are deleted, still locked. Returns the entries, to be replayed."""
        adopted: list[Settlement] = []
        mine = f"settle-{self.scope}-"
        for path in sorted(self.folder.glob("settle-*.jnl*")):  # with the .tmp/.new of one being made
            if path == self.path:
                continue
            if not path.name.startswith(mine):
                if path.name not in self._foreign:
                    self._foreign.add(path.name)
                    log.warning("journal %s belongs to another Redis: not replayed here", path.name)
                continue
            taken = self._take(path)
            if taken is None:
                continue
            fd, entries = taken
            try:
                if entries:
                    self.append(entries)
                    self.sync()
                    adopted += entries
                    log.warning("adopted %d unconfirmed settlement(s) from %s (its process is gone)",
                                len(entries), path.name)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)  # the lock goes with it, after the file is gone
        return adopted

    @staticmethod
    def _take(path: Path) -> tuple[int, list[Settlement]] | None:
        """(the locked file, its entries) if the owner of `path` is dead (its lock can be taken), else None."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError(path)  # adopted and replaced meanwhile
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        except (BlockingIOError, FileNotFoundError):  # a live process holds it, or it is gone already
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd, parse(b"".join(chunks), path.name)
