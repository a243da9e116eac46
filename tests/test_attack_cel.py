"""Red-team: CEL expressions that slipped past the cost bound (policy/cel.check_cost)."""

from __future__ import annotations

import pytest

from kansa.policy.cel import CheckError, check_cost, compile_check
from kansa.policy.reads import record_reads

L16 = "[" + ",".join(["1"] * 16) + "]"


def _nested(levels: int) -> str:
    inner = "true"
    for v in "abcdefghij"[:levels]:
        inner = f"{L16}.all({v}, {inner})"
    return inner


# A CEL raw string keeps its backslash: r"\" is one backslash. The estimator's tokenizer
# read \" as an escape, so everything up to the next quote was "inside a string" and
# never costed: 16**6 steps (27 s) were estimated at 4; 16**8 would run for hours.
HIDDEN = [
    f'r"\\" == "" || {_nested(8)} || "" == "x"',
    f"r'\\' == '' || {_nested(8)} || '' == 'x'",
    f'R"\\" == "" || {_nested(8)} || "" == "x"',
    f'br"\\" == b"" || {_nested(8)} || "" == "x"',
]


@pytest.mark.parametrize("src", HIDDEN)
def test_raw_string_does_not_hide_cost(src: str) -> None:
    with pytest.raises(CheckError, match="too costly"):
        compile_check(src, "o")


def test_raw_strings_still_compile_and_cost_little() -> None:
    assert check_cost('r"\\d+" == "" || record.outcome == "ok"', "o") < 50
    compile_check("record.outcome.matches(r'^o\\w$')", "o")
    # a raw string ending in a backslash: the reads after it are still seen
    assert record_reads('r"\\" == "" && record.outcome == "ok"') == \
        frozenset({(("outcome",), True)})


def test_unscannable_text_that_compiles_is_refused() -> None:
    """Whatever the estimator cannot scan but CEL compiles is refused, never waved
    through unestimated; a real syntax error still gets the compiler's position."""
    with pytest.raises(CheckError, match="syntax error at 1:"):
        compile_check("record.outcome @ 1", "o")


def test_map_of_large_literals_is_costed() -> None:
    """map() copies its result list once per element, and each copy copies every element:
    a body returning a 1,275-element literal made 256 copies of lists of such lists
    (10.6 s), estimated at 673,290 steps, under the 1,000,000 bound."""
    r = "[" + ",".join(["1"] * 256) + "]"
    b = "[" + ",".join(["1"] * 255) + "]"
    lit = "[" + ",".join([b] * 5) + "]"
    with pytest.raises(CheckError, match="too costly"):
        compile_check(r + ".map(x, " + lit + ").size() > 0", "o")
    # small bodies stay cheap
    assert check_cost(r + ".map(x, [x, x]).size() > 0", "o") < 100_000
    assert check_cost("[1, 2, 3].filter(x, x > 1).size() == 2", "o") < 100
