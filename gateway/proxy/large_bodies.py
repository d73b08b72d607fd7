"""Large request bodies are read and translated off the event loop (issue 14 item 2).

The event loop serves every connection of a worker, so no single body may hold it for long. Measured on the
project's 2-core machine, orjson spends up to ~42 ms per MiB on the worst shapes (a flat object of short
keys; ~12 ms per MiB of one-word messages) and translation ~6 µs per message — always holding the GIL, so a
thread alone does not help while it parses. Hence, by the size of the raw body:

- up to INLINE_PARSE_BYTES (256 KiB): parsed on the loop (worst shape ≈ 10 ms);
- larger: parsed in a helper process of this worker (spawned on first use), which also refuses bodies with
  more than `server.limits.max_json_values` values or deeper than `max_json_depth`, and hands the object
  back pickled; the loop's thread pool unpickles it (one C call bounded by those limits, strings decoded at
  memory speed) while the loop goes on serving;
- over INLINE_TRANSLATE_BYTES (64 KiB): translated in the thread pool once the admission has said yes, so a
  request that is refused costs no translation, and pure-Python template work yields the GIL to the loop
  every few milliseconds.

Small bodies — all of the hot path — take none of these detours.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from gateway.config.model import ServerLimits
from gateway.errors import BadRequest, UpstreamUnavailable
from gateway.memory import return_freed_memory
from gateway.proxy.request_body import check_depth, count_values, parse_json_body

log = logging.getLogger("gateway.proxy.large_bodies")
T = TypeVar("T")

INLINE_PARSE_BYTES = 256 * 1024
INLINE_TRANSLATE_BYTES = 64 * 1024


class LargeBodies:
    """One per worker: the helper process (lazily) and a small thread pool."""

    def __init__(self, limits: ServerLimits) -> None:
        self._limits = limits
        self._process: ProcessPoolExecutor | None = None
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gateway-large-body")

    async def parse(self, raw: bytes | bytearray) -> dict[str, Any]:
        """A body of any size as an object (400 for what is not a JSON object within the limits): a large one
        through the helper process. (The app parses small bodies itself with parse_json_body: per request.)"""
        if len(raw) <= INLINE_PARSE_BYTES:
            return parse_json_body(raw, self._limits.max_json_depth)
        loop = asyncio.get_running_loop()
        try:
            verdict, payload = await loop.run_in_executor(self._helper(), _read, bytes(raw),
                                                          self._limits.max_json_depth, self._limits.max_json_values)
        except BrokenProcessPool:
            self._process = None  # killed (e.g. out of memory): the next request starts a new one
            log.error("the body-reading helper process died; it is started again on the next large body")
            raise UpstreamUnavailable("the gateway could not read this request body right now; try again",
                                      error_type="gateway_overloaded") from None
        if verdict != "ok":
            raise BadRequest(payload)
        body: dict[str, Any] = await loop.run_in_executor(self._threads, pickle.loads, payload)
        return body

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the thread pool (translation of a large body)."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    def _helper(self) -> ProcessPoolExecutor:
        if self._process is None:
            self._process = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=return_freed_memory)
        return self._process

    def close(self) -> None:
        if self._process is not None:
            self._process.shutdown(wait=False, cancel_futures=True)
            self._process = None
        self._threads.shutdown(wait=False, cancel_futures=True)


def _read(raw: bytes, max_depth: int, max_values: int) -> tuple[str, Any]:
    """In the helper process: ("ok", the pickled object) or ("bad", the 400's message)."""
    try:
        body = parse_json_body(raw)
        count_values(body, max_values)
        check_depth(body, raw, max_depth)
    except BadRequest as exc:
        return "bad", exc.message
    return "ok", pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)
