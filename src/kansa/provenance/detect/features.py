"""Zero-shot features of one text under one model, from the full next-token distributions.

For each scored position t (the token x_t given x_<t), with log-probabilities log p(.):

* ``ll``      mean log p(x_t): machine text sits in the model's high-likelihood region;
* ``logrank`` mean log rank of x_t (1 = the model's top choice; GLTR / DetectGPT);
* ``entropy`` mean entropy of the next-token distribution;
* ``fdg``     Fast-DetectGPT's analytic sampling discrepancy (Bao et al., ICLR 2024) with
              the same model as sampler and scorer:
              (sum_t log p(x_t) - sum_t mu_t) / sqrt(sum_t s2_t), where mu_t and s2_t are
              the mean and variance of log p(X) for X ~ p(.|x_<t), computed exactly from
              the distribution (no sampling, no perturbation model);
* ``lrr``     log-likelihood / log-rank ratio (Su et al., 2023): -ll / logrank.

A Binoculars-style cross-perplexity needs two models sharing one tokenizer; SmolLM2 and
Gemma-3 do not, so it is not computed (docs/design/detection.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["FEATURES", "Accumulator", "Features"]

FEATURES = ("ll", "logrank", "entropy", "fdg", "lrr")


@dataclass(frozen=True)
class Features:
    tokens: int  # scored positions
    ll: float
    logrank: float
    entropy: float
    fdg: float
    lrr: float

    def vector(self) -> list[float]:
        return [getattr(self, f) for f in FEATURES]

    def as_dict(self) -> dict[str, float | int]:
        return {"tokens": self.tokens, **{f: round(getattr(self, f), 6) for f in FEATURES}}


class Accumulator:
    """Add blocks of logits (rows predicting the next observed tokens); read the features."""

    def __init__(self) -> None:
        self.n = 0
        self.sum_ll = 0.0
        self.sum_logrank = 0.0
        self.sum_mu = 0.0
        self.sum_var = 0.0

    def add(self, logits: npt.NDArray[np.float32], observed: npt.NDArray[np.int64]) -> None:
        # float32 and three reductions per row (a 262k vocabulary makes float64 temporaries
        # and repeated passes the cost of scoring): with y = x - max, e = exp(y),
        # Z = sum e: log p = y - log Z, mu = sum(e y)/Z - log Z,
        # E[(log p)^2] = sum(e y^2)/Z - 2 log Z sum(e y)/Z + (log Z)^2
        y = np.array(logits, dtype=np.float32, copy=True)
        y -= y.max(axis=1, keepdims=True)
        idx = np.arange(y.shape[0])
        y_obs = y[idx, observed].copy()
        rank = 1 + (y > y_obs[:, None]).sum(axis=1)
        e = np.exp(y)
        s0 = e.sum(axis=1, dtype=np.float64)
        ey = e * y
        s1 = ey.sum(axis=1, dtype=np.float64)
        s2 = np.einsum("ij,ij->i", ey, y, dtype=np.float64)
        logz = np.log(s0)
        e1 = s1 / s0
        mu = e1 - logz
        m2 = s2 / s0 - 2.0 * logz * e1 + logz * logz
        lp_obs = y_obs.astype(np.float64) - logz
        self.n += y.shape[0]
        self.sum_ll += float(lp_obs.sum())
        self.sum_logrank += float(np.log(rank).sum())
        self.sum_mu += float(mu.sum())
        self.sum_var += float(np.maximum(m2 - mu * mu, 0.0).sum())

    def features(self) -> Features:
        n = max(self.n, 1)
        ll = self.sum_ll / n
        logrank = self.sum_logrank / n
        fdg = (self.sum_ll - self.sum_mu) / math.sqrt(self.sum_var) if self.sum_var > 0 else 0.0
        lrr = -ll / logrank if logrank > 1e-9 else 0.0
        return Features(tokens=self.n, ll=ll, logrank=logrank, entropy=-self.sum_mu / n,
                        fdg=fdg, lrr=lrr)
