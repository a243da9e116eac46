"""judge(): verdict kinds, effective-date edges, transitions, version selection, CEL errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kansa.policy.cel import CheckError
from kansa.policy.judging import judge
from kansa.policy.pack import Pack, PolicyError, load_pack, parse_pack

EXAMPLES = Path(__file__).parent.parent / "src/kansa/policy/packs/example"
V1 = load_pack(EXAMPLES / "ai-logging-v1.yaml")
V2 = load_pack(EXAMPLES / "ai-logging-v2.yaml")


def rec(ts: str, **kw: Any) -> dict[str, Any]:
    e = {"v": 1, "kind": "gen_ai.call", "id": "r-" + ts, "ts": ts, "system": "bot",
         "outcome": "ok", "gen_ai.request.model": "m", "gen_ai.provider.name": "openai",
         "gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 2}
    e.update(kw)
    return {k: v for k, v in e.items() if v is not None}


def verdicts(findings: list[Any]) -> dict[str, str]:
    return {f.obligation: f.verdict for f in findings}


def test_verdict_kinds_and_finding_fields() -> None:
    fs = judge(rec("2026-03-01T00:00:00Z", **{"gen_ai.usage.output_tokens": None}), [V1],
               index=7)
    assert verdicts(fs) == {"log-model": "pass", "log-usage": "fail",
                            "retention-policy": "evidence_needed"}
    usage = next(f for f in fs if f.obligation == "log-usage")
    assert (usage.index, usage.record_id, usage.pack_ref, usage.pack_hash, usage.citation,
            usage.legal_force) == (7, "r-2026-03-01T00:00:00Z", "kansa.example/ai-logging@1",
                                   V1.hash, "Art. 2(1)", "effort_duty")
    # a failed call is outside v1's Art. 2; an agent step is outside Art. 1 and 2
    fs = judge(rec("2026-03-01T00:00:00Z", outcome="error"), [V1])
    assert verdicts(fs)["log-usage"] == "not_applicable"
    fs = judge(rec("2026-03-01T00:00:00Z", kind="agent.step"), [V1])
    assert verdicts(fs) == {"log-model": "not_applicable", "log-usage": "not_applicable",
                            "retention-policy": "evidence_needed"}


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2025-12-31T23:59:59.999999Z", None),  # the day before v1: no version in force
        ("2026-01-01T00:00:00Z", "1"),  # on v1's first day
        ("2026-06-30T23:59:59.999999Z", "1"),  # the day before v2
        ("2026-07-01T00:00:00Z", "2"),  # v2's first day
        ("2026-07-02T00:00:00Z", "2"),
    ],
)
def test_version_in_force_at_record_time(ts: str, expected: str | None) -> None:
    fs = judge(rec(ts), [V2, V1])
    assert {f.version for f in fs} == ({expected} if expected else set())
    assert all(f.pack_hash == (V1 if expected == "1" else V2).hash for f in fs)


@pytest.mark.parametrize(
    ("placed", "ts", "verdict", "reason_part"),
    [
        # a new system: v2's Art. 2 applies from 2026-07-01
        ("2026-07-15", "2026-07-20T00:00:00Z", "fail", "check does not hold"),
        # a system on the market before 2026-07-01 gets until 2027-01-01
        ("2026-03-01", "2026-12-31T23:59:59Z", "not_applicable", "not in force until 2027-01-01"),
        ("2026-03-01", "2027-01-01T00:00:00Z", "fail", "(transition 1)"),
        ("2026-03-01", "2027-01-02T00:00:00Z", "fail", "(transition 1)"),
        # placed on the market exactly on the day: not before it, no transition
        ("2026-07-01", "2026-07-01T00:00:00Z", "fail", "check does not hold"),
        # no facts about the system: no transition
        (None, "2026-07-01T00:00:00Z", "fail", "check does not hold"),
    ],
)
def test_transition_edges(placed: str | None, ts: str, verdict: str, reason_part: str) -> None:
    from datetime import date

    systems = {"bot": {"placed_on_market": date.fromisoformat(placed)}} if placed else {}
    r = rec(ts, **{"gen_ai.provider.name": None})  # v2 needs the provider: fails when in force
    fs = judge(r, [V2], systems=systems)
    usage = next(f for f in fs if f.obligation == "log-usage")
    assert usage.verdict == verdict and reason_part in usage.reason, usage
    # the other obligations of v2 are unaffected by the transition
    assert verdicts(fs)["log-model"] == "pass"


TZ_PACK = """\
pack: test/tz
version: "1"
title: test
publisher: tests
sources: [https://example.org/p]
jurisdiction: jp
status: adopted
timezone: Asia/Tokyo
effective_from: 2026-04-01
obligations:
  - id: o
    citation: {article: "1"}
    role: deployer
    legal_force: binding
    effective_from: 2026-05-01
    effective_until: 2026-06-01
    text: {en: {kind: summary, text: s}}
    check: {expr: 'true'}
"""


@pytest.mark.parametrize(
    ("ts", "verdict"),
    [
        ("2026-04-30T14:59:59Z", "not_applicable"),  # 23:59:59 JST on 2026-04-30
        ("2026-04-30T15:00:00Z", "pass"),  # 00:00 JST on 2026-05-01
        ("2026-05-31T14:59:59Z", "pass"),
        ("2026-05-31T15:00:00Z", "not_applicable"),  # until is exclusive
    ],
)
def test_obligation_dates_are_days_in_the_pack_time_zone(ts: str, verdict: str) -> None:
    pack = parse_pack(TZ_PACK)
    assert verdicts(judge(rec(ts), [pack])) == {"o": verdict}


def test_pin_judges_under_a_version_not_yet_in_force() -> None:
    r = rec("2026-03-01T00:00:00Z", **{"gen_ai.provider.name": None})
    assert judge(r, [V2]) == []
    pinned = judge(r, [V2], pin=True)
    # v2's own obligations still start on 2026-07-01
    assert verdicts(pinned) == {"log-model": "not_applicable", "log-usage": "not_applicable",
                                "retention-policy": "not_applicable"}
    later = judge(r, [V2], at=datetime(2026, 8, 1, tzinfo=UTC))
    assert verdicts(later)["log-usage"] == "fail"


def test_roles_in_system_facts_limit_obligations() -> None:
    fs = judge(rec("2026-03-01T00:00:00Z"), [V1], systems={"bot": {"roles": ["provider"]}})
    assert set(verdicts(fs).values()) == {"not_applicable"}
    assert "applies to the deployer" in fs[0].reason
    fs = judge(rec("2026-03-01T00:00:00Z"), [V1], systems={"bot": {"roles": ["deployer"]}})
    assert verdicts(fs)["log-model"] == "pass"


def test_jurisdictions_in_system_facts_limit_obligations() -> None:
    r = rec("2026-03-01T00:00:00Z", **{"gen_ai.usage.output_tokens": None})
    fs = judge(r, [V1], systems={"bot": {"jurisdictions": ["JP", "EU"]}})
    assert set(verdicts(fs).values()) == {"not_applicable"}
    assert all(f.reason == "applies in example; the system is offered in JP, EU" for f in fs)
    assert set(verdicts(judge(r, [V1], systems={"bot": {"jurisdictions": []}})).values()) \
        == {"not_applicable"}
    offered = {"bot": {"jurisdictions": ["example"], "roles": ["deployer"]}}
    assert verdicts(judge(r, [V1], systems=offered)) == verdicts(judge(r, [V1])) == {
        "log-model": "pass", "log-usage": "fail", "retention-policy": "evidence_needed"}
    # facts for another system do not limit this one
    assert verdicts(judge(r, [V1], systems={"x": {"jurisdictions": ["JP"]}}))["log-usage"] \
        == "fail"


def _pack_with(expr: str, applies: str | None = None) -> Pack:
    check = f"    check:\n      expr: '{expr}'\n"
    if applies:
        check += f"      applies: '{applies}'\n"
    return parse_pack(TZ_PACK.replace("    check: {expr: 'true'}\n", check)
                      .replace("    effective_until: 2026-06-01\n", ""), "t.yaml")


def test_cel_runtime_error_names_obligation_and_entry() -> None:
    pack = _pack_with('record["gen_ai.response.model"] == "m"')
    with pytest.raises(CheckError) as ei:
        judge(rec("2026-06-01T00:00:00Z"), [pack], index=42)
    assert ei.value.obligation == "o" and ei.value.index == 42
    assert "obligation 'o'" in str(ei.value) and "entry 42" in str(ei.value)
    assert "gen_ai.response.model" in str(ei.value)


def test_non_boolean_check_is_an_error() -> None:
    pack = _pack_with("record.outcome")
    with pytest.raises(CheckError, match=r"obligation 'o'.*returned str 'ok', not a boolean"):
        judge(rec("2026-06-01T00:00:00Z"), [pack])


def test_now_is_the_judgement_instant() -> None:
    pack = _pack_with('now >= timestamp("2026-06-01T12:00:00Z")')
    assert verdicts(judge(rec("2026-06-01T11:59:59Z"), [pack])) == {"o": "fail"}
    assert verdicts(judge(rec("2026-06-01T12:00:00Z"), [pack])) == {"o": "pass"}
    assert verdicts(judge(rec("2026-06-01T11:59:59Z"), [pack],
                          at=datetime(2026, 6, 2, tzinfo=UTC))) == {"o": "pass"}


def test_two_versions_starting_the_same_day_are_ambiguous() -> None:
    other = parse_pack((EXAMPLES / "ai-logging-v1.yaml").read_text()
                       .replace('version: "1"', 'version: "1b"'))
    with pytest.raises(PolicyError, match="ambiguous"):
        judge(rec("2026-03-01T00:00:00Z"), [V1, other])
    # the same pack twice is one pack
    assert len(judge(rec("2026-03-01T00:00:00Z"), [V1, V1])) == 3
