"""Content-Encoding of upstream answers: gzip and deflate decoded as the bytes arrive (stdlib zlib).

We ask for `Accept-Encoding: identity`, but a proxy in front of a provider may compress anyway. Brotli and
zstd need libraries the gateway does not carry: an answer in them is refused (UnsupportedEncoding), which
the caller turns into a provider failure before anything reaches the client or is billed.
"""

from __future__ import annotations

import zlib


class UnsupportedEncoding(ValueError):
    """The answer is encoded in a way the gateway cannot decode (the coding's name is the message)."""


class DecodeError(ValueError):
    """The compressed body is corrupt or ends before its compressed stream does."""


class _Inflate:
    """One gzip or deflate layer. gzip may hold several members one after another (RFC 1952 §2.2);
    `deflate` is zlib-wrapped per RFC 9110 §8.4.1.2, but some servers send it raw: told apart by the
    first bytes."""

    __slots__ = ("_gzip", "_obj", "_started")

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._obj = zlib.decompressobj(31 if gzip else 15)
        self._started = False

    def decode(self, data: bytes) -> bytes:
        if not self._started and data:
            self._started = True
            if not self._gzip and not _zlib_header(data):
                self._obj = zlib.decompressobj(-15)
        try:
            out = self._obj.decompress(data)
            while self._gzip and self._obj.eof and self._obj.unused_data:
                rest = self._obj.unused_data
                self._obj = zlib.decompressobj(31)
                out += self._obj.decompress(rest)
        except zlib.error as exc:
            raise DecodeError(str(exc)) from None
        return out

    def end(self) -> bytes:
        try:
            out = self._obj.flush()
        except zlib.error as exc:
            raise DecodeError(str(exc)) from None
        if self._started and not self._obj.eof:
            raise DecodeError("compressed body ends before its compressed stream does")
        return out


def _zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


_LAYERS = {"gzip": True, "x-gzip": True, "deflate": False}


class Decoder:
    """Undoes the codings of one answer, in reverse of the order they were applied."""

    __slots__ = ("_layers",)

    def __init__(self, codings: list[str]) -> None:
        self._layers = [_Inflate(_LAYERS[c]) for c in reversed(codings)]

    def decode(self, data: bytes) -> bytes:
        for layer in self._layers:
            data = layer.decode(data)
        return data

    def end(self) -> bytes:
        """What is left once the body is complete; raises DecodeError if it was cut short."""
        out = b""
        for layer in self._layers:
            out = layer.decode(out) + layer.end() if out else layer.end()
        return out


def decoder_for(content_encoding: str) -> Decoder | None:
    """A decoder for the header's codings, None for identity; raises UnsupportedEncoding."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    for c in codings:
        if c not in _LAYERS:
            raise UnsupportedEncoding(c)
    return Decoder(codings)
