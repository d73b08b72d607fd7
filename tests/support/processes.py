"""What /proc says about a process the tests started: its children, command line, liveness, sockets; and how
to stop one."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_sockets(port: int, state: str) -> set[str]:
    """Inodes of IPv4 TCP sockets with local port `port` in `state` (01 established, 0A listening)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == state:
            found.add(f[9])
    return found


def established(pid: int, port: int) -> int:
    return len(socket_inodes(pid) & tcp_sockets(port, "01"))


def listens(pid: int, port: int) -> bool:
    return bool(socket_inodes(pid) & tcp_sockets(port, "0A"))


def workers(pid: int) -> list[int]:
    """The serving workers among `gateway serve`'s children (not multiprocessing's resource tracker, not the
    archiver it runs beside them)."""
    return [p for p in children(pid) if "resource_tracker" not in (c := cmdline(p)) and "archive\x00run" not in c]


def stop(proc: subprocess.Popen, timeout: float, sig: int = signal.SIGTERM) -> int:
    """`sig` to a process the test started (if it still runs), its exit awaited up to `timeout` seconds, then
    SIGKILL. Its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode
