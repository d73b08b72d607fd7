#!/usr/bin/env python3
"""Upstream client CPU per request: ours (gateway/http/client.py) against well-kept libraries, one run.

Starts bench/fake_upstream.py (pinned to core 0 when taskset exists) and, in this one process (pinned to
core 1), drives N requests at 64 concurrent calls through each client in turn — ours, aiohttp, and
pyreqwest when it is installed — for a few rounds, the clients' order rotated each round. Each
measurement is this process's CPU time (user + system, every thread: pyreqwest runs a Tokio runtime of its
own; time.process_time) divided by completed requests, after a warm-up that opens the connections. "harness" is the same
driver with no HTTP at all: what every row carries besides its client.

    python3 bench/upstream_clients.py                       # 20,000 whole answers per client per round
    python3 bench/upstream_clients.py --stream --requests 3000 --chunks 200
    python3 bench/upstream_clients.py --append-results      # also appends the table to bench/RESULTS.md
    git show REV:gateway/http/client.py > /tmp/old.py && python3 bench/upstream_clients.py --compare-file /tmp/old.py

Clients are used as the gateway would use them: one keep-alive pool to the origin, POST of prebuilt JSON
bytes with the provider's headers, the whole body read (or, with --stream, every chunk as it arrives).
Compression is left off in every client (the gateway asks for identity), redirects and cookies too where
the library allows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from gateway.http.client import Pool  # noqa: E402  (the repo on the path first)

HEADERS = {"Content-Type": "application/json", "User-Agent": "botech-gateway", "Authorization": "Bearer x"}
CONCURRENCY = 64
HEADING = "## Upstream client: ours vs libraries (issue 14)"

Send = Callable[[], Awaitable[int]]          # one request; returns the body's length
Client = tuple[Send, Callable[[], Awaitable[None]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(stream: bool) -> bytes:
    doc = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello! How are you today?"}],
           "max_tokens": 64}
    if stream:
        doc |= {"stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(doc).encode()


# -- the clients ----------------------------------------------------------------------------------------

async def ours(base: str, payload: bytes, stream: bool, pool_class: type = Pool) -> Client:
    pool = pool_class(base + "/v1", HEADERS, max_idle=256, keep_headers=frozenset((b"content-type",)))

    async def send() -> int:
        r = await pool.request("POST", "/chat/completions", payload, 10.0, stream=stream)
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")
        if not stream:
            return len(await r.read())
        n = 0
        async for chunk in r.iter_chunks():
            n += len(chunk)
        r.finish()
        return n

    async def close() -> None:
        pool.close()

    return send, close


async def aiohttp_client(base: str, payload: bytes, stream: bool) -> Client:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=256, ttl_dns_cache=None),
        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
        headers={**HEADERS, "Accept-Encoding": "identity"}, timeout=aiohttp.ClientTimeout(total=10))
    url = base + "/v1/chat/completions"

    async def send() -> int:
        async with session.post(url, data=payload, allow_redirects=False) as r:
            if r.status != 200:
                raise RuntimeError(f"status {r.status}")
            if not stream:
                return len(await r.read())
            n = 0
            async for chunk in r.content.iter_any():
                n += len(chunk)
            return n

    async def close() -> None:
        await session.close()

    return send, close


async def pyreqwest_client(base: str, payload: bytes, stream: bool) -> Client:
    from pyreqwest.client import ClientBuilder

    client = (ClientBuilder().default_headers({**HEADERS, "Accept-Encoding": "identity"})
              .timeout(datetime.timedelta(seconds=10)).pool_max_idle_per_host(256).follow_redirects(False)
              .gzip(False).brotli(False).zstd(False).deflate(False).build())
    await client.__aenter__()
    url = base + "/v1/chat/completions"

    async def send() -> int:
        if not stream:
            r = await client.post(url).body_bytes(payload).build().send()
            if r.status != 200:
                raise RuntimeError(f"status {r.status}")
            return len(await r.bytes())
        async with client.post(url).body_bytes(payload).build_streamed() as r:
            if r.status != 200:
                raise RuntimeError(f"status {r.status}")
            n = 0
            reader = r.body_reader
            while (chunk := await reader.read_chunk()) is not None:
                n += len(chunk)
            return n

    async def close() -> None:
        await client.close()

    return send, close


async def harness(base: str, payload: bytes, stream: bool) -> Client:
    async def send() -> int:
        await asyncio.sleep(0)
        return 0

    async def close() -> None:
        return None

    return send, close


def other_version(path: str) -> Callable[[str, bytes, bool], Awaitable[Client]]:
    """Our client as another file has it (e.g. `git show REV:gateway/http/client.py > /tmp/old.py`)."""
    spec = importlib.util.spec_from_file_location("http_client_other", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda base, payload, stream: ours(base, payload, stream, module.Pool)


def available(compare: str | None) -> dict[str, Callable[[str, bytes, bool], Awaitable[Client]]]:
    clients: dict[str, Callable[[str, bytes, bool], Awaitable[Client]]] = {"ours": ours}
    if compare:
        clients[f"ours ({Path(compare).name})"] = other_version(compare)
    for name, module, factory in (("aiohttp", "aiohttp", aiohttp_client), ("pyreqwest", "pyreqwest", pyreqwest_client)):
        try:
            __import__(module)
        except ImportError:
            print(f"({name} is not installed: skipped; `pip install {module}` to measure it)")
            continue
        clients[name] = factory
    return clients


def version(name: str) -> str:
    if name.startswith("ours") or name == "harness":
        return ""
    from importlib.metadata import version as v
    return v(name)


# -- driving ---------------------------------------------------------------------------------------------

async def drive(send: Send, requests: int) -> None:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await send()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def measure(factory: Callable[[str, bytes, bool], Awaitable[Client]], base: str, payload: bytes,
                  stream: bool, requests: int, warmup: int) -> tuple[float, float]:
    """(CPU µs per request, requests per second) for one client, after its warm-up."""
    send, close = await factory(base, payload, stream)
    try:
        await drive(send, warmup)
        c0, w0 = time.process_time(), time.perf_counter()   # every thread's user + system time, ns resolution
        await drive(send, requests)
        c1, w1 = time.process_time(), time.perf_counter()
    finally:
        await close()
    return (c1 - c0) / requests * 1e6, requests / (w1 - w0)


def start_fake(port: int, chunks: int) -> subprocess.Popen[bytes]:
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []
    proc = subprocess.Popen(pin + [sys.executable, str(BENCH / "fake_upstream.py"), "--port", str(port),
                                   "--delay-ms", "0", "--chunks", str(chunks)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_bench/stats", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("the fake upstream did not start") from None
            time.sleep(0.1)


def table(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> str:
    base = statistics.median(cpu for cpu, _ in results["ours"])
    what = f"SSE streams of {args.chunks} chunks" if args.stream else "whole JSON answers"
    lines = [(f"{args.requests:,} {what} per client per round, {CONCURRENCY} concurrent, {args.rounds} rounds "
              f"(order rotated), Python {platform.python_version()}, {'uvloop' if args.uvloop else 'asyncio'} loop, "
              f"{os.cpu_count()} cores"),
             "",
             "| client | version | CPU µs/req (median) | each round | vs ours | req/s (median) |",
             "| --- | --- | ---: | --- | ---: | ---: |"]
    for name, rows in results.items():
        cpu = statistics.median(c for c, _ in rows)
        rate = statistics.median(r for _, r in rows)
        rounds = " / ".join(f"{c:.1f}" for c, _ in rows)
        ratio = "—" if name == "harness" else f"{cpu / base:.2f}×"
        lines.append(f"| {name} | {version(name)} | {cpu:.1f} | {rounds} | {ratio} | {rate:,.0f} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> str:
    port = free_port()
    fake = start_fake(port, args.chunks)
    base = f"http://127.0.0.1:{port}"
    payload = body(args.stream)
    clients = available(args.compare_file)
    order = list(clients) + ["harness"]
    factories = {**clients, "harness": harness}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in order}
    try:
        for rnd in range(args.rounds):
            rotated = order[rnd % len(order):] + order[:rnd % len(order)]
            for name in rotated:
                cpu, rate = await measure(factories[name], base, payload, args.stream, args.requests, args.warmup)
                results[name].append((cpu, rate))
                print(f"round {rnd + 1} {name:10s} {cpu:8.1f} µs CPU/req {rate:10,.0f} req/s", flush=True)
    finally:
        fake.terminate()
        fake.wait(10)
    return table(results, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000, help="measured requests per client per round")
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stream", action="store_true", help="SSE streams instead of whole answers")
    ap.add_argument("--chunks", type=int, default=200, help="content chunks per streamed answer")
    ap.add_argument("--compare-file", help="another version of gateway/http/client.py, measured as a row of its own")
    ap.add_argument("--no-uvloop", dest="uvloop", action="store_false", help="the stock asyncio loop")
    ap.add_argument("--append-results", action="store_true", help="append the table to bench/RESULTS.md")
    args = ap.parse_args()
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    if args.uvloop:
        try:
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            args.uvloop = False
    out = asyncio.run(run(args))
    print()
    print(out)
    if args.append_results:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        results = BENCH / "RESULTS.md"
        with open(results, "a", encoding="utf-8") as f:
            if HEADING not in results.read_text(encoding="utf-8"):
                f.write(f"\n{HEADING}\n\nCPU per request of the upstream client alone (`bench/upstream_clients.py`; "
                        "the rule of issue 14: a library within 10 % of ours replaces it).\n")
            f.write(f"\n#### {stamp}: `python3 bench/upstream_clients.py {' '.join(sys.argv[1:])}`\n\n{out}\n")


if __name__ == "__main__":
    main()
