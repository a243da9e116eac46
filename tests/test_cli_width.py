"""The CLI at 80 columns and for a first-time user: tables fold or drop columns by width
and never crush one (every id, pack ref and date printed whole on one line), ``kansa``
alone prints its help, ``log append`` says what it waits for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import kansa
from kansa.cli import _common, app
from kansa.cli import log as log_commands
from kansa.cli._common import Column, fit_table

runner = CliRunner()
WIDTH = 80
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def at80(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every console the commands print on is 80 columns wide, whatever runs the tests."""
    monkeypatch.setenv("COLUMNS", str(WIDTH))  # rich reads it at each print
    for console in (_common.out, _common.console):
        assert console.width == WIDTH


def invoke(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def header_cells(header_line: str) -> list[str]:
    """The header words of a borderless table line (columns are two spaces apart)."""
    return [h for h in re.split(r"\s{2,}", header_line.strip()) if h]


def assert_fits(text: str) -> None:
    for line in text.splitlines():
        assert len(line.rstrip()) <= WIDTH, line


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    systems = tmp_path / "systems.yaml"
    systems.write_text("img: {roles: [provider], jurisdictions: [EU], "
                       "placed_on_market: 2026-03-01}\n")
    with kansa.Ledger.init(h) as lg:
        for i in range(3):
            lg.append({"ts": f"2026-09-15T10:0{i}:00.123456Z", "system": "img",
                       "gen_ai.request.model": "gpt-image-1", "gen_ai.provider.name": "p",
                       "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3,
                       "outcome": "ok", "subject": "user-7", "input": "draw a cat",
                       "attributes": {"kansa.output.modality": "image"}})
    return h


# -- the helper --------------------------------------------------------------------------


def test_fit_table_never_crushes_a_column() -> None:
    """Many columns at 80: whole columns keep every cell on one line, the rest are at
    least their header's longest word wide, and what does not fit is left out by
    priority (the highest number first), not squeezed."""
    console = Console(width=WIDTH, record=True)
    ids = ["01a1ed74-8980-7918-935b-d8e6b5224430", "01a1ed74-e740-7d48-ab2c-b5eb4ccb161f"]
    columns = [Column("record id", whole=True), Column("time (UTC)", min_width=12),
               Column("system", priority=1), Column("model", priority=2),
               Column("outcome", whole=True), Column("tokens in/out", priority=4),
               Column("kind", priority=5), Column("content", min_width=24)]
    rows = [[i, "2026-11-18 07:00:00.000", "hr-screening", "claude-sonnet-4", "ok",
             "560/101", "gen_ai.call", "a long answer " * 8] for i in ids]
    fitted = fit_table(console, columns, rows)
    assert fitted.hidden == ["system", "model", "tokens in/out", "kind"]
    assert fitted.width <= WIDTH
    console.print(fitted.table)
    text = console.export_text()
    assert_fits(text)
    lines = text.splitlines()
    assert header_cells(lines[0]) == ["record id", "time (UTC)", "outcome", "content"]
    for i in ids:
        assert any(i in line for line in lines)
    assert sum("2026-11-18" in line for line in lines) == 2  # each date whole, once per row


def test_fit_table_boxes_what_fits() -> None:
    console = Console(width=WIDTH, record=True)
    fitted = fit_table(console, [Column("kind"), Column("calls", whole=True)],
                       [["openai stream", "8"]])
    assert fitted.hidden == []
    console.print(fitted.table)
    assert "┃ kind          ┃ calls ┃" in console.export_text()


# -- the commands, at 80 columns ---------------------------------------------------------


def test_packs_list_at_80(at80: None, home: Path) -> None:
    out = invoke("packs", "list", "--home", str(home))
    assert_fits(out)
    lines = out.splitlines()
    assert header_cells(lines[0]) == ["pack", "status", "in force", "active"]
    from kansa.policy.bundled import bundled_packs

    for p in bundled_packs():
        # each pack ref whole, at the start of its row, with its status beside it
        assert any(line.startswith(f"{p.ref} ") and f" {p.status} " in line
                   for line in lines), p.ref
        assert any(str(p.effective_from) in line for line in lines)
    assert not re.search(r"^\s+\S{1,3}\s*$", out, re.M)  # no cell crushed to a sliver


def test_packs_show_at_80(at80: None) -> None:
    """One block per obligation, wrapped at words: ids, citations and dates whole."""
    from kansa.policy.bundled import bundled_pack_files
    from kansa.policy.pack import load_pack

    path = next(f for f in bundled_pack_files() if "omnibus" in str(f))
    out = invoke("packs", "show", str(path))
    lines = out.splitlines()
    for line in lines:
        assert len(line.rstrip()) <= WIDTH or line.startswith("source: "), line
    for o in load_pack(path).obligations:
        assert f"{o.id}  {o.citation}" in lines
        assert any(line.strip().startswith(f"{o.role}, {o.legal_force}, in force "
                                           f"{o.effective_from} → ") for line in lines)


def test_log_show_at_80_shows_record_ids_and_whole_dates(at80: None, home: Path) -> None:
    for extra in ([], ["--content"]):
        out = invoke("log", "show", "--home", str(home), *extra)
        assert_fits(out)
        lines = out.splitlines()
        assert header_cells(lines[0])[:2] == ["record id", "time (UTC)"]
        with kansa.Ledger.open(home=home) as lg:
            for r in lg.find():
                row = next(line for line in lines if r.id in line)  # the id, whole
                assert "2026-09-15" in row  # the date whole on the row's first line
        assert "3 record(s)" in out


def test_impact_and_replay_at_80(at80: None, home: Path) -> None:
    systems = home.parent / "systems.yaml"
    out = invoke("impact", "--home", str(home), "--systems", str(systems),
                 "--from", "eu/ai-act@2024-1689", "--to", "eu/ai-act@2026-omnibus")
    assert_fits(out)
    with kansa.Ledger.open(home=home) as lg:
        ids = [r.id for r in lg.find()]
    table = out[out.index("record id"):]
    assert sorted(UUID.findall(table)) == sorted(ids)  # every record id whole
    assert "not_applicable" in table and "2026-12-02" in table
    out = invoke("replay", "--home", str(home), "--systems", str(systems), "--pack",
                 "eu/ai-act@2026-omnibus", "--no-save")
    assert_fits(out)
    assert re.search(r"^sha256:[0-9a-f]{64}$", out, re.M)  # the pack's hash, whole


# -- a first-time user ---------------------------------------------------------------


def test_kansa_alone_prints_help_and_exits_0() -> None:
    for args in ([], ["log"], ["packs"], ["packs", "trust"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (args, r.output)
        assert "Usage: kansa" in r.stdout
        assert "Commands" in r.stdout
    assert "kansa demo" in runner.invoke(app, []).stdout


def test_log_append_says_it_is_waiting_on_a_terminal(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = '{"system": "s", "gen_ai.request.model": "m"}\n'
    r = runner.invoke(app, ["log", "append", "--home", str(home)], input=line)
    assert r.exit_code == 0, r.output
    assert "standard input" not in r.output  # piped: nothing to say
    monkeypatch.setattr(log_commands, "_is_terminal", lambda stream: True)
    r = runner.invoke(app, ["log", "append", "--home", str(home)], input=line)
    assert r.exit_code == 0, r.output
    assert "reading JSON Lines from standard input… (Ctrl-D to end)" in r.stderr
    assert "standard input" not in r.stdout
    assert "appended 1 record(s)" in r.stdout


def test_demo_try_next_opens_the_report_on_this_system() -> None:
    from kansa.cli._demo_story import _open_command

    pdf = Path("/tmp/d/report/evidence-ja.pdf")
    assert _open_command(pdf, "linux") == f"xdg-open {pdf}"
    assert _open_command(pdf, "darwin") == f"open {pdf}"
    assert _open_command(pdf, "win32").startswith("start ")
