"""`gateway archive run`: the archiver alone, for a host of its own (then `archive.worker: false` on the
serving hosts, so that none of them spends CPU on it); `gateway archive check ACCOUNT_ID`: the archive
against Redis for one account (what a reconciliation compares)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import orjson

from gateway.config.model import Config
from gateway.observability.log_format import configure_logging


def register(sub: argparse._SubParsersAction) -> None:
    archive = sub.add_parser("archive", help="the history and ledger archive (PostgreSQL or SQLite)")
    asub = archive.add_subparsers(dest="archive_command", required=True)
    run = asub.add_parser("run", help="run the archiver in this process until SIGTERM")
    run.set_defaults(func=cmd_run)
    check = asub.add_parser("check", help="the archive against Redis for one account")
    check.add_argument("account_id")
    check.set_defaults(func=cmd_check)


def _config(args: argparse.Namespace) -> Config:
    from gateway.config import load_config

    return load_config(args.root or os.environ.get("GATEWAY_ROOT") or ".")


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.archive.service import archiver_for, open_archive
    from gateway.store.connection import async_client, embedded_redis_for
    from gateway.store.keys import KeySpace

    config = _config(args)
    s = config.settings
    db = open_archive(config)
    if db is None:
        print("the archive is off (archive.enabled: false)", file=sys.stderr)
        return 1
    configure_logging(s.log_level, s.observability.log_format)   # beside `gateway serve`: the same format as its lines
    embedded = embedded_redis_for(config)
    url = s.redis_url or (embedded.url if embedded else "")

    async def go() -> None:
        redis = async_client(url, max_connections=8, connect_timeout_ms=s.redis_connect_timeout_ms,
                             command_timeout_ms=s.redis_command_timeout_ms)
        archiver = archiver_for(config, redis, KeySpace(s.redis_prefix), db)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        archiver.start()
        try:
            await stop.wait()
        finally:
            await archiver.stop()
            db.close()
            await redis.aclose()

    asyncio.run(go())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.archive.service import open_archive
    from gateway.store.connection import embedded_redis_for, sync_client
    from gateway.store.keys import KeySpace

    config = _config(args)
    s = config.settings
    db = open_archive(config)
    if db is None:
        print("the archive is off (archive.enabled: false)", file=sys.stderr)
        return 1
    embedded = embedded_redis_for(config)
    r = sync_client(s.redis_url or (embedded.url if embedded else ""))
    k = KeySpace(s.redis_prefix)
    try:
        spent, credited = r.hmget(k.account(args.account_id), "spent", "credited")
        if spent is None:
            print(f"no account {args.account_id}", file=sys.stderr)
            return 1
        rows, cost, ledger = db.totals(args.account_id)
        unarchived = r.xlen(k.history(args.account_id))
    finally:
        r.close()
        db.close()
        if embedded is not None:
            embedded.stop()
    doc = {"account": args.account_id, "archive": {"history_rows": rows, "cost_nano": cost, "ledger_nano": ledger},
           "redis": {"spent_nano": int(spent), "credited_nano": int(credited or 0), "history_in_redis": unarchived},
           "history_complete": cost == int(spent), "ledger_complete": ledger == int(credited or 0)}
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    return 0 if doc["history_complete"] and doc["ledger_complete"] else 2
