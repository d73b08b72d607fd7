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
    b = book(input=Decimal(3), cached_input=Decimal("0.3"), cache_write=Decimal("3.75"), output=Decimal(15))
    u = Usage(input_tokens=1_000_000, cached_input_tokens=200_000, cache_write_tokens=100_000,
              output_tokens=10_000, reasoning_tokens=8_000)
    assert b.cost("m", u) == usd_to_nano("2.1") + usd_to_nano("0.06") + usd_to_nano("0.375") + usd_to_nano("0.15")


def test_markup_and_per_request_and_images() -> None:
    b = book(input=Decimal(1), output=Decimal(2), per_request=Decimal("0.01"), markup_percent=Decimal(10),
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
    assert rub_to_nano_usd("950", Decimal(95)) == 10 * 10**9
    assert rub_to_nano_usd("100", Decimal(3)) == 33_333_333_333  # never 33.333333334
    assert nano_to_rub(12_500_000_000, Decimal("101.25")) == Decimal("1265.63")


def test_cached_and_cache_write_tokens_default_to_the_input_price() -> None:
    b = book(input=Decimal(2), output=Decimal(8))
    u = Usage(input_tokens=1_000, cached_input_tokens=400, cache_write_tokens=100, output_tokens=10)
    assert b.cost("m", u) == 1_000 * 2_000 + 10 * 8_000  # nano-USD per token = USD per 1M × 1000


def test_cached_tokens_beyond_the_prompt_never_make_a_negative_charge() -> None:
    b = book(input=Decimal(1), cached_input=Decimal("0.1"))
    assert b.cost("m", Usage(input_tokens=10, cached_input_tokens=50)) == 50 * 100  # uncached clamped to 0


def test_the_image_price_is_the_most_specific_match() -> None:
    b = book(per_image=(("1024x1024", "standard", Decimal("0.04")), ("1024x1024", "*", Decimal("0.06")),
                        ("*", "hd", Decimal("0.10")), ("*", "*", Decimal("0.12"))))
    def cost(size: str, quality: str) -> int:
        return b.cost("m", Usage(images=1), size, quality)

    assert cost("1024x1024", "standard") == usd_to_nano("0.04")  # size and quality
    assert cost("1024x1024", "low") == usd_to_nano("0.06")       # size only
    assert cost("512x512", "hd") == usd_to_nano("0.10")          # quality only
    assert cost("512x512", "low") == usd_to_nano("0.12")         # neither
    assert book(per_image=(("1024x1024", "hd", Decimal(1)),)).cost("m", Usage(images=1), "9x9", "low") == 0


def test_an_image_reported_in_tokens_is_billed_by_its_tokens_only() -> None:
    b = book(input=Decimal(5), output=Decimal(40), per_image=(("*", "*", Decimal("0.2")),))
    by_tokens = b.cost("m", Usage(input_tokens=10, output_tokens=1_000, images=1))
    assert by_tokens == 10 * 5_000 + 1_000 * 40_000
    assert b.cost("m", Usage(input_tokens=10, images=2)) == 10 * 5_000 + 2 * usd_to_nano("0.2")


def test_max_cost_bounds_every_cost_of_the_same_request() -> None:
    b = book(input=Decimal(3), cached_input=Decimal("0.3"), output=Decimal(15), markup_percent=Decimal("7.5"))
    top = b.max_cost("m", 2_000, 500)
    assert top == b.cost("m", Usage(input_tokens=2_000, output_tokens=500))
    for used in (Usage(input_tokens=2_000, cached_input_tokens=2_000, output_tokens=500),
                 Usage(input_tokens=1_000, output_tokens=1), Usage()):
        assert b.cost("m", used) <= top


def test_max_cost_of_images_takes_the_dearest_price_with_markup() -> None:
    b = book(per_image=(("1024x1024", "low", Decimal("0.011")), ("1536x1024", "high", Decimal("0.25"))),
             markup_percent=Decimal(10))
    assert b.max_cost("m", 100, 0, images=3) == 3 * usd_to_nano("0.275")
    # without per-image prices: 6,000 output tokens an image
    assert book(output=Decimal(40)).max_cost("m", 0, 0, images=2) == 2 * 6_000 * 40_000
    assert book(free=True, per_image=(("*", "*", Decimal(1)),)).max_cost("m", 10, 10, images=4) == 0


def test_markup_is_applied_once_and_rounded_up() -> None:
    b = book(input=Decimal("0.001"), markup_percent=Decimal("33.3333"))  # 1 nano-USD a token
    assert b.cost("m", Usage(input_tokens=3)) == 4  # 3 × 1.333333 = 3.999999 → 4
    assert b.cost("m", Usage(input_tokens=3_000_000)) == 3_999_999  # exact: nothing to round


def test_unknown_model_has_no_rate() -> None:
    assert book(input=Decimal(1)).rate("other") is None


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
