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
    __slots__ = ("_send", "auth", "caller", "client_id", "cost_nano", "cut", "endpoint", "error_type", "fallback",
                 "first_byte", "model", "own_id_set", "provider", "request_id", "scope", "span", "started",
                 "status", "stream", "t_admit", "t_settle", "t_settled", "t_upstream", "upstream_head", "upstream_s",
                 "usage")

    def __init__(self, scope: MutableMapping[str, Any], send: Send, request_id: str, client_id: str, endpoint: str,
                 own_id_set: bool, auth: bytes | None = None) -> None:
        self.started = perf_counter()
        self.auth = auth                 # the Authorization header (the log line shows its public prefix)
        self.scope = scope
        self._send = send
        self.request_id = request_id     # ours (req_...): billing, history, the error messages
        self.client_id = client_id       # the client's x-request-id, echoed in the answer ("" when none)
        self.own_id_set = own_id_set     # the handler puts x-request-id in its heads itself (the /v1 API)
        self.endpoint = endpoint
        self.model = ""
        self.provider = ""
        self.status = 0
        self.error_type = ""
        self.caller: Any = None
        self.usage: Any = None
        self.cost_nano = 0
        self.upstream_s = -1.0           # < 0: no provider was called
        self.first_byte = 0.0
        self.fallback = ""               # the provider the call fell back to
        self.stream = False
        self.cut = ""                    # why a stream ended early: client | provider | shutdown
        self.span: Any = None
        self.upstream_head = b""         # header lines for the provider's request (traceparent)
        # perf_counter stamps for the trace's child spans (0: that step did not happen)
        self.t_admit = 0.0               # admission sent
        self.t_upstream = 0.0            # admitted: the first upstream attempt starts
        self.t_settle = 0.0              # settlement sent
        self.t_settled = 0.0             # ... confirmed (or kept for a retry)

    def upstream_time(self, started: float) -> None:
        """An upstream attempt that began at `started` (perf_counter) has its answer (or failed)."""
        if not self.t_upstream:
            self.t_upstream = started
        seconds = perf_counter() - started
        self.upstream_s = seconds if self.upstream_s < 0 else self.upstream_s + seconds

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
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
            headers.append((OVERHEAD, b"%.2f" % (over * 1000 if over > 0 else 0.0)))
            message["headers"] = headers   # our own message objects (and Starlette's): not shared
        elif not self.first_byte:
            self.first_byte = perf_counter()
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
