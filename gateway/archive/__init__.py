"""The archive: every history entry and every ledger movement, complete and append-only, in a database
(PostgreSQL when `DATABASE_URL` is set, else an SQLite file under the data directory), while Redis keeps
only what must be atomic and the recent history.

- schema.py: the tables (SQLAlchemy Core); migrations/: their Alembic migrations, run at start.
- database.py: the engine for a URL, the migrations, and every query (append a batch exactly once, read
  a page of history older than what Redis keeps, sums for reconciliation).
- archiver.py: the background task that drains each account's Redis streams into the database by cursor,
  then trims what is archived and older than `archive.redis_keep_s` from Redis. Never on the request path.
"""
