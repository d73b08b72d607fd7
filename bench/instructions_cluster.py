"""Instructions per request (bench/instructions.py, callgrind) on a single Redis and on a Redis Cluster, back
to back: what the cluster routing costs the gateway per paid request.

The cluster is the tests' (tests/support/cluster.py: 3 masters, 1 replica each, on loopback, its own temp
folder, stopped by PID at the end); the single Redis is bench/run.py's own redis-server.

    python3 bench/instructions_cluster.py --requests 2000 [--anthropic]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import instructions  # noqa: E402  (the repo on the path first)
from bench.run import own_redis  # noqa: E402
from tests.support.cluster import LocalCluster  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--anthropic", action="store_true", help="also the Anthropic translation")
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    results = {}
    with own_redis(Path(tempfile.mkdtemp(prefix="gateway-instr-redis-"))) as url:
        print("single Redis:", flush=True)
        results["single"] = instructions.measure(url, args.requests, args.warmup, args.anthropic)
    cluster = LocalCluster().start()
    try:
        # the cluster goes away with its keys: bench/run.py's clean-up scans one node only
        instructions.cleanup_redis = lambda url, prefix: 0  # type: ignore[assignment]
        print(f"Redis Cluster ({len(cluster.masters_now())} masters, REDIS_URL={cluster.url}):", flush=True)
        results["cluster"] = instructions.measure(cluster.url, args.requests, args.warmup, args.anthropic)
    finally:
        cluster.stop()
    for case, single in results["single"].items():
        on_cluster = results["cluster"][case]
        print(f"{case}: {single:,.0f} → {on_cluster:,.0f} instructions per request on the cluster "
              f"({(on_cluster / single - 1) * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
