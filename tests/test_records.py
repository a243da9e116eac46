"""UsageRecord parsing, canonical entries and JSON Lines errors that name line and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kansa.errors import KansaError, RecordError
from kansa.records.jsonl import parse_line, parse_lines
from kansa.records.model import UsageRecord, canonical, format_ts, new_record_id

GOOD = {
    "ts": "2026-11-22T09:30:00Z",
    "system": "support-bot",
    "subject": "user-7",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 31,
    "input": "注文の状況は？",
    "output": "本日発送しました。",
}


def test_flat_record_maps_otel_fields() -> None:
    r = UsageRecord.from_flat(GOOD)
    assert r.system == "support-bot"
    assert r.provider == "openai"
    assert r.request_model == "gpt-4o-mini"
    assert r.input_tokens == 31
    assert r.ts == datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    assert r.content == {"input": "注文の状況は？", "output": "本日発送しました。"}


def test_entry_holds_no_content_and_no_clear_subject() -> None:
    r = UsageRecord.from_flat(GOOD)
    entry = canonical(r.entry_object(subject_ref="p" * 32, commitment="c" * 64))
    text = entry.decode()
    assert "注文" not in text and "user-7" not in text
    obj = json.loads(entry)
    assert obj["subject"] == "p" * 32
    assert obj["content"]["commitment"] == "c" * 64
    assert obj["gen_ai.request.model"] == "gpt-4o-mini"


def test_entry_bytes_are_rfc8785_canonical() -> None:
    r = UsageRecord.from_flat({**GOOD, "latency_ms": 12.5, "gen_ai.request.temperature": 0.7})
    entry = canonical(r.entry_object(subject_ref=None, commitment=None))
    obj = json.loads(entry)
    # JCS: keys sorted by UTF-16 code units, no whitespace, shortest number form
    assert list(obj) == sorted(obj)
    assert b" " not in entry.replace(b"support-bot", b"")
    assert canonical(obj) == entry
    assert b'"latency_ms":12.5' in entry


@pytest.mark.parametrize(
    ("patch", "field", "needle"),
    [
        ({"gen_ai.usage.input_tokens": "31"}, "gen_ai.usage.input_tokens", "integer"),
        ({"gen_ai.usage.input_tokens": -1}, "gen_ai.usage.input_tokens", "negative"),
        ({"ts": "yesterday"}, "ts", "RFC 3339"),
        ({"ts": "2026-11-22T09:30:00"}, "ts", "time zone"),
        ({"outcome": "fine"}, "outcome", "ok, error"),
        ({"promt": "typo"}, "promt", "unknown field"),
        ({"system": ""}, "system", "non-empty"),
        ({"latency_ms": "fast"}, "latency_ms", "number"),
        ({"gen_ai.response.finish_reasons": "stop"}, "gen_ai.response.finish_reasons", "list"),
        ({"gen_ai.request.seed": {"nested": 1}}, "gen_ai.request.seed", "scalars"),
    ],
)
def test_bad_field_is_named_with_its_line(
    patch: dict[str, object], field: str, needle: str
) -> None:
    with pytest.raises(RecordError) as e:
        parse_line(json.dumps({**GOOD, **patch}), 7)
    assert e.value.line == 7
    assert e.value.field == field
    assert needle in str(e.value)
    assert str(e.value).startswith(f"line 7, field {field!r}")


def test_missing_system() -> None:
    obj = dict(GOOD)
    del obj["system"]
    with pytest.raises(RecordError, match="line 3, field 'system': missing"):
        parse_line(json.dumps(obj), 3)


def test_malformed_json_names_line_and_column() -> None:
    results = list(parse_lines([json.dumps(GOOD), "", '{"system": "x",', "[1, 2]", "NaN"]))
    assert isinstance(results[0], UsageRecord)
    assert isinstance(results[1], RecordError)
    assert results[1].line == 3 and "not valid JSON" in str(results[1])
    assert isinstance(results[2], RecordError)
    assert results[2].line == 4 and "JSON object" in str(results[2])
    assert isinstance(results[3], RecordError) and results[3].line == 5


def test_record_ids_are_unique_and_time_ordered() -> None:
    ids = [new_record_id(datetime(2026, 1, 1, tzinfo=UTC)) for _ in range(1000)]
    assert len(set(ids)) == 1000
    later = new_record_id(datetime(2026, 6, 1, tzinfo=UTC))
    assert all(later > i for i in ids)
    assert ids[0][14] == "7"  # UUID version 7 layout


def test_timestamps_have_one_spelling() -> None:
    a = UsageRecord.from_flat({**GOOD, "ts": "2026-11-22T18:30:00+09:00"})
    b = UsageRecord.from_flat({**GOOD, "ts": "2026-11-22T09:30:00.000Z"})
    assert format_ts(a.ts) == format_ts(b.ts) == "2026-11-22T09:30:00.000000Z"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_any_text_line_gives_record_or_record_error(text: str) -> None:
    try:
        parse_line(text, 1)
    except RecordError as e:
        assert e.line == 1
    except KansaError as e:  # pragma: no cover - would be a bug
        pytest.fail(f"unexpected error type {type(e).__name__}: {e}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(GOOD) + ["outcome", "status", "latency_ms",
                                                         "gen_ai.x", "attributes", "id"]),
                       json_values, max_size=8))
def test_fuzz_json_objects_are_validated_not_crashing(obj: dict[str, object]) -> None:
    try:
        rec = UsageRecord.from_flat(obj, line=2)
    except RecordError as e:
        assert e.line == 2
        return
    entry = canonical(rec.entry_object(subject_ref=None, commitment=None))
    assert json.loads(entry)["system"] == rec.system


jcs_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(jcs_values)
def test_canonical_equals_rfc8785_reference(obj: object) -> None:
    """Our fast path must produce exactly the bytes of the rfc8785 reference encoder."""
    import rfc8785

    try:
        expected = rfc8785.dumps(obj)
    except Exception:
        with pytest.raises(RecordError):
            canonical(obj)
        return
    assert canonical(obj) == expected


@pytest.mark.parametrize(
    "obj",
    [
        {"\U0001f600": 1, "\ue000": 2, "a": 3},  # UTF-16 order differs from code point order
        {"x": 12.0}, {"x": 1e-7}, {"x": 1e21}, {"x": 0.1}, {"x": 123.456},
        {"s": "\u2028\u007f\x1f\"\\/"}, [1, "二", None, True],
    ],
)
def test_canonical_edge_cases(obj: object) -> None:
    import rfc8785

    assert canonical(obj) == rfc8785.dumps(obj)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), {"x": [float("inf")]}])
def test_non_finite_numbers_are_a_record_error(bad: object) -> None:
    with pytest.raises(RecordError):
        canonical(bad)
