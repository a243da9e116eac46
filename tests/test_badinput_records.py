"""Bad JSON Lines input: every line checked completely, all of a file or none, no traceback.

Issue 8, item 6: a line that passes the schema but fails canonical encoding (1e400,
integers >= 2**53, lone surrogates, entries over 64 KiB) or nests too deeply is reported
with its line and field, and nothing of the file is appended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli_harness import init_home, run
from kansa import _bounds
from kansa.api import Ledger
from kansa.cli import app
from kansa.errors import KansaError, RecordError
from kansa.ledger.tiles import MAX_ENTRY_SIZE
from kansa.records.jsonl import MAX_LINE, bounded_lines, parse_line, parse_lines
from kansa.records.model import UsageRecord

runner = CliRunner()
GOOD = '{"ts": "2026-11-22T09:30:00Z", "system": "support-bot", "subject": "u-1", "input": "hi"}'


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return init_home(tmp_path / "home", "example.com/badinput")


def _size(home: Path) -> int:
    with Ledger.open(home=home) as ledger:
        return int(ledger.log.size())


# (name, the bad line, what the error must say: field and a word naming the problem)
BAD_LINES: list[tuple[str, str, str, str]] = [
    ("1e400 in content", '{"system": "s", "input": {"x": 1e400}}', "'input'", "1e400"),
    ("1e400 latency", '{"system": "s", "latency_ms": 1e400}', "'latency_ms'", "1e15"),
    ("2**53 attribute", '{"system": "s", "gen_ai.x": 9007199254740993}', "'gen_ai.x'", "2**53"),
    ("2**53 token count", '{"system": "s", "gen_ai.usage.input_tokens": 9007199254740993}',
     "'gen_ai.usage.input_tokens'", "2**53"),
    ("huge integer latency", '{"system": "s", "latency_ms": 1' + "0" * 400 + "}",
     "'latency_ms'", "1e15"),
    ("lone surrogate in content", '{"system": "s", "input": "a\\ud800b"}', "'input'",
     "surrogate"),
    ("lone surrogate in system", '{"system": "\\udc00"}', "'system'", "surrogate"),
    ("lone surrogate in subject", '{"system": "s", "subject": "\\ud800"}', "'subject'",
     "surrogate"),
    ("lone surrogate in attribute", '{"system": "s", "attributes": {"k": "\\ud800"}}', "'k'",
     "surrogate"),
    ("entry over 64 KiB", json.dumps({"system": "s", **{f"gen_ai.a{i}": "x" * 1000
                                                        for i in range(70)}}),
     "line 2", "65535"),
    ("content nested 100 deep", '{"system": "s", "input": ' + "[" * 100 + "]" * 100 + "}",
     "'input'", "nested deeper"),
    ("content nested 100,000 deep", '{"system": "s", "input": ' + "[" * 100_000
     + "]" * 100_000 + "}", "line 2", "nested deeper"),
    ("bad outcome", '{"system": "s", "outcome": "maybe"}', "'outcome'", "not one of"),
    ("time before year 1 in UTC", '{"system": "s", "ts": "0001-01-01T00:00:00+01:00"}',
     "'ts'", "out of range"),
]


@pytest.mark.parametrize(("line", "field", "word"), [b[1:] for b in BAD_LINES],
                         ids=[b[0] for b in BAD_LINES])
def test_a_bad_line_appends_nothing_and_is_named(home: Path, tmp_path: Path, line: str,
                                                 field: str, word: str) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(f"{GOOD}\n{line}\n{GOOD}\n", encoding="utf-8")
    code, out = run("log", "append", str(f), home=home)
    assert code == 2, out
    assert "Traceback" not in out
    assert "line 2" in out and field in out and word in out.replace(",", ""), out
    assert "nothing was appended" in out
    assert _size(home) == 0


def test_skip_invalid_that_appended_exits_3_and_says_so(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(f"{GOOD}\n{BAD_LINES[0][1]}\n{GOOD}\n", encoding="utf-8")
    code, out = run("log", "append", str(f), "--skip-invalid", home=home)
    assert code == 3, out
    assert "appended 2 record(s)" in out and "skipped 1 invalid" in out
    assert _size(home) == 2


def test_skip_invalid_with_nothing_valid_exits_2(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(f"{BAD_LINES[0][1]}\n", encoding="utf-8")
    code, out = run("log", "append", str(f), "--skip-invalid", home=home)
    assert code == 2 and "nothing was appended" in out
    assert _size(home) == 0


def test_exit_codes_are_documented() -> None:
    r = runner.invoke(app, ["log", "append", "--help"], env={"COLUMNS": "200"})
    text = " ".join(r.output.split())
    for code in ("0 every record", "1 an error", "2 nothing was appended", "3 with --skip"):
        assert code in text, text


def test_every_line_is_checked_before_the_store_is_opened(tmp_path: Path) -> None:
    # no home exists: the store would fail to open, yet the bad line is what is reported
    f = tmp_path / "in.jsonl"
    f.write_text(f"{GOOD}\n{BAD_LINES[2][1]}\n", encoding="utf-8")
    code, out = run("log", "append", str(f), home=tmp_path / "nowhere")
    assert code == 2 and "line 2, field 'gen_ai.x'" in out


def test_not_utf8_and_overlong_lines(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    code, out = run("log", "append", str(f), home=home)
    assert code == 1 and "not UTF-8" in out and _size(home) == 0
    lines = list(bounded_lines(iter_text("a" * 50 + "\nbc\n" + "d" * 11), limit=10))
    assert lines == ["a" * 11, "bc\n", "d" * 11]  # cut, not lost: line numbers stay right
    with pytest.raises(RecordError, match="line 1: line is longer"):
        parse_line("x" * (MAX_LINE + 1), 1)


def iter_text(s: str) -> Any:
    import io

    return io.StringIO(s)


# -- the repeated prefix --------------------------------------------------------------------


def test_error_prefix_is_not_repeated() -> None:
    err = next(iter(parse_lines(['{"system": "s", "outcome": "maybe"}'])))
    assert isinstance(err, RecordError)
    assert str(err).count("field 'outcome'") == 1 and str(err).count("line 1") == 1
    again = err.at(line=9, field="other")  # a location it has is kept, not stacked
    assert str(again) == str(err)
    bare = RecordError("bad", field="f").at(line=4)
    assert str(bare) == "line 4, field 'f': bad" and bare.reason == "bad"


# -- fuzz: only kansa's errors escape, and what is accepted appends -------------------------

_SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
_TEXT = st.text(st.one_of(st.characters(), _SURROGATES), max_size=20)
_SCALARS = st.one_of(
    st.none(), st.booleans(), _TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**53, -(2**53), 2**53 - 1, 10**400, 1e308, 5e-324]),
)
_JSON = st.recursive(_SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(_TEXT, kids, max_size=4)), max_leaves=20)
_KEYS = st.one_of(st.sampled_from([
    "system", "ts", "subject", "id", "outcome", "kind", "input", "output", "latency_ms",
    "status", "gen_ai.usage.input_tokens", "gen_ai.request.model", "attributes",
    "gen_ai.response.finish_reasons", "gen_ai.input.messages", "gen_ai.x"]), _TEXT)
_TS = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                     "2026-11-22T09:30:00Z", "2026-02-30T00:00:00Z", "2026-11-22"]),
    _TEXT)
_RECORDS = st.fixed_dictionaries({}, optional={"ts": _TS}).flatmap(
    lambda ts: st.dictionaries(_KEYS, _JSON, max_size=8).map(lambda d: {**d, **ts})).map(
    lambda d: {"system": "s", **d} if "system" not in d else d)


def _line(obj: Any, deep: int) -> str:
    text = json.dumps(obj)  # ensure_ascii: surrogates travel as \\udXXX escapes
    if deep:
        text = text[:-1] + (", " if len(obj) else "") + '"input": ' + "[" * deep \
            + "]" * deep + "}"
    return text


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Ledger.init(tmp_path_factory.mktemp("fuzz") / "h", origin="example.com/f") as lg:
        yield lg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(rec=_RECORDS, deep=st.sampled_from([0, 0, 0, 63, 65, 5000]),
       noise=st.one_of(st.none(), st.text(max_size=40)))
@example(rec={"system": "s", "input": 1e400}, deep=0, noise=None)
@example(rec={"system": "s", "ts": "0001-01-01T00:00:00+01:00"}, deep=0, noise=None)
@example(rec={"system": "s", "gen_ai.a": "\ud800"}, deep=0, noise=None)
def test_fuzz_jsonl_lines(ledger: Any, rec: dict[str, Any], deep: int,
                          noise: str | None) -> None:
    lines = [_line(rec, deep)] if noise is None else [noise]
    for got in parse_lines(lines):  # anything else escaping fails the test
        assert isinstance(got, UsageRecord | RecordError)
        if isinstance(got, RecordError):
            assert got.line == 1 and str(got).startswith("line 1")
            assert "line 1, line 1" not in str(got)
            continue
        item = ledger._prepare(got)  # what append would do: never fails after parsing
        assert len(item.entry) <= MAX_ENTRY_SIZE
        for value in got.content.values():
            assert _bounds.depth(value) <= _bounds.MAX_DEPTH


def test_a_parsed_record_appends(ledger: Any) -> None:
    rec = parse_line(GOOD, 1)
    assert ledger.append(rec).index >= 0


def test_kansa_errors_only() -> None:
    # the fuzz above asserts the type of what is yielded; raising is also only RecordError
    with pytest.raises(KansaError):
        parse_line('{"system": "s", "input": ' + "[" * 200_000 + "}", 1)
