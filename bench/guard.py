"""Guard benchmark: detection quality per channel and language, and latency per request.

    python bench/guard.py                 # the shipped model, bench/guard_data/*.jsonl.gz
    python bench/guard.py --model FILE    # another model file (bench/guard_train.py --out)

Quality, on the validation split (thresholds were calibrated on it) and on the held-out
split (never tuned on: BIPIA's *test* attacks inserted into documents of packages not in
training, AgentDojo's own attack templates and goals in its tool results, the s-labs and
neuralchemy test sets, Japanese from validation-only templates): AUROC, and TPR at 1% and
5% FPR where the FPR is measured on benign text *of the same channel* (benign documents
for the document channel), plus TPR/FPR at the shipped threshold.

Latency: ``GuardStage.before`` on a chat request whose user message is a 512-token text
(about 2,000 characters of English prose; and a Japanese one), p50/p99 over repeated
runs, in this process on this machine.

Targets (issue #11): in-document injection recall >= 50% at 5% FPR on benign documents
(local TF-IDF baseline: 9.5%); direct hijack recall >= 97%; Japanese within 5 points of
English; latency p50 <= 2 ms, p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from kansa.guard.injection import InjectionModel, Scanner  # noqa: E402

DATA = Path(__file__).resolve().parent / "guard_data"


def auroc(pos: list[float], neg: list[float]) -> float:
    allv = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum, i = 0.0, 0
    while i < len(allv):
        j = i
        while j < len(allv) and allv[j][0] == allv[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(1 for k in range(i, j) if allv[k][1] == 1)
        i = j
    n1, n0 = len(pos), len(neg)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0) if n1 and n0 else float("nan")


def tpr_at_fpr(pos: list[float], neg: list[float], fpr: float) -> float:
    s = sorted(neg, reverse=True)
    k = int(fpr * len(s))
    thr = s[k] + 1e-9 if k < len(s) else 0.0
    return sum(p >= thr for p in pos) / len(pos) if pos else float("nan")


def load(split: str) -> list[dict[str, Any]]:
    with gzip.open(DATA / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def quality(scanner: Scanner, split: str) -> dict[tuple[str, str], dict[str, float]]:
    rows = load(split)
    scores: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(
        lambda: ([], []))
    for r in rows:
        s = scanner.scan(r["text"], r["channel"]).score
        scores[(r["channel"], r["lang"])][0 if r["label"] else 1].append(s)
    # direct hijacks: the held-out neuralchemy rows its card labels as direct injection or
    # instruction override (attacks that try to take over the model from the user turn)
    hij = [scanner.scan(r["text"], "user") for r in rows if r["source"] in
           ("neuralchemy:direct_injection", "neuralchemy:instruction_override")]
    out: dict[tuple[str, str], dict[str, float]] = {}
    if hij:
        neg = scores[("user", "en")][1]  # benign English user prompts
        pos = [r.score for r in hij]
        out[("hijack", "en")] = {
            "n_attack": len(hij), "n_benign": len(neg), "auroc": auroc(pos, neg),
            "tpr@1%": tpr_at_fpr(pos, neg, 0.01), "tpr@5%": tpr_at_fpr(pos, neg, 0.05),
            "tpr@thr": sum(r.flagged for r in hij) / len(hij),
            "fpr@thr": sum(n >= scanner.thresholds["user"] for n in neg) / len(neg)}
    for key in sorted(scores):
        pos, neg = scores[key]
        thr = scanner.thresholds[key[0]]
        out[key] = {
            "n_attack": len(pos), "n_benign": len(neg), "auroc": auroc(pos, neg),
            "tpr@1%": tpr_at_fpr(pos, neg, 0.01), "tpr@5%": tpr_at_fpr(pos, neg, 0.05),
            "tpr@thr": sum(p >= thr for p in pos) / len(pos) if pos else float("nan"),
            "fpr@thr": sum(n >= thr for n in neg) / len(neg) if neg else float("nan")}
    return out


def latency(runs: int) -> dict[str, tuple[float, float]]:
    """p50/p99 milliseconds per language, wall-clock and this thread's CPU time."""
    from kansa.capture.pipeline import Call
    from kansa.capture.shapes import CallInfo
    from kansa.guard.stage import GuardConfig, GuardStage

    en = ("The quarterly report describes how the operations team migrated the billing "
          "service to the new cluster, which reduced the average response time by a third. "
          "Remaining work includes updating the runbooks, retiring the old database "
          "replicas and reviewing the alert thresholds with the on-call engineers. ") * 6
    ja = ("第3四半期の報告では、運用チームが請求サービスを新しいクラスタに移行し、平均応答時間が"
          "3分の1短縮されたことを説明しています。残りの作業として、手順書の更新、古いデータベースの"
          "レプリカの廃止、アラートのしきい値の見直しがあります。") * 6
    stage = GuardStage(GuardConfig())
    out = {}
    for name, text in (("en", en[:2000]), ("ja", ja[:700])):
        req = {"model": "m", "messages": [{"role": "system", "content": "You are helpful."},
                                          {"role": "user", "content": text}]}
        info = CallInfo(system="bench", provider="openai", operation="chat", request=req)
        for _ in range(50):  # warm: the model loads, the word cache fills
            stage.before(Call("gateway", info=info))
        wall, cpu = [], []
        for _ in range(runs):
            call = Call("gateway", info=info)
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            stage.before(call)
            cpu.append((time.thread_time_ns() - c0) / 1e6)
            wall.append((time.perf_counter_ns() - t0) / 1e6)
        for kind, times in (("wall", wall), ("cpu", cpu)):
            times.sort()
            out[f"{name} {kind}"] = (statistics.median(times),
                                     times[int(0.99 * len(times)) - 1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--no-latency", action="store_true")
    a = ap.parse_args()
    scanner = Scanner(InjectionModel.load(a.model)) if a.model else Scanner()
    print("thresholds:", {c: round(t, 4) for c, t in scanner.thresholds.items()})
    results = {}
    for split in ("val", "heldout"):
        q = quality(scanner, split)
        results[split] = q
        print(f"\n== {split} ==")
        print(f"{'channel':9s} {'lang':4s} {'attacks':>7s} {'benign':>6s} {'AUROC':>6s} "
              f"{'TPR@1%':>7s} {'TPR@5%':>7s} {'TPR@thr':>7s} {'FPR@thr':>7s}")
        for (ch, lang), m in q.items():
            print(f"{ch:9s} {lang:4s} {m['n_attack']:7d} {m['n_benign']:6d} "
                  f"{m['auroc']:6.3f} {m['tpr@1%']:7.3f} {m['tpr@5%']:7.3f} "
                  f"{m['tpr@thr']:7.3f} {m['fpr@thr']:7.3f}")
    h = results["heldout"]
    doc = h.get(("document", "en"), {})
    user = h.get(("user", "en"), {})
    print("\n== targets (held-out split) ==")
    print(f"in-document injection recall @5% FPR on benign documents (en): "
          f"{doc.get('tpr@5%', float('nan')):.1%}   target >= 50%  (local baseline 9.5%)")
    hij = h.get(("hijack", "en"), {})
    print(f"direct hijack recall (neuralchemy test: direct_injection + instruction_override, "
          f"n={hij.get('n_attack', 0)}) @ shipped user threshold: "
          f"{hij.get('tpr@thr', float('nan')):.1%}; @1% FPR on benign user prompts "
          f"{hij.get('tpr@1%', float('nan')):.1%}   target >= 97%")
    print(f"all user-channel attacks (en: s-labs + neuralchemy test, jailbreaks included) @ "
          f"shipped threshold: {user.get('tpr@thr', float('nan')):.1%} (FPR "
          f"{user.get('fpr@thr', 0):.1%}); @5% FPR {user.get('tpr@5%', float('nan')):.1%}")
    for ch in ("user", "document"):
        en, ja = h.get((ch, "en")), h.get((ch, "ja"))
        if en and ja:
            print(f"Japanese vs English, {ch} TPR@5%: ja {ja['tpr@5%']:.1%} vs en "
                  f"{en['tpr@5%']:.1%} (gap {(en['tpr@5%'] - ja['tpr@5%']) * 100:+.1f} "
                  "points)   target gap <= 5 points")
    if not a.no_latency:
        import os

        lat = latency(a.runs)
        print("\n== latency added per request (GuardStage.before, one 512-token user "
              "message + system prompt) ==")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: wall time "
              "includes waiting for a core; cpu is this thread's own time")
        for name, (p50, p99) in lat.items():
            print(f"{name}: p50 {p50:.2f} ms (target <= 2 ms), p99 {p99:.2f} ms "
                  "(target <= 10 ms)")


if __name__ == "__main__":
    main()
