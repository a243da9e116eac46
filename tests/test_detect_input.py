"""Bad input to the detector gets a clear error; language routing."""

from __future__ import annotations

import pytest

from kansa.provenance.detect.detector import MAX_CHARS, check_text, decode_text
from kansa.provenance.detect.errors import DetectInputError
from kansa.provenance.detect.langid import detect_language, model_for


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (b"  \n\t ", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "UTF-8"),
    (b"text with a NUL \x00 byte in it", "binary"),
    (bytes(range(1, 9)) * 40, "binary"),
    (b"a" * (4 * MAX_CHARS + 1), "too large"),
])
def test_bad_bytes_are_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(DetectInputError, match=why):
        decode_text(data)


def test_too_long_text_and_non_strings_are_refused() -> None:
    with pytest.raises(DetectInputError, match="too large"):
        check_text("x" * (MAX_CHARS + 1))
    with pytest.raises(DetectInputError, match="string"):
        check_text(42)
    assert decode_text("\ufeffこんにちは、世界。".encode()) == "こんにちは、世界。"


@pytest.mark.parametrize(("text", "lang", "model"), [
    ("The council voted on Tuesday to extend the library's opening hours.", "en",
     "smollm2-135m"),
    ("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。", "ja", "gemma3-270m"),
    ("这是一个关于天气的简短句子。", "zh", "gemma3-270m"),
    ("오늘은 날씨가 정말 좋습니다.", "ko", "gemma3-270m"),
    ("Der Hund läuft schnell über die Straße und bellt laut.", "und-Latn", "gemma3-270m"),
    ("12345 678 !!!", "und", "gemma3-270m"),
])
def test_language_routing(text: str, lang: str, model: str) -> None:
    assert detect_language(text) == lang
    assert model_for(lang) == model
