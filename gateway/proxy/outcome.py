"""What happened to one paid call: the one record settlement charges from and history records."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.usage import Usage


@dataclass(slots=True)  # not frozen: a frozen dataclass sets each field through object.__setattr__ (per request)
class Outcome:
    status: int                      # what the client got (200, or the error's status)
    provider: str = ""               # who answered ("" when none did)
    usage: Usage | None = None       # what the provider reported (None: nothing, or nothing readable)
    error: str = ""                  # the client's error message, or why a stream ended early
    cost: int = 0                    # nano-USD charged (known once the settlement is confirmed)

    @classmethod
    def failed(cls, err: GatewayError) -> Outcome:
        return cls(err.status, err.provider, None, err.message)
