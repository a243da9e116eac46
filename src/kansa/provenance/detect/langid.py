"""Which language a text is in, enough to route it to a model and its calibration.

Script counts, no model: kana -> ``ja``; Hangul -> ``ko``; Han without kana -> ``zh``;
Latin letters with English function words -> ``en``; other Latin -> ``und-Latn``;
anything else -> ``und``. English goes to SmolLM2-135M (trained mostly on English);
every other language to Gemma-3-270M (multilingual). Only ``en`` and ``ja`` have
calibrated thresholds; others get a score without a verdict (``uncalibrated``).
"""

from __future__ import annotations

import re

__all__ = ["MODEL_FOR", "detect_language", "model_for"]

MODEL_FOR = {"en": "smollm2-135m", "ja": "gemma3-270m"}
_DEFAULT_MODEL = "gemma3-270m"

_KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_WORD = re.compile(r"[A-Za-z']+")
_EN_WORDS = (
    "the of and to a in is that it for was on as with he she they be at by this had not "
    "are but from or have an which you were her his all their has been one we there "
    "would will can if more when who what so no its about also")
_EN = frozenset(_EN_WORDS.split())


def detect_language(text: str) -> str:
    sample = text[:4000]
    kana = len(_KANA.findall(sample))
    han = len(_HAN.findall(sample))
    hangul = len(_HANGUL.findall(sample))
    latin = len(_LATIN.findall(sample))
    letters = kana + han + hangul + latin
    if letters == 0:
        return "und"
    if kana >= max(5, 0.05 * letters) or (kana and kana + han >= 0.3 * letters):
        return "ja"
    if hangul >= 0.3 * letters:
        return "ko"
    if han >= 0.3 * letters:
        return "zh"
    if latin >= 0.5 * letters:
        words = [w.lower() for w in _WORD.findall(sample)]
        if words and sum(w in _EN for w in words) >= 0.1 * len(words):
            return "en"
        return "und-Latn"
    return "und"


def model_for(language: str) -> str:
    return MODEL_FOR.get(language, _DEFAULT_MODEL)
