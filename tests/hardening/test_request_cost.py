"""What one request body may cost the worker that reads it (issue 14 items 2 and 7).

The gateway runs as `gateway serve` in a process of its own; a probe asks `GET /v1` on a keep-alive
connection every few milliseconds, so its worst answer time while a body is being handled is how long the
event loop was held. Upstreams are raw sockets that drain the request and answer a canned message (they cost
this test process almost nothing, so the probe's timing is the gateway's).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import yaml

from tests.support.served import Served
from tests.support.gateway_server import GatewayServer, copy_root, make_customer
from tests.support.raw_upstream import RawRequest, RawUpstream, Step, answer, chat_json

MiB = 1024 * 1024
CLAUDE = "claude-sonnet-4-5"
ANTHROPIC_ANSWER = json.dumps({
    "id": "msg_1", "type": "message", "role": "assistant", "model": CLAUDE,
    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 1}}).encode()


def canned(req: RawRequest) -> list[Step]:
    if req.target.endswith("/messages"):
        return [answer(200, ANTHROPIC_ANSWER, {"Content-Type": "application/json"})]
    return [answer(200, chat_json("ok"), {"Content-Type": "application/json"})]


@pytest.fixture(scope="module")
def upstream() -> Iterator[RawUpstream]:
    with RawUpstream(canned) as up:
        yield up


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, gateway_env: dict[str, str],
           upstream: RawUpstream) -> Iterator[Served]:
    root = copy_root(tmp_path_factory.mktemp("cost"))
    env = gateway_env | {"ANTHROPIC_BASE_URL": upstream.base_url, "OPENAI_BASE_URL": upstream.base_url + "/v1"}
    s = Served(root, env)
    yield s
    s.close()


class Probe:
    """Asks GET /v1 every 5 ms on one keep-alive connection; `worst()` is the slowest answer since reset()."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.times: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.conn.request("GET", "/v1")
            r = self.conn.getresponse()
            r.read()
            self.times.append(time.perf_counter() - started)
            time.sleep(0.005)

    def reset(self) -> None:
        self.times = []

    def worst(self) -> float:
        return max(self.times, default=0.0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.conn.close()


def post(port: int, secret: str, body: bytes, path: str = "/v1/chat/completions") -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {secret}",
                                                       "Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def deep_tool_body(depth: int) -> bytes:
    """A tool whose parameter schema nests `depth` levels (written out: orjson serialises 254 at most)."""
    schema = b'{"type":"object","properties":{"x":' * depth + b'{"type":"string"}' + b"}}" * depth
    return (b'{"model":"' + CLAUDE.encode() + b'","messages":[{"role":"user","content":"hi"}],"tools":[{"type":'
            b'"function","function":{"name":"f","parameters":' + schema + b"}}]}")


def worst_shapes(limit: int) -> list[tuple[str, bytes, int]]:
    """(name, body, expected status) — the shapes that cost the most per byte, each just under `limit`."""
    one = len(orjson.dumps({"role": "user", "content": "word"})) + 1
    n_tiny = (limit - 100) // one
    string_room = limit - 200
    return [
        ("40,000 one-word messages", orjson.dumps({"model": CLAUDE, "messages": [
            {"role": "user", "content": "word"}] * 40_000}), 400),
        ("tiny messages up to the limit", orjson.dumps({"model": CLAUDE, "messages": [
            {"role": "user", "content": "word"}] * n_tiny}), 400),
        ("10,000 alternating messages", orjson.dumps({"model": CLAUDE, "max_tokens": 10, "messages": [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"word {i}"} for i in range(10_000)]}), 200),
        ("many content parts", orjson.dumps({"model": CLAUDE, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "a"}] * ((limit - 100) // 28)}]}), 400),
        ("a deep tool schema", deep_tool_body(500), 400),
        ("a flat object of many keys", orjson.dumps({"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}],
                                                     "metadata": {f"k{i}": 1 for i in range((limit - 100) // 14)}}), 400),
        ("a long string of escapes", orjson.dumps({"model": CLAUDE, "max_tokens": 10, "messages": [
            {"role": "user", "content": '"\\\n\t' * (string_room // 8)}]}), 200),
        ("a long Cyrillic string", orjson.dumps({"model": CLAUDE, "max_tokens": 10, "messages": [
            {"role": "user", "content": "ж" * (string_room // 2)}]}), 200),
        ("a long string, pass-through", orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [
            {"role": "user", "content": "a" * string_room}]}), 200),
    ]


def test_no_body_under_the_limit_holds_the_event_loop_50ms(served: Served, gateway: GatewayServer) -> None:
    limit = gateway.config.settings.max_body_bytes
    rich = make_customer(gateway, usd="5000")
    broke = make_customer(gateway, usd="0")
    probe = Probe(served.port)
    try:
        time.sleep(0.3)
        probe.reset()
        time.sleep(1.5)  # the probe alone: how late an idle gateway answers on this machine right now
        baseline = probe.worst()
        results = []
        bomb = orjson.dumps({"model": CLAUDE, "messages": [{"role": "user", "content": "word"}] * 40_000})
        cases = [("zero-balance key, 40,000 messages", broke.secret, bomb, 403)]
        cases += [(name, rich.secret, body, status) for name, body, status in worst_shapes(limit)]
        for name, secret, body, expected in cases:
            assert len(body) <= limit, name
            held = []
            for _ in range(2):  # a second try when the first was slow: the machine's hiccups rarely repeat, a
                probe.reset()   # body that holds the loop does every time
                time.sleep(0.05)
                status, doc = post(served.port, secret, body)
                time.sleep(0.05)
                held.append(probe.worst())
                assert status == expected, (name, status, doc)
                if held[-1] < 0.050 + baseline:
                    break
            results.append((name, len(body), status, min(held), doc.get("message", "")))
    finally:
        probe.close()
    report = "\n".join(f"{n}: {size / MiB:.1f} MiB → {st}, loop held ≤ {w * 1000:.1f} ms ({m[:60]})"
                       for n, size, st, w, m in results)
    print(f"\nprobe alone: worst {baseline * 1000:.2f} ms\n{report}")
    worst = max(w for *_, w, _ in results)
    # 50 ms of the issue, above what the probe alone already meets (a busy machine's scheduling delays)
    assert worst < 0.050 + baseline, f"the event loop was held {worst * 1000:.0f} ms:\n{report}"


def test_ten_large_bodies_from_a_zero_balance_key_cost_little_memory_and_give_it_back(
        served: Served, gateway: GatewayServer) -> None:
    broke = make_customer(gateway, usd="0")
    body = orjson.dumps({"model": CLAUDE, "messages": [{"role": "user", "content": "x" * (19 * MiB)}]})
    post(served.port, broke.secret, b'{"model": "x"}')  # warm
    before, peak_before = served.rss(), served.rss("VmHWM")
    statuses: list[int] = []

    def one() -> None:
        statuses.append(post(served.port, broke.secret, body)[0])

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    time.sleep(0.5)
    after, peak = served.rss(), served.rss("VmHWM")
    assert statuses == [403] * 10
    per_request = (peak - max(before, peak_before)) / 10
    print(f"\nRSS {before / MiB:.0f} → peak {peak / MiB:.0f} → {after / MiB:.0f} MiB; "
          f"{per_request / MiB:.1f} MiB per 19 MiB request at the peak")
    assert per_request <= 3 * len(body), "more than 3x the body size per request"
    assert after - before < 64 * MiB, f"{(after - before) / MiB:.0f} MiB kept after the requests ended"


# -- the budget of body bytes and the per-key limit, on an in-process gateway with small limits ------------

@pytest.fixture(scope="module")
def small_limits(tmp_path_factory: pytest.TempPathFactory, gateway_env: dict[str, str]) -> Iterator[GatewayServer]:
    slow = RawUpstream(lambda req: [0.8, answer(200, chat_json("ok"), {"Content-Type": "application/json"})])
    root = copy_root(tmp_path_factory.mktemp("limits"))
    path = root / "config" / "gateway.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["server"]["limits"].update({"max_inflight_body_bytes": 3 * MiB, "max_concurrent_per_key": 2})
    path.write_text(yaml.safe_dump(doc))
    with slow, GatewayServer(root, gateway_env | {"OPENAI_BASE_URL": slow.base_url + "/v1"}) as server:
        yield server


def test_bodies_beyond_the_workers_budget_get_503(small_limits: GatewayServer) -> None:
    c = make_customer(small_limits, usd="100")
    held = []
    for _ in range(2):  # two requests that declared 1.4 MiB each and trickle: 2.8 of the 3 MiB budget
        s = socket.create_connection(("127.0.0.1", small_limits.port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + c.secret.encode()
                  + b"\r\nContent-Length: 1468006\r\n\r\n{")
        held.append(s)
    time.sleep(0.2)
    status, doc = post(small_limits.port, c.secret, orjson.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "x" * 400_000}]}))
    assert status == 503 and doc["statusCode"] == 503 and "request bodies" in doc["message"]
    for s in held:
        s.close()
    time.sleep(0.3)
    status, _ = post(small_limits.port, c.secret, orjson.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "x" * 400_000}]}))
    assert status == 200, "the budget is given back when the held requests end"


def test_a_key_gets_429_beyond_its_concurrent_requests(small_limits: GatewayServer) -> None:
    c = make_customer(small_limits, usd="100")
    other = make_customer(small_limits, usd="100")
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(post(small_limits.port, c.secret, body)[0]))
               for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # both are waiting for the slow upstream
    status, doc = post(small_limits.port, c.secret, body)
    other_status, _ = post(small_limits.port, other.secret, body)
    for t in threads:
        t.join(10)
    assert status == 429 and doc["statusCode"] == 429 and "in flight" in doc["message"]
    assert results == [200, 200] and other_status == 200
