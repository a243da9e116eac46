"""Compute the detector's features for the development set (bench/detect_data.py's output).

Resumable: ids already in ``--out`` are skipped; ``--seconds`` bounds the run. Texts are
taken round-robin over labels, then (domain, generator) cells, so a bounded run stays balanced.

    python bench/detect_score.py --data /tmp/detect_dev.jsonl --lang en \
        --out /tmp/detect_feat_en.jsonl --seconds 2400
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from kansa.provenance.detect.langid import MODEL_FOR
from kansa.provenance.detect.runtime import Model
from kansa.provenance.detect.scoring import text_features


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--lang", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=3600)
    a = ap.parse_args()
    done = set()
    if Path(a.out).exists():
        done = {json.loads(line)["id"]
                for line in Path(a.out).read_text(encoding="utf-8").splitlines()}
    rows = [json.loads(line) for line in Path(a.data).read_text(encoding="utf-8").splitlines()]
    cells: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for r in rows:
        if r["language"] == a.lang and r["id"] not in done:
            cells[(r["domain"], r["generator"], r["label"])].append(r)
    def round_robin(queues: list[list[dict]]) -> list[dict]:
        out = []
        while any(queues):
            for q in queues:
                if q:
                    out.append(q.pop(0))
        return out

    # human and machine alternate, and within each the cells take turns
    by_label = [round_robin([cells[k] for k in sorted(cells) if k[2] == lab])
                for lab in (0, 1)]
    order = round_robin(by_label)
    model = Model(MODEL_FOR[a.lang])
    t0 = time.monotonic()
    n = 0
    with open(a.out, "a", encoding="utf-8") as f:
        for r in order:
            if time.monotonic() - t0 > a.seconds:
                break
            t = time.monotonic()
            feats, trunc = text_features(model, r["text"])
            f.write(json.dumps({**{k: r[k] for k in ("id", "label", "language", "domain",
                                                     "generator", "split")},
                                **feats.as_dict(), "truncated": trunc,
                                "seconds": round(time.monotonic() - t, 3)}) + "\n")
            f.flush()
            n += 1
    print(f"{n} texts scored in {time.monotonic() - t0:.0f} s -> {a.out}")


if __name__ == "__main__":
    main()
