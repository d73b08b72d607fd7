"""The enabled catalogue with its prices as the billing code charges them (PriceBook.cost, markup
included), for the Models & prices page and the console's config view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.account_admin import Money
from gateway.config.model import Config
from gateway.pricing import PriceBook
from gateway.proxy.endpoints import native_path
from gateway.usage import Usage

M = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelPrice:
    name: str
    kind: str
    endpoint: str
    provider: str
    free: bool
    input: int | None          # nano-USD per 1M tokens
    cached_input: int | None
    output: int | None
    per_request: int
    images: tuple[tuple[str, int], ...]   # (size/quality, nano-USD per image), then the media units (issue 20)

    def doc(self, money: Money) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "endpoint": self.endpoint, "provider": self.provider,
                "free": self.free, "input": money.pair("p", self.input), "cached": money.pair("p", self.cached_input),
                "output": money.pair("p", self.output),
                "per_request": money.pair("p", self.per_request) if self.per_request else None,
                "images": [(label, money.pair("p", nano)) for label, nano in self.images]}


def catalogue(config: Config, book: PriceBook) -> list[ModelPrice]:
    out = []
    for m in sorted(config.enabled_models, key=lambda m: m.name):
        route = next((r for r in config.routes if r.matches(m.name)), None)
        price = config.prices.get(m.name)
        if price is None or book.rate(m.name) is None:
            continue
        flat = book.cost(m.name, Usage())
        per_1m = _per_1m(book, m.name, flat)
        tokens = bool(price.input or price.output or price.cached_input)
        images = tuple((_image_label(s, q, len(price.per_image)), book.cost(m.name, Usage(images=1), s, q) - flat)
                       for s, q, _ in price.per_image)
        media = (("per 1M characters", price.characters, Usage(characters=M)),
                 ("per audio minute", price.per_audio_minute, Usage(audio_ms=60_000)),
                 ("audio input per 1M tokens", price.input_audio,
                  Usage(input_tokens=M, input_audio_tokens=M)),
                 ("audio output per 1M tokens", price.output_audio,
                  Usage(output_tokens=M, output_audio_tokens=M)))
        images += tuple((label, book.cost(m.name, usage) - flat) for label, given, usage in media if given)
        out.append(ModelPrice(
            m.name, m.kind, native_path(m.kind), route.primary if route else "", price.free,
            per_1m(input_tokens=M) if tokens else None,
            per_1m(input_tokens=M, cached_input_tokens=M) if price.cached_input is not None else None,
            per_1m(output_tokens=M) if tokens else None, flat, images))
    return out


def _per_1m(book: PriceBook, model: str, flat: int) -> Any:
    """Cost of a usage without the flat per-request part: the price per 1M tokens as billed."""
    return lambda **usage: book.cost(model, Usage(**usage)) - flat


def _image_label(size: str, quality: str, n: int) -> str:
    parts = [p for p in (size, quality) if p != "*"]
    return " ".join(parts) if parts else ("other sizes" if n > 1 else "per image")
