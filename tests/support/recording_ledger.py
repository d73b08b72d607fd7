"""A stand-in for gateway.store.ledger.Ledger that records what the billing gate asks of it and answers as a
test scripts it, for unit tests of the reservation and charge arithmetic without Redis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.store.ledger import ADMIT_OK, Admission, Caller


@dataclass
class _Resp:
    down: bool = False  # the circuit breaker


@dataclass
class _Unconfirmed:
    limit: int = 100
    pending: list[Any] = field(default_factory=list)


class RecordingLedger:
    def __init__(self) -> None:
        self.resp = _Resp()
        self.unconfirmed = _Unconfirmed()
        self.admissions: list[dict[str, Any]] = []
        self.settlements: list[dict[str, Any]] = []
        self.later: list[dict[str, Any]] = []
        # what the next admission answers: an Admission, or an exception to raise while awaiting it
        self.answer: Admission | BaseException = Admission(ADMIT_OK, 0, 0, 0, 0, 0)

    def admit(self, caller: Caller, request_id: str, model: str, endpoint: str, reserve: int) -> Any:
        self.admissions.append({"caller": caller, "request_id": request_id, "model": model, "endpoint": endpoint,
                                "reserve": reserve})
        return self._answer(self.answer)

    @staticmethod
    async def _answer(answer: Admission | BaseException) -> Admission:
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def settle(self, caller: Caller, request_id: str, cost: int, tokens: int, reserved: bool,
               fields: dict[str, str | int]) -> Any:
        self.settlements.append({"caller": caller, "request_id": request_id, "cost": cost, "tokens": tokens,
                                 "reserved": reserved, "fields": dict(fields)})
        return self._confirmed()

    @staticmethod
    async def _confirmed() -> bool:
        return True

    def settle_later(self, caller: Caller, request_id: str, cost: int, fields: dict[str, str | int]) -> None:
        self.later.append({"caller": caller, "request_id": request_id, "cost": cost, "fields": dict(fields)})
