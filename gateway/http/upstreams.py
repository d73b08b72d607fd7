"""One keep-alive connection pool per provider, created at start-up (gateway.http.client)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.config.model import Provider
from gateway.http.client import HTTPError, Pool, Response
from gateway.http.outbound_proxy import parse_proxy
from gateway.translate.wire_operation import UpstreamRequest


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    status: int
    headers: dict[str, str]     # lower-case names, only the few we read
    body: bytes


class UpstreamFailure(Exception):
    """The provider could not be reached or did not answer in time (try the fallback). `reason` is plain
    words the client may see; `detail` is for the log only."""

    def __init__(self, provider: str, reason: str, detail: str = "", kind: str = "provider_connection") -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.detail = detail
        self.kind = kind  # the error type metrics and the log show (gateway.errors)


log = logging.getLogger("gateway.http.upstreams")

KEPT_HEADERS = frozenset((b"retry-after", b"content-type", b"x-request-id", b"request-id"))  # what we read


def _failure(provider: Provider, exc: HTTPError, timeout_ms: int = 0) -> UpstreamFailure:
    if exc.timeout:
        return UpstreamFailure(provider.name, f"timeout after {timeout_ms or provider.timeout_ms} ms",
                               kind="provider_timeout")
    return UpstreamFailure(provider.name, str(exc), exc.detail)


class UpstreamStream:
    """An open streaming answer: status and headers are known, the body is read as it arrives."""

    def __init__(self, provider: Provider, response: Response) -> None:
        self._provider = provider
        self.status = response.status
        self.headers = response.headers
        self._response = response

    async def read_all(self) -> bytes:
        try:
            return await self._response.read()
        except HTTPError as exc:
            raise _failure(self._provider, exc) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a stalled or broken upstream raises UpstreamFailure."""
        try:
            async for chunk in self._response.iter_chunks():
                yield chunk
        except HTTPError as exc:
            if exc.timeout:
                raise UpstreamFailure(self._provider.name, "stream stalled: no data within the timeout",
                                      kind="provider_timeout") from None
            raise UpstreamFailure(self._provider.name, f"stream broken: {exc}", exc.detail) from None

    def close(self) -> None:
        """Drop the upstream connection at once if the answer is still coming (the client went away)."""
        self._response.close()

    def finish(self) -> None:
        """Done reading: keep the connection for the next call when the answer ended cleanly."""
        self._response.finish()


class UpstreamPool:
    def __init__(self, providers: dict[str, Provider]) -> None:
        self._providers = providers
        self._pools: dict[str, Pool] = {}

    async def start(self) -> None:
        for name, p in self._providers.items():
            headers = {"Content-Type": "application/json", "User-Agent": "botech-gateway"}
            headers.update(dict(p.headers))
            if p.api_key:
                headers[p.auth_header] = f"{p.auth_prefix}{p.api_key}"
            self._pools[name] = Pool(p.base_url, headers, max_idle=p.pool_size, keep_headers=KEPT_HEADERS,
                                     proxy=p.proxy, ca_file=p.ca_file, ca_dir=p.ca_dir)
            if p.proxy:
                log.info("provider %s goes through the proxy at %s", name, parse_proxy(p.proxy).address)

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    async def send(self, provider: Provider, request: UpstreamRequest, extra_head: bytes = b"") -> UpstreamReply:
        """`extra_head`: header lines of this request only (a trace's traceparent), each ending in CRLF."""
        try:
            response = await self._pools[provider.name].request(request.method, request.path, request.body,
                                                                (request.timeout_ms or provider.timeout_ms) / 1000,
                                                                extra_head=extra_head, content_type=request.content_type,
                                                                headers=request.headers)
            body = await response.read()
        except HTTPError as exc:
            raise _failure(provider, exc, request.timeout_ms) from None
        return UpstreamReply(response.status, response.headers, body)

    async def open_stream(self, provider: Provider, request: UpstreamRequest, extra_head: bytes = b"") -> UpstreamStream:
        """Send a streaming request and return once the status line and headers are in."""
        try:
            response = await self._pools[provider.name].request(request.method, request.path, request.body,
                                                                provider.timeout_ms / 1000, stream=True,
                                                                extra_head=extra_head, headers=request.headers)
        except HTTPError as exc:
            raise _failure(provider, exc) from None
        return UpstreamStream(provider, response)
