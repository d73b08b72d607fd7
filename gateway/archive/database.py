"""The archive database: an engine for `DATABASE_URL` (PostgreSQL) or an SQLite file, its migrations
(Alembic, run at start under a lock, so that several processes starting at once migrate once), and the
queries. Synchronous SQLAlchemy Core: callers on the event loop run these in a thread."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, and_, create_engine, event, func, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.archive.schema import cursors, history, ledger

log = logging.getLogger("gateway.archive")

ANALYZE_EVERY = 100_000       # rows archived by this process between two ANALYZEs (PostgreSQL)
StreamId = tuple[int, int]   # (ms, seq) of a Redis stream id


def parse_id(eid: bytes | str) -> StreamId:
    ms, _, seq = (eid.decode() if isinstance(eid, bytes) else eid).partition("-")
    return int(ms), int(seq or 0)


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


def engine_url(database_url: str, data_dir: Path) -> str:
    """SQLAlchemy's URL: postgres(ql):// spoken by psycopg 3; empty: <data_dir>/archive.sqlite3."""
    if not database_url:
        return f"sqlite:///{(data_dir / 'archive.sqlite3').resolve()}"
    scheme, sep, rest = database_url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg{sep}{rest}"
    return database_url


def safe_url(url: str) -> str:
    """The URL without its password, for logs and pages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one transaction archives: rows of both streams and the cursors they advance to."""

    history: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    cursors: dict[tuple[str, str], StreamId]   # (account, 'hist' | 'ledger') → last archived id


class ArchiveDB:
    def __init__(self, url: str, connect_timeout_s: int = 5) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_path: Path | None = path.with_suffix(".lock")
            self.engine: Engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self._lock_path = None
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4,
                                        connect_args={"connect_timeout": connect_timeout_s})
        self._insert = sqlite_insert if self.sqlite else pg_insert
        self._migrated = False
        self._since_analyze = 0

    def migrate(self) -> None:
        """Bring the tables to the newest migration (Alembic), once even if several processes start at once."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(files("gateway.archive").joinpath("migrations")))
        with self._migration_lock() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        self._migrated = True

    def _ready(self) -> None:
        """Migrated before the first query of this process (`gateway history` on a fresh install, too)."""
        if not self._migrated:
            self.migrate()

    @contextmanager
    def _migration_lock(self) -> Iterator[Any]:
        if self._lock_path is not None:
            with open(self._lock_path, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                with self.engine.begin() as conn:
                    yield conn
            return
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(7318126)"))  # held to the end of the transaction
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # -- writing -----------------------------------------------------------------------------------------

    def cursors_of(self, account_ids: Sequence[str]) -> dict[tuple[str, str], StreamId]:
        if not account_ids:
            return {}
        self._ready()
        with self.engine.connect() as conn:
            rows = conn.execute(select(cursors).where(cursors.c.account_id.in_(list(account_ids))))
            return {(r.account_id, r.stream): (r.ms, r.seq) for r in rows}

    def append(self, batch: Batch) -> None:
        """Rows and cursors in one transaction: a crash before the commit archives nothing (the next pass
        reads the same entries again), after it everything; a row already there (another archiver, a
        cursor written before a lost answer) is skipped by its request id or stream id."""
        self._ready()
        with self.engine.begin() as conn:
            if batch.history:
                conn.execute(self._insert(history).on_conflict_do_nothing(), batch.history)
            if batch.ledger:
                conn.execute(self._insert(ledger).on_conflict_do_nothing(), batch.ledger)
            for (aid, stream), (ms, seq) in batch.cursors.items():
                ins = self._insert(cursors).values(account_id=aid, stream=stream, ms=ms, seq=seq)
                newer = or_(ins.excluded.ms > cursors.c.ms,
                            and_(ins.excluded.ms == cursors.c.ms, ins.excluded.seq > cursors.c.seq))
                conn.execute(ins.on_conflict_do_update(index_elements=["account_id", "stream"],
                                                       set_={"ms": ins.excluded.ms, "seq": ins.excluded.seq},
                                                       where=newer))
        self._since_analyze += len(batch.history) + len(batch.ledger)
        if not self.sqlite and self._since_analyze >= ANALYZE_EVERY:
            # PostgreSQL plans the history pages from its statistics: after a bulk catch-up (a table that grew
            # from nothing, an archiver back after a long stop) they say "a few rows" until autovacuum comes,
            # and a page then sorts the whole account (200 ms) instead of walking the index back (0.1 ms)
            self._since_analyze = 0
            with self.engine.connect() as conn:
                conn.execute(text("ANALYZE history"))
                conn.execute(text("ANALYZE ledger"))
                conn.commit()

    # -- reading -----------------------------------------------------------------------------------------

    def history_before(self, aid: str, before: StreamId | None, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` history rows of the account older than `before` (all when None), newest first."""
        q = select(history.c.ms, history.c.seq, history.c.request_id, history.c.t_ms, history.c.cost,
                   history.c.data).where(history.c.account_id == aid)
        if before is not None:   # a row comparison: both databases walk the primary key's index backwards
            q = q.where(tuple_(history.c.ms, history.c.seq) < tuple_(*before))
        q = q.order_by(history.c.ms.desc(), history.c.seq.desc()).limit(limit)
        self._ready()
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def ledger_before(self, aid: str, before: StreamId | None, limit: int) -> list[dict[str, Any]]:
        q = select(ledger).where(ledger.c.account_id == aid)
        if before is not None:
            q = q.where(tuple_(ledger.c.ms, ledger.c.seq) < tuple_(*before))
        q = q.order_by(ledger.c.ms.desc(), ledger.c.seq.desc()).limit(limit)
        self._ready()
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def totals(self, aid: str) -> tuple[int, int, int]:
        """(history rows, Σ cost, Σ ledger amounts) of the account: what reconciliation compares."""
        self._ready()
        with self.engine.connect() as conn:
            n, cost = conn.execute(select(func.count(), func.coalesce(func.sum(history.c.cost), 0))
                                   .where(history.c.account_id == aid)).one()
            credited = conn.execute(select(func.coalesce(func.sum(ledger.c.amount), 0))
                                    .where(ledger.c.account_id == aid)).scalar_one()
        return int(n), int(cost), int(credited)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL: readers (the cabinet) never wait for the archiver's transaction; NORMAL: fsync at checkpoints
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
