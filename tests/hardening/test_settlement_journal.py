"""The settlement journal: a dead process's unconfirmed settlements are taken over by exactly one live
process (flock), a line cut short by a crash is skipped, compaction keeps the file locked, and a replay
Redis cannot place any more is reported, not silently dropped."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.store.journal import Journal, Settlement
from gateway.store.settlements import Unconfirmed
from tests.support import REPO

NOW_MS = int(time.time() * 1000)


def _settlement(n: int, at_ms: int = NOW_MS) -> Settlement:
    return Settlement.of([f"gw:{{a:acct_1}}:k{i}" for i in range(7)],
                         [at_ms, f"req_{n}", 1000 + n, "2026-01", "2026-01-02", 0, 100000, "1", b'{"status":200}'])


CHILD = """
import asyncio, sys, time
from gateway.store.journal import Journal
from tests.hardening.test_settlement_journal import _settlement

async def main():
    j = Journal(sys.argv[1])
    j.open()
    j.append([_settlement(1), _settlement(2)])
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_dead_process_journal_is_replayed_by_exactly_one_live_process(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder)], cwd=REPO, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"

        async def go() -> tuple[list[Settlement], list[Settlement], list[Settlement]]:
            a, b = Journal(folder), Journal(folder)
            a.open()
            b.open()
            alive = a.adopt_orphans()                # the child holds its lock: not an orphan
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            first, second = a.adopt_orphans(), b.adopt_orphans()
            a.close(keep=True)
            b.close(keep=False)
            return alive, first, second

        alive, first, second = asyncio.run(go())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert alive == []
    assert [s.request_id for s in first] == ["req_1", "req_2"] and second == []
    # the adopter's own file now holds them (kept for its next start), the dead one's file is gone
    (left,) = list(folder.glob("settle-*.jnl"))
    assert [s.request_id for s in Journal(folder)._take(left)[1]] == ["req_1", "req_2"]


def test_a_line_cut_short_by_a_crash_is_skipped_and_another_redis_journal_is_left_alone(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "journal"
    folder.mkdir()
    whole = _settlement(1).line() + _settlement(2).line()
    (folder / "settle-any-gone-1-abcd.jnl").write_bytes(whole + _settlement(3).line()[:40])
    (folder / "settle-0ther-gone-2-abcd.jnl").write_bytes(whole)  # meant for another Redis: left alone

    async def go() -> list[Settlement]:
        j = Journal(folder)
        j.open()
        try:
            return j.adopt_orphans()
        finally:
            j.close(keep=False)

    with caplog.at_level(logging.ERROR):
        adopted = asyncio.run(go())
    assert [s.request_id for s in adopted] == ["req_1", "req_2"]
    assert adopted[0].args == _settlement(1).args  # replayed byte for byte as first sent
    assert "1 unreadable line(s) skipped" in caplog.text
    assert [p.name for p in folder.iterdir()] == ["settle-0ther-gone-2-abcd.jnl"]


def test_compaction_keeps_only_what_is_unconfirmed_and_stays_locked(tmp_path: Path) -> None:
    folder = tmp_path / "journal"

    async def go() -> tuple[int, list[Settlement], list[Settlement]]:
        j, other = Journal(folder), Journal(folder)
        j.open()
        other.open()
        j.append([_settlement(n) for n in range(10)])
        j.rewrite([_settlement(7)])
        stolen = other.adopt_orphans()   # j is alive: its compacted file is still locked
        lines = j.lines
        j.close(keep=True)               # j stops with req_7 unconfirmed
        after = other.adopt_orphans()
        other.close(keep=False)
        return lines, stolen, after

    lines, stolen, after = asyncio.run(go())
    assert stolen == [] and lines == 1
    assert [s.request_id for s in after] == ["req_7"]


def test_a_replay_redis_no_longer_knows_is_reported(caplog) -> None:
    window_ms = 3_600_000

    async def go() -> int:
        async def send(s: Settlement) -> int:
            return 0  # settle.lua: no reservation record left (settled already, or expired long ago)

        async def up() -> None:
            return None

        queue = Unconfirmed(send, up, limit=10, late_window_ms=window_ms)
        queue.add(_settlement(1, at_ms=int(time.time() * 1000) - 2 * window_ms), "test")
        queue.add(_settlement(2), "test")
        assert await queue.drain(5)
        return len(queue)

    with caplog.at_level(logging.INFO):
        assert asyncio.run(go()) == 0
    assert "req_1 (1001 nano-USD" in caplog.text and "after the late-settlement window" in caplog.text
    assert "settlement of req_2 had already been applied" in caplog.text
