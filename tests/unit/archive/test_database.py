"""The archive database on its own (SQLite in a temporary folder): URLs, exactly-once appends, cursors that
only move forward, and history pages in stream order."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.archive.database import ArchiveDB, Batch, engine_url, format_id, parse_id, safe_url


def _row(aid: str, ms: int, seq: int, rid: str, cost: int = 5) -> dict[str, object]:
    return {"account_id": aid, "ms": ms, "seq": seq, "request_id": rid, "t_ms": ms, "cost": cost, "key_id": "k",
            "model": "m", "status": 200, "data": '{"status": 200}'}


@pytest.fixture
def db(tmp_path: Path) -> ArchiveDB:
    d = ArchiveDB(engine_url("", tmp_path))
    d.migrate()
    return d


def test_urls() -> None:
    assert engine_url("postgresql://u:p@h/db", Path(".")) == "postgresql+psycopg://u:p@h/db"
    assert engine_url("postgres://h/db", Path(".")) == "postgresql+psycopg://h/db"
    assert engine_url("", Path("/data")) == "sqlite:////data/archive.sqlite3"
    assert "secret" not in safe_url("postgresql+psycopg://u:secret@h/db")
    assert parse_id(b"1700000000000-12") == (1700000000000, 12) and format_id((5, 0)) == "5-0"


def test_append_is_exactly_once_and_cursors_only_advance(db: ArchiveDB) -> None:
    db.migrate()  # again: a no-op at the head
    db.append(Batch([_row("a", 10, 0, "r1"), _row("a", 10, 1, "r2")], [], {("a", "hist"): (10, 1)}))
    # the same rows again (a lost answer, a second archiver) with an older cursor: nothing changes
    db.append(Batch([_row("a", 10, 0, "r1"), _row("a", 10, 1, "r2")], [], {("a", "hist"): (10, 0)}))
    assert db.totals("a") == (2, 10, 0)
    assert db.cursors_of(["a", "b"]) == {("a", "hist"): (10, 1)}
    # a request id already archived under another stream id (the same request twice): skipped
    db.append(Batch([_row("a", 11, 0, "r2", cost=99)], [], {("a", "hist"): (11, 0)}))
    assert db.totals("a") == (2, 10, 0) and db.cursors_of(["a"])[("a", "hist")] == (11, 0)
    db.append(Batch([], [{"account_id": "a", "ms": 9, "seq": 0, "kind": "topup", "amount": 700, "credited": 700,
                          "operation_id": "op", "reason": "", "actor": "operator", "t_ms": 9}],
                    {("a", "ledger"): (9, 0)}))
    assert db.totals("a") == (2, 10, 700)
    assert [r["amount"] for r in db.ledger_before("a", None, 10)] == [700]


def test_history_pages_newest_first_across_milliseconds(db: ArchiveDB) -> None:
    rows = [_row("a", ms, seq, f"r{ms}-{seq}") for ms in (100, 101, 102) for seq in range(3)]
    db.append(Batch(rows + [_row("b", 101, 0, "other")], [], {}))
    got, before = [], None
    while page := db.history_before("a", before, 4):
        got += [f"{r['ms']}-{r['seq']}" for r in page]
        before = (page[-1]["ms"], page[-1]["seq"])
    assert got == [f"{ms}-{seq}" for ms in (102, 101, 100) for seq in (2, 1, 0)]
    assert [r["request_id"] for r in db.history_before("a", (101, 1), 2)] == ["r101-0", "r100-2"]
