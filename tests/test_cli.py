"""The kansa command line, run as a user would: real files, real store, real exit codes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kansa.api import Ledger
from kansa.cli import app

runner = CliRunner()

LINES = [
    {"ts": "2026-11-22T09:30:00Z", "system": "support-bot", "subject": "user-7",
     "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
     "gen_ai.usage.input_tokens": 31, "input": "配送状況は？", "output": "発送済みです。"},
    {"ts": "2026-11-22T09:31:00Z", "system": "hr-screening", "subject": "user-8",
     "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4",
     "outcome": "error", "status": 500, "error.type": "upstream_error", "input": "summarise"},
]


def run(*args: str, home: Path, input: str | None = None) -> tuple[int, str]:
    r = runner.invoke(app, [*args], input=input, env={"KANSA_HOME": str(home)})
    return r.exit_code, r.output


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    code, out = run("init", "--origin", "example.com/cli-log", home=h)
    assert code == 0, out
    return h


def _jsonl(tmp_path: Path, rows: list[object], name: str = "in.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)
                           for r in rows) + "\n", encoding="utf-8")
    return p


def test_key_prints_verifier_key_last(home: Path) -> None:
    code, out = run("key", home=home)
    assert code == 0
    last = out.strip().splitlines()[-1]
    assert last.startswith("example.com/cli-log+")
    assert last == (home / "log.vkey").read_text().strip()


def test_append_show_prove_verify_export_erase(home: Path, tmp_path: Path) -> None:
    code, out = run("log", "append", str(_jsonl(tmp_path, LINES)), home=home)
    assert code == 0, out
    assert "appended 2 record(s)" in out

    code, out = run("log", "show", "--json", "--content", home=home)
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["entry"]["system"] for r in rows] == ["support-bot", "hr-screening"]
    assert rows[0]["content"]["input"] == "配送状況は？"
    code, out = run("log", "show", "--json", "--system", "hr-screening", home=home)
    assert len(out.strip().splitlines()) == 1
    code, out = run("log", "show", "--json", "--subject", "user-7", home=home)
    assert json.loads(out)["entry"]["gen_ai.request.model"] == "gpt-4o-mini"
    code, out = run("log", "show", "--json", "--since", "2026-11-22T09:30:30Z", home=home)
    assert json.loads(out)["entry"]["system"] == "hr-screening"

    vkey = (home / "log.vkey").read_text().strip()
    receipt = tmp_path / "r.tlog-proof"
    code, out = run("prove", rows[1]["entry"]["id"], "-o", str(receipt), home=home)
    assert code == 0, out
    code, out = run("verify-receipt", str(receipt), "--key", vkey, home=home)
    assert code == 0, out
    assert "entry 1 is in the log example.com/cli-log" in out

    code, out = run("verify", home=home)
    assert code == 0 and "verified" in out, out

    export_dir = tmp_path / "export"
    code, out = run("export", str(export_dir), home=home)
    assert code == 0, out
    assert (export_dir / "checkpoint").exists()
    code, out = run("verify", str(export_dir), "--key", vkey, home=home)
    assert code == 0 and "verified" in out, out

    code, out = run("erase", "--subject", "user-7", "--reason", "request", home=home)
    assert code == 0, out
    assert "1 content record(s) destroyed" in out
    code, out = run("log", "show", "--json", "--content", home=home)
    states = [json.loads(line)["content_state"] for line in out.strip().splitlines()]
    assert states == ["erased", "present", "none"]
    # the receipt issued before the erasure still verifies
    code, out = run("verify-receipt", str(receipt), "--key", vkey, home=home)
    assert code == 0, out


def test_bad_lines_are_named_and_nothing_is_appended(home: Path, tmp_path: Path) -> None:
    bad = _jsonl(tmp_path, [LINES[0], {"system": "x", "gen_ai.usage.input_tokens": "many"},
                            "{not json", LINES[1]])
    code, out = run("log", "append", str(bad), home=home)
    assert code == 2
    assert "line 2, field 'gen_ai.usage.input_tokens'" in out
    assert "line 3: not valid JSON" in out
    assert "nothing was appended" in out
    code, out = run("log", "show", "--json", home=home)
    assert out.strip() == ""
    code, out = run("log", "append", str(bad), "--skip-invalid", home=home)
    assert code == 3 and "appended 2 record(s)" in out and "skipped 2 invalid" in out
    code, out = run("log", "show", "--json", home=home)
    assert len(out.strip().splitlines()) == 2


def test_append_from_stdin(home: Path) -> None:
    code, out = run("log", "append", "-", home=home,
                    input="\n".join(json.dumps(x) for x in LINES) + "\n")
    assert code == 0 and "appended 2" in out, out


def test_clear_errors(home: Path, tmp_path: Path) -> None:
    code, out = run("log", "append", str(tmp_path / "missing.jsonl"), home=home)
    assert code == 1 and "cannot read" in out
    code, out = run("key", home=tmp_path / "nowhere")
    assert code == 1 and "kansa init" in out
    code, out = run("verify", str(tmp_path), home=home)
    assert code == 1 and "--key" in out
    code, out = run("verify", str(tmp_path), "--key", "garbage", home=home)
    assert code == 1 and "verifier key" in out
    code, out = run("prove", "no-such-id", home=home)
    assert code == 1 and "no record with id" in out
    code, out = run("erase", "--subject", "ghost", home=home)
    assert code == 1 and "never recorded" in out
    code, out = run("init", home=home)
    assert code == 1 and "already holds" in out


def test_tampered_export_fails_with_reason(home: Path, tmp_path: Path) -> None:
    run("log", "append", str(_jsonl(tmp_path, LINES)), home=home)
    export_dir = tmp_path / "export"
    assert run("export", str(export_dir), home=home)[0] == 0
    bundle = next(p for p in (export_dir / "tile" / "entries").rglob("*") if p.is_file())
    data = bundle.read_bytes().replace(b"support-bot", b"support-bod")
    bundle.write_bytes(data)
    vkey = (home / "log.vkey").read_text().strip()
    code, out = run("verify", str(export_dir), "--key", vkey, home=home)
    assert code == 1
    assert "verification failed" in out


def test_help_teaches() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("init", "key", "log", "checkpoint", "export", "verify", "prove",
                "verify-receipt", "erase", "witness", "demo"):
        assert cmd in r.output
    r = runner.invoke(app, ["log", "append", "--help"])
    assert "gen_ai.request.model" in r.output


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """The whole demo, at 80 columns: its story wraps at words and its tables fit, with
    every id, pack ref and date whole on one line; only the commands to try and the
    verifier key (printed to copy whole) run longer."""
    env = {**os.environ, "COLUMNS": "80"}
    r = subprocess.run(
        [sys.executable, "-m", "kansa", "demo", "--home", str(tmp_path / "d"),
         "--records", "300"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout
    flat = " ".join(out.split())
    assert "300 records" in flat
    assert "still verifies" in flat
    assert "caught" in out
    assert "NOT detected" not in out
    assert "nothing is missing" in flat
    # the rolling-rules steps: a finding, a signed update (a tampered copy refused), its
    # impact, and the evidence report in both languages
    assert "fails eu/ai-act@2024-1689 Art. 50(2)" in flat
    # true to the dates: the as-adopted pack no longer governs, so it is judged pinned and
    # the demo says so; the finding's reason is in words
    assert "stopped governing on 2026-07-27" in flat and "judges them under it pinned" in flat
    assert "carried no machine-readable AI mark (Art. 50(2), applies since 2026-08-02)" in flat
    assert "changed after signing" in flat and "a tampered pack was accepted" not in flat
    for name in ("evidence-ja.pdf", "evidence-en.pdf", "evidence-ja.html", "evidence-en.html"):
        assert (tmp_path / "d" / "report" / name).stat().st_size > 10_000
    # at 80 columns
    lines = out.splitlines()
    tail = lines.index("Try next:")
    for line in lines[:tail]:
        assert len(line) <= 80 or line.startswith("  demo.kansa.local/ai-usage+"), line
    # the obligation table: each pack ref and obligation id whole, on a row of its own
    for ref in ("eu/ai-act@2024-1689", "jp.meti-mic/ai-guidelines-for-business@1.2"):
        assert any(line.startswith(ref) for line in lines), ref
    assert any(line.startswith("  art50-2-machine-readable-marking ") for line in lines)
    # the impact table: one line per verdict change
    assert any(line.startswith("art50-2-machine-readable-marking ")
               and "fail → not_applicable" in line for line in lines)
    # what to try next works here: on Linux the report opens with xdg-open
    if sys.platform.startswith("linux"):
        assert any(line.strip().startswith("xdg-open ") for line in lines[tail:])
        assert not any(line.strip().startswith("open ") for line in lines[tail:])
    # and it offers the dashboard on the demo ledger
    assert any(line.strip().startswith("kansa web token add --home ") for line in lines[tail:])
    assert any(line.strip().startswith("kansa web --home ") for line in lines[tail:])


def test_demo_clock_is_passed_in_not_read(tmp_path: Path) -> None:
    """The demo runs on its scenario clock, whatever today is: records are dated before
    SCENARIO_NOW, inside the Omnibus's Art. 50(2) grace period. --now moves the story; after
    the grace period the impact step says that no verdict changes, instead of an empty
    table."""
    env = {**os.environ, "COLUMNS": "160"}
    r = subprocess.run(
        [sys.executable, "-m", "kansa", "demo", "--home", str(tmp_path / "d"),
         "--records", "120", "--now", "2027-01-15T09:00:00Z"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert "No verdict changes for these" in r.stdout
    assert "grace period ended" in r.stdout
    assert "fail → not_applicable" not in r.stdout
    with Ledger.open(home=tmp_path / "d") as ledger:
        first = next(iter(ledger.find(limit=1)))
        assert first.entry["ts"].startswith("2027-01-15T07:")
        # the gateway's calls happen on the same clock
        through_gateway = list(ledger.find(system="kansa-gateway"))
        assert through_gateway
        assert all(r.entry["ts"].startswith("2027-01-15T09:") for r in through_gateway)

    bad = runner.invoke(app, ["demo", "--now", "next tuesday"])
    assert bad.exit_code == 2
    assert "not an ISO 8601 time" in bad.output


def test_demo_default_clock_is_the_scenario_clock(tmp_path: Path) -> None:
    from kansa.cli._demo_story import SCENARIO_NOW, _traffic

    records = _traffic(50, random.Random(1), SCENARIO_NOW)
    stamps = [datetime.fromisoformat(r["ts"]) for r in records]
    assert min(stamps) == SCENARIO_NOW - timedelta(hours=2)
    assert max(stamps) < SCENARIO_NOW < datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
