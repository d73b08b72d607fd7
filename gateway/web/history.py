"""The request history with filters (key, model, period), paged newest first, and its CSV export.

Entries come from `Accounts.history` (the stream /admin/v1 and the CLI read) and are shown as
`operations.history_doc` documents. The stream is keyed by time, so a period bounds the scan; key and
model filters scan at most SCAN_CAP entries per page and say where to go on from."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.account_admin import Money, history_doc
from gateway.store.accounts import Accounts
from gateway.web import forms

STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
CHUNK = 200
SCAN_CAP = 5000
CSV_MAX_ROWS = 1_000_000   # the whole period of a busy account (the archive holds it all)
CSV_COLUMNS = ("time_utc", "request_id", "key_id", "key_prefix", "key_name", "model", "provider", "endpoint",
               "status", "tokens_in", "tokens_cached", "tokens_out", "tokens_reasoning", "cost_usd", "cost_rub",
               "latency_ms", "error")


def _day_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def filter_of(q: Mapping[str, str], gettext: Any, locale: str) -> tuple[Filter, dict[str, str]]:
    """The model prefix and the period from a query; a date that is not YYYY-MM-DD is reported by field
    (the page says so) instead of being dropped silently."""
    errors: dict[str, str] = {}
    days: dict[str, date | None] = {}
    for name in ("from", "to"):
        try:
            days[name] = forms.day(q.get(name), name)
        except forms.FieldError as exc:
            errors[name], days[name] = exc.text(gettext, locale), None
    return Filter(model=q.get("model", "").strip()[:200], start=days["from"], end=days["to"]), errors


@dataclass(frozen=True, slots=True)
class Filter:
    key: str = ""
    model: str = ""
    start: date | None = None      # inclusive, UTC
    end: date | None = None        # inclusive, UTC

    @property
    def start_ms(self) -> int | None:
        return _day_ms(self.start) if self.start else None

    @property
    def end_ms(self) -> int | None:
        """Exclusive: the first millisecond after the `end` day."""
        return _day_ms(self.end + timedelta(days=1)) if self.end else None

    def matches(self, entry: dict[str, Any]) -> bool:
        """The key exactly; the model by prefix, case-insensitively ("claude" finds every claude-*)."""
        return (not self.key or entry.get("key") == self.key) and \
            (not self.model or str(entry.get("model", "")).lower().startswith(self.model.lower()))

    def query(self) -> dict[str, str]:
        q = {"key": self.key, "model": self.model, "from": self.start.isoformat() if self.start else "",
             "to": self.end.isoformat() if self.end else ""}
        return {k: v for k, v in q.items() if v}


async def _scan(accounts: Accounts, aid: str, f: Filter, before: str | None,
                cap: int) -> AsyncIterator[tuple[dict[str, Any] | None, str]]:
    """(entry or None, its id) newest first; None marks an entry that did not match (so callers can stop)."""
    cursor = before or (f"{f.end_ms}-0" if f.end_ms is not None else None)
    start, scanned = f.start_ms, 0
    while scanned < cap:
        rows = await accounts.history(aid, min(CHUNK, cap - scanned), cursor)
        for entry in rows:
            if start is not None and int(entry["id"].split("-")[0]) < start:
                return
            scanned += 1
            yield (entry if f.matches(entry) else None), entry["id"]
        if len(rows) < CHUNK:
            return
        cursor = rows[-1]["id"]


async def page(accounts: Accounts, aid: str, f: Filter, money: Money, before: str | None = None,
               limit: int = 50) -> tuple[list[dict[str, Any]], str | None]:
    """One page of matching requests and the id to continue from (None: that was the last)."""
    out: list[dict[str, Any]] = []
    scanned, last = 0, None
    async for entry, eid in _scan(accounts, aid, f, before, SCAN_CAP):
        scanned, last = scanned + 1, eid
        if entry is None:
            continue
        out.append(history_doc(entry, money))
        if len(out) == limit:
            return out, eid
    # the scan cap stopped us before the stream (or the period) ended: the next page goes on from there
    return out, last if scanned >= SCAN_CAP else None


async def by_model(accounts: Accounts, aid: str, start: date, end: date,
                   money: Money) -> tuple[list[dict[str, Any]], int]:
    """Requests, failures, tokens and cost per model over [start, end], from the history stream (at most
    SCAN_CAP entries: the second value is that cap when it was reached, else 0)."""
    totals: dict[str, dict[str, int]] = {}
    scanned = 0
    async for entry, _ in _scan(accounts, aid, Filter(start=start, end=end), None, SCAN_CAP):
        scanned += 1
        if entry is None:
            continue
        t = totals.setdefault(str(entry.get("model", "")) or "—",
                              {"requests": 0, "failed": 0, "tokens_in": 0, "tokens_out": 0, "cost": 0})
        t["requests"] += 1
        t["failed"] += int(entry.get("status", 0)) != 200
        t["tokens_in"] += int(entry.get("in", 0) or 0)
        t["tokens_out"] += int(entry.get("out", 0) or 0)
        t["cost"] += int(entry.get("cost", 0) or 0)
    rows = [{"model": name, "requests": t["requests"], "failed": t["failed"], "tokens_in": t["tokens_in"],
             "tokens_out": t["tokens_out"], **money.pair("cost", t["cost"])}
            for name, t in sorted(totals.items(), key=lambda kv: (-kv[1]["cost"], -kv[1]["requests"], kv[0]))]
    return rows, SCAN_CAP if scanned >= SCAN_CAP else 0


async def csv_lines(accounts: Accounts, aid: str, f: Filter, money: Money,
                    keys: dict[str, tuple[str, str]]) -> AsyncIterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    rows = 0
    async for entry, _ in _scan(accounts, aid, f, None, CSV_MAX_ROWS * 10):
        if entry is None:
            continue
        d = history_doc(entry, money)
        prefix, name = keys.get(d["key"], ("", ""))
        writer.writerow((d["time"], d["request_id"], d["key"], prefix, _cell(name), _cell(d["model"]),
                         _cell(d["provider"]), _cell(d["endpoint"]), d["status"], d["tokens_in"], d["tokens_cached"],
                         d["tokens_out"], d["tokens_reasoning"], d["cost_usd"], d["cost_rub"], d["latency_ms"] or "",
                         _cell(d.get("rejected") or d.get("error") or "")))
        rows += 1
        if buf.tell() > 32 * 1024:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
        if rows >= CSV_MAX_ROWS:
            break
    yield buf.getvalue()


def _cell(text: str) -> str:
    """Text a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
