#!/usr/bin/env python
"""kansa rule-pack benchmarks: figures printed beside their targets, never asserted.

Builds (or reuses) a ledger of gateway-like records spread over 2025-06 .. 2027-03, so
that different pack versions and transitions apply, then measures in one run, on the
same store:

  scan     a plain scan of the stored records: read + JSON decode, nothing else (the
           physical limit of a replay)
  replay   kansa.policy.replay.replay() under every bundled pack version, with system
           facts declaring every jurisdiction, failing findings and tallies stored; first
           on empty policy tables (they are dropped first), then again (a re-run replaces
           the failing rows it finds)
  ratio    replay / scan (the faster of two scans, one before and one after the replays)
  impact   impact() between two versions of one instrument (the EU AI Act before and
           after the 2026 amendments if bundled, else the first instrument with two
           versions, else the example packs)

    .venv/bin/python bench/rules.py                     # 10^6 records, SQLite
    .venv/bin/python bench/rules.py --records 100000    # quick
    .venv/bin/python bench/rules.py --store postgresql://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/rules.py --packs DIR         # packs from DIR instead

The SQLite ledger is kept in bench/out/rules-<N>.db and reused when it holds N records
(``--fresh`` rebuilds it). A PostgreSQL store given with --store is reused the same way;
give one that holds nothing else: the bench drops its policy tables.
Results are also written as JSON to bench/out/rules.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import kansa  # noqa: E402
from _build import append_in_chunks  # noqa: E402 (bench/ is on sys.path)
from kansa.ledger.note import Signer  # noqa: E402
from kansa.policy.bundled import bundled_packs, example_pack_files  # noqa: E402
from kansa.policy.findings_store import FindingStore  # noqa: E402
from kansa.policy.impact import impact  # noqa: E402
from kansa.policy.pack import Pack, load_pack  # noqa: E402
from kansa.policy.replay import replay  # noqa: E402

OUT = ROOT / "bench" / "out"
START = datetime(2025, 6, 1, tzinfo=UTC)
END = datetime(2027, 4, 1, tzinfo=UTC)
JURISDICTIONS = ["JP", "EU", "KR", "CN", "US-CA", "US-CO", "INTL"]

# name -> (facts, models, share of records); every system is offered everywhere so that
# every bundled pack applies somewhere
SYSTEMS: dict[str, tuple[dict[str, Any], list[str], float]] = {
    "support-bot": ({"roles": ["deployer"], "placed_on_market": "2025-03-01",
                     "generative": True, "monthly_users": 2_500_000},
                    ["gpt-4o-mini", "claude-haiku-4-5"], 0.40),
    "hr-screener": ({"roles": ["deployer"], "placed_on_market": "2026-09-01",
                     "high_risk": True, "high_impact": True, "generative": False},
                    ["gpt-4o"], 0.10),
    "image-studio": ({"roles": ["provider", "deployer"], "placed_on_market": "2025-11-15",
                      "generative": True, "monthly_users": 1_200_000},
                     ["gpt-image-1", "imagen-4"], 0.15),
    "code-assist": ({"roles": ["deployer", "developer"], "placed_on_market": "2024-12-01",
                     "generative": True}, ["claude-sonnet-4-5", "gpt-4.1"], 0.20),
    "foundation-api": ({"roles": ["provider", "developer"], "placed_on_market": "2025-08-01",
                        "gpai": True, "generative": True, "training_flops": 3e25,
                        "annual_revenue_usd": 8e8}, ["in-house-xl"], 0.15),
}
PROVIDER = {"gpt": "openai", "claude": "anthropic", "imagen": "google", "in-house": "internal"}


def system_facts() -> dict[str, dict[str, Any]]:
    from datetime import date

    out = {}
    for name, (facts, models, _) in SYSTEMS.items():
        f = dict(facts, jurisdictions=JURISDICTIONS, models=models)
        f["placed_on_market"] = date.fromisoformat(f["placed_on_market"])
        out[name] = f
    return out


def make_records(n: int, seed: int = 4) -> Iterator[dict[str, Any]]:
    """Gateway-like records in time order; most comply, some lack a disclosure, a label,
    token counts or a decision notice."""
    rnd = random.Random(seed)
    names = list(SYSTEMS)
    weights = [SYSTEMS[s][2] for s in names]
    span = (END - START).total_seconds()
    for i in range(n):
        system = rnd.choices(names, weights)[0]
        model = rnd.choice(SYSTEMS[system][1])
        ts = START + timedelta(seconds=span * (i + rnd.random()) / n)
        kind = rnd.choices(["gen_ai.call", "agent.step", "tool.call"], [0.85, 0.1, 0.05])[0]
        outcome = rnd.choices(["ok", "error", "timeout", "blocked"], [0.93, 0.04, 0.02, 0.01])[0]
        r: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "system": system, "kind": kind,
            "outcome": outcome, "app": f"{system}-web",
            "actor": f"svc-{rnd.randrange(20)}",
            "gen_ai.provider.name": next(p for k, p in PROVIDER.items() if model.startswith(k)),
            "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
            "gen_ai.response.model": model, "latency_ms": rnd.randrange(80, 9000),
            "status": 200 if outcome == "ok" else rnd.choice([429, 500, 504]),
        }
        if kind == "gen_ai.call" and rnd.random() < 0.97:
            r["gen_ai.usage.input_tokens"] = rnd.randrange(10, 4000)
            r["gen_ai.usage.output_tokens"] = rnd.randrange(1, 2000)
        if outcome != "ok":
            r["error.type"] = rnd.choice(["RateLimitError", "APIError", "Timeout"])
        if rnd.random() < 0.3:
            r["subject"] = f"user-{rnd.randrange(50_000)}"
        attrs: dict[str, Any] = {}
        if system != "foundation-api" and rnd.random() < 0.9:
            attrs["kansa.ai_disclosure"] = rnd.random() < 0.97
        if system == "image-studio":
            attrs["kansa.output.modality"] = rnd.choice(["image", "image", "video", "text"])
            marks = [m for m in ("c2pa", "watermark") if rnd.random() < 0.93]
            if marks:
                attrs["kansa.output.label.machine_readable"] = marks
            attrs["kansa.output.label.visible"] = rnd.random() < 0.9
            attrs["kansa.output.deepfake"] = rnd.random() < 0.03
        else:
            attrs["kansa.output.modality"] = "text"
        if system == "hr-screener":
            attrs["kansa.decision.consequential"] = rnd.random() < 0.7
            attrs["kansa.decision.notice_given"] = rnd.random() < 0.95
            attrs["kansa.output.human_review"] = rnd.random() < 0.9
        if rnd.random() < 0.001:
            attrs["kansa.incident"] = "serious"
        r["attributes"] = attrs
        yield r


def open_ledger(url: str) -> kansa.Ledger:
    return kansa.Ledger.open(url, signer=Signer.generate("bench.kansa/rules"),
                             master_key=b"r" * 32, checkpoint_interval=5.0)


def build(url: str, n: int) -> float:
    """Append n records unless the store already holds exactly n; returns seconds spent."""
    with open_ledger(url) as lg:
        size = lg.log.store.size()
        if size == n:
            return 0.0
        if size:
            raise SystemExit(f"{url} holds {size} records, not {n}: use --fresh or another "
                             "store")
        t0 = time.perf_counter()
        append_in_chunks(lg, make_records(n), n)
        return time.perf_counter() - t0


def scan(url: str) -> tuple[int, float]:
    """Read every entry through the same iterator replay uses, and decode its JSON."""
    from kansa.policy.replay import read_entries

    with open_ledger(url) as lg:
        t0 = time.perf_counter()
        n = sum(1 for _ in read_entries(lg, None, None))
        return n, time.perf_counter() - t0


def drop_policy_tables(lg: kansa.Ledger) -> None:
    from kansa.ledger import migrations

    for table in ("policy_findings", "policy_tally", "policy_runs"):
        lg.log.store.execute(f"DROP TABLE IF EXISTS {table}")
    # step 1 creates them again (IF NOT EXISTS keeps policy_packs)
    lg.log.store.execute("DELETE FROM kansa_migrations WHERE component = 'policy'")
    migrations.forget(lg.log.store)


def pick_impact_pair(packs: list[Pack]) -> tuple[Pack, Pack]:
    by_id: dict[str, list[Pack]] = {}
    for p in packs:
        by_id.setdefault(p.id, []).append(p)
    multi = {k: sorted(v, key=lambda p: p.effective_from) for k, v in by_id.items()
             if len(v) >= 2}
    for key in sorted(multi, key=lambda k: ("eu" not in k.lower(), k)):
        return multi[key][0], multi[key][-1]
    a, b = (load_pack(f) for f in example_pack_files())
    return a, b


def machine_state() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "load_1_5_15": [round(x, 2) for x in load],
            "python": platform.python_version(), "platform": platform.platform()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--store", help="store URL (default: SQLite bench/out/rules-<N>.db)")
    ap.add_argument("--packs", type=Path, help="a directory of pack files instead of the "
                    "bundled packs")
    ap.add_argument("--fresh", action="store_true", help="rebuild the SQLite ledger")
    ap.add_argument("--no-memo", action="store_true", help="judge every record afresh")
    args = ap.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    url = args.store
    if url is None:
        path = OUT / f"rules-{args.records}.db"
        if args.fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    if args.packs:
        packs = [load_pack(p) for p in sorted(args.packs.glob("*.yaml"))]
        source = str(args.packs)
    else:
        packs = bundled_packs()
        source = "bundled"
    if not packs:
        raise SystemExit("no packs to judge under (none bundled yet?): pass --packs DIR")
    n_obl = sum(len(p.obligations) for p in packs)
    print(f"packs: {len(packs)} versions ({source}), {n_obl} obligations; "
          f"machine: {machine_state()}", file=sys.stderr)

    built = build(url, args.records)
    if built:
        print(f"built {args.records:,} records in {built:.1f} s "
              f"({args.records / built:,.0f}/s)", file=sys.stderr)
    n_scan, t_scan = scan(url)
    with open_ledger(url) as lg:
        drop_policy_tables(lg)
        res = replay(lg, packs, systems=system_facts(), memo=not args.no_memo)
        again = replay(lg, packs, systems=system_facts(), memo=not args.no_memo)
        if again.digest != res.digest:
            raise SystemExit("the re-run gave another digest: replay is not deterministic")
        a, b = pick_impact_pair(packs)
        t0 = time.perf_counter()
        rep = impact(lg, a, b, systems=system_facts())
        t_impact = time.perf_counter() - t0
        tally_rows = len(FindingStore(lg.log.store).tally(run=res.run_id))
    n_scan2, t_scan2 = scan(url)
    n_scan_rate = max(n_scan / t_scan, n_scan2 / t_scan2)
    rate = res.records / res.seconds
    rate2 = again.records / again.seconds
    rows = [
        ("scan (read + JSON decode), before", f"{n_scan:,}", f"{t_scan:.2f}",
         f"{n_scan / t_scan:,.0f}", ""),
        ("scan (read + JSON decode), after", f"{n_scan2:,}", f"{t_scan2:.2f}",
         f"{n_scan2 / t_scan2:,.0f}", ""),
        ("replay, all packs, stored (empty policy tables)", f"{res.records:,}",
         f"{res.seconds:.2f}", f"{rate:,.0f}", ">= 20,000"),
        ("replay again (replaces the stored failing rows)", f"{again.records:,}",
         f"{again.seconds:.2f}", f"{rate2:,.0f}", ">= 20,000"),
        ("replay / scan (first replay, faster scan)", "", "", f"{rate / n_scan_rate:.2f}", ""),
        (f"impact {a.ref} -> {b.ref}", f"{rep.records:,}", f"{t_impact:.2f}",
         f"{rep.records / t_impact:,.0f}", ""),
    ]
    print(f"\n{'measure':<58} {'records':>10} {'seconds':>8} {'records/s':>10}  target")
    for name, n, s, r, t in rows:
        print(f"{name:<58} {n:>10} {s:>8} {r:>10}  {t}")
    print(f"\nfindings judged {res.findings:,} ({dict(sorted(res.verdicts.items()))}); "
          f"failing rows stored {res.stored:,}; tally rows {tally_rows:,}")
    print(f"impact: {len(rep.records_changed):,} records change verdict, "
          f"{len(rep.changes):,} changes")
    print(f"digest {res.digest}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"peak RSS of this process: {rss} MiB; machine after: {machine_state()}")
    result = {
        "when": datetime.now(UTC).isoformat(), "store": url.split("?")[0],
        "records": res.records, "packs": len(packs), "pack_source": source,
        "obligations": n_obl, "scan_per_s": round(n_scan_rate),
        "replay_per_s": round(rate), "replay_again_per_s": round(rate2),
        "ratio": round(rate / n_scan_rate, 3),
        "replay_seconds": round(res.seconds, 2), "findings": res.findings,
        "stored": res.stored, "tally_rows": tally_rows, "impact": [a.ref, b.ref],
        "impact_per_s": round(rep.records / t_impact), "impact_changes": len(rep.changes),
        "digest": res.digest, "memo": not args.no_memo, "machine": machine_state(),
        "peak_rss_mib": rss,
        "run": uuid.uuid4().hex,
    }
    with (OUT / "rules.json").open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
