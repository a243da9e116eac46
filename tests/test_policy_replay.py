"""replay() and impact() over a real ledger, on SQLite and PostgreSQL; the CLI."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import kansa
from kansa.ledger.note import Signer
from kansa.policy.findings_store import FindingStore
from kansa.policy.impact import impact
from kansa.policy.pack import load_pack
from kansa.policy.replay import replay

EXAMPLES = Path(__file__).parent.parent / "src/kansa/policy/packs/example"
V1_PATH, V2_PATH = EXAMPLES / "ai-logging-v1.yaml", EXAMPLES / "ai-logging-v2.yaml"
V1, V2 = load_pack(V1_PATH), load_pack(V2_PATH)
SYSTEMS = {"legacy": {"placed_on_market": date(2026, 3, 1)},
           "newbot": {"placed_on_market": date(2026, 8, 1)}}
DAYS = ["2026-02-10", "2026-06-30", "2026-07-01", "2026-09-15", "2026-12-31", "2027-01-01",
        "2027-03-01"]


def _records(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        r: dict[str, Any] = {
            "ts": f"{rnd.choice(DAYS)}T{rnd.randrange(24):02d}:{i % 60:02d}:00Z",
            "system": rnd.choice(["legacy", "newbot", "other"]),
            "kind": rnd.choice(["gen_ai.call", "gen_ai.call", "gen_ai.call", "agent.step"]),
            "outcome": rnd.choice(["ok", "ok", "error", "blocked"]),
        }
        for key, value in (("gen_ai.request.model", "gpt-x"), ("gen_ai.provider.name", "openai"),
                           ("gen_ai.usage.input_tokens", 10),
                           ("gen_ai.usage.output_tokens", 5)):
            if rnd.random() < 0.8:
                r[key] = value
        out.append(r)
    return out


@pytest.fixture
def ledger(store_url: str) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/policy"),
                           master_key=b"p" * 32)
    try:
        lg.append_many(_records(80))
        yield lg
    finally:
        lg.close()


# an independent statement of the example packs, to check the engine against
def _oracle(version: int, r: dict[str, Any]) -> dict[str, str]:
    t = datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
    call = r["kind"] == "gen_ai.call"
    na = "not_applicable"
    if version == 2 and t < datetime(2026, 7, 1, tzinfo=UTC):
        return {"log-model": na, "log-usage": na, "retention-policy": na}
    model = ("pass" if "gen_ai.request.model" in r else "fail") if call else na
    tokens = "gen_ai.usage.input_tokens" in r and "gen_ai.usage.output_tokens" in r
    if version == 1:
        usage = ("pass" if tokens else "fail") if call and r["outcome"] == "ok" else na
    else:
        legacy = r["system"] == "legacy"
        start = datetime(2027 if legacy else 2026, 1 if legacy else 7, 1, tzinfo=UTC)
        if t < start or not call or r["outcome"] == "blocked":
            usage = na
        else:
            usage = "pass" if tokens and "gen_ai.provider.name" in r else "fail"
    return {"log-model": model, "log-usage": usage, "retention-policy": "evidence_needed"}


def test_replay_is_deterministic_and_stored(ledger: kansa.Ledger) -> None:
    a = replay(ledger, [V1, V2], systems=SYSTEMS, collect=True)
    b = replay(ledger, [V2, V1], systems=SYSTEMS, collect=True)
    assert a.records == b.records == 80
    assert a.collected == b.collected and a.digest == b.digest
    assert a.findings == len(a.collected) == sum(a.verdicts.values())
    # each record judged under the version in force at its time, as the oracle says
    records = _records(80)
    for f in a.collected:
        assert f.index is not None
        r = records[f.index]
        version = 1 if r["ts"] < "2026-07-01" else 2
        assert f.version == str(version)
        assert f.verdict == _oracle(version, r)[f.obligation], (f, r)
    # failing findings stored beside the ledger, idempotently (the second replay replaced
    # the same rows)
    fs = FindingStore(ledger.log.store)
    key = lambda f: (f.index, f.pack, f.version, f.obligation)  # noqa: E731
    failing = sorted((f for f in a.collected if f.verdict == "fail"), key=key)
    assert failing and fs.findings() == failing == fs.findings(verdict="fail")
    assert a.stored == b.stored == len(failing)
    assert fs.findings(obligation="log-usage", limit=3) == \
        [f for f in failing if f.obligation == "log-usage"][:3]
    assert fs.pack_json(V2.hash) == V2.data
    runs = fs.runs()
    assert [r.run_id for r in runs] == [b.run_id, a.run_id]
    assert runs[0].digest == b.digest and runs[0].records == 80
    assert runs[0].verdicts == dict(b.verdicts)
    assert {p["hash"] for p in runs[0].packs} == {V1.hash, V2.hash}
    # the tallies of both runs agree, and the default is the latest run
    strip = lambda rows: [(t.pack_hash, t.obligation, t.day, t.verdict, t.n)  # noqa: E731
                          for t in rows]
    assert fs.tally() == fs.tally(run=b.run_id)
    assert strip(fs.tally(run=a.run_id)) == strip(fs.tally(run=b.run_id))
    assert sum(t.n for t in fs.tally()) == b.findings
    # a different pack gives a different digest
    c = replay(ledger, [V1], systems=SYSTEMS, save=False)
    assert c.digest != a.digest


def test_replay_replaces_findings_that_no_longer_fail(ledger: kansa.Ledger) -> None:
    fs = FindingStore(ledger.log.store)
    first = replay(ledger, [V1, V2], systems=SYSTEMS)
    assert first.stored and len(fs.findings()) == first.stored
    # offered nowhere the packs apply: nothing fails any more, in the window re-judged
    elsewhere = {k: {**v, "jurisdictions": ["JP"]} for k, v in SYSTEMS.items()}
    elsewhere["other"] = {"jurisdictions": ["JP"]}
    window = replay(ledger, [V1, V2], systems=elsewhere, since="2026-07-01T00:00:00Z")
    kept = [f for f in fs.findings() if f.index is not None]
    assert window.stored == 0 and kept
    assert all(_records(80)[f.index]["ts"] < "2026-07-01" for f in kept)
    assert len(kept) == sum(1 for f in replay(ledger, [V1, V2], systems=SYSTEMS, save=False,
                                              collect=True, until="2026-07-01T00:00:00Z")
                            .collected if f.verdict == "fail")
    replay(ledger, [V1, V2], systems=elsewhere)
    assert fs.findings() == []
    assert len(fs.runs()) == 3


def test_replay_window_and_progress(ledger: kansa.Ledger) -> None:
    seen: list[int] = []
    res = replay(ledger, [V1, V2], since="2026-07-01T00:00:00Z", until="2027-01-01T00:00:00Z",
                 systems=SYSTEMS, save=False, collect=True, progress=seen.append)
    expected = [i for i, r in enumerate(_records(80)) if "2026-07-01" <= r["ts"] < "2027-01-01"]
    assert sorted({f.index for f in res.collected}) == expected
    assert res.records == len(expected) == sum(seen)
    assert {f.version for f in res.collected} == {"2"}


def test_impact_lists_exactly_the_changed_records(ledger: kansa.Ledger) -> None:
    rep = impact(ledger, V1, V2, systems=SYSTEMS)
    records = _records(80)
    expected = {(i, o, v1, v2) for i, r in enumerate(records)
                for o, v1 in _oracle(1, r).items() if (v2 := _oracle(2, r)[o]) != v1}
    got = {(c.index, c.obligation, c.before, c.after) for c in rep.changes}
    assert got == expected and expected
    assert rep.records == 80
    assert rep.records_changed == sorted({e[0] for e in expected})
    assert set(rep.by_obligation) == {e[1] for e in expected}
    usage = rep.by_obligation["log-usage"][0]
    assert usage.citation_before == usage.citation_after == "Art. 2(1)"
    assert rep.obligations_changed == ["log-model", "log-usage", "retention-policy"]
    assert rep.obligations_added == rep.obligations_removed == []
    # v1 against itself changes nothing
    assert impact(ledger, V1, V1, systems=SYSTEMS).changes == []


def test_cli_packs_replay_impact(tmp_path: Path) -> None:
    from kansa.cli import app

    home = tmp_path / "home"
    runner = CliRunner()
    with kansa.Ledger.init(home) as lg:
        lg.append_many(_records(30))
    ok = runner.invoke(app, ["packs", "validate", str(V1_PATH), str(V2_PATH)])
    assert ok.exit_code == 0, ok.output
    assert V1.hash in ok.output and V2.hash in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(V1_PATH.read_text().replace("legal_force: binding", "legal_force: strong"))
    res = runner.invoke(app, ["packs", "validate", str(V1_PATH), str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:" in res.output and "legal_force 'strong'" in res.output
    show = runner.invoke(app, ["packs", "show", str(V2_PATH)])
    assert show.exit_code == 0 and "log-usage" in show.output and "Art. 2(1)" in show.output
    rp = runner.invoke(app, ["replay", "--home", str(home), "--pack", str(V1_PATH),
                             "--pack", str(V2_PATH), "--json"])
    assert rp.exit_code == 0, rp.output
    out = json.loads(rp.output)
    assert out["records"] == 30 and len(out["digest"]) == 64
    with kansa.Ledger.open(home=home) as lg:
        runs = FindingStore(lg.log.store).runs()
        assert [r.run_id for r in runs] == [out["run_id"]] and runs[0].digest == out["digest"]
        assert len(FindingStore(lg.log.store).findings()) == out["stored"]
    im = runner.invoke(app, ["impact", "--home", str(home), "--from", str(V1_PATH),
                             "--to", str(V2_PATH), "--json"])
    assert im.exit_code == 0, im.output
    imp = json.loads(im.output)
    assert imp["from"] == "kansa.example/ai-logging@1" and imp["records"] == 30
    assert all({"index", "obligation", "before", "after"} <= set(c) for c in imp["changes"])


def test_cli_refs_and_default_packs(tmp_path: Path) -> None:
    """Packs by id@version; replay defaults to the activated packs, else every bundled one."""
    from kansa.cli import app
    from kansa.policy.bundled import bundled_packs
    from kansa.policy.feed import activate, resolve_pack

    home = tmp_path / "home"
    systems = tmp_path / "systems.yaml"
    systems.write_text("img: {roles: [provider], jurisdictions: [EU], "
                       "placed_on_market: 2026-03-01}\n")
    image = {"ts": "2026-09-15T10:00:00Z", "system": "img", "gen_ai.request.model": "m",
             "gen_ai.provider.name": "p", "outcome": "ok",
             "attributes": {"kansa.output.modality": "image"}}
    with kansa.Ledger.init(home) as lg:
        lg.append(image)
    runner = CliRunner()
    imp = runner.invoke(app, ["impact", "--home", str(home), "--systems", str(systems),
                              "--from", "eu/ai-act@2024-1689", "--to", "eu/ai-act@2026-omnibus",
                              "--json"])
    assert imp.exit_code == 0, imp.output
    changes = json.loads(imp.output)["changes"]
    assert [(c["obligation"], c["before"], c["after"]) for c in changes] == [
        ("art50-2-machine-readable-marking", "fail", "not_applicable")]
    assert "not in force until 2026-12-02" in changes[0]["reason_after"]
    every = runner.invoke(app, ["replay", "--home", str(home), "--systems", str(systems),
                                "--json"])
    assert every.exit_code == 0, every.output
    assert len(json.loads(every.output[every.output.index("{"):])["packs"]) == \
        len(bundled_packs())
    with kansa.Ledger.open(home=home) as lg:
        activate(lg, resolve_pack("eu/ai-act@2024-1689", home))
    active = runner.invoke(app, ["replay", "--home", str(home), "--systems", str(systems),
                                 "--json"])
    got = json.loads(active.output[active.output.index("{"):])
    assert [p.split()[0] for p in got["packs"]] == ["eu/ai-act@2024-1689"]
    # the Act as adopted stopped governing on 27 Jul 2026 (Regulation (EU) 2026/1744):
    # judged by date it gives the September image no verdict at all
    assert sum(got["verdicts"].values()) == 0
    bad = runner.invoke(app, ["replay", "--home", str(home), "--pack", "eu/no-such-act@1"])
    assert bad.exit_code == 1 and "no-such-act" in bad.output
