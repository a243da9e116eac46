"""Detection of AI-generated text we receive (issue 10, item 3; the extra ``kansa[detect]``).

Zero-shot: a small local model (SmolLM2-135M for English, Gemma-3-270M for Japanese and
other languages, shipped as PyPI packages) gives the full next-token distribution at each
position; features (log-likelihood, log-rank, entropy, Fast-DetectGPT's analytic sampling
discrepancy, the likelihood/log-rank ratio) feed a small logistic head calibrated per
language at stated false-positive rates. Results are evidence with their uncertainty,
never a verdict on a person. docs/design/detection.md has the method, data and figures.

``Detector().score(text)`` -> :class:`DetectResult`; ``DetectStage`` (stage.py) observes
a call's input in the capture pipeline; ``kansa detect text`` is kansa/cli/detect.py.
Importing this package loads nothing heavy: the runtime loads on first score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kansa.provenance.detect.errors import DetectError, DetectInputError, DetectUnavailableError

if TYPE_CHECKING:
    from kansa.provenance.detect.detector import Detector, DetectResult

__all__ = ["DetectError", "DetectInputError", "DetectResult", "DetectUnavailableError",
           "Detector"]


def __getattr__(name: str) -> Any:
    if name in ("Detector", "DetectResult"):
        from kansa.provenance.detect import detector

        return getattr(detector, name)
    raise AttributeError(name)
