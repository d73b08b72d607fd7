"""Archive databases for the tests: an SQLite file in a temporary folder, and, when PostgreSQL answers
(GATEWAY_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/postgres, the development and CI
machines' server), a database of the test's own, created here and dropped at the end."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_ADMIN_URL = os.environ.get("GATEWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin() -> object | None:
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        return None


@contextmanager
def archive_url(kind: str, folder: Path) -> Iterator[str | None]:
    """A DATABASE_URL for `kind` ('sqlite': '' — the gateway's own file under its data dir — or
    'postgres'); None when PostgreSQL does not answer here."""
    if kind == "sqlite":
        yield ""
        return
    conn = _admin()
    if conn is None:
        yield None
        return
    name = "gw_test_" + secrets.token_hex(5)
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
        try:
            yield f"{base}/{name}"
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
