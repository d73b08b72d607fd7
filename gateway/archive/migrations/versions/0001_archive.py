"""The archive: history, ledger, cursors.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("ms", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("t_ms", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "ms", "seq", name="history_pk"),
        sa.UniqueConstraint("request_id", name="history_request_id_key"),
    )
    op.create_index("history_account_time", "history", ["account_id", "t_ms"])
    op.create_table(
        "ledger",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("ms", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("credited", sa.BigInteger, nullable=False),
        sa.Column("operation_id", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("t_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "ms", "seq", name="ledger_pk"),
    )
    op.create_table(
        "cursors",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("ms", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "stream", name="cursors_pk"),
    )


def downgrade() -> None:
    op.drop_table("cursors")
    op.drop_table("ledger")
    op.drop_index("history_account_time", "history")
    op.drop_table("history")
