#!/usr/bin/env python
"""kansa evidence-report benchmark: figures printed beside their target, never asserted.

Builds (or reuses) a SQLite ledger of N gateway-like records spread over 2025-06 ..
2027-03, replays it under every bundled pack version (stored findings and tallies, as
'kansa replay' does), then times what 'kansa report evidence' does after that:

  collect   gather counts (per-day tallies), failing examples and their receipts,
            supplied evidence and the signed checkpoint
  document  lay the facts out as a Document, in English and in Japanese
  html      render both as HTML
  pdf       render both as PDF (the Japanese font embedded as a subset)

Target (issue #4): report generation for 10^6 records <= 60 s (collect + both languages,
both formats). The replay is timed too but is not part of the report: it is the one pass
over the records that every later report reuses.

    .venv/bin/python bench/report.py                    # 10^6 records
    .venv/bin/python bench/report.py --records 100000   # quick
    .venv/bin/python bench/report.py --store sqlite:///PATH   # an existing ledger

The ledger is kept in bench/out/report-<N>.db and reused when it holds N records
(``--fresh`` rebuilds it). Results are also written to bench/out/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import kansa  # noqa: E402
from _build import append_in_chunks  # noqa: E402 (bench/ is on sys.path)
from kansa.ledger.note import Signer  # noqa: E402
from kansa.policy.bundled import bundled_packs  # noqa: E402
from kansa.policy.findings_store import FindingStore  # noqa: E402
from kansa.policy.replay import replay  # noqa: E402
from kansa.report.evidence import collect_evidence, evidence_document  # noqa: E402
from kansa.report.evidence_supply import supply_evidence  # noqa: E402
from kansa.report.render_html import render_html  # noqa: E402
from kansa.report.render_pdf import render_pdf  # noqa: E402

OUT = ROOT / "bench" / "out"
START = datetime(2025, 6, 1, tzinfo=UTC)
END = datetime(2027, 4, 1, tzinfo=UTC)
TARGET_S = 60.0
JURISDICTIONS = ["JP", "EU", "KR", "CN", "US-CA", "US-CO", "INTL"]
SYSTEMS: dict[str, dict[str, Any]] = {
    "support-bot": {"roles": ["deployer"], "placed_on_market": date(2025, 3, 1),
                    "generative": True, "monthly_users": 2_500_000},
    "hr-screener": {"roles": ["deployer"], "placed_on_market": date(2026, 9, 1),
                    "high_risk": True, "high_impact": True, "generative": False},
    "image-studio": {"roles": ["provider", "deployer"], "placed_on_market": date(2025, 11, 15),
                     "generative": True, "monthly_users": 1_200_000},
    "foundation-api": {"roles": ["provider", "developer"], "placed_on_market": date(2025, 8, 1),
                       "gpai": True, "generative": True, "training_flops": 3e25},
}
for _facts in SYSTEMS.values():
    _facts["jurisdictions"] = JURISDICTIONS


def make_records(n: int, seed: int = 9) -> Iterator[dict[str, Any]]:
    """Records in time order; most comply, some lack a disclosure, label or token count."""
    rnd = random.Random(seed)
    names = list(SYSTEMS)
    span = (END - START).total_seconds()
    for i in range(n):
        system = rnd.choices(names, [0.5, 0.1, 0.2, 0.2])[0]
        ts = START + timedelta(seconds=span * (i + rnd.random()) / n)
        outcome = rnd.choices(["ok", "error", "blocked"], [0.95, 0.04, 0.01])[0]
        r: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "system": system,
            "kind": "gen_ai.call", "outcome": outcome, "app": f"{system}-web",
            "gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat",
            "gen_ai.request.model": rnd.choice(["gpt-4o-mini", "gpt-4.1"]),
            "latency_ms": rnd.randrange(80, 9000),
        }
        if rnd.random() < 0.97:
            r["gen_ai.usage.input_tokens"] = rnd.randrange(10, 4000)
            r["gen_ai.usage.output_tokens"] = rnd.randrange(1, 2000)
        attrs: dict[str, Any] = {"kansa.ai_disclosure": rnd.random() < 0.97,
                                 "kansa.output.modality": "text"}
        if system == "image-studio":
            attrs["kansa.output.modality"] = "image"
            attrs["kansa.output.label.visible"] = rnd.random() < 0.9
            if rnd.random() < 0.93:
                attrs["kansa.output.label.machine_readable"] = ["c2pa"]
        if system == "hr-screener":
            attrs["kansa.decision.consequential"] = rnd.random() < 0.7
            attrs["kansa.decision.notice_given"] = rnd.random() < 0.95
        r["attributes"] = attrs
        yield r


def signer_for(url: str) -> Signer:
    """One signing key per bench ledger, kept beside it: the report appends (supplied
    evidence) and signs checkpoints after the ledger was built."""
    key = OUT / f"report-{abs(hash(url.split('?')[0])) % 10**8}.skey" if not \
        url.startswith("sqlite:///") else Path(url[len("sqlite:///"):] + ".skey")
    if key.exists():
        return Signer.parse(key.read_text().strip())
    s = Signer.generate("bench.kansa/report")
    key.write_text(s.skey + "\n")
    return s


def open_ledger(url: str) -> kansa.Ledger:
    return kansa.Ledger.open(url, signer=signer_for(url), master_key=b"b" * 32,
                             checkpoint_interval=5.0)


def build(url: str, n: int) -> float:
    """Append n records unless the store already holds n or more; returns seconds."""
    with open_ledger(url) as lg:
        if lg.log.store.size() >= n:
            return 0.0
        if lg.log.store.size():
            raise SystemExit(f"{url} holds {lg.log.store.size()} records, fewer than {n}: "
                             "use --fresh")
        t0 = time.perf_counter()
        append_in_chunks(lg, make_records(n), n)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--store", help="store URL (default: SQLite bench/out/report-<N>.db)")
    ap.add_argument("--fresh", action="store_true", help="rebuild the default SQLite ledger")
    ap.add_argument("--examples", type=int, default=3, help="failing examples per obligation")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    url = args.store
    if url is None:
        db = OUT / f"report-{args.records}.db"
        if args.fresh:
            for suffix in ("", "-wal", "-shm", ".skey"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db}"
    packs = bundled_packs()
    figures: dict[str, Any] = {"records": args.records, "store": url.split("?")[0],
                               "packs": len(packs),
                               "obligations": sum(len(p.obligations) for p in packs),
                               "cpus": os.cpu_count(), "load_1_5_15": os.getloadavg(),
                               "python": platform.python_version()}
    print(f"{args.records:,} records, {len(packs)} bundled pack versions, "
          f"{figures['obligations']} obligations; store {figures['store']}")
    figures["build_s"] = build(url, args.records)
    with open_ledger(url) as lg:
        fs = FindingStore(lg.log.store)
        if not fs.runs():
            t0 = time.perf_counter()
            res = replay(lg, packs, systems=SYSTEMS)
            figures["replay_s"] = time.perf_counter() - t0
            print(f"replay: {res.records:,} records in {figures['replay_s']:.1f} s "
                  f"({res.records / figures['replay_s']:,.0f}/s), {res.stored:,} failing "
                  "findings stored")
            with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as f:
                f.write("# AI use policy\n")
            # one piece of supplied evidence (its bytes are appended after the replay)
            evidence_pack = next(p for p in packs if any(o.evidence for o in p.obligations))
            obligation = next(o for o in evidence_pack.obligations if o.evidence)
            supply_evidence(lg, pack=evidence_pack.id, obligation=obligation.id, file=f.name,
                            title="AI use policy")
            os.unlink(f.name)
        phases: dict[str, float] = {}
        t0 = time.perf_counter()
        data = collect_evidence(lg, packs, examples=args.examples)
        phases["collect"] = time.perf_counter() - t0
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for lang in ("en", "ja"):
            t0 = time.perf_counter()
            doc = evidence_document(data, lang)
            phases[f"document_{lang}"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            page = render_html(doc)
            phases[f"html_{lang}"] = time.perf_counter() - t0
            sizes[f"html_{lang}"] = len(page.encode())
            t0 = time.perf_counter()
            pdf = render_pdf(doc, Path(tmp) / f"report-{lang}.pdf")
            phases[f"pdf_{lang}"] = time.perf_counter() - t0
            sizes[f"pdf_{lang}"] = pdf.stat().st_size
    total = sum(phases.values())
    examples = sum(len(r.examples) for r in data.results)
    figures.update({"report_phases_s": phases, "report_total_s": total, "sizes": sizes,
                    "examples_with_receipts": examples,
                    "checkpoint_size": data.checkpoint.checkpoint.size})
    print(f"\nreport generation ({examples} failing examples with receipts, "
          f"{len(data.results)} obligations):")
    for name, secs in phases.items():
        print(f"  {name:<12} {secs:8.2f} s")
    ok = "OK" if total <= TARGET_S else "MISSED"
    print(f"  {'total':<12} {total:8.2f} s   target <= {TARGET_S:.0f} s  [{ok}]")
    print("  sizes: " + ", ".join(f"{k} {v / 1024:,.0f} KiB" for k, v in sizes.items()))
    (OUT / "report.json").write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
