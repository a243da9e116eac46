"""``kansa demo``: the whole flow on the embedded SQLite store, narrated step by step.

The demo tells one scenario on a fixed clock (:data:`SCENARIO_NOW`), so it shows the same
story on any day: its calls happen inside the EU Digital Omnibus's Art. 50(2) grace period
(to 2 Dec 2026), which is what makes the "a law changes" step show verdicts changing.
``kansa demo --now today`` (or any ISO time) replays the story at another moment; after
the grace period the update changes nothing, and the demo says so.
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from kansa.api import Ledger
from kansa.cli._common import Column, fit_table
from kansa.errors import VerificationError
from kansa.records.attributes import (
    ERROR_TYPE,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_TOOL_CALL_ARGUMENTS,
    GEN_AI_TOOL_NAME,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    KANSA_AI_DISCLOSURE,
    KANSA_OUTPUT_LABEL_MACHINE_READABLE,
    KANSA_OUTPUT_MODALITY,
)

_SYSTEMS = [
    # system, provider, model, operation
    ("support-bot", "openai", "gpt-4o-mini", "chat"),
    ("support-bot", "anthropic", "claude-sonnet-4", "chat"),
    ("hr-screening", "openai", "gpt-4.1", "chat"),
    ("code-assistant", "anthropic", "claude-opus-4", "chat"),
    ("search-rag", "openai", "text-embedding-3-small", "embeddings"),
    ("marketing-images", "openai", "gpt-image-1", "image_generation"),
]
_PROMPTS = [
    ("注文番号 A-1042 の配送状況を教えてください。", "ご注文 A-1042 は本日発送済みです。"),
    ("返品の手続きはどうすればいいですか？", "マイページの「注文履歴」から返品を申請できます。"),
    ("Where is my order A-1042?", "Your order A-1042 shipped today."),
    ("この履歴書を要約して、職務経験を三行で。",
     "営業職 5 年、チームリーダー経験、英語は業務レベル。"),
    ("Refactor this function to avoid the N+1 query.", "Use select_related('author') ..."),
    ("個人情報を含むログを削除してください。", "承知しました。削除手順をご案内します。"),
]
_OUTCOMES = [("ok", 200, None)] * 90 + [
    ("error", 429, "rate_limit_exceeded"),
    ("error", 500, "upstream_error"),
    ("timeout", 504, "timeout"),
    ("aborted", 499, "client_disconnected"),
    ("blocked", 403, "policy_blocked"),
]


# The scenario's "now": two weeks before the Omnibus's Art. 50(2) grace period ends.
SCENARIO_NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


def _traffic(n: int, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    """``n`` calls spread over the two hours before ``now``."""
    start = now - timedelta(hours=2)
    out = []
    for i in range(n):
        system, provider, model, op = rng.choice(_SYSTEMS)
        outcome, status, err = rng.choice(_OUTCOMES)
        prompt, answer = rng.choice(_PROMPTS)
        rec: dict[str, Any] = {
            "ts": (start + timedelta(seconds=i * 7200 / max(n, 1))).isoformat(),
            "system": system,
            "app": f"{system}-web",
            "actor": rng.choice(["svc-frontend", "svc-batch", "agent-runner"]),
            "subject": f"user-{rng.randrange(40)}",
            GEN_AI_PROVIDER_NAME: provider,
            GEN_AI_OPERATION_NAME: op,
            GEN_AI_REQUEST_MODEL: model,
            "outcome": outcome,
            "status": status,
            "latency_ms": round(rng.uniform(120, 2400), 1),
            "input": prompt,
        }
        if outcome == "ok":
            rec[GEN_AI_RESPONSE_MODEL] = model
            rec[GEN_AI_USAGE_INPUT_TOKENS] = rng.randrange(12, 900)
            rec[GEN_AI_USAGE_OUTPUT_TOKENS] = rng.randrange(5, 600)
            rec[GEN_AI_RESPONSE_FINISH_REASONS] = ["stop"]
            rec["output"] = answer
        else:
            rec[ERROR_TYPE] = err
        attrs: dict[str, Any] = {}
        if op == "chat":
            # most chat front-ends tell people they are talking to an AI; one doesn't
            attrs[KANSA_AI_DISCLOSURE] = system != "hr-screening"
        if op == "image_generation":
            attrs[KANSA_OUTPUT_MODALITY] = "image"
            # the image pipeline adds a C2PA manifest to only some of its outputs
            attrs[KANSA_OUTPUT_LABEL_MACHINE_READABLE] = ["c2pa"] if rng.random() < 0.6 \
                else []
        if attrs:
            rec["attributes"] = attrs
        if system == "code-assistant" and rng.random() < 0.3:
            rec[GEN_AI_TOOL_NAME] = "run_tests"
            rec[GEN_AI_TOOL_CALL_ARGUMENTS] = {"path": "tests/", "k": "orders"}
        out.append(rec)
    return out


def _step(console: Console, n: int, title: str) -> None:
    console.print()
    console.rule(f"[bold cyan]{n}. {title}")


def run_demo(home: Path | None, records: int, console: Console, *,
             now: datetime = SCENARIO_NOW) -> None:
    """Run every step; ``now`` is the scenario's clock (records end just before it)."""
    made_temp = home is None
    base = Path(tempfile.mkdtemp(prefix="kansa-demo-")) if home is None else home
    ledger_home = base / "home" if made_temp else base
    rng = random.Random(7)

    _step(console, 1, "Create a ledger")
    ledger = Ledger.init(ledger_home, origin="demo.kansa.local/ai-usage")
    vkey = ledger.verifier.vkey
    console.print(f"A new log [bold]{ledger.log.origin}[/] in {ledger_home}, stored in SQLite "
                  "(WAL). Its Ed25519 key signs checkpoints; this verifier key is all an "
                  "auditor needs:")
    console.print(f"  [green]{vkey}[/]", soft_wrap=True)  # one line, to copy whole

    try:
        _step(console, 2, f"Record {records} AI calls")
        traffic = _traffic(records, rng, now)
        t0 = time.perf_counter()
        with Progress(TextColumn("appending"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as prog:
            task = prog.add_task("append", total=len(traffic))
            done = ledger.append_many(traffic, progress=lambda k: prog.advance(task, k))
        secs = time.perf_counter() - t0
        cp = ledger.checkpoint()
        outcomes: dict[str, int] = {}
        for r in traffic:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        console.print(
            f"{len(done)} records (Japanese and English; "
            + ", ".join(f"{v} {k}" for k, v in sorted(outcomes.items()))
            + f") appended durably in {secs:.2f} s ({len(done) / secs:,.0f}/s). Failures, "
            "timeouts, aborted streams and blocked calls are records too."
        )
        console.print("Prompts and answers are not in the log: each entry holds a salted "
                      "SHA-256 commitment, and the content is stored beside it, encrypted "
                      "with a key per data subject. A signed checkpoint now covers "
                      f"{cp.checkpoint.size} entries.")
        columns = [Column("#", whole=True, justify="right"), Column("system"),
                   Column("model", priority=2), Column("outcome", whole=True),
                   Column("tokens", priority=3, whole=True, justify="right"),
                   Column("subject (pseudonym)", priority=1, whole=True)]
        table = fit_table(console, columns, [
            [str(rec.index), escape(rec.entry["system"]),
             escape(rec.entry.get(GEN_AI_REQUEST_MODEL, "")), rec.entry["outcome"],
             str(rec.entry.get(GEN_AI_USAGE_INPUT_TOKENS, "-")),
             rec.entry.get("subject", "")[:12] + "…"]
            for rec in ledger.find(limit=5)], title="the first records (kansa log show)").table
        console.print(table)

        _step(console, 3, "Capture live calls through the gateway")
        gateway_summary = _gateway_traffic(ledger, console, rng, now)

        _step(console, 4, "Prove one record to an auditor")
        target = done[len(done) // 2]
        receipt = ledger.prove(target.id)
        receipt_path = base / "receipt.tlog-proof"
        receipt_path.write_bytes(receipt)
        from kansa.ledger.receipt import verify_receipt

        checked = verify_receipt(receipt, ledger.verifier, None)
        console.print(f"Record {target.id} (entry {target.index}) has a C2SP tlog-proof "
                      f"receipt at {receipt_path}: {len(checked.proof)} hashes prove it is in "
                      f"the tree of size {checked.checkpoint.size} that the log signed. "
                      "Checked offline "
                      "with the verifier key alone: [green]valid[/].")

        _step(console, 5, "Erase a person (APPI / GDPR)")
        victim = traffic[target.index]["subject"]
        before = ledger.get(target.id)
        erasure = ledger.erase(victim, reason="data subject request (demo)")
        after = ledger.get(target.id)
        console.print(f"{victim}: key and salts destroyed, {erasure.contents_destroyed} "
                      f"contents deleted; the erasure is itself entry {erasure.record.index}.")
        console.print(f"  entry {target.index} content before: "
                      f"{before.content and before.content.get('input')!r}")
        console.print(f"  entry {target.index} content after:  [italic]{after.content_state}[/]")
        verify_receipt(receipt, ledger.verifier, None)
        console.print("  the receipt issued before the erasure [green]still verifies[/]: "
                      "entries never change, so no proof breaks.")

        _step(console, 6, "Export and verify offline")
        export_dir = base / "export"
        summary = ledger.export(export_dir)
        console.print(f"Wrote a C2SP tlog-tiles directory: {summary}")
        from kansa.ledger.note import Verifier
        from kansa.ledger.verify import verify_directory

        report = verify_directory(export_dir, Verifier.parse(vkey))
        console.print(f"kansa verify {export_dir} --key …: [green]✓[/] {report}. Every hash "
                      "was recomputed from the entries; nothing but the key was trusted.")

        _step(console, 7, "Tamper with the export, and get caught")
        forged = base / "export-tampered"
        shutil.copytree(export_dir, forged)
        bundle = min(p for p in (forged / "tile" / "entries").rglob("*") if p.is_file())
        data = bytearray(bundle.read_bytes())
        pos = data.find(b'"outcome":"error"')
        if pos < 0:
            pos = data.find(b'"outcome":"')
        data[pos + 11 : pos + 13] = b"ok"[:2] if data[pos + 11 : pos + 13] != b"ok" else b"no"
        bundle.write_bytes(bytes(data))
        console.print(f"Changed one record's outcome in {bundle.relative_to(forged)} (an "
                      "'error' made to look fine). Verifying again:")
        try:
            verify_directory(forged, Verifier.parse(vkey))
            console.print("[bold red]tampering was NOT detected[/]")
        except VerificationError as e:
            for p in e.problems[:3]:
                console.print(f"  [red]✗[/] {p}")
            console.print("  [green]caught[/]: the altered entry no longer matches the tree "
                          "the log signed.")

        from kansa.cli._demo_rules import run_rules_steps

        last = run_rules_steps(ledger, ledger_home, base, console, 8, now=now)
        cp = ledger.checkpoint()
    finally:
        ledger.close()

    _step(console, last, "What just happened")
    console.print(
        f"{records} AI calls, and {gateway_summary} more through the OpenAI/Anthropic-compatible "
        f"gateway, became a tamper-evident log signed by {ledger.log.origin}. One "
        "record was proven with a receipt, one person was erased without breaking any proof, "
        "and the log was exported and verified offline, catching a forged entry. The "
        "calls were judged against the EU AI Act and Japan's AI Guidelines for Business; "
        "a signed update (the EU Digital Omnibus) was verified, its impact shown record by "
        "record, and an evidence report written in Japanese and English."
    )
    console.print(f"Ledger home: {ledger_home}")
    console.print("Try next:")
    pdf = base / "report" / "evidence-ja.pdf"
    for command in (
        f"kansa log show --home {ledger_home} --limit 10 --content",
        f"kansa verify {base / 'export'} --key '{vkey}'",
        f"kansa verify-receipt {base / 'receipt.tlog-proof'} --key '{vkey}'",
        f"kansa packs list --home {ledger_home}",
        f"kansa impact --home {ledger_home} --systems {base / 'systems.yaml'} "
        "--from eu/ai-act@2024-1689 --to eu/ai-act@2026-omnibus",
        f"kansa report design --home {ledger_home} --systems {base / 'systems.yaml'} "
        f"--lang ja --out {base / 'report'}",
        _open_command(pdf),
        # the dashboard on the demo ledger: a token first (printed once), then the server
        f"kansa web token add --home {ledger_home} --role officer --name demo",
        f"kansa web --home {ledger_home}",
    ):
        # soft-wrapped: a command stays one line to copy, however narrow the terminal
        console.print(f"  {escape(command)}", soft_wrap=True)


def _open_command(path: Path, platform: str = sys.platform) -> str:
    """How to open ``path`` on this system: ``open`` on macOS, ``start`` on Windows,
    ``xdg-open`` on Linux and the other Unixes."""
    if platform == "darwin":
        return f"open {path}"
    if platform.startswith("win"):
        return f'start "" "{path}"'
    return f"xdg-open {path}"

def _gateway_traffic(ledger: Ledger, console: Console, rng: random.Random,
                     now: datetime) -> int:
    """Run a stand-in provider and the gateway in this process, send a mix of calls, and
    show that every one of them became a record. Returns the number of calls sent. The
    gateway's clock starts at the scenario's ``now`` and runs at real speed."""
    import httpx

    from kansa.capture.gateway import GatewayConfig, create_gateway_app
    from kansa.capture.standin import BackgroundServer, create_standin_app

    before = ledger.log.size()
    with BackgroundServer(create_standin_app()) as upstream:
        config = GatewayConfig.from_upstream(f"{upstream.url}/v1", read_timeout=1.0)
        started = time.monotonic()

        def scenario_clock() -> datetime:
            return now + timedelta(seconds=time.monotonic() - started)

        app = create_gateway_app(ledger, config, clock=scenario_clock)
        with BackgroundServer(app) as gw, httpx.Client(
            base_url=f"{gw.url}/v1", timeout=30
        ) as client:
            console.print(f"A stand-in provider on {upstream.url} and [bold]kansa gateway[/] "
                          f"on {gw.url}: applications change one base URL and nothing else.")
            plan: list[tuple[str, str, dict[str, Any] | bytes]] = []
            questions = ["注文 A-1042 はいつ届きますか？", "Can I change my delivery address?",
                         "領収書を再発行してください。", "What is your refund policy?"]
            for i in range(24):
                q = questions[i % len(questions)]
                msgs = [{"role": "user", "content": q}]
                if i % 3 == 0:
                    plan.append(("openai stream", "/chat/completions", {
                        "model": "gpt-4o-mini", "messages": msgs, "stream": True,
                        "stream_options": {"include_usage": True}}))
                elif i % 3 == 1:
                    plan.append(("anthropic", "/messages", {
                        "model": "claude-sonnet-4", "max_tokens": 200, "messages": msgs,
                        "stream": i % 2 == 0}))
                else:
                    plan.append(("openai", "/chat/completions",
                                 {"model": "gpt-4o-mini", "messages": msgs}))
            plan += [("upstream 500", "/chat/completions",
                      {"model": "fail-500", "messages": [{"role": "user", "content": "hi"}]}),
                     ("upstream 429", "/chat/completions",
                      {"model": "fail-429", "messages": [{"role": "user", "content": "hi"}]}),
                     ("timeout", "/chat/completions",
                      {"model": "slow", "messages": [{"role": "user", "content": "遅い"}]}),
                     ("malformed JSON", "/chat/completions", b'{"model": "gpt-4o-mini", '),
                     ("models", "/models", {})]
            rng.shuffle(plan)
            statuses: dict[str, list[int]] = {}
            record_ids = []
            for label, path, body in plan:
                if path == "/models":
                    r = client.get(path)
                elif isinstance(body, bytes):
                    r = client.post(path, content=body,
                                    headers={"content-type": "application/json"})
                else:
                    r = client.post(path, json=body)
                statuses.setdefault(label, []).append(r.status_code)
                record_ids.append(r.headers.get("x-kansa-record"))
    after = ledger.log.size()
    table = Table(title="calls sent through the gateway")
    table.add_column("kind")
    table.add_column("calls")
    table.add_column("HTTP status")
    for label, codes in sorted(statuses.items()):
        table.add_row(label, str(len(codes)), ", ".join(sorted({str(c) for c in codes})))
    console.print(table)
    recorded = [ledger.get(rid) for rid in record_ids if rid]
    outcomes: dict[str, int] = {}
    for rec in recorded:
        outcomes[rec.entry["outcome"]] = outcomes.get(rec.entry["outcome"], 0) + 1
    console.print(
        f"{len(plan)} calls sent, {after - before} new records in the ledger "
        f"({', '.join(f'{v} {k}' for k, v in sorted(outcomes.items()))}); every response "
        "named its record in the x-kansa-record header and returned only after the record "
        "was durable. Streams, upstream errors, the timeout and the malformed request are "
        "all there: "
        + ("[green]nothing is missing[/]." if after - before == len(plan) == len(recorded)
           else "[bold red]some calls are missing[/].")
    )
    return len(plan)
