"""Pack obligations that read the agent guard's attributes: METI/MIC principle 5 (kansa
control), EU AI Act Art. 15(5) for high-risk systems (kansa control), Art. 55(1)(d) for
GPAI models with systemic risk (evidence)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from kansa.guard.agent import ATTR
from kansa.policy.bundled import bundled_packs
from kansa.policy.judging import judge
from kansa.records.model import UsageRecord

BY_REF = {p.ref: p for p in bundled_packs()}
EU = BY_REF["eu/ai-act@2024-1689"]
OMNIBUS = BY_REF["eu/ai-act@2026-omnibus"]
GL10 = BY_REF["jp.meti-mic/ai-guidelines-for-business@1.0"]
GL11 = BY_REF["jp.meti-mic/ai-guidelines-for-business@1.1"]
GL12 = BY_REF["jp.meti-mic/ai-guidelines-for-business@1.2"]

TAINTED_HELD = {ATTR.DECISION: "approval_required", ATTR.RULES: ["tainted", "egress"],
                "kansa.policy.approval": "apr_x"}
TAINTED_RAN = {ATTR.DECISION: "flag", ATTR.RULES: ["tainted"]}
CLEAN = {ATTR.DECISION: "allow", ATTR.RULES: []}


def tool_entry(when: str, attributes: dict[str, Any]) -> dict[str, Any]:
    rec = UsageRecord(system="bot", ts=datetime.fromisoformat(when).replace(tzinfo=UTC),
                      kind="tool.call", operation="execute_tool", tool_name="send_email",
                      outcome="ok", attributes=attributes)
    return rec.entry_object(subject_ref=None, commitment="7" * 64)


def verdict(e: dict[str, Any], pack: Any, oid: str, facts: dict[str, Any]) -> str:
    got = {f.obligation: f for f in judge(e, [pack], systems={"bot": facts}, pin=True)}
    return got[oid].verdict


JP = {"roles": ["deployer"], "jurisdictions": ["JP"]}
HIGH = {"roles": ["provider", "deployer"], "jurisdictions": ["EU"], "high_risk": True,
        "log_retention_days": 183, "placed_on_market": date(2026, 3, 1)}
GPAI = {"roles": ["provider"], "jurisdictions": ["EU"], "gpai": True, "training_flops": 3e25,
        "model_placed_on_market": date(2025, 9, 1)}


@pytest.mark.parametrize("pack", [GL10, GL11, GL12])
def test_jp_principle_5_control_reads_the_agent_decision(pack: Any) -> None:
    oid = "c5-security-agent-tool-calls"
    o = pack.obligation(oid)
    assert o.check is not None and o.check.origin == "kansa"
    assert str(o.citation) == "Part 2 C, principle 5"
    when = "2026-06-01T10:00:00"
    assert verdict(tool_entry(when, TAINTED_HELD), pack, oid, JP) == "pass"
    assert verdict(tool_entry(when, {**TAINTED_HELD, ATTR.DECISION: "block"}), pack, oid,
                   JP) == "pass"
    assert verdict(tool_entry(when, TAINTED_RAN), pack, oid, JP) == "fail"
    assert verdict(tool_entry(when, CLEAN), pack, oid, JP) == "not_applicable"
    assert verdict(tool_entry(when, {}), pack, oid, JP) == "not_applicable"


@pytest.mark.parametrize("pack, before, after", [
    (EU, "2026-08-01T12:00:00", "2026-08-03T12:00:00"),
    (OMNIBUS, "2027-12-01T12:00:00", "2027-12-03T12:00:00"),
])
def test_eu_art15_5_control_for_high_risk_systems(pack: Any, before: str, after: str) -> None:
    oid = "art15-5-agent-tool-calls"
    assert str(pack.obligation(oid).citation) == "Art. 15(5)"
    assert verdict(tool_entry(after, TAINTED_RAN), pack, oid, HIGH) == "fail"
    assert verdict(tool_entry(after, TAINTED_HELD), pack, oid, HIGH) == "pass"
    assert verdict(tool_entry(before, TAINTED_RAN), pack, oid, HIGH) == "not_applicable"
    not_high = {**HIGH, "high_risk": False}
    assert verdict(tool_entry(after, TAINTED_RAN), pack, oid, not_high) == "not_applicable"
    f = [x for x in judge(tool_entry(after, TAINTED_RAN), [pack], systems={"bot": HIGH},
                          pin=True) if x.obligation == oid][0]
    assert "without a person's approval" in f.reason


@pytest.mark.parametrize("pack", [EU, OMNIBUS])
def test_eu_art55_1_d_evidence_for_systemic_gpai(pack: Any) -> None:
    oid = "art55-1-d-agent-attacks-on-record"
    assert str(pack.obligation(oid).citation) == "Art. 55(1)(d)"
    when = "2026-01-10T10:00:00"
    assert verdict(tool_entry(when, TAINTED_HELD), pack, oid, GPAI) == "evidence_needed"
    assert verdict(tool_entry(when, CLEAN), pack, oid, GPAI) == "not_applicable"
    small = {**GPAI, "training_flops": 1e24}
    assert verdict(tool_entry(when, TAINTED_HELD), pack, oid, small) == "not_applicable"
