"""Instructions per request, counted by valgrind (callgrind): a figure that does not move with the machine.

CPU time per request (bench/run.py) moves by ±10 % between runs on a shared 2-core guest, which hides the
few-per-cent changes a review must judge. Callgrind counts the instructions the gateway process executes
instead: the same code, inputs and environment give the same count within a fraction of a per cent, whatever
else the machine does (perf's counters are not available on these guests).

One run: a redis-server and the fake upstream of bench/run.py, the gateway (`gateway serve`, one worker)
under `valgrind --tool=callgrind`; a warm-up, then the counters zeroed, N sequential paid requests on one
keep-alive connection, and the counters dumped; then an idle stretch of the same length is counted and taken
away (the process's own timers run at any load, and a slow run under valgrind spans more of them). Prints
instructions per request (pass-through and, with `--anthropic`, the Anthropic translation).

    python3 bench/instructions.py --requests 2000
    python3 bench/instructions.py --requests 2000 --anthropic
    python3 bench/instructions.py --requests 2000 --anthropic --messages   # and /v1/messages both ways
    python3 bench/instructions.py --requests 2000 --embeddings     # embeddings pass-through beside chat's

Compare two builds by running it in each checkout (back to back). valgrind makes the gateway ~50x slower;
2,000 requests take about a minute.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import (  # noqa: E402  (the bench's own helpers, with the repo on the path)
    ANTHROPIC_CLIENT_BODY,
    ANTHROPIC_DIRECT_BODY,
    BENCH,
    MESSAGES_GPT_BODY,
    EMBEDDING_BODY,
    OPENAI_BODY,
    Managed,
    cleanup_redis,
    create_key,
    free_port,
    own_redis,
    wait_http,
)


def requests(port: int, key: str, body: bytes, n: int, path: str = "/v1/chat/completions") -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for _ in range(n):
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"the gateway answered {r.status}")
    conn.close()


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def total_instructions(out: Path) -> int:
    """Ir summed over the dump files callgrind wrote for the gateway process."""
    total = 0
    for f in out.parent.glob(out.name + "*"):
        for line in f.read_text(errors="replace").splitlines():
            m = re.match(r"^(?:summary|totals):\s+(\d+)", line)
            if m:
                total += int(m.group(1))
                break
    return total


def measure(redis_url: str, n: int, warmup: int, anthropic: bool, keep: Path | None = None,
            messages: bool = False, embeddings: bool = False) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="gateway-instr-"))
    prefix = "instr" + os.urandom(4).hex()
    fake_port, gw_port = free_port(), free_port()
    procs: list[Managed] = []
    try:
        fake = Managed("fake_upstream", [sys.executable, str(BENCH / "fake_upstream.py"), "--port", str(fake_port),
                                         "--delay-ms", "0", "--chunks", "20"], tmp, cwd=REPO)
        procs.append(fake)
        wait_http(fake, f"http://127.0.0.1:{fake_port}/_bench/stats", "the fake upstream", 20)
        key, _ = create_key(redis_url, prefix)
        out = tmp / "callgrind.out"
        env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_REDIS_PREFIX": prefix, "GATEWAY_ROOT": str(REPO),
               "GATEWAY_LOG_LEVEL": "warning", "PYTHONHASHSEED": "0",
               "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1", "OPENAI_API_KEY": "x",
               "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{fake_port}", "ANTHROPIC_API_KEY": "x"}
        gateway = Managed("gateway", ["valgrind", "--tool=callgrind", "--instr-atstart=yes",
                                      f"--callgrind-out-file={out}", sys.executable, "-m", "gateway.cli", "serve",
                                      "--port", str(gw_port), "--workers", "1"], tmp, env=env, cwd=REPO)
        procs.append(gateway)
        wait_http(gateway, f"http://127.0.0.1:{gw_port}/v1", "the gateway under valgrind", 600)
        results: dict[str, float] = {}
        chat = "/v1/chat/completions"
        cases = [("pass-through", chat, OPENAI_BODY)] + ([("anthropic", chat, ANTHROPIC_CLIENT_BODY)] if anthropic else [])
        if messages:  # the Messages API: Claude passed through, a GPT model translated through chat
            cases += [("messages pass-through", "/v1/messages", ANTHROPIC_DIRECT_BODY),
                      ("messages translated", "/v1/messages", MESSAGES_GPT_BODY)]
        cases += [("embeddings pass-through", "/v1/embeddings", EMBEDDING_BODY)] if embeddings else []
        for name, path, doc in cases:
            body = json.dumps(doc).encode()
            requests(gw_port, key, body, warmup, path)
            for f in tmp.glob("callgrind.out*"):
                f.unlink()
            control(gateway.pid, "-z")           # zero the counters
            started = time.monotonic()
            requests(gw_port, key, body, n, path)
            control(gateway.pid, "-d")           # dump
            busy = time.monotonic() - started
            time.sleep(0.5)
            counted = total_instructions(out)
            if keep is not None:   # the busy dump (the idle one below replaces it)
                keep.mkdir(parents=True, exist_ok=True)
                for f in tmp.glob("callgrind.out*"):
                    shutil.copy(f, keep / f"{name}.{f.name}")
            # the process's own timers (uvicorn's tick, idle sweeps, Redis deadlines) run whatever the load, and
            # under valgrind a slow run spans more of them: count an idle stretch as long, and take it away
            for f in tmp.glob("callgrind.out*"):
                f.unlink()
            control(gateway.pid, "-z")
            time.sleep(busy)
            control(gateway.pid, "-d")
            time.sleep(0.5)
            idle = total_instructions(out)
            results[name] = (counted - idle) / n
            if not results[name]:
                for f in tmp.glob("callgrind.out*"):
                    print(f.name, [ln for ln in f.read_text(errors="replace").splitlines() if ln[:1].isalpha()][:30],
                          file=sys.stderr)
            print(f"{name}: {results[name]:,.0f} instructions per request ({n} requests in {busy:.0f} s under "
                  f"valgrind; {idle / max(busy, 1e-9):,.0f} instructions/s of idle background taken away)", flush=True)
        return results
    finally:
        for p in reversed(procs):
            p.stop()
        cleanup_redis(redis_url, prefix)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--anthropic", action="store_true", help="also the Anthropic translation")
    ap.add_argument("--messages", action="store_true", help="also /v1/messages: pass-through and translated")
    ap.add_argument("--keep", type=Path, help="copy the callgrind dumps here (for callgrind_annotate)")
    ap.add_argument("--embeddings", action="store_true", help="also the embeddings pass-through (issue 20)")
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    with own_redis(Path(tempfile.mkdtemp(prefix="gateway-instr-redis-"))) as url:
        measure(url, args.requests, args.warmup, args.anthropic, args.keep, args.messages, args.embeddings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
