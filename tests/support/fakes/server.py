"""Fake upstream providers: real HTTP servers on 127.0.0.1 speaking one provider's wire format.

    from tests.support.fakes.server import start_fake

    with start_fake("anthropic") as fake:                  # or FakeUpstream("anthropic")
        os.environ["ANTHROPIC_BASE_URL"] = fake.base_url
        fake.reply(text="Hello!")                          # next answer says "Hello!"
        fake.fail(529)                                     # ...and the one after is overloaded
        ...
        assert fake.requests[0].headers["x-api-key"] == "test-key"
        assert fake.spec_errors == []

Each fake runs an ``aiohttp.web`` server in a background thread with its own event loop,
so sync tests, async tests and a gateway under test (in-process or subprocess) can all
talk to it. Requests are checked like the real server does (auth headers, JSON body
validated against the official request schema, see ``tests.support.fakes.specs``); answers are
scripted with :meth:`FakeUpstream.reply` / :meth:`FakeUpstream.fail` (FIFO) or generated
by the deterministic default behaviour described in the ``*_wire`` modules.

Every answer the fake sends with status 200 is itself validated against the provider's
response schema; problems land in ``response_spec_errors`` (so scripted bodies are checked
too, without being rejected).
"""

from __future__ import annotations

import asyncio
import collections
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import anthropic_wire, gemini_wire, media_wire, openai_wire
from .common import PNG_BYTES, dumps, loads, sse
from .specs import SpecError, check

__all__ = ["FakeUpstream", "Recorded", "start_fake", "WIRES"]

WIRES = ("openai", "anthropic", "gemini", "xai")

_JSON = "application/json"


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None (no/invalid body)
    raw: bytes
    spec_errors: list[str] = field(default_factory=list)  # this request's schema problems
    received_at: float = 0.0  # time.monotonic()

    @property
    def json(self) -> Any:
        return self.body


@dataclass
class _Script:
    body: Any = None
    status: int = 200
    headers: dict[str, str] | None = None
    delay_ms: int = 0
    text: str | None = None
    raw: bytes | None = None
    cut_after: int | None = None
    error_after: int | None = None
    error_status: int = 500
    chunk_delay_ms: int | None = None
    error: dict | None = None  # for fail(): {"message", "retry_after", "type", "code"}


class _Route:
    __slots__ = ("method", "pattern", "handler", "schema", "auth")

    def __init__(self, method: str, pattern: str, handler: Callable, schema: str | None, auth: bool = True):
        self.method = method
        self.pattern = re.compile(pattern)
        self.handler = handler
        self.schema = schema
        self.auth = auth


class _Ctx:
    """Everything a handler needs about the current request."""

    def __init__(self, request: web.Request, rec: Recorded, n: int, script: _Script | None, params: dict):
        self.request = request
        self.rec = rec
        self.body: dict = rec.body if isinstance(rec.body, dict) else {}
        self.n = n
        self.script = script
        self.params = params

    @property
    def text(self) -> str | None:
        return self.script.text if self.script else None

    @property
    def scripted_body(self) -> Any:
        if self.script and self.script.body is not None and self.script.status == 200:
            return self.script.body
        return None


class FakeUpstream:
    """A fake provider API on ``127.0.0.1:<random port>``.

    ``wire``: ``"openai"``, ``"anthropic"``, ``"gemini"``, or ``"xai"`` (OpenAI wire format;
    ``self.wire == "openai"`` and ``self.flavor == "xai"``; a bad key gets the observed xAI
    400 ``{"code", "error"}`` body instead of OpenAI's 401).
    """

    def __init__(
        self,
        wire: str,
        api_key: str = "test-key",
        *,
        validate_requests: bool = True,
        reject_invalid: bool = True,
        validate_responses: bool = True,
        strict: bool = True,
        port: int = 0,
    ) -> None:
        if wire not in WIRES:
            raise ValueError(f"unknown wire {wire!r}; expected one of {WIRES}")
        self.flavor = wire
        self.wire = "openai" if wire == "xai" else wire
        self.api_key = api_key
        self.validate_requests = validate_requests
        self.reject_invalid = reject_invalid
        self.validate_responses = validate_responses
        self.strict = strict

        self.requests: list[Recorded] = []
        self.spec_errors: list[str] = []
        self.response_spec_errors: list[str] = []
        self.streams_closed_by_client: list[int] = []  # per stream the client dropped: events sent before
        self.delay_ms: int = 0
        self.chunk_delay_ms: int = 0

        self._queue: collections.deque[_Script] = collections.deque()
        self._lock = threading.Lock()
        self._counter = 0
        self._routes = self._make_routes()
        self._closed = False

        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.base_url = self.origin + "/v1" if self.wire == "openai" else self.origin

        started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(started,), name=f"fake-{wire}-{self.port}", daemon=True
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fake upstream did not start")
        if self._start_error:
            raise self._start_error

    # ------------------------------------------------------------------ public API
    def reply(
        self,
        body: dict | None = None,
        *,
        status: int = 200,
        headers: dict | None = None,
        delay_ms: int = 0,
        times: int = 1,
        text: str | None = None,
        raw: bytes | str | None = None,
        cut_after: int | None = None,
        error_after: int | None = None,
        error_status: int = 500,
        chunk_delay_ms: int | None = None,
    ) -> None:
        """Queue an answer for the next ``times`` valid requests (FIFO).

        ``body=None`` with status 200 means the default answer (``text`` replaces its
        generated text, e.g. ``"echo: ..."``, and suppresses tool calls). A 200 ``body``
        is the full non-streaming response object; streaming requests get it converted to
        that provider's SSE events. ``body=None`` with another status sends the provider's
        error body for that status. ``raw`` sends those bytes verbatim (content type
        from ``headers`` or JSON). ``cut_after=N`` drops the connection after N stream
        events (no terminator). ``error_after=N`` sends N events, then the provider's
        in-stream error event for ``error_status`` (Anthropic ``event: error``; OpenAI
        ``data: {"error": ...}``; Gemini ``data: {"error": {code, message, status}}``) and
        ends the stream without its normal terminator. ``chunk_delay_ms`` pauses between
        stream events.
        """
        if isinstance(raw, str):
            raw = raw.encode()
        script = _Script(
            body=body,
            status=status,
            headers=dict(headers or {}),
            delay_ms=delay_ms,
            text=text,
            raw=raw,
            cut_after=cut_after,
            error_after=error_after,
            error_status=error_status,
            chunk_delay_ms=chunk_delay_ms,
            error=None if (status == 200 or body is not None or raw is not None) else {},
        )
        with self._lock:
            self._queue.extend(script for _ in range(times))

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: str | int | None = None,
        message: str | None = None,
        type: str | None = None,
        code: str | None = None,
        headers: dict | None = None,
        delay_ms: int = 0,
    ) -> None:
        """Queue provider-shaped error answers for the next ``times`` valid requests.

        OpenAI ``{"error": {message, type, param, code}}``; Anthropic ``{"type": "error",
        "error": {type, message}, "request_id"}`` (529 -> ``overloaded_error``); Gemini
        ``{"error": {code, message, status, details?}}`` with gRPC status names. For 429
        OpenAI/Anthropic send ``retry-after`` (default ``"1"``) and Gemini adds QuotaFailure
        + RetryInfo details (``retryDelay`` = ``retry_after`` seconds, default 1s; the
        header only when ``retry_after`` is given). ``type``/``code`` override the error
        type (OpenAI/Anthropic; Gemini: status name) and the OpenAI ``code``.
        """
        script = _Script(
            status=status,
            headers=dict(headers or {}),
            delay_ms=delay_ms,
            error={"message": message, "retry_after": retry_after, "type": type, "code": code},
        )
        with self._lock:
            self._queue.extend(script for _ in range(times))

    @property
    def pending(self) -> int:
        """Scripted answers not yet used."""
        with self._lock:
            return len(self._queue)

    @property
    def last(self) -> Recorded:
        if not self.requests:
            raise AssertionError(f"fake {self.flavor} received no request")
        return self.requests[-1]

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> list[Recorded]:
        """Block until at least ``count`` requests arrived (for async/background flows)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"fake {self.flavor}: {len(self.requests)} of {count} requests after {timeout}s"
                )
            time.sleep(0.005)
        return list(self.requests)

    def reset(self) -> None:
        """Clear scripted answers, recorded requests, errors and delays; ids restart at 1."""
        with self._lock:
            self._queue.clear()
            self._counter = 0
        self.requests.clear()
        self.spec_errors.clear()
        self.response_spec_errors.clear()
        self.streams_closed_by_client.clear()
        self.delay_ms = 0
        self.chunk_delay_ms = 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                fut.result(timeout=5)
            except Exception:  # pragma: no cover - best effort
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        try:
            self._sock.close()
        except OSError:  # pragma: no cover
            pass

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            if not self._closed and self._loop.is_running():
                self._loop.call_soon_threadsafe(self._loop.stop)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<FakeUpstream {self.flavor} {self.base_url} requests={len(self.requests)}>"

    # ------------------------------------------------------------------ server plumbing
    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as e:  # pragma: no cover
            self._start_error = e
            started.set()
            return
        started.set()
        try:
            self._loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                self._loop.close()

    async def _start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        try:
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        except TypeError:  # older aiohttp
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.SockSite(runner, self._sock)
        await site.start()
        self._runner = runner

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _next_n(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _pop(self) -> _Script | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        n = self._next_n()
        body: Any = None
        bad_json = False
        if raw and not request.content_type.startswith("multipart/"):  # a form is parsed by its handler
            try:
                body = loads(raw)
            except ValueError:
                bad_json = True
        rec = Recorded(
            method=request.method,
            path=request.path,
            query={k: v for k, v in request.query.items()},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
            received_at=time.monotonic(),
        )
        self.requests.append(rec)

        route, params = self._match(request.method, request.path)
        if route is not None and not route.auth:
            return await route.handler(_Ctx(request, rec, n, None, params))

        async def early(resp: web.StreamResponse) -> web.StreamResponse:
            if self.delay_ms:
                await asyncio.sleep(self.delay_ms / 1000)
            return resp

        denied = self._check_auth(request, n)
        if denied is not None:
            return await early(denied)
        if route is None:
            return await early(self._not_found(request, n))
        if bad_json:
            return await early(self._bad_json(n))
        if route.schema and self.validate_requests:
            errors = self._validate_request(route, rec, params)
            if errors:
                rec.spec_errors.extend(str(e) for e in errors)
                self.spec_errors.extend(f"{request.method} {request.path}: {e}" for e in errors)
                if self.reject_invalid:
                    return await early(self._invalid(errors, n))
        extra = self._extra_check(route, rec, params, n)
        if extra is not None:
            return await early(extra)

        script = self._pop()
        delay = (script.delay_ms if script and script.delay_ms else 0) or self.delay_ms
        if delay:
            await asyncio.sleep(delay / 1000)
        if script is not None:
            if script.raw is not None:
                headers = {"Content-Type": _JSON, **self._default_headers(n), **(script.headers or {})}
                return web.Response(status=script.status, body=script.raw, headers=headers)
            if script.error is not None:
                return self._error_from_script(script, n)
            if script.status != 200:
                return self._json(script.body, n, status=script.status, extra=script.headers)
        return await route.handler(_Ctx(request, rec, n, script, params))

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict]:
        for r in self._routes:
            m = r.pattern.fullmatch(path)
            if m and (r.method == method or r.method == "*"):
                return r, m.groupdict()
        return None, {}

    # ------------------------------------------------------------------ responses
    def _default_headers(self, n: int) -> dict[str, str]:
        if self.wire == "openai":
            return {
                "x-request-id": f"req_fake{n}",
                "openai-processing-ms": "1",
                "openai-version": "2020-10-01",
                "x-ratelimit-limit-requests": "10000",
                "x-ratelimit-remaining-requests": "9999",
                "x-ratelimit-reset-requests": "6ms",
                "x-ratelimit-limit-tokens": "10000000",
                "x-ratelimit-remaining-tokens": "9999000",
                "x-ratelimit-reset-tokens": "0s",
            }
        if self.wire == "anthropic":
            reset = "2025-10-09T08:00:00Z"
            return {
                "request-id": f"req_fake{n}",
                "anthropic-organization-id": "org-fake",
                "anthropic-ratelimit-requests-limit": "4000",
                "anthropic-ratelimit-requests-remaining": "3999",
                "anthropic-ratelimit-requests-reset": reset,
                "anthropic-ratelimit-tokens-limit": "400000",
                "anthropic-ratelimit-tokens-remaining": "399000",
                "anthropic-ratelimit-tokens-reset": reset,
            }
        return {"x-goog-fake-request": str(n)}

    def _json(self, obj: Any, n: int, *, status: int = 200, extra: dict | None = None) -> web.Response:
        headers = {**self._default_headers(n), **(extra or {})}
        ctype = "application/json; charset=UTF-8" if self.wire == "gemini" else _JSON
        return web.Response(status=status, body=dumps(obj), headers={"Content-Type": ctype, **headers})

    def _answer(self, ctx: _Ctx, obj: Any, schema: str | None) -> web.Response:
        if schema:
            self._check_response(schema, obj, ctx.request.path)
        return self._json(obj, ctx.n, extra=ctx.script.headers if ctx.script else None)

    def _check_response(self, schema: str, obj: Any, where: str) -> None:
        if not self.validate_responses:
            return
        errs = check(self.wire, schema, obj, strict=self.strict)
        self.response_spec_errors.extend(f"{where} {schema}: {e}" for e in errs)

    async def _stream(
        self, ctx: _Ctx, frames: list[bytes], *, content_type: str = "text/event-stream; charset=utf-8"
    ) -> web.StreamResponse:
        script = ctx.script
        headers = {
            "Content-Type": content_type,
            "Cache-Control": "no-cache",
            **self._default_headers(ctx.n),
            **((script.headers if script else None) or {}),
        }
        resp = web.StreamResponse(status=200, headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(ctx.request)
        gap = script.chunk_delay_ms if script and script.chunk_delay_ms is not None else self.chunk_delay_ms
        cut = script.cut_after if script else None
        if script and script.error_after is not None:
            frames = frames[: script.error_after] + [self._stream_error_frame(script.error_status, ctx.n)]
        for i, frame in enumerate(frames):
            if cut is not None and i >= cut:
                # drop the connection mid-stream, as a crashed upstream would
                transport = ctx.request.transport
                if transport is not None:
                    transport.abort()
                return resp
            if gap and i:
                await asyncio.sleep(gap / 1000)
            if ctx.request.transport is None or ctx.request.transport.is_closing():
                # the gateway closed the connection: record how far the stream got
                self.streams_closed_by_client.append(i)
                return resp
            try:
                await resp.write(frame)
            except (ConnectionResetError, ConnectionError):
                self.streams_closed_by_client.append(i)
                return resp
        await resp.write_eof()
        return resp

    def _stream_error_frame(self, status: int, n: int) -> bytes:
        if self.wire == "anthropic":
            body = anthropic_wire.error_body(status)
            body.pop("request_id", None)  # in-stream error events carry no request_id
            return sse(body, "error")
        if self.wire == "openai":
            return sse(openai_wire.error_body(status))
        return sse(gemini_wire.error_body(status), crlf=True)

    # ------------------------------------------------------------------ errors
    def _error(
        self,
        status: int,
        n: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        details: list | None = None,
        headers: dict | None = None,
    ) -> web.Response:
        if self.wire == "openai":
            body = openai_wire.error_body(status, message, type=type, code=code, param=param)
        elif self.wire == "anthropic":
            body = anthropic_wire.error_body(status, message, type=type, request_id=f"req_fake{n}")
        else:
            body = gemini_wire.error_body(status, message, status_name=type, details=details)
        return self._json(body, n, status=status, extra=headers)

    def _error_from_script(self, script: _Script, n: int) -> web.Response:
        err = script.error or {}
        status = script.status
        headers = dict(script.headers or {})
        retry_after = err.get("retry_after")
        details = None
        if status == 429:
            if self.wire == "gemini":
                delay = str(retry_after) if retry_after is not None else "1"
                details = gemini_wire.retry_details(delay if delay.endswith("s") else delay + "s")
                if retry_after is not None:
                    headers.setdefault("retry-after", str(retry_after).rstrip("s"))
            else:
                headers.setdefault("retry-after", str(retry_after) if retry_after is not None else "1")
        elif retry_after is not None:
            headers.setdefault("retry-after", str(retry_after))
        return self._error(
            status,
            n,
            err.get("message"),
            type=err.get("type"),
            code=err.get("code"),
            details=details,
            headers=headers,
        )

    def _check_auth(self, request: web.Request, n: int) -> web.Response | None:
        h = request.headers
        if self.wire == "openai":
            auth = h.get("Authorization", "")
            if not auth:
                if self.flavor == "xai":
                    return self._xai_auth_error(n, "No API key provided.")
                return self._error(
                    401,
                    n,
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    code="",
                )
            if auth != f"Bearer {self.api_key}":
                key = auth[7:] if auth.startswith("Bearer ") else auth
                if self.flavor == "xai":
                    return self._xai_auth_error(n, f"Incorrect API key provided: {_mask(key)}.")
                return self._error(
                    401,
                    n,
                    f"Incorrect API key provided: {_mask(key)}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    code="invalid_api_key",
                )
            return None
        if self.wire == "anthropic":
            # x-api-key is the documented header; current SDKs (anthropic>=2) send the API key
            # as "Authorization: Bearer KEY" instead, which the API accepts as well.
            key = h.get("x-api-key")
            bearer = h.get("Authorization", "")
            if not key and bearer.startswith("Bearer "):
                key = bearer[7:]
            if not key:
                return self._error(401, n, "x-api-key header is required")
            if key != self.api_key:
                return self._error(401, n, "invalid x-api-key")
            if not h.get("anthropic-version"):
                return self._error(400, n, "anthropic-version: header is required")
            return None
        key = h.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return self._error(
                403,
                n,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if key != self.api_key:
            return self._error(
                400,
                n,
                "API key not valid. Please pass a valid API key.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        return None

    def _xai_auth_error(self, n: int, message: str) -> web.Response:
        # observed xAI shape (PROVIDERS.md section 5): HTTP 400, {"code": ..., "error": "<string>"}
        body = {"code": "Client specified an invalid argument", "error": message}
        return self._json(body, n, status=400)

    def _not_found(self, request: web.Request, n: int) -> web.Response:
        if self.wire == "openai":
            return self._error(404, n, f"Invalid URL ({request.method} {request.path})", code="")
        if self.wire == "anthropic":
            return self._error(404, n, "Not Found")
        return self._error(404, n, f"Method not found: {request.method} {request.path}")

    def _bad_json(self, n: int) -> web.Response:
        if self.wire == "openai":
            return self._error(
                400,
                n,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
                "not valid JSON.)",
            )
        if self.wire == "anthropic":
            return self._error(400, n, "There was an error parsing the body of your request.")
        return self._error(400, n, "Invalid JSON payload received. Unexpected token.")

    def _invalid(self, errors: list[SpecError], n: int) -> web.Response:
        first = errors[0]
        if self.wire == "openai":
            code = {
                "required": "missing_required_parameter",
                "additionalProperties": "unknown_parameter",
                "type": "invalid_type",
            }.get(first.keyword, "invalid_value")
            msg = "Invalid request: " + "; ".join(str(e) for e in errors[:5])
            return self._error(400, n, msg, code=code, param=first.field or None)
        if self.wire == "anthropic":
            return self._error(400, n, "; ".join(f"{e.field or 'body'}: {e.message}" for e in errors[:5]))
        violations = []
        parts = []
        for e in errors[:5]:
            if e.keyword == "additionalProperties" and "'" in e.message:
                name = e.message.split("'")[1]
                where = f"{e.field}.{name}" if e.field else name
                at = e.field or "root"
                parts.append(
                    f"Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
                )
                violations.append(
                    {
                        "field": where,
                        "description": f'Invalid JSON payload received. Unknown name "{name}": '
                        "Cannot find field.",
                    }
                )
            else:
                parts.append(f"Invalid value at '{e.field or 'root'}': {e.message}")
                violations.append({"field": e.field, "description": e.message})
        return self._error(
            400,
            n,
            "\n".join(parts),
            details=[{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}],
        )

    def _validate_request(self, route: _Route, rec: Recorded, params: dict) -> list[SpecError]:
        body = rec.body
        if not isinstance(body, dict):
            return [SpecError("$", f"{_short(body)} is not of type 'object'", "type")]
        return check(self.wire, route.schema, body, strict=self.strict)

    def _extra_check(self, route: _Route, rec: Recorded, params: dict, n: int) -> web.Response | None:
        """Rules a real server enforces beyond the schema."""
        body = rec.body if isinstance(rec.body, dict) else {}
        if self.wire == "gemini" and params.get("action") in ("generateContent", "streamGenerateContent"):
            where = gemini_wire.missing_thought_signature(body, params.get("model", ""))
            if where:
                return self._error(
                    400,
                    n,
                    "Function call is missing a thought_signature in functionCall parts. This is required "
                    "for tools to work correctly, and missing thought_signature may lead to degraded model "
                    "performance. Additional data, function call `default_api:...` , "
                    f"position {where}.",
                )
        if self.wire == "gemini" and params.get("action") == "generateContent":
            voice = (((body.get("generationConfig") or {}).get("speechConfig") or {}).get("voiceConfig") or {}).get(
                "prebuiltVoiceConfig", {}).get("voiceName")
            if voice is not None and voice not in media_wire.GEMINI_VOICES:
                return self._error(400, n, f"Voice name {voice} is not supported.")
        if self.wire == "openai" and route.schema == "CreateSpeechRequest":
            voice = body.get("voice")
            if isinstance(voice, str) and voice not in media_wire.OPENAI_VOICES:
                return self._error(400, n, f"Invalid value: '{voice}'. Supported values are: "
                                   + ", ".join(f"'{v}'" for v in media_wire.OPENAI_VOICES) + ".",
                                   code="invalid_value")
        if self.wire == "anthropic" and route.schema == "CreateMessageParams":
            thinking = body.get("thinking") or {}
            if thinking.get("type") == "enabled" and isinstance(body.get("max_tokens"), int):
                if thinking.get("budget_tokens", 0) >= body["max_tokens"]:
                    return self._error(400, n, "max_tokens: must be greater than thinking.budget_tokens")
        return None

    # ------------------------------------------------------------------ routes
    def _make_routes(self) -> list[_Route]:
        if self.wire == "openai":
            return [
                _Route("POST", r"/v1/chat/completions", self._openai_chat, "CreateChatCompletionRequest"),
                _Route("POST", r"/v1/completions", self._openai_completions, "CreateCompletionRequest"),
                _Route("POST", r"/v1/responses", self._openai_responses, "CreateResponse"),
                _Route("POST", r"/v1/images/generations", self._openai_images, "CreateImageRequest"),
                _Route("POST", r"/v1/embeddings", self._openai_embeddings, "CreateEmbeddingRequest"),
                _Route("POST", r"/v1/moderations", self._openai_moderations, "CreateModerationRequest"),
                _Route("POST", r"/v1/audio/speech", self._openai_speech, "CreateSpeechRequest"),
                _Route("POST", r"/v1/audio/transcriptions", self._openai_transcription, None),
                _Route("POST", r"/v1/audio/translations", self._openai_translation, None),
                _Route("POST", r"/v1/images/edits", self._openai_image_edit, None),
                _Route("POST", r"/v1/images/variations", self._openai_image_variation, None),
                _Route("GET", r"/v1/models", self._openai_models, None),
                _Route("GET", r"/v1/models/(?P<model>[^/]+)", self._openai_model, None),
                _Route("GET", r"/fake-files/(?P<name>[^/]+)", self._file, None, auth=False),
            ]
        if self.wire == "anthropic":
            return [
                _Route("POST", r"/v1/messages", self._anthropic_messages, "CreateMessageParams"),
                _Route(
                    "POST", r"/v1/messages/count_tokens", self._anthropic_count, "CountMessageTokensParams"
                ),
                _Route("GET", r"/v1/models", self._anthropic_models, None),
                _Route("GET", r"/v1/models/(?P<model>[^/]+)", self._anthropic_model, None),
            ]
        return [
            _Route(
                "POST",
                r"/(?P<ver>v1beta|v1)/models/(?P<model>[^/:]+):(?P<action>generateContent|streamGenerateContent)",
                self._gemini_generate,
                "GenerateContentRequest",
            ),
            _Route(
                "POST",
                r"/(?P<ver>v1beta|v1)/models/(?P<model>[^/:]+):batchEmbedContents",
                self._gemini_batch_embed,
                "BatchEmbedContentsRequest",
            ),
            _Route(
                "POST",
                r"/(?P<ver>v1beta|v1)/models/(?P<model>[^/:]+):countTokens",
                self._gemini_count,
                "CountTokensRequest",
            ),
            _Route("GET", r"/(?P<ver>v1beta|v1)/models", self._gemini_models, None),
            _Route("GET", r"/(?P<ver>v1beta|v1)/models/(?P<model>[^/:]+)", self._gemini_model, None),
        ]

    async def _file(self, ctx: _Ctx) -> web.StreamResponse:
        return web.Response(body=PNG_BYTES, headers={"Content-Type": "image/png"})

    # ---- openai
    async def _openai_chat(self, ctx: _Ctx) -> web.StreamResponse:
        resp = ctx.scripted_body or openai_wire.chat_completion(ctx.body, ctx.n, text=ctx.text)
        if ctx.body.get("stream"):
            include_usage = bool((ctx.body.get("stream_options") or {}).get("include_usage"))
            chunks = openai_wire.chat_chunks(resp, include_usage=include_usage)
            for c in chunks:
                self._check_response("CreateChatCompletionStreamResponse", c, ctx.request.path)
            return await self._stream(ctx, [sse(c) for c in chunks] + [sse("[DONE]")])
        return self._answer(ctx, resp, "CreateChatCompletionResponse")

    async def _openai_completions(self, ctx: _Ctx) -> web.StreamResponse:
        resp = ctx.scripted_body or openai_wire.completion(ctx.body, ctx.n, text=ctx.text)
        if ctx.body.get("stream"):
            include_usage = bool((ctx.body.get("stream_options") or {}).get("include_usage"))
            chunks = openai_wire.completion_chunks(resp, include_usage=include_usage)
            return await self._stream(ctx, [sse(c) for c in chunks] + [sse("[DONE]")])
        return self._answer(ctx, resp, "CreateCompletionResponse")

    async def _openai_responses(self, ctx: _Ctx) -> web.StreamResponse:
        resp = ctx.scripted_body or openai_wire.response(ctx.body, ctx.n, text=ctx.text)
        if ctx.body.get("stream"):
            events = openai_wire.response_events(resp)
            for ev in events:
                self._check_response("ResponseStreamEvent", ev, ctx.request.path)
            return await self._stream(ctx, [sse(ev, ev["type"]) for ev in events])
        return self._answer(ctx, resp, "Response")

    async def _openai_images(self, ctx: _Ctx) -> web.StreamResponse:
        resp = ctx.scripted_body or openai_wire.images(ctx.body, n=ctx.n, url_base=self.origin)
        return self._answer(ctx, resp, "ImagesResponse")

    async def _openai_models(self, ctx: _Ctx) -> web.StreamResponse:
        return self._answer(ctx, ctx.scripted_body or openai_wire.models_list(), "ListModelsResponse")

    async def _openai_model(self, ctx: _Ctx) -> web.StreamResponse:
        return self._answer(ctx, ctx.scripted_body or openai_wire.model_obj(ctx.params["model"]), "Model")

    async def _openai_embeddings(self, ctx: _Ctx) -> web.StreamResponse:
        doc = ctx.scripted_body or media_wire.embeddings(ctx.body, ctx.n)
        self._check_response("CreateEmbeddingResponse", media_wire.decoded(doc), ctx.request.path)
        return self._answer(ctx, doc, None)

    async def _openai_moderations(self, ctx: _Ctx) -> web.StreamResponse:
        return self._answer(ctx, ctx.scripted_body or media_wire.moderation(ctx.body, ctx.n),
                            "CreateModerationResponse")

    async def _openai_speech(self, ctx: _Ctx) -> web.StreamResponse:
        if ctx.body.get("stream_format") == "sse":
            if ctx.body.get("model", "").startswith("tts-1"):
                return self._error(400, ctx.n, "stream_format 'sse' is not supported for tts-1 models")
            events = media_wire.speech_events(ctx.body)
            for ev in events:
                self._check_response("CreateSpeechResponseStreamEvent", ev, ctx.request.path)
            return await self._stream(ctx, [sse(ev) for ev in events])
        audio, ctype = media_wire.speech(ctx.body)
        return web.Response(body=audio, headers={"Content-Type": ctype, **self._default_headers(ctx.n)})

    def _form_fields(self, ctx: _Ctx, schema: str) -> tuple[dict, dict[str, list[bytes]], web.Response | None]:
        """(text fields as the spec types them, file parts by name, an error answer or None) of a form."""
        if not ctx.request.content_type.startswith("multipart/form-data"):
            return {}, {}, self._error(400, ctx.n, "Invalid Content-Type header; expected multipart/form-data")
        fields: dict[str, Any] = {}
        files: dict[str, list[bytes]] = {}
        for key, filename, value in media_wire.form_parts(ctx.request.headers["Content-Type"], ctx.rec.raw):
            name = key.removesuffix("[]")
            if filename is not None:
                files.setdefault(name, []).append(value)
                fields[name] = ["<binary>"] * len(files[name]) if key.endswith("[]") or len(files[name]) > 1 \
                    else "<binary>"
            elif key.endswith("[]"):
                fields.setdefault(name, []).append(value.decode())
            elif key in ("temperature",):
                fields[key] = float(value)
            elif key in ("n", "output_compression", "partial_images"):
                fields[key] = int(value)
            elif key == "stream":
                fields[key] = value == b"true"
            else:
                fields[key] = value.decode()
        ctx.rec.body = fields
        errors = check(self.wire, schema, fields, strict=self.strict) if self.validate_requests else []
        if errors:
            ctx.rec.spec_errors.extend(str(e) for e in errors)
            self.spec_errors.extend(f"POST {ctx.request.path}: {e}" for e in errors)
            if self.reject_invalid:
                return fields, files, self._invalid(errors, ctx.n)
        return fields, files, None

    async def _openai_image_edit(self, ctx: _Ctx) -> web.StreamResponse:
        return await self._image_form(ctx, "CreateImageEditRequest")

    async def _openai_image_variation(self, ctx: _Ctx) -> web.StreamResponse:
        return await self._image_form(ctx, "CreateImageVariationRequest")

    async def _image_form(self, ctx: _Ctx, schema: str) -> web.StreamResponse:
        fields, files, error = self._form_fields(ctx, schema)
        if error is not None:
            return error
        if not all(media_wire.is_image(f) for f in files.get("image", []) + files.get("mask", [])):
            return self._error(400, ctx.n, "Invalid image file or mode for image 1, please check your image file.",
                               code="invalid_image_file")
        if fields.get("model", "dall-e-2") == "dall-e-2" and len(files.get("image", [])) > 1:
            return self._error(400, ctx.n, "dall-e-2 takes one image", code="invalid_value")
        return self._answer(ctx, ctx.scripted_body or openai_wire.images(fields, n=ctx.n, url_base=self.origin),
                            "ImagesResponse")

    async def _openai_transcription(self, ctx: _Ctx) -> web.StreamResponse:
        return await self._audio_form(ctx, "CreateTranscriptionRequest", "transcribe")

    async def _openai_translation(self, ctx: _Ctx) -> web.StreamResponse:
        return await self._audio_form(ctx, "CreateTranslationRequest", "translate")

    async def _audio_form(self, ctx: _Ctx, schema: str, task: str) -> web.StreamResponse:
        """A multipart upload, parsed as OpenAI does, its fields checked against the spec's request schema."""
        fields, files, error = self._form_fields(ctx, schema)
        if error is not None:
            return error
        audio = (files.get("file") or [b""])[0]
        if not audio:
            return self._error(400, ctx.n, "Could not parse multipart form: no 'file' part")
        fmt = fields.get("response_format") or "json"
        if fmt not in media_wire.formats_for(fields.get("model", "")):
            return self._error(400, ctx.n, f"response_format '{fmt}' is not compatible with model "
                               f"'{fields.get('model')}'", code="unsupported_value")
        if not media_wire.wav_seconds(audio) and not audio.startswith((b"ID3", b"\xff\xfb", b"OggS", b"fLaC")):
            return self._error(400, ctx.n, "Audio file might be corrupted or unsupported", code="invalid_value")
        doc, ctype = media_wire.transcription(fields, audio, task)
        if fields.get("stream") and isinstance(doc, dict):
            events = media_wire.transcription_events(doc)
            for ev in events:
                self._check_response("CreateTranscriptionResponseStreamEvent", ev, ctx.request.path)
            return await self._stream(ctx, [sse(ev) for ev in events])
        if isinstance(doc, dict):
            kind = {"verbose_json": "CreateTranscriptionResponseVerboseJson",
                    "diarized_json": "CreateTranscriptionResponseDiarizedJson"}.get(fmt, "CreateTranscriptionResponseJson")
            return self._answer(ctx, doc, kind if task == "transcribe" else None)
        return web.Response(body=doc.encode(), headers={"Content-Type": ctype, **self._default_headers(ctx.n)})

    # ---- anthropic
    async def _anthropic_messages(self, ctx: _Ctx) -> web.StreamResponse:
        msg = ctx.scripted_body or anthropic_wire.message(ctx.body, ctx.n, text=ctx.text)
        if ctx.body.get("stream"):
            events = anthropic_wire.stream_events(msg)
            for ev in events:
                if ev["type"] != "ping":
                    self._check_response("MessageStreamEvent", ev, ctx.request.path)
            return await self._stream(ctx, [sse(ev, ev["type"]) for ev in events])
        return self._answer(ctx, msg, "Message")

    async def _anthropic_count(self, ctx: _Ctx) -> web.StreamResponse:
        return self._answer(
            ctx, ctx.scripted_body or anthropic_wire.count_tokens(ctx.body), "CountMessageTokensResponse"
        )

    async def _anthropic_models(self, ctx: _Ctx) -> web.StreamResponse:
        return self._answer(ctx, ctx.scripted_body or anthropic_wire.models_list(), "ListResponse_ModelInfo_")

    async def _anthropic_model(self, ctx: _Ctx) -> web.StreamResponse:
        m = ctx.params["model"]
        obj = ctx.scripted_body or {
            "type": "model",
            "id": m,
            "display_name": m,
            "created_at": "2025-09-29T00:00:00Z",
        }
        return self._answer(ctx, obj, "ModelInfo")

    # ---- gemini
    async def _gemini_generate(self, ctx: _Ctx) -> web.StreamResponse:
        model = ctx.params["model"]
        modalities = (ctx.body.get("generationConfig") or {}).get("responseModalities") or []
        if "AUDIO" in modalities and not ctx.scripted_body:
            return self._answer(ctx, media_wire.gemini_speech(ctx.body, model), "GenerateContentResponse")
        resp = ctx.scripted_body or gemini_wire.generate(ctx.body, model, ctx.n, text=ctx.text)
        if ctx.params["action"] == "streamGenerateContent":
            chunks = gemini_wire.stream_chunks(resp)
            for c in chunks:
                self._check_response("GenerateContentResponse", c, ctx.request.path)
            if ctx.rec.query.get("alt") == "sse":
                return await self._stream(ctx, [sse(c, crlf=True) for c in chunks])
            # without alt=sse the endpoint streams one JSON array
            frames = [b"[" + dumps(c) if i == 0 else b",\r\n" + dumps(c) for i, c in enumerate(chunks)] + [
                b"]"
            ]
            return await self._stream(ctx, frames, content_type="application/json; charset=UTF-8")
        return self._answer(ctx, resp, "GenerateContentResponse")

    async def _gemini_batch_embed(self, ctx: _Ctx) -> web.StreamResponse:
        return self._answer(ctx, ctx.scripted_body or media_wire.gemini_embeddings(ctx.body),
                            "BatchEmbedContentsResponse")

    async def _gemini_count(self, ctx: _Ctx) -> web.StreamResponse:
        return self._answer(
            ctx, ctx.scripted_body or gemini_wire.count_tokens(ctx.body), "CountTokensResponse"
        )

    async def _gemini_models(self, ctx: _Ctx) -> web.StreamResponse:
        return self._answer(ctx, ctx.scripted_body or gemini_wire.models_list(), "ListModelsResponse")

    async def _gemini_model(self, ctx: _Ctx) -> web.StreamResponse:
        return self._answer(ctx, ctx.scripted_body or gemini_wire.model_obj(ctx.params["model"]), "Model")


def _mask(key: str) -> str:
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 8 else "*" * len(key)


def _short(v: Any) -> str:
    t = repr(v)
    return t if len(t) < 80 else t[:77] + "..."


def start_fake(wire: str, api_key: str = "test-key", **kwargs: Any) -> FakeUpstream:
    """Start a fake upstream (``wire``: openai | anthropic | gemini | xai). Close it when done
    (it is also a context manager)."""
    return FakeUpstream(wire, api_key, **kwargs)
