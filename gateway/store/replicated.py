"""Money that enters (top-ups, corrections, payment credits) is acknowledged only once a replica has it.

Redis replicates asynchronously: a write the master confirmed can be lost if the master dies before its
replica received it, and the replica is then promoted without it. For a charge that is the operator's
(bounded) loss; for a credit it is the customer's money, so the credit script is followed, on the same
connection, by `WAIT n timeout` (which returns once n replicas acknowledged every earlier write of that
connection) and `INFO replication` (how many replicas the master has).

`required`: -1 (auto, the default) waits for one replica when the master has any connected (a plain Redis
without replicas acknowledges at once, as before); n ≥ 1 insists on n (a master left without replicas
then refuses to acknowledge money: 503, nothing to lose, send again with the same operation id); 0 never
waits. A credit that is not acknowledged in time may still be applied: callers send it again with the same
operation id, which the script applies once (and whose repeat writes, so that its WAIT covers the first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.store.resp import RespConnectionError, RespError


class NotReplicated(RespConnectionError):
    """The master applied the write but no replica confirmed it in time: not acknowledged (503)."""


@dataclass(frozen=True, slots=True)
class ReplicaAcks:
    required: int = -1        # -1 auto (one if the master has a replica), 0 never wait, n: that many
    timeout_ms: int = 1000    # below the command deadline, so a WAIT never trips the connection's breaker


AUTO = ReplicaAcks()          # the default: one replica when the master has any
NEVER = ReplicaAcks(0)


def connected_replicas(info: bytes | str) -> int:
    text = info.decode() if isinstance(info, bytes) else info
    for line in text.splitlines():
        if line.startswith("connected_slaves:"):
            return int(line.partition(":")[2])
    return 0


def wait_commands(acks: ReplicaAcks) -> list[list[Any]]:
    """What follows the write on its connection (nothing when `acks` says never wait)."""
    if acks.required == 0:
        return []
    return [["WAIT", max(acks.required, 1), acks.timeout_ms], ["INFO", "replication"]]


def check_acknowledged(replies: list[Any], acks: ReplicaAcks) -> Any:
    """The write's reply, once the replies after it show enough replicas have it; else NotReplicated.
    An error reply of the write itself is raised as it is."""
    first = replies[0]
    if isinstance(first, RespError):
        raise first
    if acks.required == 0:
        return first
    acked, info = replies[1], replies[2]
    if isinstance(acked, RespError) or isinstance(info, RespError):
        # a server that refuses WAIT (a proxy in front, a managed Redis): say so rather than pretend
        raise NotReplicated(f"Redis could not confirm replication: {acked if isinstance(acked, RespError) else info}")
    have = connected_replicas(info)
    needed = min(1, have) if acks.required < 0 else acks.required
    if int(acked) < needed:
        raise NotReplicated(f"no replica confirmed the write within {acks.timeout_ms} ms "
                            f"({int(acked)} of {needed}; the master has {have} connected); "
                            "send it again with the same operation id")
    return first
