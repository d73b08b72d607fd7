"""`gateway reload`: ask the running `gateway serve` to reload (SIGHUP to the pid in <data_dir>/gateway.pid)
and report what it recorded: the new version in force, "unchanged", or the errors it refused the files for.

The serving process, not this command, loads the files: with its own environment (provider keys this shell
may not have), and it coordinates the switch of every worker (gateway.reload)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import orjson

from gateway.config import ConfigError
from gateway.config.load import load_settings


def reload_command(root: str, timeout: float, as_json: bool) -> int:
    from gateway.reload import Keys, last_load
    from gateway.store.connection import EmbeddedRedis, async_client, data_dir

    try:
        config = load_settings(root)
    except ConfigError as exc:
        return _fail(as_json, "the configuration is invalid", exc.errors)
    pidfile = data_dir(config) / "gateway.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return _fail(as_json, f"no running `gateway serve` for this root ({pidfile} is missing)", [])
    s = config.settings
    url = s.redis_url or EmbeddedRedis(data_dir(config)).url
    keys = Keys.of(s.redis_prefix, config.root)

    async def go() -> dict[str, Any]:
        client = async_client(url, max_connections=2, connect_timeout_ms=s.redis_connect_timeout_ms,
                              command_timeout_ms=s.redis_command_timeout_ms)
        try:
            before = await last_load(client, keys)
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                return {"ok": False, "message": f"no process {pid} (from {pidfile}): is `gateway serve` running?",
                        "errors": []}
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                now = await last_load(client, keys)
                if now and now != before:
                    return now
            return {"ok": False, "message": f"no outcome within {timeout:.0f} s; see the server's log", "errors": []}
        finally:
            await client.aclose()

    try:
        outcome = asyncio.run(go())
    except Exception as exc:  # noqa: BLE001  Redis unreachable: one line, exit 1
        return _fail(as_json, f"Redis: {exc}", [])
    if as_json:
        sys.stdout.write(orjson.dumps(outcome, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0 if outcome.get("ok") else 1
    if outcome.get("ok"):
        print(f"reloaded: {outcome.get('message')}")
        return 0
    print(f"error: reload {outcome.get('message')}", file=sys.stderr)
    for line in outcome.get("errors") or []:
        print(line, file=sys.stderr)
    return 1


def _fail(as_json: bool, message: str, errors: list[str]) -> int:
    if as_json:
        sys.stdout.write(orjson.dumps({"ok": False, "message": message, "errors": errors}).decode() + "\n")
    else:
        print(f"error: {message}", file=sys.stderr)
        for line in errors:
            print(line, file=sys.stderr)
    return 1
