"""Fit the detector's head per language on the calibration split; write calibration.json.

Reads bench/detect_score.py's feature files; uses rows with ``split == "cal"`` only
(bench/detect.py reports on ``val``). Thresholds: the head score that at most 1% / 5% of
the calibration human texts reach (with n human texts, the 1% threshold is the highest
human score when n < 100: say so when quoting it).

    python bench/detect_fit.py /tmp/detect_feat_en.jsonl /tmp/detect_feat_ja.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kansa.provenance.detect.features import FEATURES
from kansa.provenance.detect.head import fit_logistic
from kansa.provenance.detect.langid import MODEL_FOR

OUT = Path(__file__).resolve().parent.parent / "src/kansa/provenance/detect/calibration.json"
FPRS = ("0.01", "0.05")
DATA = {
    "en": "Fast-DetectGPT exp_main (xsum, squad, writing; gpt2-xl, opt-2.7b, gpt-neo-2.7B, "
          "gpt-j-6B, gpt-neox-20b), calibration split",
    "ja": "Japanese MT-Bench answers of six 7B models (FastChat mirror) vs. Debian "
          "documentation paragraphs (debian-reference-ja, developers-reference-ja, "
          "maint-guide-ja, aptitude-doc-ja), calibration split",
}


def threshold(human: np.ndarray, fpr: float) -> float:
    """A score (6 decimals, as stored) that at most ``fpr`` of the stored human scores
    reach or exceed: one millionth above the (k+1)-th highest, k = floor(fpr * n)."""
    s = np.sort(np.round(human, 6))[::-1]
    k = int(np.floor(fpr * len(s)))  # this many human texts may be at or above it
    return round(float(s[min(k, len(s) - 1)]) + 1e-6, 6)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("features", nargs="+")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--l2", type=float, default=1.0)
    a = ap.parse_args()
    rows = [json.loads(line) for p in a.features
            for line in Path(p).read_text(encoding="utf-8").splitlines()]
    langs = {}
    for lang in sorted({r["language"] for r in rows}):
        cal = [r for r in rows if r["language"] == lang and r["split"] == "cal"]
        x = np.array([[r[f] for f in FEATURES] for r in cal], dtype=np.float64)
        y = np.array([r["label"] for r in cal], dtype=np.float64)
        if len(set(y.tolist())) < 2:
            print(lang, "skipped: the calibration split lacks one class")
            continue
        mean, scale = x.mean(0), x.std(0) + 1e-9
        coef, b = fit_logistic((x - mean) / scale, y, l2=a.l2)
        z = ((x - mean) / scale) @ coef + b
        s = 1 / (1 + np.exp(-z))
        human = s[y == 0]
        langs[lang] = {
            "model": MODEL_FOR[lang], "features": list(FEATURES),
            "mean": [round(float(v), 6) for v in mean],
            "scale": [round(float(v), 6) for v in scale],
            "coef": [round(float(v), 6) for v in coef], "intercept": round(b, 6),
            "thresholds": {f: round(threshold(human, float(f)), 6) for f in FPRS},
            "human_scores": [round(float(v), 6) for v in sorted(human)],
            "n_machine": int((y == 1).sum()), "data": DATA.get(lang, ""),
        }
        print(lang, "n_human", len(human), "n_machine", int((y == 1).sum()),
              "thresholds", langs[lang]["thresholds"], "coef", langs[lang]["coef"])
    Path(a.out).write_text(json.dumps({"version": 1, "max_tokens": 200, "languages": langs},
                                      indent=1) + "\n", encoding="utf-8")
    print("->", a.out)


if __name__ == "__main__":
    main()
