"""gateway.observability.request_log: the line a request leaves on stderr, read back as an operator's tools do."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.observability.record import RequestRecord
from gateway.observability.request_log import RequestLog
from gateway.store.ledger import Caller
from gateway.usage import Usage

TOKEN = b"Bearer bt_abcdefgh_" + b"s" * 32


async def _send(message: Any) -> None:
    pass


def record(path: str = "/v1/chat/completions", caller: Caller | None = None, **set_: Any) -> RequestRecord:
    rec = RequestRecord({"method": "POST", "path": path, "headers": []}, _send, "req_0001", "", "v1", True)
    rec.endpoint, rec.status = "chat", 200
    if caller is not None:
        rec.caller, rec.auth = caller, TOKEN
    for name, value in set_.items():
        setattr(rec, name, value)
    return rec


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def test_the_writer_keeps_its_own_descriptor(tmp_path: Path) -> None:
    """The caller's descriptor closed and its number reused for a file: that file gets none of the lines."""
    r, w = os.pipe()
    log = RequestLog("json", w)
    os.close(w)
    other = tmp_path / "config.yaml"
    with open(other, "w") as f:   # (likely given w's old number)
        f.write("wire: x\n")
        f.flush()
        log.write(record(), 0.001)
        log.flush(wait_s=5)
    assert other.read_text() == "wire: x\n"
    assert json.loads(os.read(r, 1 << 16))["status"] == 200
    log.close()
    os.close(r)


def lines(log: RequestLog, fd: int) -> list[str]:
    log.flush(wait_s=5)
    return os.read(fd, 1 << 20).decode().split("\n")[:-1]   # lines end in \n only (not str.splitlines)


def test_a_paid_call_is_one_json_line_with_every_field(pipe: tuple[int, int]) -> None:
    log = RequestLog("json", pipe[1])
    rec = record(caller=Caller("acc_1", "key_1"), model="gpt-4o-mini", provider="openai", upstream_s=0.25,
                 usage=Usage(input_tokens=12, output_tokens=30, cached_input_tokens=4, reasoning_tokens=2),
                 cost_nano=12_345)
    log.write(rec, 0.2501234)
    [line] = lines(log, pipe[0])
    x = json.loads(line)
    assert x.pop("time") and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", json.loads(line)["time"])
    assert x == {"level": "info", "logger": "gateway.request", "request_id": "req_0001", "method": "POST",
                 "path": "/v1/chat/completions", "endpoint": "chat", "account_id": "acc_1", "key_id": "key_1",
                 "key_prefix": "bt_abcdefgh", "model": "gpt-4o-mini", "provider": "openai", "status": 200,
                 "input_tokens": 12, "output_tokens": 30, "cached_tokens": 4, "reasoning_tokens": 2,
                 "cost_usd": 0.000012345, "duration_ms": 250.12, "upstream_ms": 250.0, "overhead_ms": 0.12,
                 "stream": False}
    assert '"cost_usd":0.000012345,' in line   # exact decimal USD, as the x-gateway-cost-usd header


def test_a_refused_call_has_nulls_and_says_why(pipe: tuple[int, int]) -> None:
    log = RequestLog("json", pipe[1])
    log.write(record(status=401, error_type="caller_auth", client_id="trace-7"), 0.001)
    x = json.loads(lines(log, pipe[0])[0])
    assert x["account_id"] is None and x["key_prefix"] is None and x["model"] is None and x["cost_usd"] is None
    assert x["input_tokens"] is None and x["upstream_ms"] is None and x["overhead_ms"] == x["duration_ms"] == 1.0
    assert x["error_type"] == "caller_auth" and x["client_request_id"] == "trace-7" and x["status"] == 401


def test_a_cut_stream_has_its_cut_and_time_to_first_token(pipe: tuple[int, int]) -> None:
    log = RequestLog("json", pipe[1])
    rec = record(caller=Caller("acc_1", "key_1"), model="m", provider="p", stream=True, cut="client",
                 fallback="p", upstream_s=0.5)
    rec.first_byte = rec.started + 0.125
    log.write(rec, 0.6)
    x = json.loads(lines(log, pipe[0])[0])
    assert x["stream"] is True and x["cut"] == "client" and x["ttft_ms"] == 125.0 and x["fallback"] == "p"


@pytest.mark.parametrize("path", ['/v1/"quoted"\\back\nslash', "/v1/ünïcode/\u2028", "/v1/" + "x" * 500])
def test_whatever_path_a_client_sends_the_line_stays_one_json_object(pipe: tuple[int, int], path: str) -> None:
    log = RequestLog("json", pipe[1])
    log.write(record(path=path), 0.001)
    [line] = lines(log, pipe[0])
    assert json.loads(line)["path"] == path[:200]


def test_two_keys_on_one_model_are_not_mixed_up(pipe: tuple[int, int]) -> None:
    """What names the caller is kept per (endpoint, model, provider, key): the second key is its own."""
    log = RequestLog("json", pipe[1])
    for account, key in (("acc_1", "key_1"), ("acc_2", "key_2"), ("acc_1", "key_1")):
        log.write(record(caller=Caller(account, key), model="m", provider="p"), 0.001)
    seen = [(x["account_id"], x["key_id"]) for x in map(json.loads, lines(log, pipe[0]))]
    assert seen == [("acc_1", "key_1"), ("acc_2", "key_2"), ("acc_1", "key_1")]


def test_the_text_format_has_the_same_fields_as_key_value(pipe: tuple[int, int]) -> None:
    log = RequestLog("text", pipe[1])
    log.write(record(caller=Caller("acc_1", "key_1"), model="gpt-4o-mini", provider="openai", upstream_s=0.1,
                     cost_nano=10**9), 0.2)
    [line] = lines(log, pipe[0])
    assert line.startswith("time=")
    assert "account_id=acc_1" in line and "cost_usd=1.0" in line and "model=gpt-4o-mini" in line
    assert "input_tokens" not in line   # null fields are left out


def test_the_secret_never_reaches_the_line(pipe: tuple[int, int]) -> None:
    log = RequestLog("json", pipe[1])
    log.write(record(caller=Caller("acc_1", "key_1")), 0.001)
    assert "sssssss" not in lines(log, pipe[0])[0]


def test_a_stderr_nobody_reads_drops_lines_and_never_blocks_the_writer() -> None:
    """A full pipe (a log consumer that stalled) must not stop the worker: lines beyond the bound are dropped."""
    r, w = os.pipe()   # nobody reads r
    try:
        log = RequestLog("json", w)
        done = threading.Event()

        def flood() -> None:
            for _ in range(100 * 256):   # ~15 MB of lines: the 64 KiB pipe fills, then the 8 MiB bound
                log.write(record(), 0.001)
            log.flush()
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(30), "writing the request log blocked on a full pipe"
        assert log.dropped > 0
    finally:
        os.close(r)   # the queued batches now fail at once (EPIPE) and the writer finishes
        log.close()
        os.close(w)
