"""The archive as the gateway runs it: the database the config names, its archiver, and the setting of
the Redis side (how long the cap of an account's history is while archiving)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError

from gateway.archive.archiver import Archiver
from gateway.archive.database import ArchiveDB, engine_url, safe_url
from gateway.config import Config
from gateway.store.connection import AsyncStore, data_dir
from gateway.store.keys import KeySpace

log = logging.getLogger("gateway.archive")


def open_archive(config: Config) -> ArchiveDB | None:
    """The archive database (not yet connected), or None when `archive.enabled` is false."""
    s = config.settings
    if not s.archive_enabled:
        return None
    return ArchiveDB(engine_url(s.archive_url, data_dir(config)))


def history_cap(config: Config) -> int:
    """settle.lua's MAXLEN: while archiving, a bound for when the archiver stops (it trims on its own)."""
    s = config.settings
    return max(s.archive_redis_cap, s.history_max) if s.archive_enabled else s.history_max


def archiver_for(config: Config, redis: AsyncStore, keys: KeySpace, db: ArchiveDB) -> Archiver:
    s = config.settings
    return Archiver(redis, keys, db, interval_s=s.archive_interval_s, batch=s.archive_batch,
                    keep_ms=s.archive_redis_keep_s * 1000, full_scan_s=s.archive_full_scan_s)


async def migrate(db: ArchiveDB) -> bool:
    """The archive's migrations, in a thread; False (logged) when the database cannot be reached: the
    gateway serves anyway (Redis is the ledger), and the archiver tries again on every pass."""
    try:
        await asyncio.to_thread(db.migrate)
    except (SQLAlchemyError, OSError) as exc:
        log.error("archive database %s unavailable: %s", safe_url(db.url), exc)
        return False
    return True
