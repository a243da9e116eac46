"""Stored text is printed verbatim: square brackets in recorded data are not rich markup.

Chat templates ("[INST] ... [/INST]") and tool transcripts ("[tool] ...") are ordinary
content; rich would silently drop "[tool]" as an unknown style tag and raise a
MarkupError on the closing tag "[/INST]"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kansa.cli import app

runner = CliRunner()

SYSTEM = "[tool] bot"
INPUT = "<s>[INST] say hi [/INST]"
OUTPUT = "[tool] lookup(42) [/tool] [bold]done[/bold]"


def run(*args: str, home: Path) -> tuple[int, str]:
    # wide enough that the table does not fold the cells this test looks for
    r = runner.invoke(app, [*args], env={"KANSA_HOME": str(home), "COLUMNS": "300"})
    return r.exit_code, r.output


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    code, out = run("init", "--origin", "example.com/verbatim", home=h)
    assert code == 0, out
    lines = [{"ts": "2026-11-22T09:30:00Z", "system": SYSTEM, "subject": "u-[1]",
              "gen_ai.request.model": "[m]", "input": INPUT, "output": OUTPUT}]
    p = tmp_path / "in.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    code, out = run("log", "append", str(p), home=h)
    assert code == 0, out
    return h


def test_show_json_is_verbatim(home: Path) -> None:
    code, out = run("log", "show", "--json", "--content", home=home)
    assert code == 0, out
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["entry"]["system"] == SYSTEM
    assert row["entry"]["gen_ai.request.model"] == "[m]"
    assert row["content"]["input"] == INPUT
    assert row["content"]["output"] == OUTPUT


def test_show_table_is_verbatim(home: Path) -> None:
    code, out = run("log", "show", "--content", home=home)
    assert code == 0, out
    assert SYSTEM in out
    assert "[m]" in out
    # the content cell is the content's JSON, cut at 80 characters
    assert json.dumps({"input": INPUT}, ensure_ascii=False)[:-1] in out


def test_verify_receipt_prints_the_entry_verbatim(home: Path, tmp_path: Path) -> None:
    code, out = run("log", "show", "--json", home=home)
    entry_id = json.loads(out)["entry"]["id"]
    receipt = tmp_path / "r.tlog-proof"
    code, out = run("prove", entry_id, "-o", str(receipt), home=home)
    assert code == 0, out
    vkey = (home / "log.vkey").read_text().strip()
    code, out = run("verify-receipt", str(receipt), "--key", vkey, home=home)
    assert code == 0, out
    assert "in the log example.com/verbatim at size 1" in out
    shown = json.loads(out[out.index("{"):])
    assert shown["system"] == SYSTEM
    assert shown["gen_ai.request.model"] == "[m]"


def test_init_prints_the_origin_verbatim(tmp_path: Path) -> None:
    code, out = run("init", "--origin", "example.com/[b]log", home=tmp_path / "h")
    assert code == 0, out
    assert "Created ledger example.com/[b]log" in out
