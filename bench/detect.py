"""Detection benchmark: AUROC and TPR at 1% / 5% FPR per language and generator on the
validation split, and throughput on this machine.

Inputs: the feature files bench/detect_score.py wrote (features are the model's, so the
head in calibration.json is applied here without re-running the model), and the shipped
calibration.json (fitted on the calibration split only by bench/detect_fit.py).
TPR is measured at the shipped thresholds (set at 1% / 5% FPR on calibration human text);
the FPR those thresholds give on validation human text is printed beside them.
AUROC has a bootstrap 95% interval. Zero-shot single features (no fitting) are also
reported on all scored texts of both splits.

    python bench/detect.py --features /tmp/detect_feat_en.jsonl /tmp/detect_feat_ja.jsonl \
        --throughput 20
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from kansa.provenance.detect.features import FEATURES, Features
from kansa.provenance.detect.head import load_heads

GOALS = ("goals: Fast-DetectGPT's published AUROC on GPT-4 text 0.907 / 0.961 / 0.850 "
         "(news / writing / medical QA; those sets are held out: the figures here are on "
         "open generators, not GPT-4); Japanese AUROC >= 0.9; TPR >= 80% at 5% FPR; "
         "throughput >= 5 texts/s of 200 tokens (English)")


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    ranks = allv.argsort().argsort() + 1.0
    # average ranks for ties
    for v in np.unique(allv):
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def auroc_ci(pos: np.ndarray, neg: np.ndarray, reps: int = 500) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    vals = [auroc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(reps)]
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def _feat(r: dict) -> Features:
    return Features(tokens=r["tokens"], **{f: r[f] for f in FEATURES})


def report(rows: list[dict]) -> None:
    heads = load_heads()
    for r in rows:
        h = heads.get(r["language"])
        r["score"] = h.score(_feat(r)) if h else float("nan")
    print(GOALS)
    print("\n== head on the validation split (thresholds from the calibration split)")
    print(f"{'language':8} {'group':34} {'n_mach':>6} {'n_hum':>5} {'AUROC':>6} "
          f"{'95% CI':>13} {'TPR@1%':>7} {'TPR@5%':>7} {'FPR@1%':>7} {'FPR@5%':>7}")
    for lang in sorted({r["language"] for r in rows}):
        h = heads[lang]
        val = [r for r in rows if r["language"] == lang and r["split"] == "val"]
        hum_all = np.array([r["score"] for r in val if r["label"] == 0])
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in val:
            if r["label"] == 1:
                groups["all"].append(r)
                groups[r["generator"]].append(r)
                if lang == "en":
                    groups["domain:" + r["domain"]].append(r)
        for g, ms in groups.items():
            mach = np.array([r["score"] for r in ms])
            if lang == "en" and g != "all":  # the human texts paired with these
                key = "generator" if not g.startswith("domain:") else "domain"
                want = g.removeprefix("domain:")
                hum = np.array([r["score"] for r in val if r["label"] == 0 and r[key] == want])
            else:
                hum = hum_all
            t1, t5 = h.thresholds["0.01"], h.thresholds["0.05"]
            lo, hi = auroc_ci(mach, hum)
            print(f"{lang:8} {g[:34]:34} {len(mach):6d} {len(hum):5d} {auroc(mach, hum):6.3f} "
                  f" [{lo:.2f}, {hi:.2f}] {(mach >= t1).mean():7.0%} {(mach >= t5).mean():7.0%} "
                  f"{(hum >= t1).mean():7.0%} {(hum >= t5).mean():7.0%}")
    print("\n== zero-shot single features, AUROC on all scored texts (no fitting; sign "
          "chosen so machine is higher: ll, fdg, lrr up; logrank, entropy down)")
    sign = {"ll": 1, "logrank": -1, "entropy": -1, "fdg": 1, "lrr": 1}
    for lang in sorted({r["language"] for r in rows}):
        sel = [r for r in rows if r["language"] == lang]
        pos = [r for r in sel if r["label"] == 1]
        neg = [r for r in sel if r["label"] == 0]
        cells = []
        for f in FEATURES:
            a = auroc(np.array([sign[f] * r[f] for r in pos]),
                      np.array([sign[f] * r[f] for r in neg]))
            cells.append(f"{f}={a:.3f}")
        print(f"{lang}: n_machine={len(pos)} n_human={len(neg)} {' '.join(cells)}")


def throughput(n: int) -> None:
    from kansa.provenance.detect.detector import Detector

    det = Detector()
    base = ("The committee met on Thursday to review the annual budget and the plans for "
            "the coming year, including repairs to the old bridge and new hours for the "
            "public library. ")
    texts = {"en": base * 12,
             "ja": "本日の会議では、来年度の予算案と橋の補修計画、図書館の開館時間について議論が"
                   "行われました。" * 12}
    for lang, text in texts.items():
        det.score(text)  # load the model
        t = time.perf_counter()
        toks = 0
        for i in range(n):
            r = det.score(text + f" {i}")
            toks += r.tokens
        dt = time.perf_counter() - t
        print(f"throughput {lang} ({r.model}): {n / dt:.2f} texts/s, {toks / n:.0f} tokens "
              f"scored per text, threads={os.environ.get('KANSA_DETECT_THREADS', '1')}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", nargs="+", required=True)
    ap.add_argument("--throughput", type=int, default=0, help="texts to time per language")
    a = ap.parse_args()
    rows = [json.loads(line) for p in a.features
            for line in Path(p).read_text(encoding="utf-8").splitlines()]
    report(rows)
    if a.throughput:
        print()
        throughput(a.throughput)


if __name__ == "__main__":
    main()
