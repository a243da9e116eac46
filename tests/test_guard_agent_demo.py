"""The agent demo (issue 11, item 6): a poisoned document, a held send_email, a
rejection, a refused resume, all provable from the ledger; on a scenario clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from kansa.cli import app as cli_app
from kansa.cli._demo_agent import OFFICER, OUTSIDE, REASON, SCENARIO_NOW, run, story_from_ledger
from kansa.guard.agent import ATTR
from kansa.ledger.note import Verifier
from kansa.ledger.receipt import verify_receipt


def test_the_episode_is_provable_from_the_ledger(tmp_path: Path) -> None:
    demo = run(tmp_path / "a")
    rows = story_from_ledger(demo.home)  # verifies first
    by_id = {r["id"]: r for r in rows}
    held = by_id[demo.held_record]
    assert held["tool"] == "send_email" and held["outcome"] == "blocked"
    assert held[ATTR.DECISION] == "approval_required"
    assert held["kansa.policy.approval"] == demo.approval_id
    assert "tool:read_document" in held[ATTR.TAINT_SOURCES]
    assert held[ATTR.EGRESS_DENIED] == [OUTSIDE.rpartition("@")[2]]
    assert "AML.T0051.001" in held[ATTR.TECHNIQUES] and "AML.T0057" in held[ATTR.TECHNIQUES]
    dec = by_id[demo.decision_record]
    assert dec["kind"] == "kansa.event" and dec["actor"] == OFFICER
    assert dec["kansa.approval.decision"] == "rejected"
    assert dec["kansa.approval.reason"] == REASON
    assert dec["kansa.approval.held_record"] == demo.held_record
    refused = by_id[demo.refused_record]
    assert refused["outcome"] == "blocked" and refused["error"] == "approval_invalid"
    # in this order in the log: read, held, rejected, refused
    order = [r["id"] for r in rows]
    assert (order.index(demo.held_record) < order.index(demo.decision_record)
            < order.index(demo.refused_record))
    read = next(r for r in rows if r["tool"] == "read_document")
    assert read[ATTR.UNTRUSTED] == "tool:read_document"
    # no send_email went through
    assert not [r for r in rows if r["tool"] == "send_email" and r["outcome"] == "ok"
                and r["kind"] == "tool.call"]
    # `kansa verify` says the same from the command line
    res = CliRunner().invoke(cli_app, ["verify", "--home", str(demo.home)])
    assert res.exit_code == 0, res.output
    # and each receipt proves its record with nothing but the verifier key
    for what, rid in (("held", demo.held_record), ("rejection", demo.decision_record),
                      ("refused", demo.refused_record)):
        r = CliRunner().invoke(cli_app, ["verify-receipt", str(demo.receipts[what]),
                                         "--key", demo.vkey])
        assert r.exit_code == 0, r.output
        got = verify_receipt(demo.receipts[what].read_bytes(), Verifier.parse(demo.vkey), None)
        assert got.extra is not None and json.loads(got.extra)["id"] == rid


def test_the_story_is_on_the_scenario_clock_and_the_same_every_run(tmp_path: Path) -> None:
    a = story_from_ledger(run(tmp_path / "a").home)
    later = datetime(2031, 4, 1, 12, 0, tzinfo=UTC)
    b = story_from_ledger(run(tmp_path / "b", now=later).home)

    def shape(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(r["kind"], r["tool"], r["outcome"], r.get(ATTR.DECISION),
                 r.get("kansa.approval.decision")) for r in rows]

    assert shape(a) == shape(b)
    assert a[0]["ts"].startswith("2026-11-18T08:50:00")  # type: ignore[union-attr]
    assert b[0]["ts"].startswith("2031-04-01T11:50:00")  # type: ignore[union-attr]
    assert all(str(r["ts"]) < SCENARIO_NOW.strftime("%Y-%m-%dT%H:%M") for r in a)


def test_the_command_narrates_and_refuses_a_used_directory(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    res = CliRunner().invoke(cli_app, ["demo-agent", "--home", str(home)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "held for approval" in out and "approval_invalid" in out
    assert "approval.rejected" in out and OFFICER in out
    again = CliRunner().invoke(cli_app, ["demo-agent", "--home", str(home)])
    assert again.exit_code != 0 and "not empty" in again.output
