"""OSCAL in and out: packs -> catalogs -> packs (same hash), findings -> assessment-results.

Every document kansa writes is parsed with compliance-trestle's OSCAL models (an
independent implementation of the OSCAL schema), not by kansa's own reader alone.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trestle.oscal.assessment_results import AssessmentResults
from trestle.oscal.catalog import Catalog
from typer.testing import CliRunner

import kansa
from kansa.ledger.merkle import leaf_hash, root_from_inclusion_proof
from kansa.ledger.note import Signer
from kansa.policy.bundled import bundled_pack_files, example_pack_files
from kansa.policy.judging import FAIL, NOT_APPLICABLE, PASS, Finding
from kansa.policy.oscal import (
    NS,
    LogAnchor,
    OscalError,
    Run,
    assessment_results_from_ledger,
    catalog_json,
    catalog_to_pack,
    catalog_to_pack_yaml,
    control_id,
    control_ids,
    findings_to_assessment_results,
    pack_to_catalog,
    stored_run,
)
from kansa.policy.pack import Pack, load_pack, parse_pack
from kansa.policy.replay import replay

EXAMPLES = example_pack_files()
V1, V2 = (load_pack(p) for p in EXAMPLES)
ALL_PACK_FILES = [*EXAMPLES, *bundled_pack_files()]


def _trestle_catalog(doc: dict[str, Any]) -> dict[str, Any]:
    """The catalog as trestle reads and writes it back (only what the OSCAL model keeps)."""
    model = Catalog.model_validate(doc["catalog"])
    return {"catalog": json.loads(model.model_dump_json(by_alias=True, exclude_none=True))}


def _props(obj: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in obj.get("props", []) if p["name"] == name]


# -- catalogs ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_PACK_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_pack_round_trips_through_an_oscal_catalog(path: Path) -> None:
    pack = load_pack(path)
    doc = pack_to_catalog(pack)
    back = catalog_to_pack(doc)
    assert back.hash == pack.hash and back.data == pack.data
    # what trestle's OSCAL model keeps is enough: nothing rides on non-schema content
    assert catalog_to_pack(_trestle_catalog(doc)).hash == pack.hash
    cat = doc["catalog"]
    assert [c["title"] for c in cat["controls"]] == [o.title or str(o.citation)
                                                      for o in pack.obligations]
    assert [_props(c, "obligation-id")[0]["value"] for c in cat["controls"]] == \
        [o.id for o in pack.obligations]
    assert _props(cat["metadata"], "pack-hash")[0]["value"] == pack.hash
    assert [r["rlinks"][0]["href"] for r in cat["back-matter"]["resources"]
            if _props(r, "resource-kind")[0]["value"] == "source"] == list(pack.sources)


def test_the_bundle_is_covered() -> None:
    assert len(bundled_pack_files()) >= 1 and len(EXAMPLES) == 2


def test_export_is_reproducible_byte_for_byte() -> None:
    a = catalog_json(pack_to_catalog(V2))
    b = catalog_json(pack_to_catalog(load_pack(EXAMPLES[1])))
    assert a == b
    doc = json.loads(a)
    assert doc["catalog"]["uuid"] != pack_to_catalog(V1)["catalog"]["uuid"]
    # reformatting the YAML (same parsed data) keeps the bytes: they follow the pack hash
    reflowed = parse_pack(yaml.safe_dump(V2.data, sort_keys=True, width=60))
    assert reflowed.hash == V2.hash
    assert catalog_json(pack_to_catalog(reflowed)) == a
    assert doc["catalog"]["metadata"]["last-modified"] == "2026-07-01T00:00:00Z"
    assert "published" not in doc["catalog"]["metadata"]
    when = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    stamped = pack_to_catalog(V2, published=when, last_modified=when)
    assert stamped["catalog"]["metadata"]["published"] == "2026-11-22T09:30:00Z"
    assert stamped["catalog"]["metadata"]["last-modified"] == "2026-11-22T09:30:00Z"
    assert catalog_to_pack(stamped).hash == V2.hash
    with pytest.raises(OscalError, match="has no time zone"):
        pack_to_catalog(V2, published=datetime(2026, 11, 22))


def test_catalog_shape_for_oscal_readers() -> None:
    cat = pack_to_catalog(V2)["catalog"]
    usage = cat["controls"][1]
    assert usage["id"] == "log-usage"
    assert _props(usage, "label") == [{"name": "label", "value": "Art. 2(1)"}]
    smt = next(p for p in usage["parts"] if p["name"] == "statement")
    assert smt["id"] == "log-usage_smt"
    langs = {_props(t, "lang")[0]["value"]: t for t in smt["parts"]}
    assert set(langs) == {"en", "ja"}
    assert _props(langs["ja"], "text-kind")[0]["value"] == "summary"
    assert langs["ja"]["prose"].startswith("すべてのモデル呼び出し")
    method = next(p for p in usage["parts"] if p["name"] == "assessment-method")
    assert _props(method, "method")[0]["value"] == "TEST"
    assert [p["name"] for p in method["parts"]] == ["applies", "expr"]
    transition = next(p for p in usage["parts"] if p["name"] == "transition")
    assert _props(transition, "effective-from")[0]["value"] == "2027-01-01"
    # values inherited from the pack are shown, marked, and not written back
    jur = _props(usage, "jurisdiction")[0]
    assert jur["value"] == "example" and jur["class"] == "inherited"
    assert "jurisdiction" not in V2.data["obligations"][1]
    evidence = cat["controls"][2]
    ev_method = next(p for p in evidence["parts"] if p["name"] == "assessment-method")
    assert _props(ev_method, "method")[0]["value"] == "EXAMINE"


def test_control_ids_are_oscal_tokens_and_unique() -> None:
    taken: set[str] = set()
    ids = [control_id(x, taken) for x in ("art50:1", "art50_1", "1/a", "_1_a", "ok.id")]
    assert ids == ["art50_1", "art50_1-2", "_1_a", "_1_a-2", "ok.id"]


def test_ids_that_clash_as_tokens_round_trip() -> None:
    obls = []
    for oid in ("x:1", "x/1", "x_1", "1x"):
        o = copy.deepcopy(V2.data["obligations"][0])
        o["id"] = oid
        obls.append(o)
    pack = _variant(obligations=obls)
    doc = pack_to_catalog(pack)
    assert [c["id"] for c in doc["catalog"]["controls"]] == ["x_1", "x_1-2", "x_1-3", "_1x"]
    assert list(control_ids(pack).values()) == ["x_1", "x_1-2", "x_1-3", "_1x"]
    Catalog.model_validate(doc["catalog"])
    assert catalog_to_pack(doc).hash == pack.hash


# -- generated packs -----------------------------------------------------------------------

_IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,12}\Z")
_WORD = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl",
                                                                  "Zp")), min_size=1,
                max_size=8)
# single-line values OSCAL keeps as they are (no edge white space, no line break)
_LINE = st.builds(lambda ws: " ".join(ws), st.lists(_WORD, min_size=1, max_size=4))
# free text (prose): any printable text, with line breaks and edge white space
_PROSE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Co", "Cn")),
                 min_size=1, max_size=40).filter(lambda s: s.strip() != "")
_DAY = st.dates().map(lambda d: d.isoformat()).filter(lambda s: len(s) == 10)
_URL = st.from_regex(r"\Ahttps://[a-z]{1,8}\.example/[a-z0-9/#]{0,10}\Z")
_CEL = st.sampled_from([
    'record.kind == "gen_ai.call"', '"gen_ai.request.model" in record',
    '"placed_on_market" in system\n  && system.placed_on_market < timestamp('
    '"2026-07-01T00:00:00Z")', "true", "  has(record.attributes)  ",
])


def _maybe(d: dict[str, Any], key: str, strat: st.SearchStrategy[Any],
            draw: st.DrawFn, *, null: bool = True) -> None:
    """Leave ``key`` out, write it as null, or give it a value."""
    choice = draw(st.sampled_from(["absent", "null", "value"] if null else
                                  ["absent", "value"]))
    if choice == "null":
        d[key] = None
    elif choice == "value":
        d[key] = draw(strat)


@st.composite
def _verification(draw: st.DrawFn) -> dict[str, Any]:
    status = draw(st.sampled_from(["verified", "partly_verified", "unverified"]))
    v: dict[str, Any] = {"status": status}
    if status != "unverified" or draw(st.booleans()):
        v["against"] = draw(_URL)
    if status != "verified":
        v["note"] = draw(_PROSE)
    else:
        _maybe(v, "note", _PROSE, draw)
    _maybe(v, "checked", _DAY, draw)
    return v


@st.composite
def _obligation(draw: st.DrawFn, oid: str) -> dict[str, Any]:
    o: dict[str, Any] = {"id": oid, "citation": {"article": draw(_LINE)},
                         "role": draw(st.sampled_from(["provider", "deployer", "developer"])),
                         "legal_force": draw(st.sampled_from(["binding", "effort_duty",
                                                              "soft_law", "voluntary"]))}
    _maybe(o["citation"], "paragraph", _LINE, draw)
    _maybe(o["citation"], "item", _LINE, draw)
    _maybe(o, "title", _LINE, draw)
    _maybe(o, "source_url", _URL, draw)
    _maybe(o, "jurisdiction", _LINE, draw)
    _maybe(o, "status", st.sampled_from(["draft", "adopted", "in_force", "repealed"]), draw,
           null=False)
    _maybe(o, "effective_from", st.just("2026-03-01"), draw)
    _maybe(o, "effective_until", st.just("2029-06-30"), draw)
    _maybe(o, "notes", _PROSE, draw)
    langs = draw(st.lists(st.sampled_from(["en", "ja", "ko", "zh-Hans", "de"]), min_size=1,
                          max_size=3, unique=True))
    o["text"] = {}
    for lang in langs:
        body: dict[str, Any] = {"kind": draw(st.sampled_from(["translation", "summary"])),
                                "text": draw(_PROSE)}
        _maybe(body, "source_url", _URL, draw)
        o["text"][lang] = body
    if draw(st.booleans()):
        o["check"] = {"expr": draw(_CEL)}
        _maybe(o["check"], "applies", _CEL, draw)
    else:
        o["evidence"] = {"kind": draw(st.sampled_from(["document", "attestation", "other"])),
                         "description": draw(_PROSE)}
        _maybe(o["evidence"], "applies", _CEL, draw)
    tr = draw(st.sampled_from(["absent", "null", "empty", "some"]))
    if tr == "null":
        o["transitions"] = None
    elif tr == "empty":
        o["transitions"] = []
    elif tr == "some":
        o["transitions"] = []
        for _ in range(draw(st.integers(1, 2))):
            t: dict[str, Any] = {"applies_if": draw(_CEL), "effective_from": "2027-01-01"}
            _maybe(t, "note", _PROSE, draw)
            o["transitions"].append(t)
    _maybe(o, "verification", _verification(), draw)
    _maybe(o, "incident", st.fixed_dictionaries({
        "report_to": _PROSE,
        "deadlines": st.lists(st.fixed_dictionaries({
            "case": _PROSE, "within_hours": st.integers(1, 10**6)}), min_size=1, max_size=3),
    }), draw)
    return o


@st.composite
def _pack_data(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pack": draw(_IDS), "version": draw(_IDS), "title": draw(_LINE),
        "publisher": draw(_LINE), "sources": draw(st.lists(_URL, min_size=1, max_size=3)),
        "jurisdiction": draw(_LINE),
        "status": draw(st.sampled_from(["draft", "adopted", "in_force", "repealed"])),
        "effective_from": "2026-01-01",
    }
    _maybe(data, "effective_until", st.just("2030-01-01"), draw)
    _maybe(data, "timezone", st.sampled_from(["UTC", "Asia/Tokyo"]), draw, null=False)
    _maybe(data, "notes", _PROSE, draw)
    _maybe(data, "title_ja", _LINE, draw)
    _maybe(data, "supersedes", _IDS.filter(lambda s: s != data["version"]), draw)
    _maybe(data, "verification", _verification(), draw)
    ids = draw(st.lists(_IDS, min_size=1, max_size=4, unique=True))
    data["obligations"] = [draw(_obligation(oid)) for oid in ids]
    return data


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pack_data())
def test_generated_packs_round_trip_and_validate(data: dict[str, Any]) -> None:
    pack = parse_pack(yaml.safe_dump(data, allow_unicode=True))
    doc = pack_to_catalog(pack)
    back = catalog_to_pack(_trestle_catalog(doc))
    assert back.data == pack.data
    assert back.hash == pack.hash
    assert catalog_json(pack_to_catalog(back)) == catalog_json(doc)


# -- what the exporter refuses, what the importer rejects ----------------------------------


def _variant(**changes: Any) -> Pack:
    data = copy.deepcopy(V2.data)
    data.update(changes)
    return parse_pack(yaml.safe_dump(data, allow_unicode=True))


def test_export_refuses_strings_oscal_cannot_hold() -> None:
    with pytest.raises(OscalError, match=r"publisher 'kansa ' cannot be written in OSCAL"):
        pack_to_catalog(_variant(publisher="kansa "))
    obls = copy.deepcopy(V2.data["obligations"])
    obls[0]["citation"]["article"] = "1\n2"
    with pytest.raises(OscalError, match=r"obligation 'log-model'.*citation.article"):
        pack_to_catalog(_variant(obligations=obls))


def _cat() -> dict[str, Any]:
    return pack_to_catalog(V2)


def _import_error(doc: Any, **kw: Any) -> str:
    with pytest.raises(OscalError) as e:
        catalog_to_pack(doc, **kw)
    return str(e.value)


def test_a_catalog_that_is_not_ours_is_rejected() -> None:
    assert _import_error([]) == "$: must be an object, not an array"
    assert _import_error({"profile": {}}) == "$: lacks 'catalog'"
    doc = _cat()
    doc["catalog"]["metadata"]["props"] = [
        p for p in doc["catalog"]["metadata"]["props"] if p["name"] != "pack-hash"]
    assert _import_error(doc).startswith(
        "catalog.metadata: lacks the kansa property 'pack-hash'")
    doc = _cat()
    doc["catalog"]["controls"] = []
    assert _import_error(doc).startswith("catalog: holds no controls")


def test_malformed_catalogs_are_rejected_naming_the_json_path() -> None:
    doc = _cat()
    role = _props(doc["catalog"]["controls"][1], "role")[0]
    doc["catalog"]["controls"][1]["props"].remove(role)
    assert _import_error(doc) == (f"catalog.controls[1]: lacks the kansa property 'role' "
                                  f"(ns {NS})")
    doc = _cat()
    doc["catalog"]["controls"][0]["props"].append({"name": "rol", "ns": NS, "value": "x"})
    n = len(doc["catalog"]["controls"][0]["props"]) - 1
    assert _import_error(doc) == f"catalog.controls[0].props[{n}]: unknown kansa property 'rol'"
    doc = _cat()
    doc["catalog"]["controls"][2]["parts"][0]["parts"][0]["prose"] = 7
    assert _import_error(doc) == ("catalog.controls[2].parts[0].parts[0].prose: must be a "
                                  "non-empty string, not a number")
    doc = _cat()
    doc["catalog"]["controls"][0]["props"][0]["value"] = ["x"]
    doc["catalog"]["controls"][0]["props"][1]["value"] = ["x"]
    assert _import_error(doc).startswith("catalog.controls[0].props[1].value: must be a "
                                         "non-empty string")


def test_invalid_values_are_reported_at_their_catalog_path() -> None:
    doc = _cat()
    props = doc["catalog"]["controls"][1]["props"]
    n = next(i for i, p in enumerate(props) if p["name"] == "legal-force")
    props[n]["value"] = "strong"
    msg = _import_error(doc, check_hash=False)
    assert msg == (f"catalog.controls[1].props[{n}]: obligation 'log-usage': legal_force "
                   "'strong' is not one of binding, effort_duty, soft_law, voluntary")
    doc = _cat()
    props = doc["catalog"]["metadata"]["props"]
    n = next(i for i, p in enumerate(props) if p["name"] == "timezone")
    props[n]["value"] = "Mars/Olympus"
    msg = _import_error(doc, check_hash=False)
    assert msg == (f"catalog.metadata.props[{n}]: timezone 'Mars/Olympus' is not an IANA "
                   "time zone")
    doc = _cat()
    method = doc["catalog"]["controls"][0]["parts"][1]
    assert method["name"] == "assessment-method" and method["parts"][1]["name"] == "expr"
    method["parts"][1]["prose"] = "record.kind =="
    msg = _import_error(doc, check_hash=False)
    assert msg.startswith("catalog.controls[0].parts[1].parts[1]: ")


def test_incident_hours_must_be_whole_numbers() -> None:
    obls = copy.deepcopy(V2.data["obligations"])
    obls[0]["incident"] = {"report_to": "the regulator", "deadlines": [
        {"case": "death of a person", "within_hours": 240}]}
    doc = pack_to_catalog(_variant(obligations=obls))
    inc = next(p for p in doc["catalog"]["controls"][0]["parts"]
               if p["name"] == "incident-reporting")
    assert inc["parts"][1]["props"][0] == {"name": "within-hours", "ns": NS, "value": "240"}
    inc["parts"][1]["props"][0]["value"] = "²"
    assert _import_error(doc) == ("catalog.controls[0].parts[2].parts[1]: within-hours '²' "
                                  "is not a whole number")


def test_an_edited_catalog_needs_consent() -> None:
    doc = _cat()
    smt = doc["catalog"]["controls"][0]["parts"][0]
    smt["parts"][0]["prose"] = "Each model call is logged, with the model requested."
    assert "changed after export" in _import_error(doc)
    edited, text = catalog_to_pack_yaml(doc, check_hash=False)
    assert edited.hash != V2.hash
    assert edited.obligation("log-model").text["en"].text.endswith("the model requested.")
    assert parse_pack(text).hash == edited.hash


def test_foreign_annotations_are_ignored() -> None:
    doc = _cat()
    c = doc["catalog"]["controls"][0]
    c["props"].append({"name": "priority", "ns": "https://example.org/ns", "value": "P1"})
    c["parts"].append({"name": "guidance", "prose": "Someone else's note."})
    assert catalog_to_pack(doc).hash == V2.hash


# -- assessment-results --------------------------------------------------------------------


def _finding(index: int, pack: Pack, oid: str, verdict: str) -> Finding:
    o = pack.obligation(oid)
    return Finding(index, f"rec-{index}", oid, pack.id, pack.version, pack.hash, verdict,
                   str(o.citation), o.legal_force, "check holds" if verdict == PASS else "no")


ANCHOR = LogAnchor("test.kansa/oscal", 10, base64.b64encode(b"\1" * 32).decode(),
                   "test.kansa/oscal\n10\nAQEB\n\n— test.kansa/oscal sig\n")
T0, T1 = datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC)


def _leaf(i: int) -> bytes:
    return leaf_hash(f"entry {i}".encode())


def test_assessment_results_from_findings() -> None:
    findings = [_finding(0, V2, "log-model", PASS), _finding(1, V2, "log-model", PASS),
                _finding(1, V2, "log-usage", FAIL), _finding(2, V2, "log-usage", PASS),
                _finding(3, V2, "retention-policy", NOT_APPLICABLE)]
    run = Run("test run", T0, T1, (V2,), findings, records=4, digest="ab" * 32)
    doc = findings_to_assessment_results([run], anchor=ANCHOR, leaf_hash=_leaf)
    AssessmentResults.model_validate(doc["assessment-results"])
    res = doc["assessment-results"]["results"][0]
    by_target = {f["target"]["target-id"]: f for f in res["findings"]}
    cids = control_ids(V2)
    assert set(by_target) == {f"{cids['log-model']}_smt", f"{cids['log-usage']}_smt"}
    assert by_target["log-model_smt"]["target"]["status"] == {"state": "satisfied",
                                                              "reason": "pass"}
    assert by_target["log-usage_smt"]["target"]["status"] == {"state": "not-satisfied",
                                                              "reason": "fail"}
    obs = {o["uuid"]: o for o in res["observations"]}
    usage = obs[by_target["log-usage_smt"]["related-observations"][0]["observation-uuid"]]
    first = usage["relevant-evidence"][0]
    assert first["href"] == "#" + doc["assessment-results"]["back-matter"]["resources"][-1][
        "uuid"]
    vals = {p["name"]: p["value"] for p in first["props"]}
    assert vals == {"record-id": "rec-1", "entry-index": "1", "verdict": "fail",
                    "leaf-hash": "sha256:" + _leaf(1).hex(), "checkpoint-size": "10"}
    cp = doc["assessment-results"]["back-matter"]["resources"][-1]
    assert base64.b64decode(cp["base64"]["value"]).decode() == ANCHOR.note
    # reproducible: same inputs, same bytes
    again = findings_to_assessment_results([Run("test run", T0, T1, (V2,), findings,
                                                 records=4, digest="ab" * 32)],
                                           anchor=ANCHOR, leaf_hash=_leaf)
    assert catalog_json(again) == catalog_json(doc)


def test_assessment_results_refuse_what_they_cannot_cite() -> None:
    late = Run("r", T0, T1, (V2,), [_finding(10, V2, "log-usage", FAIL)])
    with pytest.raises(OscalError, match="entry 10 is not covered by the checkpoint"):
        findings_to_assessment_results([late], anchor=ANCHOR, leaf_hash=_leaf)
    stranger = Run("r", T0, T1, (V2,), [_finding(1, V1, "log-usage", FAIL)])
    with pytest.raises(OscalError, match="not among the run's packs"):
        findings_to_assessment_results([stranger], anchor=ANCHOR, leaf_hash=_leaf)
    ghost_finding = dataclasses.replace(_finding(1, V1, "log-usage", FAIL), obligation="ghost")
    ghost = Run("r", T0, T1, (V1,), [ghost_finding])
    with pytest.raises(OscalError, match="obligation 'ghost'"):
        findings_to_assessment_results([ghost], anchor=ANCHOR, leaf_hash=_leaf)
    with pytest.raises(OscalError, match="names no pack version"):
        findings_to_assessment_results([Run("r", T0, T1, (), [])], anchor=ANCHOR,
                                       leaf_hash=_leaf)
    twice = Run("r", T0, T1, (V2,), [])
    with pytest.raises(OscalError, match="the same run is given twice"):
        findings_to_assessment_results([twice, twice], anchor=ANCHOR, leaf_hash=_leaf)
    with pytest.raises(OscalError, match="at least one run"):
        findings_to_assessment_results([], anchor=ANCHOR, leaf_hash=_leaf)


def test_assessment_results_last_modified_never_after_the_clock(tmp_path: Path) -> None:
    """last-modified comes from the data (when the run judged) or the clock passed in,
    whichever is earlier: a run's period covers whole days and may end tomorrow, but the
    document was not modified tomorrow."""
    findings = [_finding(1, V2, "log-usage", FAIL)]
    clock = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)  # before the period's end, T1

    def modified(run: Run, now: datetime | None) -> str:
        doc = findings_to_assessment_results([run], anchor=ANCHOR, leaf_hash=_leaf, now=now)
        value: str = doc["assessment-results"]["metadata"]["last-modified"]
        return value

    assert modified(Run("r", T0, T1, (V2,), findings), clock) == "2026-07-15T12:00:00Z"
    judged = Run("r", T0, T1, (V2,), findings, judged_at=datetime(2026, 7, 10, tzinfo=UTC))
    assert modified(judged, clock) == "2026-07-10T00:00:00Z"
    assert modified(judged, None) == "2026-07-10T00:00:00Z"
    # a stored replay over records of one day: its period ends at the next midnight
    with kansa.Ledger.init(tmp_path / "home") as lg:
        lg.append_many([{**r, "ts": "2026-09-01T10:00:00Z"} for r in _records(3)])
        replay(lg, [load_pack(EXAMPLES[1])])
        run = stored_run(lg)
        assert run.end == datetime(2026, 9, 2, tzinfo=UTC)
        now = datetime(2026, 9, 1, 10, 30, tzinfo=UTC)
        doc = assessment_results_from_ledger(lg, [run], now=now)
    assert doc["assessment-results"]["metadata"]["last-modified"] == "2026-09-01T10:30:00Z"


def _records(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        r: dict[str, Any] = {"ts": f"2026-09-{1 + i % 28:02d}T10:00:00Z", "system": "bot",
                             "kind": "gen_ai.call", "outcome": "ok"}
        if i % 3:
            r["gen_ai.request.model"] = "gpt-x"
        out.append(r)
    return out


@pytest.fixture
def ledger(store_url: str) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/oscal"),
                           master_key=b"o" * 32)
    try:
        lg.append_many(_records(30))
        yield lg
    finally:
        lg.close()


def test_assessment_results_of_a_stored_replay(ledger: kansa.Ledger) -> None:
    res = replay(ledger, [V2])
    run = stored_run(ledger, evidence_limit=5)
    assert run.run_id == res.run_id and run.records == 30 and run.digest == res.digest
    doc = assessment_results_from_ledger(ledger, [run], evidence_limit=5)
    AssessmentResults.model_validate(doc["assessment-results"])
    ar = doc["assessment-results"]
    result = ar["results"][0]
    totals = {p["name"]: int(p["value"]) for p in result["props"]
              if p["name"].startswith("verdict-")}
    assert totals == {f"verdict-{v.replace('_', '-')}": n for v, n in res.verdicts.items()}
    model = next(f for f in result["findings"] if f["target"]["target-id"] == "log-model_smt")
    assert model["target"]["status"]["state"] == "not-satisfied"
    obs = next(o for o in result["observations"]
               if o["uuid"] == model["related-observations"][0]["observation-uuid"])
    assert len(obs["relevant-evidence"]) == 5
    # every cited leaf hash is that entry's, and provably in the signed checkpoint's tree
    cp = ledger.checkpoint().checkpoint
    assert _props(ar["metadata"], "log-size")[0]["value"] == str(cp.size)
    for ev in obs["relevant-evidence"]:
        vals = {p["name"]: p["value"] for p in ev["props"]}
        index = int(vals["entry-index"])
        stored = ledger.get(index)
        assert vals["record-id"] == stored.id and vals["verdict"] == FAIL
        leaf = leaf_hash(stored.entry_bytes)
        assert vals["leaf-hash"] == "sha256:" + leaf.hex()
        proof = ledger.log.inclusion_proof(index, cp.size)
        assert root_from_inclusion_proof(index, cp.size, leaf, proof) == cp.root
        assert "gen_ai.request.model" not in stored.entry
    states = {f["target"]["target-id"]: f["target"]["status"] for f in result["findings"]}
    assert states == {"log-model_smt": {"state": "not-satisfied", "reason": "fail"},
                      "log-usage_smt": {"state": "not-satisfied", "reason": "fail"},
                      "retention-policy_smt": {"state": "not-satisfied", "reason": "other"}}
    assert result["start"] == "2026-09-01T00:00:00Z" and result["end"] == "2026-09-29T00:00:00Z"


# -- CLI -----------------------------------------------------------------------------------


def test_cli_export_import_and_findings(tmp_path: Path) -> None:
    from kansa.cli import app

    runner = CliRunner()
    out = tmp_path / "v2.json"
    ex = runner.invoke(app, ["packs", "export-oscal", str(EXAMPLES[1]), "--out", str(out)])
    assert ex.exit_code == 0, ex.output
    assert out.read_bytes() == catalog_json(pack_to_catalog(V2))
    yml = tmp_path / "v2.yaml"
    im = runner.invoke(app, ["packs", "import-oscal", str(out), "--out", str(yml)])
    assert im.exit_code == 0, im.output
    assert load_pack(yml).hash == V2.hash and V2.hash in im.output
    bundled = load_pack(bundled_pack_files()[0])
    by_ref = tmp_path / "b.json"
    ref = runner.invoke(app, ["packs", "export-oscal", bundled.ref, "--out", str(by_ref),
                              "--home", str(tmp_path / "nohome")])
    assert ref.exit_code == 0, ref.output
    assert catalog_to_pack(json.loads(by_ref.read_bytes())).hash == bundled.hash

    doc = json.loads(out.read_bytes())
    doc["catalog"]["controls"][1]["props"] = [
        p for p in doc["catalog"]["controls"][1]["props"] if p["name"] != "role"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    bad = runner.invoke(app, ["packs", "import-oscal", str(broken)])
    assert bad.exit_code == 1
    assert "catalog.controls[1]: lacks the kansa property 'role'" in bad.output
    help_ = runner.invoke(app, ["packs", "export-oscal", "--help"])
    assert "statement parts" in help_.output and "same bytes" in help_.output

    home = tmp_path / "home"
    with kansa.Ledger.init(home) as lg:
        lg.append_many(_records(12))
    none = runner.invoke(app, ["findings", "oscal", "--home", str(home)])
    assert none.exit_code == 1 and "no stored replay" in none.output
    rp = runner.invoke(app, ["replay", "--home", str(home), "--pack", str(EXAMPLES[1])])
    assert rp.exit_code == 0, rp.output
    ar_path = tmp_path / "ar.json"
    fo = runner.invoke(app, ["findings", "oscal", "--home", str(home), "--out", str(ar_path),
                             "--evidence", "2"])
    assert fo.exit_code == 0, fo.output
    ar = json.loads(ar_path.read_bytes())
    AssessmentResults.model_validate(ar["assessment-results"])
    evidence = [e for o in ar["assessment-results"]["results"][0]["observations"]
                for e in o.get("relevant-evidence", [])]
    assert len(evidence) == 4  # log-model (4 of 12) and log-usage (12) fail; 2 cited each
    first = ar["assessment-results"]["results"][0]
    first_run = _props(first, "run-id")[0]["value"]
    rp1 = runner.invoke(app, ["replay", "--home", str(home), "--pack", str(EXAMPLES[0]),
                              "--pin"])
    assert rp1.exit_code == 0, rp1.output
    latest = runner.invoke(app, ["findings", "oscal", "--home", str(home), "--out",
                                 str(ar_path)])
    assert latest.exit_code == 0, latest.output
    (only,) = json.loads(ar_path.read_bytes())["assessment-results"]["results"]
    second_run = _props(only, "run-id")[0]["value"]
    assert second_run != first_run
    assert [p["value"] for p in _props(only, "pack-hash")] == [V1.hash]
    both = runner.invoke(app, ["findings", "oscal", "--home", str(home), "--out", str(ar_path),
                               "--run", first_run, "--run", second_run, "--run", first_run])
    assert both.exit_code == 0, both.output
    doc2 = json.loads(ar_path.read_bytes())
    AssessmentResults.model_validate(doc2["assessment-results"])
    results = doc2["assessment-results"]["results"]
    assert [_props(r, "run-id")[0]["value"] for r in results] == [first_run, second_run]
    assert results[0]["uuid"] != results[1]["uuid"]


# -- crosswalks ----------------------------------------------------------------------------


def test_crosswalks_as_oscal_mapping_collections() -> None:
    from trestle.oscal.mapping import MappingCollection

    from kansa.policy.bundled import bundled_packs
    from kansa.policy.crosswalk import bundled_crosswalks, split_ref
    from kansa.policy.oscal import crosswalk_to_mapping_collection

    packs = bundled_packs()
    crosswalks = bundled_crosswalks()
    assert crosswalks
    for cw in crosswalks:
        doc = crosswalk_to_mapping_collection(cw, packs)
        MappingCollection.model_validate(doc["mapping-collection"])
        assert catalog_json(doc) == catalog_json(crosswalk_to_mapping_collection(cw, packs))
        mc = doc["mapping-collection"]
        by_res = {r["uuid"]: _props(r, "pack-hash")[0]["value"]
                  for r in mc["back-matter"]["resources"]}
        catalogs = {p.hash: pack_to_catalog(p)["catalog"] for p in packs}
        seen = []
        for mapping in mc["mappings"]:
            for m in mapping["maps"]:
                for side, key in (("sources", "source-resource"), ("targets", "target-resource")):
                    cat = catalogs[by_res[mapping[key]["href"][1:]]]
                    control = next(c for c in cat["controls"]
                                   if c["id"] == m[side][0]["id-ref"])
                    ref = _props(m[side][0], "obligation-ref")[0]["value"]
                    assert _props(control, "obligation-id")[0]["value"] == split_ref(ref)[1]
                seen.append((_props(m["sources"][0], "obligation-ref")[0]["value"],
                             _props(m["targets"][0], "obligation-ref")[0]["value"],
                             m["relationship"]))
        assert sorted(seen) == sorted((mp.source, t.ref, t.relationship)
                                      for mp in cw.mappings for t in mp.targets)


def test_crosswalk_refs_must_resolve_to_a_given_pack() -> None:
    from kansa.policy.crosswalk import bundled_crosswalks
    from kansa.policy.oscal import crosswalk_to_mapping_collection

    cw = bundled_crosswalks()[0]
    with pytest.raises(OscalError, match="no given version of pack"):
        crosswalk_to_mapping_collection(cw, [V2])


def test_cli_crosswalk_oscal(tmp_path: Path) -> None:
    from trestle.oscal.mapping import MappingCollection

    from kansa.cli import app

    runner = CliRunner()
    out = tmp_path / "m.json"
    ok = runner.invoke(app, ["packs", "crosswalk-oscal", "kansa/logging", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    MappingCollection.model_validate(json.loads(out.read_bytes())["mapping-collection"])
    bad = runner.invoke(app, ["packs", "crosswalk-oscal", "kansa/nope"])
    assert bad.exit_code == 1 and "no bundled crosswalk 'kansa/nope'" in bad.output
