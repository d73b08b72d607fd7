"""Prices from pricing.d/ as integer arithmetic: cost of a usage, maximum cost of a request."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.config.model import Price
from gateway.money import NANO
from gateway.usage import Usage

_PER_1M = 1_000_000
_PPM = 1_000_000  # markup factor resolution


def _nano(d: Decimal | None) -> int:
    return int(d * NANO) if d is not None else 0


@dataclass(frozen=True, slots=True)
class ModelRate:
    """nano-USD per 1M tokens (so one token costs rate / 1e6 nano-USD, kept exact until the end)."""

    free: bool
    input: int
    cached_input: int
    cache_write: int
    output: int
    per_request: int
    per_image: tuple[tuple[str, str, int], ...]
    characters: int          # per 1M input characters
    input_audio: int         # per 1M input audio tokens
    output_audio: int        # per 1M output audio tokens
    per_audio_minute: int    # nano-USD per minute of audio
    markup_ppm: int          # 1_000_000 = no markup; 1_100_000 = +10 %


def _rate(p: Price) -> ModelRate:
    return ModelRate(
        free=p.free, input=_nano(p.input),
        cached_input=_nano(p.cached_input if p.cached_input is not None else p.input),
        cache_write=_nano(p.cache_write if p.cache_write is not None else p.input),
        output=_nano(p.output), per_request=_nano(p.per_request),
        per_image=tuple((s, q, _nano(v)) for s, q, v in p.per_image),
        characters=_nano(p.characters), input_audio=_nano(p.input_audio if p.input_audio is not None else p.input),
        output_audio=_nano(p.output_audio if p.output_audio is not None else p.output),
        per_audio_minute=_nano(p.per_audio_minute),
        markup_ppm=_PPM + int(p.markup_percent * 10_000),
    )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class PriceBook:
    def __init__(self, prices: dict[str, Price]) -> None:
        self._rates = {name: _rate(p) for name, p in prices.items()}

    def rate(self, model: str) -> ModelRate | None:
        return self._rates.get(model)

    def cost(self, model: str, usage: Usage, image_size: str = "*", image_quality: str = "*") -> int:
        """nano-USD for `usage`, rounded up once at the end, markup included."""
        r = self._rates[model]
        if r.free:
            return 0
        uncached = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
        per_1m = (uncached * r.input + usage.cached_input_tokens * r.cached_input
                  + usage.cache_write_tokens * r.cache_write + usage.output_tokens * r.output)
        if usage.input_audio_tokens or usage.output_audio_tokens or usage.characters or usage.audio_ms:
            per_1m += self._media(r, usage)
        # an image is billed by its tokens when the provider reports them, else at the per-image price
        per_image = 0 if (usage.output_tokens and r.output) else self.image_price(r, image_size, image_quality)
        flat = r.per_request + usage.images * per_image
        base = per_1m + flat * _PER_1M          # in nano-USD per 1M units
        return _ceil_div(base * r.markup_ppm, _PER_1M * _PPM)

    @staticmethod
    def _media(r: ModelRate, u: Usage) -> int:
        """The audio and character terms (nano-USD per 1M units): audio tokens at their own rates, in place
        of the text rate they were first counted at; characters; audio length (per minute, to the ms)."""
        audio_in = min(u.input_audio_tokens, u.input_tokens)
        audio_out = min(u.output_audio_tokens, u.output_tokens)
        return (audio_in * (r.input_audio - r.input) + audio_out * (r.output_audio - r.output)
                + u.characters * r.characters + _ceil_div(u.audio_ms * r.per_audio_minute * _PER_1M, 60_000))

    def max_cost(self, model: str, input_tokens: int, output_tokens: int, images: int = 0,
                 media: Usage | None = None) -> int:
        """The most a request can cost: every input token uncached, every output token used, and each
        image at the dearest per-image price (or, without one, at the output rate for 6,000 tokens).
        `media`: the most characters, audio and audio tokens the call can use (speech, transcription)."""
        r = self._rates[model]
        if media is not None:
            media = Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                          input_audio_tokens=input_tokens if r.input_audio > r.input else 0,
                          output_audio_tokens=output_tokens if r.output_audio > r.output else 0,
                          characters=media.characters, audio_ms=media.audio_ms)
        cost = self.cost(model, media or Usage(input_tokens=input_tokens, output_tokens=output_tokens))
        if images and not r.free:
            dearest = max((p for _, _, p in r.per_image), default=0) or r.output * 6000 // _PER_1M
            cost += images * _ceil_div(dearest * r.markup_ppm, _PPM)
        return cost

    @staticmethod
    def image_price(r: ModelRate, size: str, quality: str) -> int:
        best = None
        for s, q, price in r.per_image:
            if (s in (size, "*")) and (q in (quality, "*")):
                exact = (s == size) + (q == quality)
                if best is None or exact > best[0]:
                    best = (exact, price)
        return best[1] if best else 0
