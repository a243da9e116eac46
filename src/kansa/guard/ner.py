"""Optional named-entity recognition for Japanese personal names and places (GiNZA).

The rule-based detectors (:mod:`kansa.guard.pii`) find a name by its context (様, さん,
氏名:); a bare name in running text (``山田が担当します``) needs a model. This module
wraps GiNZA (``ja-ginza``, MIT: a spaCy pipeline whose NER labels include ``Person``,
``Province``, ``City``), installed with the ``kansa[ner]`` extra. The model ships inside
the ``ja_ginza`` package: ``spacy.load`` reads it from site-packages and fetches nothing
(the offline test covers the default detectors; a pipeline that was not installed is a
:class:`~kansa.errors.GuardError`, never a download).

Cost, measured by ``bench/guard_data.py --ner``: see docs/design/guard.md.
"""

from __future__ import annotations

import threading
from typing import Any

from kansa.errors import GuardError
from kansa.guard.findings import CHANNEL_USER, Finding, Technique, check_channel

__all__ = ["LABELS", "NerScanner", "available"]

# GiNZA (ENE) label -> our kind
LABELS = {"Person": "person", "Province": "address_jp", "City": "address_jp",
          "Postal_Address": "address_jp", "Phone_Number": "phone_jp",
          "Email": "email"}
_TECH = (Technique.DATA_LEAKAGE, Technique.OWASP_SENSITIVE_DISCLOSURE)


def available(model: str = "ja_ginza") -> bool:
    """Whether spaCy and the model package are installed (imports nothing heavy)."""
    from importlib.util import find_spec

    return find_spec("spacy") is not None and find_spec(model) is not None


class NerScanner:
    """A loaded GiNZA pipeline (loaded on first use; one per process is enough: loading
    takes seconds). ``scan(text)`` -> findings of detector ``pii.ner``, validator
    ``ner``, confidence 0.6 (a model's guess: below the rules' context findings)."""

    def __init__(self, model: str = "ja_ginza", score: float = 0.6) -> None:
        self.model = model
        self.score = score
        self._nlp: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._nlp is None:
                if not available(self.model):
                    raise GuardError(f"the NER extra is not installed: pip install "
                                     f"'kansa[ner]' (spaCy and the {self.model} package)")
                import spacy  # type: ignore[import-not-found,unused-ignore]

                # only the entity recogniser and what it needs: the parser is half the cost
                self._nlp = spacy.load(self.model, exclude=["parser", "attribute_ruler",
                                                            "compound_splitter",
                                                            "bunsetu_recognizer"])
            return self._nlp

    def scan(self, text: str, channel: str = CHANNEL_USER) -> list[Finding]:
        check_channel(channel)
        if not text.strip():
            return []
        doc = self._load()(text)
        out = []
        for ent in doc.ents:
            kind = LABELS.get(ent.label_)
            if kind is None:
                continue
            out.append(Finding("pii.ner", channel, kind, self.score, ent.start_char,
                               ent.end_char, _TECH, f"personal data ({kind}, by NER)",
                               {"validator": "ner", "label": ent.label_}))
        return out
