"""Crosswalks between packs: the shipped ones load and every reference names a bundled
obligation; malformed files are rejected with file, line and reason; related() lists the
obligations one piece of evidence also serves, with the relationship read from the asked
obligation's side; and one output carrying the right marks passes every labelling check
the crosswalk groups."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kansa.policy.bundled import bundled_packs
from kansa.policy.crosswalk import (
    RELATIONSHIPS,
    Crosswalk,
    CrosswalkError,
    bundled_crosswalks,
    check_refs,
    crosswalk_files,
    load_crosswalks,
    obligation_index,
    parse_crosswalk,
    related,
    split_ref,
)
from kansa.policy.judging import judge
from kansa.records.model import UsageRecord

PACKS = bundled_packs()
INDEX = obligation_index(PACKS)
CROSSWALKS = bundled_crosswalks()

GOOD = """\
crosswalk: test/labels
version: "1"
title: Test
description: A test crosswalk.
mappings:
  - id: mark
    evidence: a C2PA manifest
    source: eu/ai-act#art50-2-machine-readable-marking
    targets:
      - ref: cn/ai-content-labelling#art5-implicit-label
        relationship: intersects-with
        gap: GB 45438 metadata is not C2PA
      - ref: us-ca/ai-transparency-act#22757.3-b-latent-disclosure
        relationship: superset-of
        confidence: low
"""


def test_bundled_crosswalks_load_and_resolve() -> None:
    assert [p.name for p in crosswalk_files()] == [
        "disclosure.yaml", "incidents.yaml", "labelling.yaml", "logging.yaml"]
    assert {c.id for c in CROSSWALKS} == {"kansa/disclosure", "kansa/incidents",
                                         "kansa/labelling", "kansa/logging"}
    refs = {r for c in CROSSWALKS for m in c.mappings for r in m.refs}
    areas = {split_ref(r)[0].split("/")[0].split(".")[0] for r in refs}
    # every area's packs take part, including the Japanese and international ones
    assert areas == {"eu", "kr", "cn", "us-ca", "us-co", "jp", "intl"}
    for c in CROSSWALKS:
        for m in c.mappings:
            assert m.evidence.strip() and m.targets
            assert all(t.relationship in RELATIONSHIPS for t in m.targets)


def test_good_crosswalk_parses_with_lines() -> None:
    cw = parse_crosswalk(GOOD, "good.yaml")
    assert (cw.id, cw.version, cw.source) == ("test/labels", "1", "good.yaml")
    (m,) = cw.mappings
    assert m.source_line == 8 and [t.line for t in m.targets] == [10, 13]
    assert m.targets[1].confidence == "low" and m.targets[1].gap is None
    check_refs(cw, INDEX)  # resolves


@pytest.mark.parametrize(("text", "line", "fragment"), [
    (GOOD.replace("title: Test\n", "title: Test\nauthor: me\n"), 4,
     "unknown key 'author' in a crosswalk"),
    (GOOD.replace("intersects-with", "same-as"), 11,
     "relationship 'same-as' is not one of equivalent-to"),
    (GOOD.replace("confidence: low", "confidence: total"), 15,
     "confidence 'total' is not one of high, medium, low"),
    (GOOD.replace("source: eu/ai-act#art50-2-machine-readable-marking", "source: eu/ai-act"),
     8, "'eu/ai-act' is not a reference of the form pack-id#obligation-id"),
    (GOOD.replace("    evidence: a C2PA manifest\n", ""), 6, "a mapping lacks 'evidence'"),
    (GOOD.replace("title: Test\n", "title: Test\ntitle: Again\n"), 4,
     "duplicate key 'title'"),
    (GOOD + GOOD[GOOD.index("  - id: mark"):], 16, "duplicate mapping id 'mark'"),
    (GOOD.replace("us-ca/ai-transparency-act#22757.3-b-latent-disclosure",
                  "cn/ai-content-labelling#art5-implicit-label"), 13,
     "names 'cn/ai-content-labelling#art5-implicit-label' twice (first at line 10)"),
    (GOOD[:GOOD.index("    targets:")] + "    targets: []\n", 9,
     "targets must be a non-empty list"),
    ("- just\n- a list\n", 1, "a crosswalk must be a mapping"),
    ("crosswalk: [unclosed\n", 2, "YAML:"),
])
def test_malformed_crosswalks_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(CrosswalkError) as ei:
        parse_crosswalk(text, "bad.yaml")
    msg = str(ei.value)
    assert msg.startswith(f"bad.yaml:{line}: "), msg
    assert fragment in msg, msg


@pytest.mark.parametrize(("old", "new", "line", "fragment"), [
    ("cn/ai-content-labelling#art5-implicit-label", "cn/no-such-pack#art5", 10,
     "no pack 'cn/no-such-pack'"),
    ("cn/ai-content-labelling#art5-implicit-label", "cn/ai-content-labelling#art99", 10,
     "pack 'cn/ai-content-labelling' has no obligation 'art99' in any version"),
])
def test_unresolved_references_are_rejected(old: str, new: str, line: int,
                                            fragment: str) -> None:
    cw = parse_crosswalk(GOOD.replace(old, new), "refs.yaml")
    with pytest.raises(CrosswalkError, match=rf"^refs\.yaml:{line}: .*{fragment}"):
        check_refs(cw, INDEX)


def test_duplicate_crosswalk_ids_across_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(GOOD, encoding="utf-8")
    b.write_text(GOOD, encoding="utf-8")
    assert [c.id for c in load_crosswalks([a], PACKS)] == ["test/labels"]
    with pytest.raises(CrosswalkError, match=r"^b\.yaml:1: crosswalk id 'test/labels' is "
                                             r"also used by a\.yaml"):
        load_crosswalks([a, b], PACKS)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"crosswalk: \xff\n")
    with pytest.raises(CrosswalkError, match=r"^bad\.yaml:1: not UTF-8"):
        load_crosswalks([bad], PACKS)


def test_a_reference_needs_only_some_version_of_the_pack() -> None:
    # sb24-205 and sb26-189 are versions of one instrument with different obligations;
    # version-independent references resolve against the union of their ids
    assert {"6-1-1704-ai-interaction-disclosure", "deployer-notice"} <= INDEX["us-co/ai-act"]
    text = GOOD.replace("cn/ai-content-labelling#art5-implicit-label",
                        "us-co/ai-act#6-1-1704-ai-interaction-disclosure")
    check_refs(parse_crosswalk(text, "co.yaml"), INDEX)


def test_related_from_the_anchor_and_from_a_target() -> None:
    cw = [parse_crosswalk(GOOD, "good.yaml")]
    anchor = "eu/ai-act#art50-2-machine-readable-marking"
    got = related(anchor, cw)
    assert [(r.ref, r.relationship) for r in got] == [
        ("cn/ai-content-labelling#art5-implicit-label", "intersects-with"),
        ("us-ca/ai-transparency-act#22757.3-b-latent-disclosure", "superset-of")]
    assert got[0].gap == "GB 45438 metadata is not C2PA" and got[0].via == anchor
    # from a target: the anchor with the inverse relationship, the other target unrelated
    back = related("us-ca/ai-transparency-act#22757.3-b-latent-disclosure", cw)
    assert [(r.ref, r.relationship) for r in back] == [
        ("cn/ai-content-labelling#art5-implicit-label", None), (anchor, "subset-of")]
    assert {(r.crosswalk, r.mapping, r.evidence) for r in back} == {
        ("test/labels", "mark", "a C2PA manifest")}
    assert related("kr/ai-basic-act#art33-high-impact-review", cw) == []
    with pytest.raises(ValueError, match="pack-id#obligation-id"):
        related("not a ref", cw)


def test_related_over_the_bundled_crosswalks() -> None:
    c2pa = {r.ref: r for r in related("eu/ai-act#art50-2-machine-readable-marking")}
    assert c2pa["cn/ai-content-labelling#art5-implicit-label"].relationship == \
        "intersects-with"
    assert "GB 45438 metadata is not C2PA" in \
        (c2pa["cn/ai-content-labelling#art5-implicit-label"].gap or "")
    assert {"kr/ai-basic-act#art31-2-label-generative-output",
            "us-ca/ai-transparency-act#22757.3-b-latent-disclosure",
            "intl.g7/hiroshima-code-of-conduct#action-7"} <= set(c2pa)
    retention = related("us-co/ai-act#record-retention-3y")
    assert ("eu/ai-act#art26-6-deployer-log-retention", "superset-of") in \
        {(r.ref, r.relationship) for r in retention}
    incident = {r.ref for r in related("us-ca/tfaia#22757.13-c-critical-safety-incident")}
    assert "eu/ai-act#art73-serious-incident-report" in incident


def test_one_output_serves_every_labelling_law() -> None:
    """The crosswalk's claim, checked by the engine: an image carrying C2PA, GB 45438
    metadata and a visible label passes each grouped marking check."""
    attrs = {"kansa.output.modality": "image", "kansa.output.label.visible": True,
             "kansa.output.label.machine_readable": ["c2pa", "gb45438-metadata"]}
    rec = UsageRecord(system="img", outcome="ok", provider="openai",
                      operation="image_generation", request_model="gpt-image-1",
                      attributes=attrs, ts=datetime(2027, 3, 1, 12, tzinfo=UTC))
    entry = rec.entry_object(subject_ref=None, commitment=None)
    facts = {"roles": ["provider", "deployer", "developer"], "monthly_users": 3_000_000,
             "jurisdictions": ["EU", "KR", "CN", "US-CA", "US-CO", "JP", "INTL"],
             "placed_on_market": date(2026, 3, 1), "generative": True}
    findings = {f"{f.pack}#{f.obligation}": f.verdict
                for f in judge(entry, PACKS, systems={"img": facts})}
    (mapping,) = [m for c in CROSSWALKS for m in c.mappings if m.id == "machine-readable-mark"]
    checked = [r for r in mapping.refs if r in findings and r.split("/")[0] in
               ("eu", "kr", "cn", "us-ca")]
    assert len(checked) == 4
    assert {findings[r] for r in checked} == {"pass"}
    # drop GB 45438 metadata: China's implicit label fails, the others still pass
    entry["attributes"]["kansa.output.label.machine_readable"] = ["c2pa"]
    again = {f"{f.pack}#{f.obligation}": f.verdict
             for f in judge(entry, PACKS, systems={"img": facts})}
    assert again["cn/ai-content-labelling#art5-implicit-label"] == "fail"
    assert again["eu/ai-act#art50-2-machine-readable-marking"] == "pass"


_ident = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,40}", fullmatch=True)


@given(_ident, _ident)
def test_split_ref_round_trips(pack_id: str, oid: str) -> None:
    assert split_ref(f"{pack_id}#{oid}") == (pack_id, oid)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_is_a_crosswalk_or_a_crosswalk_error(text: str) -> None:
    try:
        cw = parse_crosswalk(text, "fuzz.yaml")
    except CrosswalkError as e:
        assert str(e).startswith("fuzz.yaml:")
    else:
        assert isinstance(cw, Crosswalk)
