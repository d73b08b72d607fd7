"""One paid call, top to bottom — the story every paid endpoint (gateway.proxy.endpoints) shares:

    token → key slot → body (read, parsed, checked) → route → admit (sent to Redis)
          → forward: translate while Redis admits, send once admitted, fall back, translate back
            or stream: the same, then relay the provider's events as they come
          → settle (written to Redis before the answer goes out) → answer → (settled)

and the Outcome it ends with, which settlement charged and history recorded. A failure costs nothing and is
recorded too; a refused admission is answered with its refusal (nothing was reserved).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import orjson

from gateway.auth import Authenticator, credential
from gateway.config.model import Config
from gateway.errors import BadRequest, GatewayError
from gateway.http.asgi import Receive, Scope, Send, header, read_body, send_bytes, send_parts
from gateway.http.upstreams import UpstreamFailure
from gateway.money import usd_text
from gateway.observability.metrics import METRICS
from gateway.observability.record import RECORD, RequestRecord
from gateway.proxy.billing import Admitting, BillingGate, Ticket, rate_headers
from gateway.proxy.cost import splice
from gateway.proxy.endpoints import BEARER, Endpoint
from gateway.proxy.form_body import Form, check_audio_file, check_image_files, read_form
from gateway.proxy.forwarding import Answer, Forwarder
from gateway.proxy.key_slots import KeySlots
from gateway.proxy.large_bodies import INLINE_PARSE_BYTES, LargeBodies
from gateway.proxy.media import audio_usage, speech_usage
from gateway.proxy.outcome import Outcome
from gateway.proxy.request_body import parse_json_body
from gateway.proxy.routing import RouteDecision, Router
from gateway.proxy.streaming import StreamCall, estimate
from gateway.store.ledger import Caller
from gateway.translate.json_pieces import dumps
from gateway.translate.stream import StreamFailed
from gateway.usage import Usage

log = logging.getLogger("gateway.proxy.paid_call")
SHUTDOWN_MESSAGE = "the gateway is shutting down; the answer was cut here and billed for what was produced"
# a bound on the tokens one input image of an edit counts as (OpenAI: ≤ ~6,300 at high fidelity; Gemini: 258-1,290)
IMAGE_INPUT_TOKENS = 8_000


class PaidRequest:
    """The client's request as the call carries it: the parsed body and its raw bytes, kept in step (a
    change to the body re-serialises the bytes once, when they are next asked for)."""

    __slots__ = ("_raw", "body", "caller", "endpoint", "form", "framing", "headers", "request_id", "size")

    def __init__(self, endpoint: Endpoint, caller: Caller, request_id: str, body: dict[str, Any],
                 raw: bytes | bytearray | None, headers: Any = ()) -> None:
        self.endpoint = endpoint
        self.headers = headers   # the client's (a wire operation may pass some on)
        self.framing = ""        # the stream's framing when the path decides it, not the endpoint
        self.caller = caller
        self.request_id = request_id
        self.body = body
        self._raw = raw
        self.size = len(raw) if raw is not None else 0   # the client's body as it came (large-body rules)
        self.form: Form | None = None     # an upload: its parts, where its files lie (gateway.proxy.form_body)

    def set(self, key: str, value: Any) -> None:
        self.body[key] = value
        self._raw = None

    def drop(self, key: str) -> None:
        if key in self.body:
            del self.body[key]
            self._raw = None

    @property
    def raw(self) -> bytes | bytearray:
        if self._raw is None:  # a large body is serialised in pieces (its strings) by the caller: see `synced`
            self._raw = orjson.dumps(self.body)
        return self._raw

    @property
    def stale_large(self) -> bool:
        """A large body was changed: re-serialise it off the event loop (`synced`) before asking for `raw`."""
        return self._raw is None and self.size > INLINE_PARSE_BYTES

    async def synced(self, large: LargeBodies) -> None:
        self._raw = await large.run(dumps, self.body)


class PaidCalls:
    def __init__(self, config: Config, auth: Authenticator, billing: BillingGate, router: Router,
                 forwarder: Forwarder, large: LargeBodies, key_slots: KeySlots,
                 can_spend: Callable[[Caller], Awaitable[None]]) -> None:
        self._settings = config.settings
        self._limits = config.settings.limits
        self._auth = auth
        self._billing = billing
        self._router = router
        self._forwarder = forwarder
        self.forwarder = forwarder   # shared with the free token counts (gateway.proxy.token_count)
        self._large = large
        self._slots = key_slots
        self._can_spend = can_spend
        self._relays: set[asyncio.Task[str | None]] = set()   # streams being relayed (stopped at shutdown)

    def stop_streams(self) -> int:
        """The shutdown's grace period is over: end every stream still relayed with an error event (each is
        settled for what it produced, as a cut stream). Returns how many there were."""
        relays = list(self._relays)
        for relay in relays:
            relay.cancel(SHUTDOWN_MESSAGE)
        return len(relays)

    async def __call__(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send, request_id: str,
                       params: dict[str, str]) -> Outcome | None:
        """Serve one call; its Outcome (None when it ended before admission: a bad token or body, a refusal
        that admission would have given anyway — the error the client got is raised)."""
        rec: RequestRecord | None = scope.get(RECORD)   # what the operator sees of this call (observability)
        if rec is not None:
            rec.endpoint = endpoint.name
        auth = header(scope, b"authorization") if endpoint.auth is BEARER else credential(scope, endpoint.auth)
        caller = await self._auth.caller(auth)
        if rec is not None:
            rec.caller, rec.auth = caller, auth   # the log shows the public prefix of the token that was used
        # requests in flight per key (gateway.proxy.key_slots), counted before the body is read; inline: per request
        slots, kid = self._slots.used, caller.key_id
        n = slots.get(kid, 0)
        if n >= self._slots.limit:
            self._slots.refuse()
        slots[kid] = n + 1
        try:
            if endpoint.form:  # an upload: parsed as it arrives, forwarded as it came
                return await self._upload(endpoint, scope, receive, send, caller, request_id, rec)
            # the body, read within the limits, parsed and checked (400/413 before anyone spends on it)
            raw = await read_body(scope, receive, self._settings.max_body_bytes)
            if len(raw) > INLINE_PARSE_BYTES:  # refuse a key that can spend nothing before reading megabytes for it
                await self._can_spend(caller)
                body = await self._large.parse(raw)
            else:
                body = parse_json_body(raw, self._limits.max_json_depth)
            req = PaidRequest(endpoint, caller, request_id, body, raw, scope["headers"])
            if "model" in params and not endpoint.model_in_path:  # /v1/models/{model}/chat/completions
                req.set("model", params["model"])
            endpoint.check(req.body, self._limits)
            # (an API that names the model in its path — Gemini's — keeps it out of the body)
            decision = self._router.resolve(params["model"] if endpoint.model_in_path else req.body.get("model"),
                                            endpoint)
            if rec is not None:
                rec.model = decision.model.name
            if endpoint.stream is not None:  # the path says whether it streams, and how it is framed
                streaming = endpoint.stream
                if streaming and b"alt=sse" not in scope.get("query_string", b""):
                    req.framing = endpoint.framing + "_array"
            elif (streaming := req.body.get("stream") is True and endpoint.streams) and not self._settings.streaming:
                # the seed's behaviour: plain JSON (media endpoints relay whole)
                req.set("stream", False)
                req.drop("stream_options")
                streaming = False
            if req.stale_large:
                await req.synced(self._large)
            if rec is not None:
                rec.t_admit = perf_counter()
            admitting = self._billing.admit(caller, decision, req.body, req.raw, request_id)
            if streaming:
                return await self._stream(req, decision, admitting, receive, send, rec)
            return await self._whole(req, decision, admitting, send, rec)
        finally:
            n = slots[kid] - 1
            if n:
                slots[kid] = n
            else:
                del slots[kid]

    async def _upload(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send, caller: Caller,
                      request_id: str, rec: RequestRecord | None) -> Outcome:
        """A multipart upload (gateway.proxy.form_body): bounded and parsed while it arrives, its fields checked,
        the audio's length measured for the reservation; then the same call as a JSON body."""
        declared = header(scope, b"content-length")
        if declared is None or not declared.isdigit() or int(declared) > INLINE_PARSE_BYTES:
            await self._can_spend(caller)  # refuse a key that can spend nothing before reading megabytes for it
        form = await read_form(scope, receive, self._settings.max_upload_bytes)
        req = PaidRequest(endpoint, caller, request_id, form.fields, form.raw)
        req.form = form
        images = 0
        if endpoint.billed == "audio":
            check_audio_file(form.file("file"))
        else:
            images = len(check_image_files(form, endpoint.name))
        endpoint.check(req.body, self._limits)
        decision = self._router.resolve(req.body.get("model"), endpoint)
        if rec is not None:
            rec.model = decision.model.name
        bound, _ = form.audio_ms()
        admitting = self._billing.admit(caller, decision, req.body, req.raw, request_id, Usage(
            input_tokens=form.text_bytes + images * IMAGE_INPUT_TOKENS, audio_ms=bound))
        return await self._whole(req, decision, admitting, send, rec)

    async def _whole(self, req: PaidRequest, decision: RouteDecision, admitting: Admitting, send: Send,
                     rec: RequestRecord | None) -> Outcome:
        """A whole answer: forwarded while Redis admits, settled, then sent."""
        forward = self._forwarder.forward(decision, req.body, req.raw, req.request_id, admitting.ticket, rec,
                                          req.form, req.headers)
        if req.endpoint.billed == "images":  # counted from the answer, inside: no image is a failure, settled as one
            forward = _counted(forward)
        answer, ticket = await self._answered(admitting, forward, rec)
        usage = answer.usage
        billed = req.endpoint.billed
        if billed == "speech":
            usage = speech_usage(usage, req.body.get("input") or "")
        elif billed == "audio":
            usage = audio_usage(usage, req.form.audio_ms()[1] if req.form is not None else 0, len(answer.body))
        outcome = Outcome(200, answer.provider, usage)
        # The settlement is written to Redis before the answer goes out, so whatever the client does next
        # sees the charge; the answer does not wait for Redis's reply (one round trip off every call).
        body = req.body
        settling = self._billing.settle(ticket, outcome, len(req.raw), len(answer.body),
                                        price_dims=(str(body.get("size") or "*"), str(body.get("quality") or "*")))
        if rec is not None:
            rec.t_settle = perf_counter()
        try:
            cost = usd_text(ticket.cost)
            extra = ((b"x-gateway-provider", answer.provider.encode()), (b"x-gateway-cost-usd", cost)) \
                + rate_headers(ticket.admission)
            if not req.endpoint.errors and answer.content_type == b"application/json":  # OpenAI's shapes: usage.cost
                await send_parts(send, 200, splice(answer.body, cost), req.request_id, extra)
            else:
                await send_bytes(send, 200, answer.body, req.request_id, extra, answer.content_type)
        finally:
            outcome.cost = await settling
            if rec is not None:
                rec.t_settled = perf_counter()
        return outcome

    async def _stream(self, req: PaidRequest, decision: RouteDecision, admitting: Admitting, receive: Receive,
                      send: Send, rec: RequestRecord | None) -> Outcome:
        """Relay an SSE stream; bill what the provider reports (or, if cut short, what was produced). A failure
        before the first byte is answered with the seed's error JSON (fallback already tried)."""
        call, ticket = await self._answered(admitting, self._forwarder.open_stream(
            decision, req.body, req.raw, req.request_id, admitting.ticket, rec, req.headers, req.framing), rec)
        opened = perf_counter()
        if rec is not None:
            rec.stream = True
        headers = [(b"content-type", call.framer.content_type), (b"cache-control", b"no-cache"),
                   (b"x-request-id", ticket.request_id.encode()), (b"x-gateway-provider", call.provider.encode()),
                   *rate_headers(ticket.admission)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        relay = asyncio.ensure_future(relay_stream(call, send))
        relays = self._relays
        relays.add(relay)
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        cut, error, stopped = False, None, False
        METRICS.streams_in_flight += 1   # taken back in the finally below
        try:
            done, _ = await asyncio.wait({relay, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if relay in done and relay.cancelled():  # stopped at the end of the shutdown's grace period
                error, stopped = SHUTDOWN_MESSAGE, True
                METRICS.shutdown_cut_streams += 1
            elif relay in done:
                error = relay.result()
            else:  # the client went away: stop reading and close the upstream connection at once
                cut = True
                relay.cancel()
                await asyncio.gather(relay, return_exceptions=True)
        finally:
            relays.discard(relay)
            METRICS.streams_in_flight -= 1
            watcher.cancel()
            if cut or error is not None:
                call.upstream.close()
            else:
                call.upstream.finish()
            if rec is not None:  # the provider's time goes on to the stream's end
                rec.upstream_time(opened)
                if cut or error is not None:
                    rec.cut = "client" if cut else "shutdown" if stopped else "provider"
                    rec.error_type = ("caller_disconnected" if cut else "gateway_shutdown" if stopped
                                      else "provider_stream_broken")
            source = call.source
            complete = not cut and error is None and source.usage is not None
            usage = source.usage if complete else estimate(len(req.raw), source.out_chars, source.usage)
            outcome = Outcome(200, call.provider, usage, error or ("client disconnected mid-stream" if cut else ""))
            settling = self._billing.settle(ticket, outcome, extra={"stream": 1, **({"cut": 1} if cut or stopped else {})})
            if rec is not None:
                rec.t_settle = perf_counter()
            try:  # as for a whole answer: the settlement is on the wire before the end of the stream
                if not cut:
                    tail = call.framer.error(error) if error is not None else call.end(usd_text(ticket.cost))
                    await send({"type": "http.response.body", "body": tail, "more_body": False})
            finally:
                outcome.cost = await settling
                if rec is not None:
                    rec.t_settled = perf_counter()
        return outcome

    async def _answered(self, admitting: Admitting, call: Awaitable[Any],
                        rec: RequestRecord | None) -> tuple[Any, Ticket]:
        """Await the upstream part of a paid call and its admission. A failure is recorded at no cost and
        raised again, carrying the key's rate-limit headers like a success would (a refused admission raises
        its refusal instead: nothing was reserved, and the refusal is what the client must see)."""
        try:
            result = await call
        except GatewayError as err:
            ticket = await admitting.ticket()
            if rec is not None:
                rec.t_settle = perf_counter()
            await self._billing.settle(ticket, Outcome.failed(err))
            if rec is not None:
                rec.t_settled = perf_counter()
            err.headers.update({k.decode(): v.decode() for k, v in rate_headers(ticket.admission)})
            raise
        except BaseException:
            with contextlib.suppress(GatewayError):  # a refusal here changes nothing: the crash is the answer
                ticket = await admitting.ticket()
                await self._billing.settle(ticket, Outcome(500, error="internal error"))
            raise
        return result, await admitting.ticket()


async def _counted(forward: Awaitable[Answer]) -> Answer:
    """Images are billed by count: the number of `data` items in the answer the client gets. An answer
    without any image is a failure the client can act on, not something to charge."""
    answer = await forward
    doc = answer.document
    data = doc.get("data") if isinstance(doc, dict) else None
    if not data:
        raise BadRequest("the model generated no image for this prompt (it may have been refused)")
    return dataclasses.replace(answer, usage=dataclasses.replace(answer.usage or Usage(), images=len(data)))


async def relay_stream(call: StreamCall, send: Send) -> str | None:
    """Send the stream's frames as they come; returns the error that ended it early, if any (the
    closing frames or the error event are sent by the caller once the settlement is on its way)."""
    try:
        async for data in call.frames():
            await send({"type": "http.response.body", "body": data, "more_body": True})
    except (StreamFailed, UpstreamFailure) as exc:
        detail = getattr(exc, "detail", "")
        log.warning("stream from %s failed: %s%s", call.provider, exc, f" ({detail})" if detail else "")
        return str(exc)
    except Exception:
        log.exception("stream from %s broke in the gateway", call.provider)
        return "the gateway could not translate the provider's stream"
    return None


async def wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
