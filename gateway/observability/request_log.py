"""One log line per request on stderr: JSON (or plain text, `observability.log_format: text`).

What it holds: time, request ids, method and path, endpoint, account and key (its id and its public prefix
`bt_xxxxxxxx`), model, provider, status, error type, tokens, cost, duration, upstream and overhead
milliseconds, streamed / cut, fallback, trace id. Never a prompt, an answer, an error message (a provider's
message may quote the prompt), a key secret or a password.

Lines are gathered and written together at most 0.2 s later (one write system call per batch, not one per
request): a request's line costs a dict and an orjson call. `flush()` at shutdown writes what is left.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson

from gateway.observability.record import RequestRecord

FLUSH_DELAY_S = 0.2
FLUSH_LINES = 256
LINE_HEAD = b'{"level":"info","logger":"gateway.request",'   # what every request line starts with


class RequestLog:
    def __init__(self, fmt: str = "json", fd: int = 2) -> None:
        self._json = fmt != "text"
        self._fd = fd
        self._lines: list[bytes] = []
        self._armed = False
        self._second = -1
        self._ms = -1
        self._date = ""
        self._stamp = ""

    def _time(self, now: float) -> str:
        """ISO 8601 UTC to the millisecond, formatted once per millisecond (many lines share one under load)."""
        ms = int(now * 1000)
        if ms != self._ms:
            self._ms = ms
            sec = ms // 1000
            if sec != self._second:  # the date part once a second
                self._second = sec
                self._date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            self._stamp = "%s.%03dZ" % (self._date, ms % 1000)  # noqa: UP031  (cheaper than an f-string spec)
        return self._stamp

    def write(self, rec: RequestRecord, duration_s: float) -> None:
        fields = line_fields(rec, duration_s, self._time(time.time()))
        if self._json:
            line = LINE_HEAD + orjson.dumps(fields)[1:] + b"\n"
        else:
            line = (" ".join(f"{k}={v}" for k, v in fields.items() if v is not None)).encode() + b"\n"
        self._lines.append(line)
        if len(self._lines) >= FLUSH_LINES:
            self.flush()
        elif not self._armed:
            self._armed = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write now
                self.flush()

    def flush(self) -> None:
        self._armed = False
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        try:
            while data:
                n = os.write(self._fd, data)
                data = data[n:]
        except BlockingIOError:  # stderr is a full non-blocking pipe: drop the rest rather than hold the loop
            pass
        except OSError:
            pass


def key_prefix(authorization: bytes | None) -> str | None:
    """The public part of the caller's token (bt_ + its 8-letter prefix), never the secret after it."""
    if authorization is not None and authorization[7:10] == b"bt_" and authorization[18:19] == b"_":
        return authorization[7:18].decode("ascii", "replace")   # "Bearer bt_xxxxxxxx_..."
    return None


def line_fields(rec: RequestRecord, duration_s: float, when: str) -> dict[str, Any]:
    """The line as a mapping, without the constant `level` and `logger` (LINE_HEAD). The keys that say who
    and what are always there (null when they do not apply); the ones that describe something unusual
    (client_request_id, error_type, cut, fallback, ttft_ms, trace_id) only when it happened."""
    caller = rec.caller
    usage = rec.usage
    up = rec.upstream_s
    scope = rec.scope
    if caller is not None:
        account, key, prefix, cost = caller.account_id, caller.key_id, key_prefix(rec.auth), rec.cost_nano / 1e9
    else:
        account = key = prefix = cost = None
    if usage is not None:
        tin, tout, tcached, treason = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                                       usage.reasoning_tokens)
    else:
        tin = tout = tcached = treason = None
    # milliseconds to 2 decimals by integer arithmetic (round() costs more than the rest of a field)
    if up >= 0:
        upstream, overhead = int(up * 100_000) / 100, int((duration_s - up) * 100_000) / 100
    else:
        upstream, overhead = None, int(duration_s * 100_000) / 100
    fields: dict[str, Any] = {
        "time": when, "request_id": rec.request_id, "method": scope["method"], "path": scope["path"][:200],
        "endpoint": rec.endpoint, "account_id": account, "key_id": key, "key_prefix": prefix,
        "model": rec.model or None, "provider": rec.provider or None, "status": rec.status,
        "input_tokens": tin, "output_tokens": tout, "cached_tokens": tcached, "reasoning_tokens": treason,
        "cost_usd": cost, "duration_ms": int(duration_s * 100_000) / 100, "upstream_ms": upstream,
        "overhead_ms": overhead, "stream": rec.stream,
    }
    if rec.error_type:
        fields["error_type"] = rec.error_type
    if rec.client_id:
        fields["client_request_id"] = rec.client_id
    if rec.stream:
        if rec.cut:
            fields["cut"] = rec.cut
        ttft = rec.ttft_s
        if ttft >= 0:
            fields["ttft_ms"] = int(ttft * 100_000) / 100
    if rec.fallback:
        fields["fallback"] = rec.fallback
    span = rec.span
    if span is not None:
        fields["trace_id"] = f"{span.get_span_context().trace_id:032x}"
    return fields
