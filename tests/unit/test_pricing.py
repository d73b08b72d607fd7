"""Prices and money: integer nano-USD, exact decimal parsing, one rounding (up) at the end."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.config.model import Price
from gateway.money import MoneyError, nano_to_rub, rub_to_nano_usd, usd_to_nano
from gateway.pricing import PriceBook
from gateway.usage import Usage
from tests.support import repo_config


def book(**price) -> PriceBook:
    return PriceBook({"m": Price(model="m", **price)})


def test_token_prices_are_exact() -> None:
    b = book(input=Decimal("0.15"), cached_input=Decimal("0.075"), output=Decimal("0.6"))
    # 1000 uncached in × $0.15/1M + 1000 cached × $0.075/1M + 500 out × $0.6/1M = 150 000 + 75 000 + 300 000 nano-USD
    assert b.cost("m", Usage(input_tokens=2000, cached_input_tokens=1000, output_tokens=500)) == 525_000


def test_rounds_up_once_at_the_end() -> None:
    b = book(input=Decimal("0.0001"), output=Decimal("0.0006"))
    assert b.cost("m", Usage(input_tokens=1, output_tokens=1)) == 1  # 0.1 + 0.6 nano-USD → 1, not 0 and not 2


def test_cache_write_and_reasoning_as_output() -> None:
    b = book(input=Decimal("3"), cached_input=Decimal("0.3"), cache_write=Decimal("3.75"), output=Decimal("15"))
    u = Usage(input_tokens=1_000_000, cached_input_tokens=200_000, cache_write_tokens=100_000,
              output_tokens=10_000, reasoning_tokens=8_000)
    assert b.cost("m", u) == usd_to_nano("2.1") + usd_to_nano("0.06") + usd_to_nano("0.375") + usd_to_nano("0.15")


def test_markup_and_per_request_and_images() -> None:
    b = book(input=Decimal("1"), output=Decimal("2"), per_request=Decimal("0.01"), markup_percent=Decimal("10"),
             per_image=(("1024x1024", "low", Decimal("0.011")), ("*", "*", Decimal("0.167"))))
    u = Usage(input_tokens=1_000_000, output_tokens=0, images=2)
    assert b.cost("m", u, "1024x1024", "low") == usd_to_nano("1.1") + usd_to_nano("0.011") + 2 * usd_to_nano("0.0121")
    assert b.cost("m", Usage(images=1), "1536x1024", "high") == usd_to_nano("0.011") + usd_to_nano("0.1837")


def test_free_model_costs_nothing() -> None:
    assert book(free=True).cost("m", Usage(input_tokens=10**9, output_tokens=10**9)) == 0


def test_every_enabled_model_has_a_rate() -> None:
    cfg = repo_config()
    b = PriceBook(cfg.prices)
    for m in cfg.enabled_models:
        assert b.rate(m.name) is not None, m.name
        assert b.max_cost(m.name, 1000, 1000) >= 0


@pytest.mark.parametrize("text, nano", [("10", 10 * 10**9), ("0.000000001", 1), ("12.5", 12_500_000_000)])
def test_usd_parsing(text: str, nano: int) -> None:
    assert usd_to_nano(text) == nano


@pytest.mark.parametrize("text", ["abc", "0.0000000001", "NaN", "Infinity", ""])
def test_usd_parsing_refuses(text: str) -> None:
    with pytest.raises(MoneyError):
        usd_to_nano(text)


def test_rub_conversion_rounds_in_the_houses_favour() -> None:
    assert rub_to_nano_usd("950", Decimal("95")) == 10 * 10**9
    assert rub_to_nano_usd("100", Decimal("3")) == 33_333_333_333  # never 33.333333334
    assert nano_to_rub(12_500_000_000, Decimal("101.25")) == Decimal("1265.63")


def test_media_units() -> None:
    """Per character (tts-1), per audio minute to the millisecond (whisper-1), audio tokens at their own rate in
    place of the text rate (gpt-4o-mini-tts output, gpt-4o-transcribe input)."""
    assert book(characters=Decimal(15)).cost("m", Usage(characters=1000)) == usd_to_nano("0.015")
    minute = book(per_audio_minute=Decimal("0.006"))
    assert minute.cost("m", Usage(audio_ms=60_000)) == usd_to_nano("0.006")
    assert minute.cost("m", Usage(audio_ms=1_500)) == 150_000          # 1.5 s of $0.006 a minute
    assert minute.cost("m", Usage(audio_ms=1)) == 100                  # rounded up once
    tts = book(input=Decimal("0.6"), output=Decimal(10), output_audio=Decimal(12))
    assert tts.cost("m", Usage(input_tokens=100, output_tokens=1000, output_audio_tokens=800)) == \
        60_000 + 200 * 10_000 + 800 * 12_000
    stt = book(input=Decimal("2.5"), input_audio=Decimal(6), output=Decimal(10))
    assert stt.cost("m", Usage(input_tokens=1000, input_audio_tokens=900, output_tokens=10)) == \
        100 * 2_500 + 900 * 6_000 + 10 * 10_000


def test_media_reservation_bounds_the_charge() -> None:
    """The reservation of a speech or transcription call is at least what any usage within its bounds costs."""
    tts = book(input=Decimal("0.6"), output=Decimal(10), output_audio=Decimal(12), characters=Decimal(15))
    bound = tts.max_cost("m", 400, 4096, media=Usage(characters=400))
    assert bound >= tts.cost("m", Usage(input_tokens=400, output_tokens=4096, output_audio_tokens=4096, characters=400))
    whisper = book(per_audio_minute=Decimal("0.006"))
    assert whisper.max_cost("m", 0, 0, media=Usage(audio_ms=90_000)) == whisper.cost("m", Usage(audio_ms=90_000))
