"""The detector's features, head and calibration file, on numbers (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kansa.provenance.detect.features import FEATURES, Accumulator
from kansa.provenance.detect.head import fit_logistic, load_heads


def _naive(logits: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    x = logits.astype(np.float64)
    lp = x - np.logaddexp.reduce(x, axis=1, keepdims=True)
    p = np.exp(lp)
    i = np.arange(len(obs))
    ll = lp[i, obs]
    rank = 1 + (lp > ll[:, None]).sum(1)
    mu = (p * lp).sum(1)
    var = (p * lp * lp).sum(1) - mu ** 2
    return {"ll": ll.mean(), "logrank": np.log(rank).mean(), "entropy": -mu.mean(),
            "fdg": (ll.sum() - mu.sum()) / math.sqrt(var.sum())}


def test_features_match_a_float64_computation_across_blocks() -> None:
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((40, 5000)) * 4).astype(np.float32)
    obs = rng.integers(0, 5000, 40)
    acc = Accumulator()
    for s in range(0, 40, 16):  # as the runtime hands them out
        acc.add(logits[s:s + 16], obs[s:s + 16])
    f = acc.features()
    want = _naive(logits, obs)
    assert f.tokens == 40
    for k, v in want.items():
        assert getattr(f, k) == pytest.approx(v, rel=1e-4, abs=1e-4), k
    assert f.lrr == pytest.approx(-want["ll"] / want["logrank"], rel=1e-4)


def test_argmax_tokens_give_rank_one_and_a_positive_discrepancy() -> None:
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((32, 800)) * 3).astype(np.float32)
    top = Accumulator()
    top.add(logits, logits.argmax(1))
    rnd = Accumulator()
    rnd.add(logits, rng.integers(0, 800, 32))
    assert top.features().logrank == 0.0
    assert top.features().fdg > 3 > rnd.features().fdg  # the model's own choices stand out


def test_logistic_fit_separates_separable_data() -> None:
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(-1, 1, (200, 2)), rng.normal(1, 1, (200, 2))])
    y = np.r_[np.zeros(200), np.ones(200)]
    coef, b = fit_logistic((x - x.mean(0)) / x.std(0), y)
    pred = ((x - x.mean(0)) / x.std(0)) @ coef + b > 0
    assert (pred == y).mean() > 0.85 and coef[0] > 0 and coef[1] > 0


def test_the_shipped_calibration_covers_english_and_japanese() -> None:
    heads = load_heads()
    assert {"en", "ja"} <= set(heads)
    for lang, h in heads.items():
        assert h.features == FEATURES, lang
        assert h.thresholds["0.01"] >= h.thresholds["0.05"], lang
        assert len(h.human_scores) >= 20 and h.n_machine >= 20, lang
        # by construction at most 5% of the human calibration texts pass the 5% threshold
        passed = sum(s >= h.thresholds["0.05"] for s in h.human_scores)
        assert passed <= 0.05 * len(h.human_scores), lang
        assert h.p_human(1.0) < h.p_human(0.0) == 1.0
