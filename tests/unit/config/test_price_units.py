"""`gateway config validate` on the price units of issue 20 (per character, per audio minute or second, audio
tokens): a unit the model's endpoint never reports, or a media model without a unit it is billed by, is an
error naming the file, the model and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from tests.support import config_env
from tests.support.gateway_server import copy_root


def validate(root: Path, capsys, monkeypatch) -> tuple[int, list[str]]:
    for k, v in config_env().items():
        monkeypatch.setenv(k, v)
    code = main(["--root", str(root), "config", "validate"])
    return code, capsys.readouterr().out.strip().splitlines()


def set_price(root: Path, model: str, price: dict) -> None:
    path = root / "pricing.d" / ("google.yaml" if model.startswith("gemini") else "openai.yaml")
    doc = yaml.safe_load(path.read_text())
    doc["models"][model] = price
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


BROKEN = {
    "characters on an embedding model": (
        "text-embedding-3-small", {"characters": "1"},
        "pricing.d/openai.yaml: models.text-embedding-3-small.characters: a embedding model is not billed per character"),
    "audio minutes on a chat model": (
        "gpt-4o-mini", {"input": "1", "output": "2", "per_audio_minute": "0.006"},
        "models.gpt-4o-mini.per_audio_minute: a chat model is not billed per audio minute"),
    "output audio on a transcription model": (
        "gpt-4o-transcribe", {"input": "1", "output": "2", "output_audio": "3"},
        "models.gpt-4o-transcribe.output_audio: a transcription model gives no audio output"),
    "input audio on a speech model": (
        "gemini-2.5-flash-preview-tts", {"input": "1", "output": "2", "input_audio": "3"},
        "pricing.d/google.yaml: models.gemini-2.5-flash-preview-tts.input_audio: a speech model takes no audio input"),
    "minute and second both": (
        "whisper-1", {"per_audio_minute": "0.006", "per_audio_second": "0.0001"},
        "pricing.d/openai.yaml: models.whisper-1:"),
    "transcription priced by image": (
        "whisper-1", {"per_image": {"*/*": "1"}},
        "models.whisper-1: a transcription model needs per_audio_minute (or _second) or token prices"),
    "speech priced by image": (
        "tts-1", {"per_image": {"*/*": "1"}},
        "models.tts-1: a speech model needs a `characters` price or token prices"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_price_unit_errors(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    model, price, expected = BROKEN[case]
    root = copy_root(tmp_path)
    set_price(root, model, price)
    code, out = validate(root, capsys, monkeypatch)
    assert code == 1 and any(expected in line for line in out), "\n".join(out)


def test_per_audio_second_is_sixty_a_minute(tmp_path: Path, capsys, monkeypatch) -> None:
    root = copy_root(tmp_path)
    set_price(root, "whisper-1", {"per_audio_second": "0.0001"})
    code, out = validate(root, capsys, monkeypatch)
    assert code == 0, out
