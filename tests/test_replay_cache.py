"""Fast replay: the memo gives the same results as judging every record afresh (property
test), what a check reads of a record, the digest, tallies, determinism on both stores."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kansa
from kansa.errors import StorageError
from kansa.ledger.follower import Follower
from kansa.ledger.note import Signer
from kansa.policy.cel import CheckError
from kansa.policy.findings_store import FindingStore
from kansa.policy.judging import Judge, compile_pack
from kansa.policy.memo import Replayer
from kansa.policy.pack import Pack, load_pack, parse_pack
from kansa.policy.reads import record_reads
from kansa.policy.replay import digest_line, replay


@pytest.fixture
def small_ledger(store_url: str) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/cache"),
                           master_key=b"c" * 32)
    try:
        yield lg
    finally:
        lg.close()


def test_follower_matches_iter_entries(small_ledger: kansa.Ledger) -> None:
    lg = small_ledger
    lg.append_many([{"ts": f"2026-05-0{1 + i % 9}T00:00:00Z", "system": f"s{i}"}
                    for i in range(23)])
    st = lg.log.store
    slow = [(r.index, r.ts, r.data) for r in st.iter_entries()]
    assert list(Follower(st, batch=5).read()) == slow and len(slow) == 23
    assert list(Follower(st, start=7, batch=2).read(12)) == slow[7:12]
    assert all(type(d) is bytes for _, _, d in Follower(st).read())
    st.execute("DELETE FROM entries WHERE idx = 9")
    with pytest.raises(StorageError, match="entry 9 is missing"):
        list(Follower(st, batch=4).read())


# -- what a check reads ----------------------------------------------------------------

@pytest.mark.parametrize(("source", "expected"), [
    ('record.kind == "gen_ai.call"', {(("kind",), True)}),
    ('record["gen_ai.request.model"] != ""', {(("gen_ai.request.model",), True)}),
    ('"x" in record', {(("x",), False)}),
    ('has(record.subject)', {(("subject",), False)}),
    ('"y" in record.attributes && record.attributes["y"] == true',
     {(("attributes", "y"), False), (("attributes", "y"), True)}),
    ('has(record.attributes.z)', {(("attributes", "z"), False)}),
    ('record.attributes.exists(k, k == "a")', {(("attributes",), True)}),
    ('record.content.alg.size() > 2', {(("content", "alg"), True)}),
    ('"x" in record.a.b', {(("a", "b"), True)}),  # two levels down: the whole value
    ('a || "x" in record', {(("x",), False)}),
    ("system.high_risk && record.outcome == 'ok' // record here is a comment",
     {(("outcome",), True)}),
    ('"record" == system.name', set()),
    ("size(record) > 3", None),  # the record as a whole
    ("record == {}", None),
    ('record[system.key] == 1', None),  # a key not known in advance
    ('now > timestamp("2026-01-01T00:00:00Z")', None),
    ('"a" + "x" in record', None),  # the left operand is not the literal
    ('record["a\\\\"b"] == 1', None),  # escapes: not read as a plain key
    ('[1].exists(record, record > 0)', None),  # a macro variable named record
    ("record.kind ` 1", None),  # not tokenizable
])
def test_record_reads(source: str, expected: set[Any] | None) -> None:
    got = record_reads(source)
    assert (None if got is None else set(got)) == expected


# -- memoized == unmemoized ----------------------------------------------------------

_EXPRS = [
    'record.kind == "gen_ai.call"',
    '"x" in record',
    '"x" in record && record.x == 1',
    '"x" in record && type(record.x) == bool',
    '"x" in record && record.x == "1"',
    '"attributes" in record && "d" in record.attributes',
    '"attributes" in record && type(record.attributes) == map && "d" in record.attributes'
    ' && record.attributes.d == true',
    '"attributes" in record && type(record.attributes) == list',
    'has(record.outcome) && record.outcome != "error"',
    '"attributes" in record && type(record.attributes) == map'
    ' && record.attributes.exists(k, k == "l")',
    'size(record) > 5',
    'now > timestamp("2026-03-01T00:00:00Z")',
    '"placed_on_market" in system && system.placed_on_market < timestamp("2026-02-01T00:00:00Z")',
    'true',
]
_DAYS = ["2025-12-20", "2026-01-01", "2026-02-01", "2026-03-01", "2026-04-15"]
_VALUES = [None, True, False, 1, 1.0, 0, "1", "ok", [], ["c2pa"], {"a": 1}]


@st.composite
def _packs(draw: st.DrawFn) -> list[Pack]:
    out = []
    for n in range(draw(st.integers(1, 3))):
        obls = []
        for k in range(draw(st.integers(1, 4))):
            lines = [f"  - id: o{k}", f'    citation: {{article: "{k}"}}',
                     f"    role: {draw(st.sampled_from(['deployer', 'provider']))}",
                     f"    jurisdiction: {draw(st.sampled_from(['EU', 'JP']))}",
                     "    legal_force: binding", "    text: {en: {kind: summary, text: t}}"]
            if draw(st.booleans()):
                lines.append(f"    effective_from: {draw(st.sampled_from(_DAYS))}")
            if draw(st.booleans()):
                lines.append(f"    transitions:\n      - applies_if: "
                             f"'{draw(st.sampled_from(_EXPRS))}'\n"
                             f"        effective_from: {draw(st.sampled_from(_DAYS[2:]))}")
            if draw(st.integers(0, 5)) == 0:
                lines.append("    evidence: {kind: document, description: d}")
            else:
                lines.append(f"    check:\n      applies: '{draw(st.sampled_from(_EXPRS))}'\n"
                             f"      expr: '{draw(st.sampled_from(_EXPRS))}'")
            obls.append("\n".join(lines))
        text = (f"pack: t.p{n}/x\nversion: \"1\"\ntitle: t\npublisher: p\n"
                f"sources: [https://example.org]\njurisdiction: EU\nstatus: in_force\n"
                f"effective_from: {draw(st.sampled_from(_DAYS[:3]))}\nobligations:\n"
                + "\n".join(obls) + "\n")
        out.append(parse_pack(text, f"p{n}.yaml"))
    return out


@st.composite
def _record(draw: st.DrawFn) -> dict[str, Any]:
    r: dict[str, Any] = {
        "id": f"r{draw(st.integers(0, 3))}",
        "ts": f"{draw(st.sampled_from(_DAYS))}T{draw(st.sampled_from(['00', '13']))}:00:00Z",
        "kind": draw(st.sampled_from(["gen_ai.call", "agent.step"])),
    }
    for key, pool in (("system", ["a", "b", "c"]), ("outcome", ["ok", "error"]),
                      ("x", _VALUES), ("extra", _VALUES)):
        if draw(st.booleans()):
            r[key] = draw(st.sampled_from(pool))
    if draw(st.booleans()):
        attrs = draw(st.one_of(
            st.dictionaries(st.sampled_from(["d", "l", "m"]), st.sampled_from(_VALUES),
                            max_size=3),
            st.sampled_from(_VALUES)))
        r["attributes"] = attrs
    return r


_SYSTEMS = {"a": {"roles": ["deployer"], "placed_on_market": date(2026, 1, 15)},
            "b": {"jurisdictions": ["JP"], "roles": ["deployer", "provider"]}}


def _run(rj: Replayer, records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Per record: its verdicts and digest line; a CEL error ends the run, as in replay."""
    out: list[tuple[Any, ...]] = []
    for i, r in enumerate(records):
        try:
            _, combo = rj.combo(r, i)
        except CheckError as e:
            out.append(("error", str(e), e.obligation, e.index))
            break
        verdicts = [(o.cp.pack.hash, c.o.id, v, why) for o in combo.outcomes
                    for c, (v, why) in zip(o.cp.obligations, o.verdicts, strict=True)]
        out.append((verdicts, digest_line(i, str(r["id"]), combo)))
    return out


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_packs(), st.lists(_record(), min_size=4, max_size=25), st.booleans())
def test_memoized_judging_equals_judging_afresh(packs: list[Pack],
                                                records: list[dict[str, Any]],
                                                pin: bool) -> None:
    compiled = [compile_pack(p) for p in packs]
    # every record twice, so that the memo is hit as well as missed
    stream = records + records
    memo = _run(Replayer(compiled, _SYSTEMS, pin), stream)
    fresh = _run(Replayer(compiled, _SYSTEMS, pin, memo=False), stream)
    assert memo == fresh
    # and both agree with judge(), the per-record reference
    judge_ = Judge(compiled, _SYSTEMS, pin)
    expected: list[Any] = []
    for i, r in enumerate(stream):
        try:
            expected.append([(f.pack_hash, f.obligation, f.verdict, f.reason)
                             for f in judge_.judge(r, None, i)])
        except CheckError as e:
            expected.append(("error", str(e), e.obligation, e.index))
            break
    assert [x if x[0] == "error" else x[0] for x in memo] == expected


# -- replay over a real ledger -------------------------------------------------------

EXAMPLES = Path(__file__).parent.parent / "src/kansa/policy/packs/example"
V1 = load_pack(EXAMPLES / "ai-logging-v1.yaml")
V2 = load_pack(EXAMPLES / "ai-logging-v2.yaml")
DISCLOSURE = parse_pack("""\
pack: t.example/disclosure
version: "1"
title: t
publisher: p
sources: [https://example.org]
jurisdiction: example
status: in_force
effective_from: 2026-03-01
obligations:
  - id: disclose
    citation: {article: "1"}
    role: deployer
    legal_force: binding
    text: {en: {kind: summary, text: t}}
    check:
      applies: 'record.kind == "gen_ai.call"'
      expr: '"attributes" in record && "kansa.ai_disclosure" in record.attributes
             && record.attributes["kansa.ai_disclosure"] == true'
  - id: elsewhere
    citation: {article: "2"}
    role: deployer
    legal_force: binding
    jurisdiction: JP
    text: {en: {kind: summary, text: t}}
    evidence: {kind: document, description: d}
""", "disclosure.yaml")
PACKS = [V1, V2, DISCLOSURE]
SYSTEMS = {"legacy": {"placed_on_market": date(2026, 3, 1), "jurisdictions": ["example"]},
           "newbot": {"placed_on_market": date(2026, 8, 1), "roles": ["deployer"]}}


def _history(n: int, seed: int = 3) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    days = ["2026-02-10", "2026-03-01", "2026-06-30", "2026-07-01", "2026-12-31",
            "2027-01-01", "2027-02-01"]
    out = []
    for i in range(n):
        r: dict[str, Any] = {
            "id": f"rec-{seed}-{i}",
            "ts": f"{days[i * len(days) // n]}T{rnd.randrange(24):02d}:00:{i % 60:02d}Z",
            "system": rnd.choice(["legacy", "newbot", "other"]),
            "kind": rnd.choice(["gen_ai.call", "gen_ai.call", "agent.step"]),
            "outcome": rnd.choice(["ok", "ok", "error", "blocked"]),
            "gen_ai.usage.input_tokens": rnd.randrange(1, 500),
            "gen_ai.usage.output_tokens": rnd.randrange(1, 500),
        }
        if rnd.random() < 0.8:
            r["gen_ai.request.model"] = "m"
            r["gen_ai.provider.name"] = "openai"
        if rnd.random() < 0.8:
            r["attributes"] = {"kansa.ai_disclosure": rnd.random() < 0.8}
        out.append(r)
    return out


def _open(url: str) -> kansa.Ledger:
    return kansa.Ledger.open(url, signer=Signer.generate("test.kansa/cache"),
                             master_key=b"c" * 32)


@pytest.fixture
def history_ledger(store_url: str) -> Iterator[kansa.Ledger]:
    lg = _open(store_url)
    try:
        lg.append_many(_history(90))
        yield lg
    finally:
        lg.close()


def _tally(fs: FindingStore, run: str) -> list[tuple[Any, ...]]:
    return [(t.pack_hash, t.obligation, t.day, t.verdict, t.n) for t in fs.tally(run=run)]


def test_replay_of_the_same_history_is_deterministic(history_ledger: kansa.Ledger) -> None:
    lg = history_ledger
    fs = FindingStore(lg.log.store)
    a = replay(lg, PACKS, systems=SYSTEMS)
    stored_a = fs.findings()
    b = replay(lg, list(reversed(PACKS)), systems=SYSTEMS)
    assert a.run_id != b.run_id and a.digest == b.digest and len(a.digest) == 64
    assert (a.records, a.findings, a.verdicts, a.stored) == \
        (b.records, b.findings, b.verdicts, b.stored)
    assert fs.findings() == stored_a and a.stored == len(stored_a) > 0
    assert _tally(fs, a.run_id) == _tally(fs, b.run_id) and _tally(fs, a.run_id)
    # judging every record afresh gives the same digest and findings
    fresh = replay(lg, PACKS, systems=SYSTEMS, memo=False, save=False, collect=True)
    memo = replay(lg, PACKS, systems=SYSTEMS, save=False, collect=True)
    assert fresh.digest == memo.digest == a.digest
    assert fresh.collected == memo.collected
    assert fresh.verdicts == memo.verdicts == a.verdicts
    assert [f for f in memo.collected if f.verdict == "fail"] == stored_a
    # different facts, different verdicts, different digest
    other = replay(lg, PACKS, systems={}, save=False)
    assert other.digest != a.digest


def test_tallies_sum_to_records_times_applicable_obligations(
        history_ledger: kansa.Ledger) -> None:
    lg = history_ledger
    res = replay(lg, PACKS, systems=SYSTEMS, collect=True)
    judge_ = Judge([compile_pack(p) for p in sorted(PACKS, key=lambda p: p.id)], SYSTEMS,
                   False)
    expected = [f for i, r in enumerate(lg.log.store.iter_entries())
                for f in judge_.judge(json.loads(r.data), None, i)]
    per_record = Counter(f.index for f in expected)
    assert res.records == 90 and sum(per_record.values()) == len(expected)
    # each record counts once per obligation of every pack in force at its time
    in_force = {i: sum(len(p.obligations) for p in PACKS
                       if p.day_start(p.effective_from).isoformat()[:10] <= _history(90)[i]["ts"]
                       and (p is not V1 or _history(90)[i]["ts"] < "2026-07-01"))
                for i in range(90)}
    assert per_record == +Counter(in_force)
    tally = FindingStore(lg.log.store).tally(run=res.run_id)
    assert sum(t.n for t in tally) == res.findings == len(expected)
    assert Counter({(t.pack_hash, t.obligation, t.day, t.verdict): t.n for t in tally}) == \
        Counter((f.pack_hash, f.obligation, _history(90)[f.index]["ts"][:10], f.verdict)
                for f in expected)
    assert res.collected == expected
    assert sum(n for v, n in res.verdicts.items()) == res.findings


def test_digest_covers_every_record_verdict(tmp_path: Path) -> None:
    records = _history(40)
    changed = [dict(r) for r in records]
    target = next(i for i, r in enumerate(changed)
                  if r["kind"] == "gen_ai.call" and r["ts"] >= "2026-03-01"
                  and r.get("attributes", {}).get("kansa.ai_disclosure") is True)
    changed[target]["attributes"] = {"kansa.ai_disclosure": False}
    digests = []
    for name, recs in (("a", records), ("b", records), ("c", changed)):
        with _open(f"sqlite:///{tmp_path / name}.db") as lg:
            lg.append_many(recs)
            res = replay(lg, PACKS, systems=SYSTEMS, save=False, collect=True)
            digests.append(res.digest)
            verdict = next(f.verdict for f in res.collected
                           if f.index == target and f.obligation == "disclose")
            assert verdict == ("fail" if name == "c" else "pass")
    # the same history in another store gives the same digest; one verdict changes it
    assert digests[0] == digests[1] != digests[2]


def test_digest_line_format() -> None:
    cp = compile_pack(DISCLOSURE)
    rj = Replayer([cp], SYSTEMS, False)
    _, combo = rj.combo({"ts": "2026-05-01T00:00:00Z", "kind": "agent.step",
                         "system": "legacy", "id": "r-é"}, 7)
    line = digest_line(7, "r-é", combo)
    head = "7\t4:r-é\t1\t".encode()
    assert line.startswith(head) and line.endswith(b"\n") and len(line) == len(head) + 33
    body = json.dumps([DISCLOSURE.hash, [["disclose", "not_applicable",
                                          "does not apply to this record"],
                                         ["elsewhere", "not_applicable",
                                          "applies in JP; the system is offered in example"]]],
                      ensure_ascii=False, separators=(",", ":")).encode()
    assert line[len(head):-1] == hashlib.sha256(body).digest()


def test_cel_error_in_replay_names_obligation_and_entry(tmp_path: Path) -> None:
    broken = parse_pack(DISCLOSURE_TEXT_BROKEN, "broken.yaml")
    with _open(f"sqlite:///{tmp_path / 'e.db'}") as lg:
        lg.append_many([{"ts": "2026-05-01T00:00:00Z", "system": "s", "kind": "agent.step"}]
                       * 3 + [{"ts": "2026-05-01T00:00:00Z", "system": "s",
                               "kind": "gen_ai.call"}])
        for memo in (True, False):
            with pytest.raises(CheckError) as ei:
                replay(lg, [broken], memo=memo)
            assert ei.value.obligation == "needs-model" and ei.value.index == 3
            assert "obligation 'needs-model'" in str(ei.value) and "entry 3" in str(ei.value)
        assert FindingStore(lg.log.store).runs() == []  # a failed replay records no run


DISCLOSURE_TEXT_BROKEN = """\
pack: t.example/broken
version: "1"
title: t
publisher: p
sources: [https://example.org]
jurisdiction: example
status: in_force
effective_from: 2026-01-01
obligations:
  - id: needs-model
    citation: {article: "1"}
    role: deployer
    legal_force: binding
    text: {en: {kind: summary, text: t}}
    check:
      applies: 'record.kind == "gen_ai.call"'
      expr: 'record["gen_ai.request.model"] == "m"'
"""


def test_a_failed_write_fails_the_replay_and_records_no_run(tmp_path: Path) -> None:
    with _open(f"sqlite:///{tmp_path / 'w.db'}") as lg:
        lg.append_many(_history(30))
        fs = FindingStore(lg.log.store)
        lg.log.store.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON policy_findings"
            " BEGIN SELECT RAISE(ABORT, 'refused by test'); END")
        with pytest.raises(StorageError, match="refused by test"):
            replay(lg, PACKS, systems=SYSTEMS)
        assert fs.runs() == [] and fs.findings() == []
        lg.log.store.execute("DROP TRIGGER refuse")
        res = replay(lg, PACKS, systems=SYSTEMS)
        assert [r.run_id for r in fs.runs()] == [res.run_id] and len(fs.findings()) == res.stored


def test_finding_store_save_keeps_failing_findings_only(tmp_path: Path) -> None:
    with _open(f"sqlite:///{tmp_path / 's.db'}") as lg:
        fs = FindingStore(lg.log.store)
        judge_ = Judge([compile_pack(DISCLOSURE)], SYSTEMS, False)
        found = [f for i, r in enumerate(_history(40))
                 for f in judge_.judge(dict(r, id=f"x{i}"), None, i)]
        outside = judge_.judge(dict(_history(40)[-1], attributes={}), None, None)
        failing = [f for f in found if f.verdict == "fail"]
        assert failing and outside[0].verdict == "fail"
        assert fs.save(found + outside) == len(failing)
        assert fs.findings() == failing
        assert fs.save(found) == len(failing) and fs.findings() == failing  # idempotent
        assert fs.findings(index=failing[0].index) == [failing[0]]
        assert fs.findings(verdict="pass") == [] and fs.runs() == [] and fs.tally() == []
