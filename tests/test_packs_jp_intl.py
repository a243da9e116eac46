"""The bundled Japanese and international rule packs: they load, their ids and hashes are
stable, every obligation carries en/ja text and a verification block, and every check
gives the expected verdict on realistic ledger entries, including the day before and the
day a provision takes effect (days in the pack's time zone: Asia/Tokyo for Japan)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kansa.policy.bundled import PACKS_DIR, bundled_packs
from kansa.policy.judging import VERDICTS, Finding, judge
from kansa.policy.pack import Pack, load_pack, parse_pack
from kansa.records.model import UsageRecord

JST = timezone(timedelta(hours=9))
AREAS = ("jp", "intl")
MINE = [p for p in bundled_packs() if Path(p.source).parts[0] in AREAS]
BY_REF = {p.ref: p for p in MINE}

PROMOTION = BY_REF["jp.cao/ai-promotion-act@2025-06-04"]
APPROPRIATENESS = BY_REF["jp.cao/ai-appropriateness-guideline@2025-12-19"]
PLAN = BY_REF["jp.cao/ai-basic-plan@2025-12-23"]
PLAN_DRAFT = BY_REF["jp.cao/ai-basic-plan@2026-06-draft"]
GL10 = BY_REF["jp.meti-mic/ai-guidelines-for-business@1.0"]
GL11 = BY_REF["jp.meti-mic/ai-guidelines-for-business@1.1"]
GL12 = BY_REF["jp.meti-mic/ai-guidelines-for-business@1.2"]
CODE = BY_REF["intl.g7/hiroshima-code-of-conduct@2023-10-30"]
HAIP = BY_REF["intl.oecd/haip-reporting@1.0"]
GUIDELINES = [GL10, GL11, GL12]

# A released pack version must not change silently: findings name the hash and signatures
# cover it. Change a pin only together with a deliberate edit (or, better, a new version).
PINNED_HASHES = {
    "jp.cao/ai-appropriateness-guideline@2025-12-19":
        "sha256:3f316b0a4b5c26b9df2ab0c9b547b0b9218841d9b054812756187d19577a3603",
    "intl.g7/hiroshima-code-of-conduct@2023-10-30":
        "sha256:613c29d5326bb71279fcb49a0eae3b9ab49624d894834d61023913113cf7aee7",
    "intl.oecd/haip-reporting@1.0":
        "sha256:008778e7da506b5380cfb9aced22f675ddf12b6af6448d7d4908262789e14372",
    "jp.cao/ai-basic-plan@2025-12-23":
        "sha256:1ee596604868cf160c6eb47d2223fdc078fa40c7158c7f99f6b8951f9ec6dbb9",
    "jp.cao/ai-basic-plan@2026-06-draft":
        "sha256:a007e30a29c427b218845a3ef3c8e2edcca2d351648a16478e5092766ffc8e19",
    "jp.cao/ai-promotion-act@2025-06-04":
        "sha256:6d694961dfa8830df1bf6f6bde7db138a68311880b48b8cadd2e6c7d7232dea1",
    "jp.meti-mic/ai-guidelines-for-business@1.0":
        "sha256:575b1453fbbd3bc2dbb23dcaee1e612fc0158547830b95fc78e4cd8409bd2ca3",
    "jp.meti-mic/ai-guidelines-for-business@1.1":
        "sha256:27436841800e6f532d1f456c15d9ea2a45a846d696b6c0120bf415cccda99f18",
    "jp.meti-mic/ai-guidelines-for-business@1.2":
        "sha256:52d8a6335105344c84208cd2b6642564c126a897af4be6c7ed0e133aff50b879",
}

DEPLOYER_JP = {"roles": ["deployer", "provider"], "jurisdictions": ["JP"],
               "providers": ["openai", "anthropic"]}
DEVELOPER_INTL = {"roles": ["developer"], "jurisdictions": ["INTL"]}
COMMITMENT = "5" * 64


def entry(ts: datetime, *, kind: str = "gen_ai.call", outcome: str = "ok",
          provider: str | None = "openai", operation: str | None = "chat",
          model: str | None = "gpt-4o-mini", logged: bool = True,
          attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ledger entry as the gateway writes it (the stored JSON object)."""
    rec = UsageRecord(system="bot", ts=ts, kind=kind, outcome=outcome, provider=provider,
                      operation=operation, request_model=model,
                      response_model=model if outcome == "ok" else None,
                      input_tokens=12 if outcome == "ok" else None,
                      output_tokens=40 if outcome == "ok" else None,
                      status=200 if outcome == "ok" else 500,
                      error_type=None if outcome == "ok" else "upstream_error",
                      attributes=dict(attributes or {}))
    return rec.entry_object(subject_ref=None, commitment=COMMITMENT if logged else None)


def verdicts(findings: Iterable[Finding], pack: Pack | None = None) -> dict[str, str]:
    return {f.obligation: f.verdict for f in findings if pack is None or f.pack == pack.id
            and f.version == pack.version}


def one(e: dict[str, Any], pack: Pack, facts: dict[str, Any]) -> dict[str, str]:
    """Verdicts of ``pack`` alone, pinned, for a system with ``facts``."""
    return verdicts(judge(e, [pack], systems={"bot": facts}, pin=True))


def governing(e: dict[str, Any], packs: list[Pack], facts: dict[str, Any]) -> set[str]:
    """The pack versions (id@version) that judged ``e`` at its own time."""
    return {f.pack_ref for f in judge(e, packs, systems={"bot": facts})}


# -- loading, ids, hashes ----------------------------------------------------------------


def test_every_pack_loads_and_the_set_is_complete() -> None:
    files = sorted(p.relative_to(PACKS_DIR).as_posix() for area in AREAS
                   for p in (PACKS_DIR / area).glob("*.yaml"))
    assert len(MINE) == len(files) == 9
    assert set(BY_REF) == set(PINNED_HASHES)
    for p in MINE:
        assert p.jurisdiction in ("JP", "INTL")
        assert all(o.jurisdiction == p.jurisdiction for o in p.obligations)
        assert p.id.startswith("jp." if p.jurisdiction == "JP" else "intl.")


def test_hashes_are_pinned_and_deterministic() -> None:
    for p in MINE:
        again = load_pack(PACKS_DIR / p.source)
        assert again.hash == p.hash and again.canonical_json() == p.canonical_json()
        assert p.hash == PINNED_HASHES[p.ref], f"{p.ref} changed: {p.hash}"


def test_comments_and_layout_do_not_change_the_hash() -> None:
    for p in MINE:
        text = (PACKS_DIR / p.source).read_text(encoding="utf-8")
        stripped = "\n".join(line for line in text.splitlines()
                             if not line.lstrip().startswith("#"))
        assert parse_pack(stripped + "\n\n# trailing comment\n").hash == p.hash


def test_haip_sections_have_exactly_the_ids_the_report_draft_uses() -> None:
    assert [o.id for o in HAIP.obligations] == [f"section-{n}" for n in range(1, 8)]
    for o in HAIP.obligations:
        assert o.evidence is not None and o.evidence.kind == "document" and o.check is None
        assert o.legal_force == "voluntary"
        assert {"en", "ja"} <= set(o.text) and o.title
    titles = [o.title for o in HAIP.obligations]
    assert titles[0] == "Risk identification and evaluation"
    assert titles[4] == "Content authentication and provenance mechanisms"
    assert titles[6] == "Advancement of human and global interests"


def test_code_of_conduct_has_eleven_actions_and_action_7_is_a_record_check() -> None:
    numbers = {int(m.group(1)) for o in CODE.obligations
               if (m := re.fullmatch(r"action-(\d+)(-disclosure)?", o.id))}
    assert numbers == set(range(1, 12))
    checks = {o.id for o in CODE.obligations if o.check is not None}
    assert checks == {"action-7", "action-7-disclosure"}
    assert {o.legal_force for o in CODE.obligations} == {"voluntary"}


def test_every_obligation_has_en_and_ja_text_and_a_verification_block() -> None:
    for p in MINE:
        assert p.verification is not None, p.ref
        for o in p.obligations:
            assert {"en", "ja"} <= set(o.text), (p.ref, o.id)
            assert o.verification is not None, (p.ref, o.id)
            v = o.verification
            assert v.status == "unverified" or v.against is not None
            assert v.status == "verified" or v.note


def test_no_text_is_official_without_a_source_and_only_the_act_is_quoted() -> None:
    for p in MINE:
        for o in p.obligations:
            for t in o.text.values():
                assert t.kind != "official" or (t.source_url or o.source_url)
            if p is PROMOTION:
                # the e-Gov text, quoted; the government's English reference translation
                assert o.text["ja"].kind == "official" and o.text["ja"].source_url
                assert o.text["en"].kind == "translation" and o.text["en"].source_url
                assert o.verification is not None and o.verification.status == "verified"
            else:  # no official wording of the plans and guidelines was read
                assert {t.kind for t in o.text.values()} == {"summary"}, (p.ref, o.id)


def test_art7_cooperation_is_a_duty_without_sanction_and_use_an_effort_duty() -> None:
    coop = PROMOTION.obligation("art7-cooperation")
    assert coop.legal_force == "binding"
    assert "協力しなければならない。" in coop.text["ja"].text
    assert coop.verification is not None and "no penalty" in (coop.verification.note or "")
    use = PROMOTION.obligation("art7-utilization")
    assert use.legal_force == "effort_duty" and "新産業の創出に努める" in use.text["ja"].text
    assert PROMOTION.obligation("art25-2-hq-request").text["ja"].text.endswith(
        "必要な協力を依頼することができる。")


def test_art13_guideline_is_soft_law_and_says_it_is_unverified() -> None:
    assert APPROPRIATENESS.effective_from.isoformat() == "2025-12-19"
    assert [o.id for o in APPROPRIATENESS.obligations] == [
        "governance", "transparency", "safety", "business-continuity", "stakeholder-data"]
    for o in APPROPRIATENESS.obligations:
        assert o.legal_force == "soft_law" and set(o.roles) == {"provider", "deployer"}
        assert o.verification is not None and o.verification.status == "unverified"
        assert o.evidence is not None


# kansa's controls for principle 5 (in every version: they are kansa's, not the text's)
KANSA_CONTROLS = ("c5-security-approved-provider", "c5-security-agent-tool-calls")


def test_security_provider_check_is_marked_as_kansas_control() -> None:
    for gl in GUIDELINES:
        for oid in KANSA_CONTROLS:
            o = gl.obligation(oid)
            assert o.check is not None and o.check.origin == "kansa"
            assert o.title and o.title.startswith("kansa control")
            assert "guidelines do not say this" in o.text["en"].text
    assert all(o.check is None or o.check.origin == "instrument" or o.id in KANSA_CONTROLS
               for gl in GUIDELINES for o in gl.obligations)


# two CJK characters (kana, kanji, full-width forms, hangul) with white space between them:
# a line break YAML folded into a space
_CJK = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\uac00-\ud7af"
_CJK_GAP = re.compile(f"[{_CJK}]\\s+[{_CJK}]")


def test_no_space_between_two_cjk_characters_in_any_bundled_pack() -> None:
    bad = []
    for p in bundled_packs():
        texts = [("title_ja", p.title_ja or "")]
        for o in p.obligations:
            texts += [(f"{o.id} text.{lang}", t.text) for lang, t in o.text.items()
                      if lang in ("ja", "ko", "zh")]
            texts += [(f"{o.id} reason.{lang}", r) for lang, r in (o.reason or {}).items()
                      if lang in ("ja", "ko", "zh")]
        bad += [(p.ref, where, m.group()) for where, text in texts
                for m in _CJK_GAP.finditer(text)]
    assert bad == []


def test_japanese_texts_are_japanese() -> None:
    kana_kanji = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    for p in MINE:
        for o in p.obligations:
            assert kana_kanji.search(o.text["ja"].text), (p.ref, o.id)


def test_legal_force_matches_the_instrument() -> None:
    assert {o.legal_force for o in PROMOTION.obligations} == {"effort_duty", "binding",
                                                               "voluntary"}
    for p in (PLAN, PLAN_DRAFT, *GUIDELINES):
        assert {o.legal_force for o in p.obligations} == {"soft_law"}, p.ref
    assert {o.legal_force for o in HAIP.obligations} == {"voluntary"}


def test_basic_plan_draft_is_a_draft_superseding_the_december_plan() -> None:
    assert PLAN.status == "in_force" and PLAN_DRAFT.status == "draft"
    assert PLAN_DRAFT.supersedes == PLAN.version and PLAN_DRAFT.id == PLAN.id
    assert {o.status for o in PLAN_DRAFT.obligations} == {"draft"}
    assert PLAN_DRAFT.verification is not None
    assert PLAN_DRAFT.verification.status == "unverified"
    assert "text nor an official page for it has been seen" in (PLAN_DRAFT.verification.note or "")
    assert {o.verification.status for o in PLAN_DRAFT.obligations
            if o.verification is not None} == {"unverified"}
    # the December plan's obligations carry over under the same ids
    assert {o.id for o in PLAN.obligations} < {o.id for o in PLAN_DRAFT.obligations}


def test_guideline_versions_chain_and_v1_2_is_unverified() -> None:
    assert (GL10.status, GL11.supersedes, GL12.supersedes) == ("repealed", "1.0", "1.1")
    assert GL10.effective_until == GL11.effective_from
    assert GL12.verification is not None and GL12.verification.status == "unverified"
    assert [o.id for o in GL10.obligations] == [o.id for o in GL11.obligations]
    assert [o.id for o in GL12.obligations] == [o.id for o in GL11.obligations] + [
        "agents-oversight"]


# -- checks on realistic records -------------------------------------------------------------

T = datetime(2025, 10, 1, 12, 0, tzinfo=JST)


def test_guideline_record_checks_pass_on_a_well_kept_record() -> None:
    e = entry(T, attributes={"kansa.ai_disclosure": True})
    got = one(e, GL11, DEPLOYER_JP)
    assert {k: got[k] for k in ("c5-security-approved-provider", "c6-verifiability-logs",
                                "c6-stakeholder-information", "c7-traceability")} == {
        "c5-security-approved-provider": "pass", "c6-verifiability-logs": "pass",
        "c6-stakeholder-information": "pass", "c7-traceability": "pass"}
    evidence = {o.id for o in GL11.obligations if o.evidence is not None}
    assert {got[i] for i in evidence} == {"evidence_needed"}


def test_guideline_record_checks_fail_where_the_record_shows_a_gap() -> None:
    bare = entry(T, logged=False, provider="mistral")  # no content, no attributes at all
    assert "attributes" not in bare and "content" not in bare
    got = one(bare, GL11, DEPLOYER_JP)
    assert got["c6-verifiability-logs"] == "fail"
    assert got["c6-stakeholder-information"] == "fail"
    assert got["c5-security-approved-provider"] == "fail"
    assert got["c7-traceability"] == "pass"
    not_told = entry(T, attributes={"kansa.ai_disclosure": False})
    assert one(not_told, GL11, DEPLOYER_JP)["c6-stakeholder-information"] == "fail"
    stringly = entry(T, attributes={"kansa.ai_disclosure": "true"})  # not a boolean
    assert one(stringly, GL11, DEPLOYER_JP)["c6-stakeholder-information"] == "fail"
    no_model = entry(T, model=None)
    assert one(no_model, GL11, DEPLOYER_JP)["c7-traceability"] == "fail"


def test_guideline_checks_do_not_apply_where_they_cannot() -> None:
    err = entry(T, outcome="error", logged=False)
    got = one(err, GL11, DEPLOYER_JP)
    assert got["c6-verifiability-logs"] == got["c6-stakeholder-information"] == \
        "not_applicable"
    emb = entry(T, operation="embeddings")
    assert one(emb, GL11, DEPLOYER_JP)["c6-stakeholder-information"] == "not_applicable"
    assert one(emb, GL11, DEPLOYER_JP)["c6-verifiability-logs"] == "pass"
    no_list = {k: v for k, v in DEPLOYER_JP.items() if k != "providers"}
    assert one(entry(T), GL11, no_list)["c5-security-approved-provider"] == "not_applicable"
    step = entry(T, kind="agent.step", operation=None, provider=None, model=None)
    got = one(step, GL11, DEPLOYER_JP)
    assert {got[i] for i in ("c5-security-approved-provider", "c6-verifiability-logs",
                             "c6-stakeholder-information", "c7-traceability")} == {
        "not_applicable"}


def test_guidelines_agents_item_asks_for_evidence_only_on_agent_records() -> None:
    t = datetime(2026, 5, 1, tzinfo=JST)
    assert one(entry(t, kind="agent.step"), GL12, DEPLOYER_JP)["agents-oversight"] == \
        "evidence_needed"
    assert one(entry(t, kind="tool.call"), GL12, DEPLOYER_JP)["agents-oversight"] == \
        "evidence_needed"
    assert one(entry(t), GL12, DEPLOYER_JP)["agents-oversight"] == "not_applicable"


@pytest.mark.parametrize(("ts", "expected"), [
    (datetime(2024, 4, 18, 23, 59, 59, tzinfo=JST), set()),
    (datetime(2024, 4, 19, 0, 0, tzinfo=JST), {"jp.meti-mic/ai-guidelines-for-business@1.0"}),
    (datetime(2025, 3, 27, 23, 59, 59, tzinfo=JST),
     {"jp.meti-mic/ai-guidelines-for-business@1.0"}),
    # midnight in Tokyo is 15:00 UTC the day before
    (datetime(2025, 3, 27, 15, 0, tzinfo=UTC), {"jp.meti-mic/ai-guidelines-for-business@1.1"}),
    (datetime(2026, 3, 30, 23, 59, 59, tzinfo=JST),
     {"jp.meti-mic/ai-guidelines-for-business@1.1"}),
    (datetime(2026, 3, 31, 0, 0, tzinfo=JST), {"jp.meti-mic/ai-guidelines-for-business@1.2"}),
])
def test_guideline_version_in_force_at_the_record_time(ts: datetime, expected: set[str]) -> None:
    assert governing(entry(ts), GUIDELINES, DEPLOYER_JP) == expected


def test_promotion_act_effort_duties_from_promulgation_day() -> None:
    assert governing(entry(datetime(2025, 6, 3, 23, 59, 59, tzinfo=JST)), [PROMOTION],
                     DEPLOYER_JP) == set()
    got = verdicts(judge(entry(datetime(2025, 6, 4, tzinfo=JST)), [PROMOTION],
                         systems={"bot": DEPLOYER_JP}))
    assert got == {"art7-utilization": "evidence_needed",
                   "art7-utilization-provider": "evidence_needed",
                   "art7-cooperation": "evidence_needed",
                   "art7-cooperation-provider": "evidence_needed",
                   "art16-cooperation": "evidence_needed",
                   "art25-2-hq-request": "not_applicable"}


@pytest.mark.parametrize(("ts", "verdict"), [
    (datetime(2025, 8, 31, 23, 59, 59, tzinfo=JST), "not_applicable"),
    (datetime(2025, 8, 31, 15, 0, tzinfo=UTC), "evidence_needed"),  # 1 Sep 00:00 in Tokyo
    (datetime(2025, 9, 1, 0, 0, tzinfo=JST), "evidence_needed"),
])
def test_chapter_4_headquarters_request_from_1_september_2025(ts: datetime,
                                                               verdict: str) -> None:
    got = judge(entry(ts), [PROMOTION], systems={"bot": DEPLOYER_JP})
    f = next(f for f in got if f.obligation == "art25-2-hq-request")
    assert f.verdict == verdict
    assert verdict == "evidence_needed" or f.reason.startswith("not in force until")


def test_promotion_act_roles_and_jurisdictions_limit_it() -> None:
    e = entry(datetime(2025, 10, 1, tzinfo=JST))
    got = verdicts(judge(e, [PROMOTION], systems={"bot": {"roles": ["deployer"]}}))
    assert got["art7-cooperation"] == "evidence_needed"
    assert got["art7-cooperation-provider"] == "not_applicable"
    eu_only = {"roles": ["deployer", "provider"], "jurisdictions": ["EU"]}
    assert set(verdicts(judge(e, [PROMOTION], systems={"bot": eu_only})).values()) == {
        "not_applicable"}


@pytest.mark.parametrize(("ts", "expected"), [
    (datetime(2025, 12, 22, 23, 59, 59, tzinfo=JST), set()),
    (datetime(2025, 12, 23, 0, 0, tzinfo=JST), {"jp.cao/ai-basic-plan@2025-12-23"}),
    (datetime(2026, 6, 30, 23, 59, 59, tzinfo=JST), {"jp.cao/ai-basic-plan@2025-12-23"}),
    # a draft is not law: beside the adopted plan it never governs, whatever its dates
    (datetime(2026, 7, 1, 0, 0, tzinfo=JST), {"jp.cao/ai-basic-plan@2025-12-23"}),
])
def test_basic_plan_version_by_date(ts: datetime, expected: set[str]) -> None:
    assert governing(entry(ts), [PLAN, PLAN_DRAFT], DEPLOYER_JP) == expected


def test_basic_plan_draft_governs_only_when_tried_alone() -> None:
    # what-if: the draft given alone for its instrument applies from its placeholder date
    before = entry(datetime(2026, 6, 30, 23, 59, 59, tzinfo=JST))
    after = entry(datetime(2026, 7, 1, 0, 0, tzinfo=JST))
    assert governing(before, [PLAN_DRAFT], DEPLOYER_JP) == set()
    assert governing(after, [PLAN_DRAFT], DEPLOYER_JP) == {"jp.cao/ai-basic-plan@2026-06-draft"}


def test_basic_plan_draft_what_if_on_generated_media() -> None:
    t = datetime(2026, 7, 15, tzinfo=JST)
    unmarked = entry(t, operation="image_generation",
                     attributes={"kansa.output.modality": "image"})
    marked = entry(t, operation="image_generation",
                   attributes={"kansa.output.modality": "image",
                               "kansa.output.label.machine_readable": ["c2pa"]})
    text = entry(t, attributes={"kansa.output.modality": "text"})
    assert one(unmarked, PLAN_DRAFT, DEPLOYER_JP)["draft-ai-content-detection"] == "fail"
    assert one(marked, PLAN_DRAFT, DEPLOYER_JP)["draft-ai-content-detection"] == "pass"
    assert one(text, PLAN_DRAFT, DEPLOYER_JP)["draft-ai-content-detection"] == "not_applicable"
    # the December plan has no such obligation: the impact is all the draft's
    assert "draft-ai-content-detection" not in one(unmarked, PLAN, DEPLOYER_JP)
    before = entry(datetime(2026, 6, 30, 23, 59, tzinfo=JST), operation="image_generation",
                   attributes={"kansa.output.modality": "image"})
    assert one(before, PLAN_DRAFT, DEPLOYER_JP)["draft-ai-content-detection"] == \
        "not_applicable"  # pinned, yet not before the draft's (placeholder) date
    step = entry(t, kind="agent.step")
    assert one(step, PLAN_DRAFT, DEPLOYER_JP)["draft-autonomous-ai"] == "evidence_needed"
    assert one(text, PLAN_DRAFT, DEPLOYER_JP)["draft-autonomous-ai"] == "not_applicable"


def test_code_action_7_on_media_and_chat() -> None:
    t = datetime(2025, 5, 1, tzinfo=UTC)
    image = {"kansa.output.modality": "image"}
    got = one(entry(t, attributes=image), CODE, DEVELOPER_INTL)
    assert got["action-7"] == "fail" and got["action-7-disclosure"] == "fail"
    got = one(entry(t, attributes={**image, "kansa.output.label.machine_readable":
                                   ["watermark"], "kansa.output.label.visible": True}),
              CODE, DEVELOPER_INTL)
    assert got["action-7"] == "pass" and got["action-7-disclosure"] == "pass"
    got = one(entry(t, attributes={**image, "kansa.output.label.machine_readable": []}),
              CODE, DEVELOPER_INTL)
    assert got["action-7"] == "fail"
    chat = one(entry(t, attributes={"kansa.ai_disclosure": True}), CODE, DEVELOPER_INTL)
    assert chat["action-7"] == "not_applicable" and chat["action-7-disclosure"] == "pass"
    assert one(entry(t), CODE, DEVELOPER_INTL)["action-7-disclosure"] == "fail"
    assert one(entry(t, operation="embeddings"), CODE,
               DEVELOPER_INTL)["action-7-disclosure"] == "not_applicable"
    assert one(entry(t, attributes=image), CODE, {"roles": ["deployer"]})["action-7"] == \
        "not_applicable"


@pytest.mark.parametrize(("ts", "in_force"), [
    (datetime(2023, 10, 29, 23, 59, 59, tzinfo=UTC), False),
    (datetime(2023, 10, 30, 0, 0, tzinfo=UTC), True),
])
def test_code_applies_from_30_october_2023(ts: datetime, in_force: bool) -> None:
    assert bool(governing(entry(ts), [CODE], DEVELOPER_INTL)) is in_force


@pytest.mark.parametrize(("ts", "in_force"), [
    (datetime(2025, 2, 6, 23, 59, 59, tzinfo=UTC), False),
    (datetime(2025, 2, 7, 0, 0, tzinfo=UTC), True),
])
def test_haip_reporting_from_launch_day(ts: datetime, in_force: bool) -> None:
    got = verdicts(judge(entry(ts), [HAIP], systems={"bot": DEVELOPER_INTL}))
    if in_force:
        assert got == {f"section-{n}": "evidence_needed" for n in range(1, 8)}
    else:
        assert got == {}


def test_all_packs_together_name_pack_and_hash_in_every_finding() -> None:
    e = entry(datetime(2026, 6, 1, tzinfo=JST), attributes={"kansa.ai_disclosure": True})
    facts = {"roles": ["deployer", "provider", "developer"], "jurisdictions": ["JP", "INTL"]}
    fs = judge(e, MINE, systems={"bot": facts})
    refs = {f.pack_ref for f in fs}
    assert refs == {"jp.cao/ai-promotion-act@2025-06-04", "jp.cao/ai-basic-plan@2025-12-23",
                    "jp.cao/ai-appropriateness-guideline@2025-12-19",
                    "jp.meti-mic/ai-guidelines-for-business@1.2",
                    "intl.g7/hiroshima-code-of-conduct@2023-10-30",
                    "intl.oecd/haip-reporting@1.0"}
    for f in fs:
        assert f.pack_hash == BY_REF[f.pack_ref].hash and f.verdict in VERDICTS


# -- every check on arbitrary gateway-shaped entries -------------------------------------------

_ATTRS = st.fixed_dictionaries({}, optional={
    "kansa.ai_disclosure": st.one_of(st.booleans(), st.sampled_from(["true", "yes", ""])),
    "kansa.output.modality": st.sampled_from(["text", "image", "audio", "video",
                                              "virtual_scene", "other"]),
    "kansa.output.label.visible": st.booleans(),
    "kansa.output.label.machine_readable": st.lists(
        st.sampled_from(["c2pa", "watermark", "fingerprint"]), max_size=2),
})


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["gen_ai.call", "agent.step", "tool.call", "kansa.event"]),
       outcome=st.sampled_from(["ok", "error", "timeout", "aborted", "blocked"]),
       provider=st.one_of(st.none(), st.sampled_from(["openai", "anthropic", "mistral"])),
       operation=st.one_of(st.none(), st.sampled_from(["chat", "embeddings",
                                                       "image_generation"])),
       model=st.one_of(st.none(), st.just("m")), logged=st.booleans(), attrs=_ATTRS,
       facts=st.sampled_from([{}, DEPLOYER_JP, DEVELOPER_INTL, {"providers": []}]))
def test_every_check_evaluates_on_any_gateway_shaped_entry(
        kind: str, outcome: str, provider: str | None, operation: str | None,
        model: str | None, logged: bool, attrs: dict[str, Any],
        facts: dict[str, Any]) -> None:
    e = entry(datetime(2026, 6, 1, tzinfo=JST), kind=kind, outcome=outcome,
              provider=provider, operation=operation, model=model, logged=logged,
              attributes=attrs)
    fs = judge(e, MINE, systems={"bot": facts}, pin=True)  # no CheckError: keys are guarded
    assert len(fs) == sum(len(p.obligations) for p in MINE)
    assert all(f.verdict in VERDICTS for f in fs)
    if kind != "gen_ai.call":
        checked = {(p.ref, o.id) for p in MINE for o in p.obligations if o.check is not None}
        assert all(f.verdict == "not_applicable" for f in fs
                   if (f.pack_ref, f.obligation) in checked)


def test_every_record_check_of_a_law_pack_says_why_it_fails_in_en_and_ja() -> None:
    # a failing finding reads "the answer carried no machine-readable AI label (Art. 50(2),
    # applies since ...)", not "check does not hold"
    missing = [f"{p.ref}#{o.id}" for p in bundled_packs() if not p.id.startswith("kansa.example")
               for o in p.obligations
               if o.check is not None and (o.reason is None or set(o.reason) != {"en", "ja"})]
    assert missing == []
