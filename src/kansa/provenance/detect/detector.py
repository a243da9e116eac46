"""Score a text: check it, find its language, run its model, apply the calibrated head.

A result is evidence with its uncertainty, never a finding about a person: the score is
the head's estimate that the text resembles machine-written text of the development
data; ``p_human`` is how often the calibration split's human texts (one language, a few
domains) scored at least as high; the verdict names which stated false-positive rate's
threshold the score passed. Paraphrased text, short texts, non-native writers and
domains unlike the calibration data all move these numbers (docs/design/detection.md).
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

from kansa.provenance.detect.errors import DetectError, DetectInputError
from kansa.provenance.detect.features import Features
from kansa.provenance.detect.head import Head, load_heads
from kansa.provenance.detect.langid import detect_language, model_for
from kansa.provenance.detect.runtime import Model
from kansa.provenance.detect.scoring import MAX_TOKENS, MIN_TOKENS, text_features

__all__ = ["MAX_CHARS", "VERDICTS", "DetectResult", "Detector", "check_text", "decode_text"]

MAX_CHARS = 1_000_000  # larger input is refused (only the first MAX_TOKENS are scored)

# verdicts, strongest first; none of them is a statement about who wrote the text
LIKELY, POSSIBLY, NO_SIGNAL = "likely-machine", "possibly-machine", "no-signal"
TOO_SHORT, UNCALIBRATED = "too-short", "uncalibrated"
VERDICTS = (LIKELY, POSSIBLY, NO_SIGNAL, TOO_SHORT, UNCALIBRATED)


def decode_text(data: bytes) -> str:
    """Bytes from a file or stdin as text, or a clear :class:`DetectInputError`."""
    if len(data) > 4 * MAX_CHARS:
        raise DetectInputError(f"input too large: {len(data)} bytes (limit {4 * MAX_CHARS})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DetectInputError(f"input is not UTF-8 text (binary?): byte {e.start}") from e
    return check_text(text)


def check_text(text: Any) -> str:
    """``text`` if it can be scored, else a :class:`DetectInputError` saying why."""
    if not isinstance(text, str):
        raise DetectInputError(f"text must be a string, not {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise DetectInputError(f"text too large: {len(text)} characters (limit {MAX_CHARS})")
    if not text.strip():
        raise DetectInputError("empty text: nothing to score")
    sample = text[:20000]
    control = sum(1 for c in sample if unicodedata.category(c) in ("Cc", "Cs", "Co")
                  and c not in "\t\n\r")
    if "\x00" in sample or control > 0.05 * len(sample):
        raise DetectInputError("input looks binary (NUL or control characters), not text")
    return text


@dataclass(frozen=True)
class DetectResult:
    score: float  # 0..1, higher = more like the machine-written development texts
    verdict: str
    language: str
    model: str
    tokens: int  # tokens scored
    truncated: bool  # only the first MAX_TOKENS tokens were scored
    p_human: float | None  # share of calibration human texts scoring >= score
    n_human: int  # calibration human texts behind p_human and the thresholds
    thresholds: dict[str, float]
    features: Features

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4), "verdict": self.verdict,
            "language": self.language,
            "uncertainty": {
                "p_human": None if self.p_human is None else round(self.p_human, 4),
                "n_calibration_human": self.n_human,
                "thresholds": {f"fpr_{k}": round(v, 4) for k, v in self.thresholds.items()},
                "tokens": self.tokens, "truncated": self.truncated,
            },
            "model": self.model,
            "features": self.features.as_dict(),
        }


class Detector:
    """Loads each model on first use and keeps it; safe to share between threads
    (each model serialises its own evaluations)."""

    def __init__(self, heads: dict[str, Head] | None = None, max_tokens: int = MAX_TOKENS
                 ) -> None:
        self.heads = heads if heads is not None else load_heads()
        self.max_tokens = max_tokens
        self._models: dict[str, Model] = {}
        self._lock = threading.Lock()

    def model(self, name: str) -> Model:
        with self._lock:
            if name not in self._models:
                self._models[name] = Model(name)
            return self._models[name]

    def score(self, text: str, language: str | None = None) -> DetectResult:
        text = check_text(text)
        lang = language or detect_language(text)
        head = self.heads.get(lang)
        name = head.model if head else model_for(lang)
        feats, truncated = text_features(self.model(name), text, self.max_tokens)
        if head is None:  # no calibration: the head of a language scored by the same model
            fallback = next((h for h in self.heads.values() if h.model == name), None)
            if fallback is None:
                raise DetectError(f"no calibrated head for model {name}")
            return DetectResult(fallback.score(feats), UNCALIBRATED, lang, name, feats.tokens,
                                truncated, None, 0, {}, feats)
        s = head.score(feats)
        if feats.tokens < MIN_TOKENS:
            verdict = TOO_SHORT
        elif s >= head.thresholds["0.01"]:
            verdict = LIKELY
        elif s >= head.thresholds["0.05"]:
            verdict = POSSIBLY
        else:
            verdict = NO_SIGNAL
        return DetectResult(s, verdict, lang, name, feats.tokens, truncated, head.p_human(s),
                            len(head.human_scores), dict(head.thresholds), feats)
