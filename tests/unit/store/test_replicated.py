"""When a credit counts as acknowledged (gateway.store.replicated), from the replies Redis gives."""

from __future__ import annotations

import pytest

from gateway.store.replicated import NotReplicated, ReplicaAcks, check_acknowledged, wait_commands
from gateway.store.resp import RespError

INFO = "# Replication\r\nrole:master\r\nconnected_slaves:{}\r\n"


def test_auto_waits_for_one_replica_only_when_there_is_one() -> None:
    auto = ReplicaAcks()
    assert wait_commands(auto) == [["WAIT", 1, 1000], ["INFO", "replication"]]
    assert check_acknowledged([[1, 5], 1, INFO.format(1).encode()], auto) == [1, 5]
    assert check_acknowledged([[1, 5], 0, INFO.format(0).encode()], auto) == [1, 5]   # a Redis without replicas
    with pytest.raises(NotReplicated):
        check_acknowledged([[1, 5], 0, INFO.format(2).encode()], auto)               # it has some: none confirmed


def test_strict_and_never() -> None:
    with pytest.raises(NotReplicated):
        check_acknowledged([[1, 5], 0, INFO.format(0).encode()], ReplicaAcks(1, 100))
    assert wait_commands(ReplicaAcks(0)) == []
    assert check_acknowledged([[1, 5]], ReplicaAcks(0)) == [1, 5]


def test_errors() -> None:
    with pytest.raises(RespError):   # the script's own error is the answer
        check_acknowledged([RespError("ERR boom"), 0, INFO.format(0).encode()], ReplicaAcks())
    with pytest.raises(NotReplicated):   # a server that refuses WAIT: not pretended to be durable
        check_acknowledged([[1, 5], RespError("ERR unknown command 'WAIT'"), INFO.format(1).encode()], ReplicaAcks())
