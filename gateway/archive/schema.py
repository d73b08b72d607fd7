"""The archive's tables. A stream entry is named by its Redis stream id, kept as two integers (ms, seq) so
that the database orders and pages it as Redis does."""

from __future__ import annotations

from sqlalchemy import (
                        BigInteger,
                        Column,
                        Index,
                        Integer,
                        MetaData,
                        PrimaryKeyConstraint,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
)

metadata = MetaData()

# one row per request (settled, rejected or failed): exactly once per request id
history = Table(
    "history", metadata,
    Column("account_id", String(64), nullable=False),
    Column("ms", BigInteger, nullable=False),          # the stream id: ms-seq
    Column("seq", Integer, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("t_ms", BigInteger, nullable=False),        # when it was settled (ms since the epoch, UTC)
    Column("cost", BigInteger, nullable=False),        # nano-USD charged
    Column("key_id", String(64), nullable=False, default=""),
    Column("model", String(200), nullable=False, default=""),
    Column("status", Integer, nullable=False, default=0),
    Column("data", Text, nullable=False),              # the whole entry as JSON (what the history pages show)
    PrimaryKeyConstraint("account_id", "ms", "seq", name="history_pk"),
    UniqueConstraint("request_id", name="history_request_id_key"),
)

# one row per credit or correction, as the account's ledger stream has it
ledger = Table(
    "ledger", metadata,
    Column("account_id", String(64), nullable=False),
    Column("ms", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),      # nano-USD, negative for a correction down
    Column("credited", BigInteger, nullable=False),    # the account's credited total after it
    Column("operation_id", String(200), nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Column("actor", String(200), nullable=False, default=""),
    Column("t_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "ms", "seq", name="ledger_pk"),
)

# how far each stream of each account is archived: written in the transaction that archives up to there
cursors = Table(
    "cursors", metadata,
    Column("account_id", String(64), nullable=False),
    Column("stream", String(16), nullable=False),      # 'hist' or 'ledger'
    Column("ms", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    PrimaryKeyConstraint("account_id", "stream", name="cursors_pk"),
)

Index("history_account_time", history.c.account_id, history.c.t_ms)
