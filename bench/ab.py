"""Two builds of the gateway, back to back: a·0 (pass-through, 64 connections, upstream delay 0) on each in turn.

CPU per request moves by ±15 % between bench/run.py runs on a shared 2-core guest, more than most changes a
review must judge. This runs both builds in alternating rounds (A B A B ...), each round a fresh `gateway
serve` of that checkout on the same Redis, fake upstream and pinning as bench/run.py's a·0, and reports each
build's median gateway CPU per request and the ratio of the medians: drift of the machine over the run falls
on both sides alike.

    python3 bench/ab.py --a /path/to/base-checkout --b . [--rounds 5] [--duration 6]
    python3 bench/ab.py --a 153dc59 --b HEAD           # commits: checked out into temporary worktrees

Environment variables for one side only: --a-env NAME=VALUE / --b-env NAME=VALUE (repeatable), e.g. the same
build with the request log off on one side.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench.run as run  # noqa: E402  (the bench's own rig, with the repo on the path)


@contextlib.contextmanager
def checkout(spec: str) -> Iterator[Path]:
    """A directory as given, or a commit checked out into a temporary worktree (removed at the end)."""
    path = Path(spec)
    if path.is_dir():
        yield path.resolve()
        return
    folder = Path(tempfile.mkdtemp(prefix="gateway-ab-")) / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), spec], check=True,
                   capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], capture_output=True)


def env_pairs(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def one_round(tree: Path, redis_url: str, extra: dict[str, str], duration: float, warmup: float) -> dict:
    run.REPO = tree   # the rig starts `gateway serve` from this checkout (and the same fake upstream for both)
    with run.Rig(redis_url, extra_env={"PYTHONPATH": str(tree), **extra}) as rig:
        assert rig.gateway is not None
        url = rig.gw_base + "/v1/chat/completions"
        problem = run.preflight(url, rig.bodies["openai"], rig.key, "choices")
        if problem:
            raise run.BenchError(f"{tree}: gateway preflight failed: {problem}")
        return run.measure(rig, rig.gateway.pid, url, rig.gw_env("openai"), 64, duration, warmup)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="checkout directory or commit (the baseline)")
    ap.add_argument("--b", required=True, help="checkout directory or commit (the change)")
    ap.add_argument("--a-env", action="append", default=[])
    ap.add_argument("--b-env", action="append", default=[])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    args = ap.parse_args()
    run.ensure_wrk()
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    rps: dict[str, list[float]] = {"a": [], "b": []}
    with checkout(args.a) as a, checkout(args.b) as b, run.own_redis(Path(tempfile.mkdtemp(prefix="ab-redis-"))) as url:
        sides = {"a": (a, env_pairs(args.a_env)), "b": (b, env_pairs(args.b_env))}
        for r in range(args.rounds):
            for name in ("a", "b") if r % 2 == 0 else ("b", "a"):   # alternate who goes first
                tree, extra = sides[name]
                res = one_round(tree, url, extra, args.duration, args.warmup)
                cpu[name].append(res["cpu_ms"])
                rps[name].append(res["rps"])
                print(f"round {r + 1}/{args.rounds} {name} ({tree}): CPU {res['cpu_ms']:.4f} ms/req, "
                      f"{res['rps']:,.0f} req/s, other CPU {res['other_cpu']:.0f} %", flush=True)
    ma, mb = statistics.median(cpu["a"]), statistics.median(cpu["b"])
    print(f"median gateway CPU per request: a {ma:.4f} ms, b {mb:.4f} ms, b/a {mb / ma:.3f} "
          f"({(mb / ma - 1) * 100:+.1f} %); req/s a {statistics.median(rps['a']):,.0f}, "
          f"b {statistics.median(rps['b']):,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
