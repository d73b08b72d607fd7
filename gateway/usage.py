"""Token usage as the gateway bills it, extracted from any provider's answer by dotted paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)  # not frozen: built once or twice per call, and a frozen one costs a setattr per field; nobody changes it
class Usage:
    input_tokens: int = 0          # every prompt token, cached and cache-written included
    cached_input_tokens: int = 0   # subset of input_tokens read from the provider's cache
    cache_write_tokens: int = 0    # subset of input_tokens written to the provider's cache
    output_tokens: int = 0         # every generated token, reasoning included
    reasoning_tokens: int = 0      # subset of output_tokens
    images: int = 0                # generated images (image endpoints)
    input_audio_tokens: int = 0    # subset of input_tokens that were audio (transcription)
    output_audio_tokens: int = 0   # subset of output_tokens that are audio (speech)
    characters: int = 0            # input characters (speech models priced per character)
    audio_ms: int = 0              # audio length in milliseconds (models priced per second or minute of audio)
    estimated: bool = False        # True when counted by the gateway, not reported by the provider

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_openai_chat(self) -> dict[str, Any]:
        """OpenAI's CompletionUsage shape."""
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_input_tokens,
                                      **({"cache_write_tokens": self.cache_write_tokens} if self.cache_write_tokens else {})},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


    def to_openai_responses(self) -> dict[str, Any]:
        """OpenAI's ResponseUsage shape."""
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_input_tokens,
                                     "cache_write_tokens": self.cache_write_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }


_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
           "input_audio_tokens", "output_audio_tokens", "audio_seconds")


def dig(doc: Any, path: Sequence[str]) -> Any:
    for part in path:
        if doc.__class__ is dict:  # parsed JSON: a plain dict (an ABC isinstance check costs more)
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


class UsageMap:
    """For each Usage field, the list of dotted paths whose integer values add up to it."""

    __slots__ = ("_paths",)

    def __init__(self, spec: Mapping[str, Sequence[str]]) -> None:
        self._paths = tuple((f, tuple(tuple(p.split(".")) for p in spec.get(f, ()))) for f in _FIELDS
                            if spec.get(f) or f in _FIELDS[:5])

    def extract(self, doc: Any) -> Usage | None:
        """The usage a provider reported, or None if it reported none at all."""
        found = False
        values: dict[str, Any] = {}
        for field, paths in self._paths:
            total: int | float = 0
            for path in paths:
                v = dig(doc, path)
                if isinstance(v, int) and not isinstance(v, bool) or field == "audio_seconds" and isinstance(v, float):
                    total += v
                    found = True
            values[field] = total
        if "audio_seconds" in values:  # a duration (seconds, maybe fractional) is kept in whole milliseconds
            values["audio_ms"] = round(values.pop("audio_seconds") * 1000)
        return Usage(**values) if found else None
