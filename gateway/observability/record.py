"""What the operator's view needs to know about one request, gathered as it goes.

One RequestRecord per request, made by the app when the request arrives (`Observer.start`) and put in the
ASGI scope under RECORD; the paid call (gateway.proxy.paid_call) and the forwarder fill in who called, which
model and provider, the upstream time, the usage and the cost; `Observer.finish` turns it into metrics, the
log line and the span, once. Its `send` wraps the ASGI send: it stamps every answer's head with
`x-request-id` and `x-gateway-overhead-ms`, and notes the status and the first body byte (time to first
token for a stream).
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from time import perf_counter
from typing import Any

from gateway.http.asgi import Send

RECORD = "gateway.record"   # the scope key
_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")   # a client's id we keep and echo
RID = b"x-request-id"
OVERHEAD = b"x-gateway-overhead-ms"


def client_request_id(value: bytes | None) -> str:
    """The client's x-request-id if it is well formed (≤ 128 printable id characters), else ""."""
    if value is None or _REQUEST_ID.fullmatch(value) is None:
        return ""
    return value.decode("ascii")


class RequestRecord:
    """Defaults are class attributes: a request sets only what happens to it (no __slots__, so that the
    constructor stores 7 values per request rather than 27)."""

    auth: bytes | None = None        # the token a paid call was made with (the log shows its public prefix)
    model = ""
    provider = ""
    status = 0
    error_type = ""
    caller: Any = None
    usage: Any = None
    cost_nano = 0
    upstream_s = -1.0                # < 0: no provider was called
    first_byte = 0.0
    fallback = ""                    # the provider the call fell back to
    stream = False
    cut = ""                         # why a stream ended early: client | provider | shutdown
    span: Any = None
    upstream_head = b""              # header lines for the provider's request (traceparent)
    # perf_counter stamps for the trace's child spans (0: that step did not happen)
    t_admit = 0.0                    # admission sent
    t_upstream = 0.0                 # admitted: the first upstream attempt starts
    t_settle = 0.0                   # settlement sent
    t_settled = 0.0                  # ... confirmed (or kept for a retry)

    def __init__(self, scope: MutableMapping[str, Any], send: Send, request_id: str, client_id: str, endpoint: str,
                 own_id_set: bool) -> None:
        self.started = perf_counter()
        self.scope = scope
        self._send = send
        self.request_id = request_id     # ours (req_...): billing, history, the error messages
        self.client_id = client_id       # the client's x-request-id, echoed in the answer ("" when none)
        self.own_id_set = own_id_set     # the handler puts x-request-id in its heads itself (the /v1 API)
        self.endpoint = endpoint

    def upstream_time(self, started: float) -> None:
        """An upstream attempt that began at `started` (perf_counter) has its answer (or failed)."""
        if not self.t_upstream:
            self.t_upstream = started
        seconds = perf_counter() - started
        self.upstream_s = seconds if self.upstream_s < 0 else self.upstream_s + seconds

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.status:   # the head is out: a body message (the first one stamps the time to first byte)
            if not self.first_byte:
                self.first_byte = perf_counter()
        elif message["type"] == "http.response.start":
            self.status = message["status"]
            up = self.upstream_s
            over = perf_counter() - self.started - (up if up > 0 else 0.0)
            headers = list(message.get("headers") or ())
            if self.client_id:
                rid = self.client_id.encode()
                headers = [h for h in headers if h[0] != RID]
                headers.append((RID, rid))
            elif not self.own_id_set:
                headers.append((RID, self.request_id.encode()))
            # hundredths of a millisecond by integer arithmetic (cheaper than a float format)
            hundredths = int(over * 100_000) if over > 0 else 0
            headers.append((OVERHEAD, b"%d.%02d" % divmod(hundredths, 100)))
            message["headers"] = headers   # our own message objects (and Starlette's): not shared
        await self._send(message)

    def outcome(self, outcome: Any) -> None:
        """The paid call's Outcome (gateway.proxy.outcome)."""
        if outcome.provider:
            self.provider = outcome.provider
        self.usage = outcome.usage
        self.cost_nano = outcome.cost

    def failed(self, err: Any) -> None:
        """A GatewayError the client gets."""
        self.error_type = err.error_type
        if err.provider:
            self.provider = err.provider

    @property
    def ttft_s(self) -> float:
        return self.first_byte - self.started if self.stream and self.first_byte else -1.0


def record_of(scope: dict[str, Any]) -> RequestRecord | None:
    return scope.get(RECORD)
