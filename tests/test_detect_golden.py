"""The detector's runtime against an independent reference (bench/detect_golden.py: a
numpy forward pass over the GGUF). A silent numeric fault in the runtime, like
ik_llama.cpp's wrong logits for Q4_1 weights in micro-batches of 32 tokens or more,
must fail here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kansa.provenance.detect.runtime import UBATCH, Model

GOLDEN = json.loads((Path(__file__).parent / "data" / "detect_golden_smollm2.json")
                    .read_text(encoding="utf-8"))
REF = np.array(GOLDEN["logprobs"])
# measured: n_ubatch 8/16 -> corr 0.99947, mean |diff| 0.067 (activations are quantised
# to 8 bits by the runtime, not by the reference); 32/64 -> corr 0.87, mean |diff| 1.4-1.9
MIN_CORR, MAX_MEAN_DIFF = 0.998, 0.15


def _agreement(run: np.ndarray) -> tuple[float, float]:
    return float(np.corrcoef(run, REF)[0, 1]), float(np.abs(run - REF).mean())


@pytest.fixture(scope="module")
def model() -> Model:
    return Model(GOLDEN["model"])


def test_the_runtime_tokenises_the_golden_text_as_the_golden_file(model: Model) -> None:
    assert model.tokenize(GOLDEN["text"]) == GOLDEN["tokens"]
    assert len(REF) == len(GOLDEN["tokens"]) - 1


def test_the_runtime_matches_the_reference_log_probs(model: Model) -> None:
    assert model.ubatch == UBATCH <= 16
    corr, diff = _agreement(model.logprobs(GOLDEN["tokens"]))
    assert corr >= MIN_CORR and diff <= MAX_MEAN_DIFF, (corr, diff)


def test_the_comparison_catches_the_wide_micro_batch_fault() -> None:
    wide = Model(GOLDEN["model"], ubatch=64)
    corr, diff = _agreement(wide.logprobs(GOLDEN["tokens"]))
    wide.close()
    assert not (corr >= MIN_CORR and diff <= MAX_MEAN_DIFF), (corr, diff)


def test_gemma_in_16_token_batches_matches_token_by_token() -> None:
    """No independent reference for Gemma-3 yet (docs/design/detection.md): its batched
    path is checked against the runtime's one-token path (a different kernel), which it
    matched exactly when measured; a 64-token micro-batch drifted (mean |diff| 0.11)."""
    text = ("本日の会議では、来年度の予算案について議論が行われました。委員からは、図書館の"
            "開館時間を延長するための予算を増やすべきだという意見が多く出されました。")
    one = Model("gemma3-270m", ubatch=1)
    tokens = one.tokenize(text)
    base = one.logprobs(tokens)
    one.close()
    batched = Model("gemma3-270m")
    run = batched.logprobs(tokens)
    batched.close()
    assert len(tokens) > 30
    assert float(np.abs(run - base).mean()) <= 0.01
