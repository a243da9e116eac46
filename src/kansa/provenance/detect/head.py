"""The calibrated head: logistic regression over the features, thresholds per language.

``calibration.json`` (in this package) holds, per language: the model, the feature names,
their standardisation, the weights, the thresholds at stated false-positive rates and the
sorted head scores of the calibration split's human texts (so a score's empirical
p-value under human text can be reported). bench/detect_fit.py writes it from the
calibration split only; bench/detect.py reports on the validation split.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np
import numpy.typing as npt

from kansa.provenance.detect.errors import DetectError
from kansa.provenance.detect.features import Features

__all__ = ["Head", "fit_logistic", "load_heads"]


@dataclass(frozen=True)
class Head:
    language: str
    model: str
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    thresholds: dict[str, float]  # "0.01" / "0.05" (false-positive rate) -> score
    human_scores: tuple[float, ...]  # sorted, calibration split
    n_machine: int
    data: str

    def score(self, f: Features) -> float:
        z = self.intercept
        for name, m, s, c in zip(self.features, self.mean, self.scale, self.coef, strict=True):
            z += c * (getattr(f, name) - m) / s
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def p_human(self, score: float) -> float:
        """Share of calibration human texts scoring at least ``score`` (add-one smoothed):
        how often text like the human calibration set would score this high."""
        n = len(self.human_scores)
        above = n - bisect_left(self.human_scores, score)
        return (above + 1) / (n + 1)

    @staticmethod
    def from_dict(language: str, d: dict[str, Any]) -> Head:
        return Head(language=language, model=d["model"], features=tuple(d["features"]),
                    mean=tuple(d["mean"]), scale=tuple(d["scale"]), coef=tuple(d["coef"]),
                    intercept=float(d["intercept"]),
                    thresholds={k: float(v) for k, v in d["thresholds"].items()},
                    human_scores=tuple(sorted(d["human_scores"])),
                    n_machine=int(d["n_machine"]), data=d.get("data", ""))


def load_heads() -> dict[str, Head]:
    try:
        raw = json.loads(files("kansa.provenance.detect").joinpath("calibration.json")
                         .read_text(encoding="utf-8"))
        return {lang: Head.from_dict(lang, d) for lang, d in raw["languages"].items()}
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DetectError(f"the detector's calibration file is unreadable: {e}") from e


def fit_logistic(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], l2: float = 1.0,
                 iters: int = 50) -> tuple[npt.NDArray[np.float64], float]:
    """L2-regularised logistic regression by Newton's method on standardised ``x``
    (no intercept penalty). Returns (coef, intercept)."""
    n, k = x.shape
    a = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(k + 1)
    reg = np.full(k + 1, l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        g = a.T @ (p - y) + reg * w
        h = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg) + 1e-9 * np.eye(k + 1)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:k], float(w[k])
