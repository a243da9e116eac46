"""The bundled EU, Korean, Chinese and US rule packs: they load, every obligation carries
en/ja text and a verification block, and every check gives the expected verdict on
realistic ledger entries, including the day before and the day a provision takes effect
in the pack's own time zone (Europe/Brussels, Asia/Seoul, Asia/Shanghai,
America/Los_Angeles, America/Denver). The flagship case: an image without a
machine-readable mark on 15 Sep 2026 from a system placed on the market on 1 Mar 2026
fails under the AI Act as adopted and is not applicable (grace period) as amended by the
2026 Digital Omnibus; an impact report over a real ledger lists exactly the records of
such a system inside the grace period."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

import kansa
from kansa.ledger.note import Signer
from kansa.policy.bundled import bundled_packs
from kansa.policy.impact import impact
from kansa.policy.judging import Finding, judge
from kansa.policy.pack import Pack
from kansa.records.model import UsageRecord

AREAS = ("eu", "kr", "cn", "us")
MINE = [p for p in bundled_packs() if Path(p.source).parts[0] in AREAS]
BY_REF = {p.ref: p for p in MINE}

EU = BY_REF["eu/ai-act@2024-1689"]
OMNIBUS = BY_REF["eu/ai-act@2026-omnibus"]
KR = BY_REF["kr/ai-basic-act@2026-01-22"]
CN = BY_REF["cn/ai-content-labelling@2025-09-01"]
CA942 = BY_REF["us-ca/ai-transparency-act@sb942-ab853"]
CA53 = BY_REF["us-ca/tfaia@sb53"]
CO205 = BY_REF["us-co/ai-act@sb24-205"]
CO189 = BY_REF["us-co/ai-act@sb26-189"]

# A released pack version must not change silently: findings name the hash and signatures
# cover it. Change a pin only together with a deliberate edit (or, better, a new version).
PINNED_HASHES = {
    "cn/ai-content-labelling@2025-09-01":
        "sha256:d0559f64843001b9d2ee0e58af4ecd08220ab5391443d8ac50ed26402d93c405",
    "eu/ai-act@2024-1689":
        "sha256:eac35ab4cf0644cd731aea1bbf74425c8ff88f7d3ba365f6dedac39dc848ed9a",
    "eu/ai-act@2026-omnibus":
        "sha256:3a6180a1beb98537568234d3ea7e7d14830adf29efd99b16f12a030a96513223",
    "kr/ai-basic-act@2026-01-22":
        "sha256:2d47d900bdfad1ab01dee30d2bf31e4c604da345128f8bf64753c0e04b5bc435",
    "us-ca/ai-transparency-act@sb942-ab853":
        "sha256:0b4e64a19f425528cfd815b1dcaf2e772726bafbc807c285cb8f6e58f0e09896",
    "us-ca/tfaia@sb53":
        "sha256:072e65aeb8f3111f503716db80535545a6944a2f9dbdb8afccc64c931ca45c35",
    "us-co/ai-act@sb24-205":
        "sha256:fbbc04ef6cf9e1ecb268194a13f16407b9cf4dc3e6da1d015eb0b491ec0521d7",
    "us-co/ai-act@sb26-189":
        "sha256:c6ce2f0c84e3a60b49383c101e5e1e6e85d67c94c6d170c080deb4c670bd1a5c",
}

COMMITMENT = "7" * 64
PROVIDER = "provider"
DEPLOYER = "deployer"
DEVELOPER = "developer"


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def entry(when: str, *, system: str = "bot", operation: str | None = "chat",
          kind: str = "gen_ai.call", actor: str | None = "u-7f3a",
          attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ledger entry as the gateway writes it (the stored JSON object)."""
    rec = UsageRecord(system=system, ts=ts(when), kind=kind, outcome="ok", provider="openai",
                      operation=operation, request_model="gpt-image-1",
                      response_model="gpt-image-1", input_tokens=20, output_tokens=300,
                      status=200, actor=actor, attributes=dict(attributes or {}))
    return rec.entry_object(subject_ref=None, commitment=COMMITMENT)


def image(when: str, marks: list[str] | None = None, **attrs: Any) -> dict[str, Any]:
    a: dict[str, Any] = {"kansa.output.modality": "image", **attrs}
    if marks is not None:
        a["kansa.output.label.machine_readable"] = marks
    return entry(when, operation="image_generation", attributes=a)


def verdicts(e: Mapping[str, Any], packs: list[Pack], facts: Mapping[str, Any], *,
             pin: bool = False) -> dict[str, Finding]:
    system = str(e["system"])
    return {f"{f.pack}@{f.version}#{f.obligation}": f
            for f in judge(e, packs, systems={system: facts}, pin=pin)}


def verdict(e: Mapping[str, Any], pack: Pack, oid: str, facts: Mapping[str, Any]) -> str:
    """The verdict of one obligation of ``pack``, judged as if ``pack`` governed."""
    return verdicts(e, [pack], facts, pin=True)[f"{pack.ref}#{oid}"].verdict


def facts(*roles: str, juris: str, **more: Any) -> dict[str, Any]:
    return {"roles": list(roles), "jurisdictions": [juris], **more}


EU_GEN = facts(PROVIDER, DEPLOYER, juris="EU", generative=True,
               placed_on_market=date(2026, 3, 1))
EU_HIGH_RISK = facts(PROVIDER, DEPLOYER, juris="EU", high_risk=True, log_retention_days=183,
                     placed_on_market=date(2026, 3, 1))


# -- every pack ----------------------------------------------------------------------------


def test_every_pack_loads_with_texts_and_verification() -> None:
    assert {p.ref for p in MINE} == {
        "eu/ai-act@2024-1689", "eu/ai-act@2026-omnibus", "kr/ai-basic-act@2026-01-22",
        "cn/ai-content-labelling@2025-09-01", "us-ca/ai-transparency-act@sb942-ab853",
        "us-ca/tfaia@sb53", "us-co/ai-act@sb24-205", "us-co/ai-act@sb26-189"}
    codes = {"EU", "KR", "CN", "US-CA", "US-CO"}
    for p in MINE:
        assert p.jurisdiction in codes and p.verification is not None, p.ref
        assert p.title_ja and p.sources
        for o in p.obligations:
            where = f"{p.ref}#{o.id}"
            assert o.jurisdiction == p.jurisdiction, where
            assert set(o.text) == {"en", "ja"}, where
            assert o.text["ja"].kind == "summary", where
            if o.text["en"].kind == "official":  # official wording must say where it was read
                assert o.text["en"].source_url, where
            assert o.verification is not None and o.verification.checked is not None, where
            if o.verification.status == "verified":
                assert o.verification.against, where
            assert (o.check is None) != (o.evidence is None), where


def test_statuses_and_dates_are_as_verified() -> None:
    # Regulation (EU) 2026/1744 of 8 July 2026 (OJ 24.7.2026) entered into force on
    # 27 Jul 2026: the amended version governs from then, the version as adopted until then
    assert OMNIBUS.status == "in_force" and OMNIBUS.supersedes == "2024-1689"
    assert OMNIBUS.effective_from == EU.effective_until == date(2026, 7, 27)
    assert OMNIBUS.verification is not None and OMNIBUS.verification.status == "verified"
    assert "2026/1744" in OMNIBUS.title and any("2026/1744" in s for s in OMNIBUS.sources)
    assert CO189.supersedes == "sb24-205"
    assert all(o.verification is not None and o.verification.status == "verified"
               for o in CO189.obligations)
    # the pause on fines is administrative policy, not statute, and the pack says so
    assert "not before 22 Jan 2027" in (KR.notes or "")
    assert "administrative policy, not a rule of the statute" in (KR.notes or "")


def test_hashes_are_pinned() -> None:
    # content-addressed identity: a silent edit to a released pack changes this
    for ref, digest in PINNED_HASHES.items():
        assert BY_REF[ref].hash == digest, ref


# -- EU: the flagship before/after Omnibus case --------------------------------------------


def test_flagship_unmarked_image_fails_before_and_is_in_grace_after_omnibus() -> None:
    e = image("2026-09-15T10:00:00Z")
    oid = "art50-2-machine-readable-marking"
    assert verdict(e, EU, oid, EU_GEN) == "fail"
    assert verdict(e, OMNIBUS, oid, EU_GEN) == "not_applicable"
    # judged by date, the Omnibus version governs on 15 Sep 2026
    got = verdicts(e, [EU, OMNIBUS], EU_GEN)
    assert f"eu/ai-act@2026-omnibus#{oid}" in got
    assert not any(k.startswith("eu/ai-act@2024-1689") for k in got)
    assert got[f"eu/ai-act@2026-omnibus#{oid}"].reason.endswith("(transition 1)")
    # before 27 Jul 2026 (Brussels) the version as adopted governed, Art. 50 not yet applying
    got = verdicts(image("2026-07-26T21:59:59Z"), [EU, OMNIBUS], EU_GEN)
    assert got[f"eu/ai-act@2024-1689#{oid}"].verdict == "not_applicable"
    assert not any(k.startswith("eu/ai-act@2026-omnibus") for k in got)
    assert any(k.startswith("eu/ai-act@2026-omnibus") for k in
               verdicts(image("2026-07-26T22:00:00Z"), [EU, OMNIBUS], EU_GEN))
    # a failing finding says why, in words
    late = verdicts(image("2026-12-05T10:00:00Z"), [EU, OMNIBUS], EU_GEN)
    assert late[f"eu/ai-act@2026-omnibus#{oid}"].reason == (
        "the gpt-image-1 output of bot carried no machine-readable AI mark (Art. 50(2), "
        "applies since 2026-12-02)")
    # with a C2PA manifest it passes as adopted; as amended it is still in its grace period
    marked = image("2026-09-15T10:00:00Z", ["c2pa"])
    assert verdict(marked, EU, oid, EU_GEN) == "pass"
    assert verdict(marked, OMNIBUS, oid, EU_GEN) == "not_applicable"
    assert verdict(image("2026-12-05T10:00:00Z", ["c2pa"]), OMNIBUS, oid, EU_GEN) == "pass"


@pytest.mark.parametrize(("when", "expected"), [
    ("2026-12-01T22:59:59Z", "not_applicable"),  # 1 Dec 23:59:59 in Brussels
    ("2026-12-01T23:00:00Z", "fail"),  # 2 Dec 00:00 in Brussels: the grace period is over
])
def test_omnibus_grace_period_ends_on_2_december(when: str, expected: str) -> None:
    assert verdict(image(when), OMNIBUS, "art50-2-machine-readable-marking",
                   EU_GEN) == expected


def test_omnibus_grace_period_only_for_systems_already_on_the_market() -> None:
    oid = "art50-2-machine-readable-marking"
    new = {**EU_GEN, "placed_on_market": date(2026, 8, 2)}
    day_before = {**EU_GEN, "placed_on_market": date(2026, 8, 1)}
    unknown = {k: v for k, v in EU_GEN.items() if k != "placed_on_market"}
    e = image("2026-09-15T10:00:00Z")
    assert verdict(e, OMNIBUS, oid, new) == "fail"
    assert verdict(e, OMNIBUS, oid, day_before) == "not_applicable"
    assert verdict(e, OMNIBUS, oid, unknown) == "fail"  # no fact: no grace


@pytest.mark.parametrize(("when", "expected"), [
    ("2026-08-01T21:59:59Z", "not_applicable"),  # 1 Aug 23:59:59 CEST
    ("2026-08-01T22:00:00Z", "fail"),  # 2 Aug 00:00 CEST: Art. 50 applies
])
def test_art50_applies_from_2_august_2026_brussels_time(when: str, expected: str) -> None:
    assert verdict(image(when), EU, "art50-2-machine-readable-marking", EU_GEN) == expected


def test_art50_marks_that_count() -> None:
    oid = "art50-2-machine-readable-marking"
    when = "2026-10-01T09:00:00Z"
    assert verdict(image(when, ["watermark"]), EU, oid, EU_GEN) == "pass"
    assert verdict(image(when, ["gb45438-metadata"]), EU, oid, EU_GEN) == "pass"
    assert verdict(image(when, ["fingerprint"]), EU, oid, EU_GEN) == "fail"
    assert verdict(image(when, []), EU, oid, EU_GEN) == "fail"
    plain_chat = entry(when, attributes={"kansa.ai_disclosure": True})
    assert verdict(plain_chat, EU, oid, EU_GEN) == "not_applicable"  # no generated media
    # the marking duty is the provider's: a deployer-only system is not judged on it
    deployer_only = {**EU_GEN, "roles": [DEPLOYER]}
    assert verdict(image(when), EU, oid, deployer_only) == "not_applicable"


def test_art50_1_chat_disclosure_and_50_4_deepfakes() -> None:
    when = "2026-10-01T09:00:00Z"
    told = entry(when, attributes={"kansa.ai_disclosure": True})
    untold = entry(when)
    embeddings = entry(when, operation="embeddings")
    oid = "art50-1-ai-interaction-notice"
    assert [verdict(e, OMNIBUS, oid, EU_GEN) for e in (told, untold, embeddings)] == [
        "pass", "fail", "not_applicable"]
    fake = image(when, ["c2pa"], **{"kansa.output.deepfake": True})
    labelled = image(when, ["c2pa"], **{"kansa.output.deepfake": True,
                                        "kansa.output.label.visible": True})
    assert verdict(fake, OMNIBUS, "art50-4-deepfake-disclosure", EU_GEN) == "fail"
    assert verdict(labelled, OMNIBUS, "art50-4-deepfake-disclosure", EU_GEN) == "pass"
    news = {"kansa.output.modality": "text", "kansa.output.public_interest_text": True}
    edited = entry(when, attributes={**news, "kansa.output.human_review": True})
    oid4 = "art50-4-public-interest-text"
    assert verdict(entry(when, attributes=news), OMNIBUS, oid4, EU_GEN) == "fail"
    assert verdict(edited, OMNIBUS, oid4, EU_GEN) == "pass"
    # Art. 50(5): a notice was given, so evidence of its manner and timing is asked for
    assert verdict(told, OMNIBUS, "art50-5-manner-and-timing", EU_GEN) == "evidence_needed"
    assert verdict(untold, OMNIBUS, "art50-5-manner-and-timing", EU_GEN) == "not_applicable"


@pytest.mark.parametrize(("days", "expected"), [(182, "fail"), (183, "pass"), (400, "pass")])
def test_high_risk_log_retention_six_months(days: int, expected: str) -> None:
    f = {**EU_HIGH_RISK, "log_retention_days": days}
    e = entry("2026-09-15T10:00:00Z")
    assert verdict(e, EU, "art26-6-deployer-log-retention", f) == expected
    assert verdict(e, EU, "art19-1-provider-log-retention", f) == expected
    no_fact = {k: v for k, v in EU_HIGH_RISK.items() if k != "log_retention_days"}
    assert verdict(e, EU, "art26-6-deployer-log-retention", no_fact) == "fail"
    not_high_risk = {**f, "high_risk": False}
    assert verdict(e, EU, "art26-6-deployer-log-retention", not_high_risk) == "not_applicable"


@pytest.mark.parametrize(("when", "annex", "adopted", "omnibus"), [
    ("2026-08-01T12:00:00Z", "III", "not_applicable", "not_applicable"),
    ("2026-08-02T12:00:00Z", "III", "fail", "not_applicable"),
    ("2027-12-01T12:00:00Z", "III", "fail", "not_applicable"),
    ("2027-12-02T12:00:00Z", "III", "fail", "fail"),
    ("2027-08-01T12:00:00Z", "I", "not_applicable", "not_applicable"),
    ("2027-08-02T12:00:00Z", "I", "fail", "not_applicable"),
    ("2028-08-01T12:00:00Z", "I", "fail", "not_applicable"),
    ("2028-08-02T12:00:00Z", "I", "fail", "fail"),
])
def test_high_risk_dates_before_and_after_omnibus(when: str, annex: str, adopted: str,
                                                  omnibus: str) -> None:
    f = {**EU_HIGH_RISK, "high_risk_annex": annex, "log_retention_days": 30}
    e = entry(when)
    oid = "art26-6-deployer-log-retention"
    assert (verdict(e, EU, oid, f), verdict(e, OMNIBUS, oid, f)) == (adopted, omnibus)


def test_art12_record_keeping_reads_the_record() -> None:
    e = entry("2026-09-15T10:00:00Z")
    assert verdict(e, EU, "art12-record-keeping", EU_HIGH_RISK) == "pass"
    bare = {k: v for k, v in e.items() if k != "gen_ai.provider.name"}
    assert verdict(bare, EU, "art12-record-keeping", EU_HIGH_RISK) == "fail"
    assert verdict(e, EU, "art13-3-f-log-instructions", EU_HIGH_RISK) == "evidence_needed"


def test_art26_11_affected_persons_are_told() -> None:
    when = "2026-09-15T10:00:00Z"
    decision = {"kansa.decision.consequential": True}
    told = entry(when, attributes={**decision, "kansa.decision.notice_given": True})
    assert verdict(entry(when, attributes=decision), EU, "art26-11-inform-affected-persons",
                   EU_HIGH_RISK) == "fail"
    assert verdict(told, EU, "art26-11-inform-affected-persons", EU_HIGH_RISK) == "pass"


def test_art73_incident_deadlines_and_evidence() -> None:
    o = EU.obligation("art73-serious-incident-report")
    assert o.incident is not None
    hours = {d.case: d.within_hours for d in o.incident.deadlines}
    assert hours == {
        "serious incident (Art. 73(2))": 360, "death of a person (Art. 73(4))": 240,
        "widespread infringement (Art. 73(3))": 48,
        "serious and irreversible disruption of critical infrastructure, Art. 3(49)(b) "
        "(Art. 73(3))": 48}
    assert OMNIBUS.obligation("art73-serious-incident-report").incident == o.incident
    incident = entry("2026-09-15T10:00:00Z", attributes={"kansa.incident": "death"})
    assert verdict(incident, EU, o.id, EU_HIGH_RISK) == "evidence_needed"
    # Chapter IX applies from 2 Aug 2026 under Art. 113's general rule, as amended too
    assert verdict(incident, OMNIBUS, o.id, EU_HIGH_RISK) == "evidence_needed"
    assert verdict(entry("2026-08-01T12:00:00Z", attributes={"kansa.incident": "death"}),
                   OMNIBUS, o.id, EU_HIGH_RISK) == "not_applicable"
    assert verdict(entry("2026-09-15T10:00:00Z"), EU, o.id, EU_HIGH_RISK) == "not_applicable"
    assert verdict(incident, EU, "art26-5-monitor-and-report",
                   EU_HIGH_RISK) == "evidence_needed"


def test_gpai_duties_and_legacy_models() -> None:
    gpai = facts(PROVIDER, juris="EU", gpai=True, training_flops=3e25,
                 model_placed_on_market=date(2025, 9, 1))
    # Art. 111(3) keys on the model's placing on the market, not the system's
    legacy = {**gpai, "model_placed_on_market": date(2025, 8, 1),
              "placed_on_market": date(2026, 3, 1)}
    assert verdict(entry("2026-01-10T10:00:00Z"), OMNIBUS, "art53-1-gpai-provider-duties",
                   {**gpai, "placed_on_market": date(2025, 1, 1)}) == "evidence_needed"
    small = {**gpai, "training_flops": 1e24}
    e = entry("2026-01-10T10:00:00Z")
    assert verdict(e, EU, "art53-1-gpai-provider-duties", gpai) == "evidence_needed"
    assert verdict(e, EU, "art53-1-gpai-provider-duties", legacy) == "not_applicable"
    assert verdict(entry("2027-08-02T10:00:00Z"), EU, "art53-1-gpai-provider-duties",
                   legacy) == "evidence_needed"
    assert verdict(e, EU, "art55-1-systemic-risk-duties", gpai) == "evidence_needed"
    assert verdict(e, EU, "art55-1-systemic-risk-duties", small) == "not_applicable"


def test_eu_impact_report_shows_exactly_the_grace_period_change(store_url: str) -> None:
    systems = {"legacy-img": EU_GEN,
               "new-img": {**EU_GEN, "placed_on_market": date(2026, 9, 1)}}
    rows = [("2026-07-30T10:00:00Z", "legacy-img", None),  # before Art. 50 applies
            ("2026-09-15T10:00:00Z", "legacy-img", None),  # fail -> grace period
            ("2026-09-15T10:00:00Z", "legacy-img", ["c2pa"]),  # pass -> grace period
            # unchanged: a system placed after 2 Aug 2026, and after the grace period
            ("2026-09-15T10:00:00Z", "new-img", None),
            ("2026-12-05T10:00:00Z", "legacy-img", None)]
    entries = []
    for when, system, marks in rows:  # as an app hands records to the ledger
        attrs: dict[str, Any] = {"kansa.output.modality": "image"}
        if marks is not None:
            attrs["kansa.output.label.machine_readable"] = marks
        entries.append({"ts": when, "system": system, "kind": "gen_ai.call", "outcome": "ok",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-image-1", "attributes": attrs})
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/world"),
                           master_key=b"w" * 32)
    try:
        lg.append_many(entries)
        rep = impact(lg, EU, OMNIBUS, systems=systems)
    finally:
        lg.close()
    grace = [c for c in rep.changes if c.obligation == "art50-2-machine-readable-marking"]
    assert [(c.index, c.before, c.after) for c in grace] == [
        (1, "fail", "not_applicable"), (2, "pass", "not_applicable")]
    assert grace[0].citation_before == grace[0].citation_after == "Art. 50(2)"
    assert rep.records == 5
    assert "art50-2-machine-readable-marking" in rep.obligations_changed
    assert "art26-6-deployer-log-retention" in rep.obligations_changed  # dates moved
    assert "art4-ai-literacy" in rep.obligations_changed  # recast by Regulation 2026/1744
    assert rep.obligations_removed == []
    assert set(rep.obligations_added) == {
        "art5-1-ba-bb-intimate-imagery-and-csam", "art26-7-inform-workers",
        "art27-fundamental-rights-impact-assessment", "art49-registration",
        "art72-post-market-monitoring", "art86-right-to-explanation",
        "art54-gpai-authorised-representative", "art111-2-legacy-high-risk-systems"}


# -- Korea ---------------------------------------------------------------------------------


KR_GEN = facts(DEPLOYER, DEVELOPER, juris="KR", generative=True)


@pytest.mark.parametrize(("when", "expected"), [
    ("2026-01-21T14:59:59Z", None),  # 21 Jan 23:59:59 KST: the Act is not yet in force
    ("2026-01-21T15:00:00Z", "fail"),  # 22 Jan 00:00 KST
])
def test_kr_in_force_from_22_january_2026_seoul_time(when: str, expected: str | None) -> None:
    got = verdicts(entry(when), [KR], KR_GEN)
    oid = f"{KR.ref}#art31-1-advance-notice"
    assert (got[oid].verdict if oid in got else None) == expected


def test_kr_notice_and_labels() -> None:
    when = "2026-03-01T01:00:00Z"
    told = entry(when, attributes={"kansa.ai_disclosure": True})
    assert verdict(told, KR, "art31-1-advance-notice", KR_GEN) == "pass"
    not_generative = {**KR_GEN, "generative": False}
    assert verdict(entry(when), KR, "art31-1-advance-notice",
                   not_generative) == "not_applicable"
    high_impact = {**not_generative, "high_impact": True}
    assert verdict(entry(when), KR, "art31-1-advance-notice", high_impact) == "fail"
    oid = "art31-2-label-generative-output"
    assert verdict(image(when, ["watermark"]), KR, oid, KR_GEN) == "pass"
    assert verdict(image(when, None, **{"kansa.output.label.visible": True}), KR, oid,
                   KR_GEN) == "pass"
    assert verdict(image(when, []), KR, oid, KR_GEN) == "fail"
    # realistic synthetic media need a label people can see; a watermark is not enough
    fake = image(when, ["watermark"], **{"kansa.output.deepfake": True})
    seen = image(when, None, **{"kansa.output.deepfake": True,
                                "kansa.output.label.visible": True})
    assert verdict(fake, KR, "art31-3-realistic-synthetic-content", KR_GEN) == "fail"
    assert verdict(seen, KR, "art31-3-realistic-synthetic-content", KR_GEN) == "pass"


@pytest.mark.parametrize(("when", "first", "second"), [
    ("2026-07-20T14:59:59Z", "evidence_needed", "not_applicable"),  # 20 Jul 23:59:59 KST
    ("2026-07-20T15:00:00Z", "evidence_needed", "evidence_needed"),  # 21 Jul: Act No. 21311
])
def test_kr_art35_impact_assessment_effort_duty_and_its_2026_sentence(
        when: str, first: str, second: str) -> None:
    f = {**KR_GEN, "high_impact": True}
    e = entry(when)
    assert verdict(e, KR, "art35-1-impact-assessment", f) == first
    assert verdict(e, KR, "art35-1-vulnerable-groups", f) == second
    assert {KR.obligation(o).legal_force for o in
            ("art35-1-impact-assessment", "art35-1-vulnerable-groups")} == {"effort_duty"}
    assert verdict(e, KR, "art35-1-impact-assessment", KR_GEN) == "not_applicable"


def test_kr_evidence_duties() -> None:
    e = entry("2026-03-01T01:00:00Z")
    assert verdict(e, KR, "art33-high-impact-review", KR_GEN) == "evidence_needed"
    reviewed = {**KR_GEN, "high_impact": False}
    assert verdict(e, KR, "art33-high-impact-review", reviewed) == "not_applicable"
    assert verdict(e, KR, "art34-high-impact-measures", reviewed) == "not_applicable"
    assert verdict(e, KR, "art34-high-impact-measures",
                   {**KR_GEN, "high_impact": True}) == "evidence_needed"
    foreign = {**KR_GEN, "established_in": ["US"]}
    local = {**KR_GEN, "established_in": ["KR", "US"]}
    assert verdict(e, KR, "art36-domestic-representative", foreign) == "evidence_needed"
    assert verdict(e, KR, "art36-domestic-representative", local) == "not_applicable"
    big = {**KR_GEN, "training_flops": 1e26}
    assert verdict(e, KR, "art32-compute-threshold-safety", big) == "evidence_needed"
    assert verdict(e, KR, "art32-compute-threshold-safety",
                   {**KR_GEN, "training_flops": 9e25}) == "not_applicable"


# -- China ---------------------------------------------------------------------------------


CN_GEN = facts(PROVIDER, DEPLOYER, juris="CN", generative=True, log_retention_days=183)


@pytest.mark.parametrize(("when", "expected"), [
    ("2025-08-31T15:59:59Z", None),  # 31 Aug 23:59:59 in Beijing
    ("2025-08-31T16:00:00Z", "fail"),  # 1 Sep 00:00 in Beijing
])
def test_cn_in_force_from_1_september_2025_beijing_time(when: str,
                                                       expected: str | None) -> None:
    got = verdicts(image(when), [CN], CN_GEN)
    oid = f"{CN.ref}#art4-explicit-label"
    assert (got[oid].verdict if oid in got else None) == expected


def test_cn_explicit_and_implicit_labels() -> None:
    when = "2026-02-01T03:00:00Z"
    both = image(when, ["gb45438-metadata"], **{"kansa.output.label.visible": True})
    c2pa_only = image(when, ["c2pa"], **{"kansa.output.label.visible": True})
    assert verdict(both, CN, "art4-explicit-label", CN_GEN) == "pass"
    assert verdict(image(when, ["gb45438-metadata"]), CN, "art4-explicit-label",
                   CN_GEN) == "fail"
    assert verdict(both, CN, "art5-implicit-label", CN_GEN) == "pass"
    # GB 45438 metadata is not C2PA: a C2PA manifest alone does not satisfy Art. 5
    assert verdict(c2pa_only, CN, "art5-implicit-label", CN_GEN) == "fail"
    assert verdict(both, CN, "art10-no-label-removal", CN_GEN) == "evidence_needed"
    assert verdict(both, CN, "art6-platform-verification", CN_GEN) == "not_applicable"
    assert verdict(both, CN, "art6-platform-verification",
                   {**CN_GEN, "content_platform": True}) == "evidence_needed"
    # Art. 5 speaks of file metadata: plain chat text is not judged, a file or media is
    chat = entry(when, attributes={"kansa.output.modality": "text"})
    assert verdict(chat, CN, "art5-implicit-label", CN_GEN) == "not_applicable"
    as_file = entry(when, attributes={"kansa.output.modality": "text", "kansa.output.file": True})
    assert verdict(as_file, CN, "art5-implicit-label", CN_GEN) == "fail"
    f = verdicts(image(when), [CN], CN_GEN, pin=True)[
        "cn/ai-content-labelling@2025-09-01#art5-implicit-label"]
    assert f.reason == ("the gpt-image-1 output of bot, delivered as a file, carried no GB 45438 "
                        "implicit label in its metadata (Art. 5, applies since 2025-09-01)")
    # GB 45438 fields: the producer and the content number are recorded with the mark
    fields = {"kansa.output.label.producer": "example-ai", "kansa.output.label.content_id": "c-1"}
    oid = "gb45438-implicit-label-fields"
    assert verdict(both, CN, oid, CN_GEN) == "fail"
    assert verdict(image(when, ["gb45438-metadata"], **fields), CN, oid, CN_GEN) == "pass"
    assert verdict(c2pa_only, CN, oid, CN_GEN) == "not_applicable"
    # Art. 7: app stores verify the labelling materials of AI apps
    assert verdict(both, CN, "art7-app-store-verification", CN_GEN) == "not_applicable"
    assert verdict(both, CN, "art7-app-store-verification",
                   {**CN_GEN, "app_distribution_platform": True}) == "evidence_needed"


@pytest.mark.parametrize(("days", "actor", "expected"), [
    (183, "u-7f3a", "pass"), (182, "u-7f3a", "fail"), (365, None, "fail")])
def test_cn_unlabelled_on_request_needs_six_months_of_logs(days: int, actor: str | None,
                                                          expected: str) -> None:
    e = entry("2026-02-01T03:00:00Z", actor=actor, operation="image_generation",
              attributes={"kansa.output.modality": "image",
                          "kansa.output.unlabelled_on_request": True,
                          "kansa.output.label.machine_readable": ["gb45438-metadata"]})
    f = {**CN_GEN, "log_retention_days": days}
    assert verdict(e, CN, "art9-unlabelled-on-request-logs", f) == expected
    # the explicit label is then not required, the implicit one still is
    assert verdict(e, CN, "art4-explicit-label", f) == "not_applicable"
    assert verdict(e, CN, "art5-implicit-label", f) == "pass"


# -- California ----------------------------------------------------------------------------


CA_BIG = facts(PROVIDER, juris="US-CA", generative=True, monthly_users=2_000_000)


@pytest.mark.parametrize(("when", "expected"), [
    ("2026-08-02T06:59:59Z", None),  # 1 Aug 23:59:59 PDT: before the AB 853 date
    ("2026-08-02T07:00:00Z", "fail"),  # 2 Aug 00:00 PDT
])
def test_sb942_operative_from_2_august_2026_pacific_time(when: str,
                                                        expected: str | None) -> None:
    got = verdicts(image(when), [CA942], CA_BIG)
    oid = f"{CA942.ref}#22757.3-b-latent-disclosure"
    assert (got[oid].verdict if oid in got else None) == expected


def test_sb942_latent_disclosure() -> None:
    when = "2026-09-15T18:00:00Z"
    oid = "22757.3-b-latent-disclosure"
    assert verdict(image(when, ["c2pa"]), CA942, oid, CA_BIG) == "pass"
    assert verdict(image(when, ["gb45438-metadata"]), CA942, oid, CA_BIG) == "fail"
    small = {**CA_BIG, "monthly_users": 1_000_000}  # "over 1,000,000": exactly is not covered
    assert verdict(image(when), CA942, oid, small) == "not_applicable"
    text = entry(when, attributes={"kansa.output.modality": "text"})
    assert verdict(text, CA942, oid, CA_BIG) == "not_applicable"
    assert verdict(image(when), CA942, "22757.2-detection-tool", CA_BIG) == "evidence_needed"


@pytest.mark.parametrize(("when", "expected"), [
    ("2027-01-01T07:59:59Z", "not_applicable"),  # 31 Dec 23:59:59 PST
    ("2027-01-01T08:00:00Z", "evidence_needed"),  # 1 Jan 2027 00:00 PST
])
def test_ab853_platform_duty_from_2027(when: str, expected: str) -> None:
    platform = {**CA_BIG, "roles": [DEPLOYER], "large_online_platform": True}
    assert verdict(image(when), CA942, "22757.3.1-large-platform-provenance",
                   platform) == expected


@pytest.mark.parametrize(("oid", "fact", "day_before", "first_day"), [
    ("22757.3.2-hosting-platform", "genai_hosting_platform", "2027-01-01T07:59:59Z",
     "2027-01-01T08:00:00Z"),
    ("22757.3.3-capture-device", "capture_device_manufacturer", "2028-01-01T07:59:59Z",
     "2028-01-01T08:00:00Z"),
])
def test_ab853_hosting_platform_2027_and_capture_devices_2028(
        oid: str, fact: str, day_before: str, first_day: str) -> None:
    who = {**CA_BIG, "roles": [PROVIDER, DEPLOYER], fact: True}
    assert verdict(entry(day_before), CA942, oid, who) == "not_applicable"
    assert verdict(entry(first_day), CA942, oid, who) == "evidence_needed"
    assert verdict(entry(first_day), CA942, oid, {**who, fact: False}) == "not_applicable"


def test_sb53_critical_safety_incident() -> None:
    frontier = facts(DEVELOPER, juris="US-CA", training_flops=2e26,
                     annual_revenue_usd=9e8)
    o = CA53.obligation("22757.13-c-critical-safety-incident")
    assert o.incident is not None
    assert [d.within_hours for d in o.incident.deadlines] == [360, 24]
    incident = entry("2026-03-01T18:00:00Z", attributes={"kansa.incident": "serious"})
    assert verdict(incident, CA53, o.id, frontier) == "evidence_needed"
    assert verdict(entry("2026-03-01T18:00:00Z"), CA53, o.id, frontier) == "not_applicable"
    assert verdict(incident, CA53, o.id, {**frontier, "training_flops": 1e25}) \
        == "not_applicable"
    assert verdict(incident, CA53, "22757.12-a-frontier-ai-framework",
                   {**frontier, "annual_revenue_usd": 1e8}) == "not_applicable"
    # before 1 Jan 2026 (Pacific) the Act does not govern
    assert verdicts(entry("2026-01-01T07:59:59Z", attributes={"kansa.incident": "serious"}),
                    [CA53], frontier) == {}


# -- Colorado ------------------------------------------------------------------------------


CO_DEPLOYER = facts(DEPLOYER, DEVELOPER, juris="US-CO", log_retention_days=1096)
DECISION = {"kansa.decision.consequential": True}


def co(when: str, **attrs: Any) -> dict[str, Any]:
    return entry(when, operation="chat", attributes={**DECISION, **attrs})


def test_sb24_205_duties_ran_from_30_june_to_31_december_2026() -> None:
    # SB 26-189 section 5(1): the repeal and re-enactment takes effect 1 Jan 2027, so the
    # SB 24-205 duties (from 30 Jun 2026 after SB 25B-004) were on the books until then
    both = [CO205, CO189]
    assert CO205.status == "in_force" and CO205.effective_until == date(2027, 1, 1)
    got = verdicts(co("2026-03-01T18:00:00Z"), both, CO_DEPLOYER)
    assert got and all(k.startswith("us-co/ai-act@sb24-205") for k in got)
    assert {f.verdict for f in got.values()} == {"not_applicable"}
    assert all("not in force until 2026-06-30" in f.reason for f in got.values())
    got = verdicts(co("2026-09-15T18:00:00Z"), both, CO_DEPLOYER)
    notice = got["us-co/ai-act@sb24-205#6-1-1703-consumer-notice"]
    assert notice.verdict == "fail"
    assert notice.reason == ("bot made a consequential decision with no record that the "
                             "consumer was told first (C.R.S. 6-1-1703(4)(a), applies from "
                             "2026-06-30)")
    assessment = CO205.obligation("6-1-1703-risk-management-and-impact-assessment")
    assert "within ninety days" in assessment.text["en"].text
    assert "90日以内" in assessment.text["ja"].text


@pytest.mark.parametrize(("when", "governs"), [
    ("2027-01-01T06:59:59Z", "sb24-205"),  # 31 Dec 2026 23:59:59 in Denver
    ("2027-01-01T07:00:00Z", "sb26-189"),  # 1 Jan 2027 00:00 MST
])
def test_sb26_189_governs_from_1_january_2027_denver_time(when: str, governs: str) -> None:
    got = verdicts(co(when), [CO205, CO189], CO_DEPLOYER)
    assert {f.version for f in got.values()} == {governs}
    if governs == "sb26-189":
        assert got["us-co/ai-act@sb26-189#deployer-notice"].verdict == "fail"
    # SB 26-189's obligations cite sections of the enacted text, not the bill
    for o in CO189.obligations:
        assert o.citation.article.startswith("C.R.S. 6-1-17"), o.id


def test_sb26_189_checks() -> None:
    when = "2027-02-01T18:00:00Z"
    told = co(when, **{"kansa.decision.notice_given": True})
    assert verdict(told, CO189, "deployer-notice", CO_DEPLOYER) == "pass"
    assert verdict(told, CO189, "record-retention-3y", CO_DEPLOYER) == "pass"
    assert verdict(told, CO189, "record-retention-3y",
                   {**CO_DEPLOYER, "log_retention_days": 1095}) == "fail"
    assert verdict(told, CO189, "adverse-outcome-explanation",
                   CO_DEPLOYER) == "evidence_needed"
    routine = entry(when)
    assert verdict(routine, CO189, "deployer-notice", CO_DEPLOYER) == "not_applicable"


# -- checks never error on thin records ------------------------------------------------------


@pytest.fixture(scope="module")
def thin_entries() -> Iterator[list[dict[str, Any]]]:
    yield [
        {"v": 1, "kind": "gen_ai.call", "id": "r-thin", "ts": "2027-06-01T00:00:00Z",
         "system": "bot", "outcome": "ok"},
        {"v": 1, "kind": "tool.call", "id": "r-tool", "ts": "2027-06-01T00:00:00Z",
         "system": "bot", "outcome": "error", "attributes": {}},
        {"v": 1, "kind": "gen_ai.call", "id": "r-attrs", "ts": "2027-06-01T00:00:00Z",
         "system": "bot", "outcome": "ok", "attributes": {"kansa.output.modality": "video"}},
    ]


@pytest.mark.parametrize("system_facts", [
    {}, {"roles": ["provider", "deployer", "developer"]},
    {"high_risk": True, "gpai": True, "high_impact": True, "training_flops": 1e27,
     "monthly_users": 5_000_000, "annual_revenue_usd": 1e9, "established_in": ["US"],
     "jurisdictions": ["EU", "KR", "CN", "US-CA", "US-CO"]},
])
def test_checks_guard_absent_keys(thin_entries: list[dict[str, Any]],
                                  system_facts: dict[str, Any]) -> None:
    # every pack, pinned, over records and facts that lack most keys: verdicts, no errors
    for e in thin_entries:
        got = judge(e, MINE, systems={"bot": system_facts}, pin=True,
                    at=datetime(2028, 9, 1, tzinfo=UTC))
        assert len(got) == sum(len(p.obligations) for p in MINE)
        assert {f.verdict for f in got} <= {"pass", "fail", "not_applicable",
                                            "evidence_needed"}
