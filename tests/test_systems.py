"""System facts files: read, or refused with the file (and line) and the reason."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from kansa.policy.systems import SystemsError, load_systems


def test_reads_names_to_facts(tmp_path: Path) -> None:
    f = tmp_path / "systems.yaml"
    f.write_text("support-bot:\n  roles: [deployer]\n  placed_on_market: 2026-03-01\n"
                 "empty: {}\n", "utf-8")
    assert load_systems(f) == {"support-bot": {"roles": ["deployer"],
                                               "placed_on_market": date(2026, 3, 1)},
                               "empty": {}}
    assert load_systems(None) == {}
    (tmp_path / "blank.yaml").write_text("", "utf-8")
    assert load_systems(tmp_path / "blank.yaml") == {}


@pytest.mark.parametrize("text, needle", [
    ("- a\n- b\n", "must map each system name"),
    ("bot: [provider]\n", "must map each system name"),
    ("bot:\n  roles: [a\n", "systems.yaml:"),
    ("\xff", ""),
])
def test_malformed_files_say_where(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "systems.yaml"
    f.write_bytes(text.encode("latin-1") if text == "\xff" else text.encode())
    with pytest.raises(SystemsError) as ei:
        load_systems(f)
    assert str(ei.value).startswith(str(f)) and needle in str(ei.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SystemsError, match="cannot read system facts"):
        load_systems(tmp_path / "nope.yaml")


def test_dates_given_as_strings_become_dates(tmp_path: Path) -> None:
    """JSON has no dates and a quoted YAML date is a string: CEL could not compare it."""
    from datetime import UTC, datetime

    f = tmp_path / "systems.json"
    f.write_text('{"a": {"placed_on_market": "2026-03-01"}, '
                 '"b": {"placed_on_market": "2026-03-01T09:00:00Z"}}', "utf-8")
    got = load_systems(f)
    assert got["a"]["placed_on_market"] == date(2026, 3, 1)
    assert got["b"]["placed_on_market"] == datetime(2026, 3, 1, 9, tzinfo=UTC)
    f.write_text('{"a": {"placed_on_market": "March 2026"}}', "utf-8")
    with pytest.raises(SystemsError, match=r"a\.placed_on_market: 'March 2026' is not a date"):
        load_systems(f)


def test_string_dates_judge_like_real_dates(tmp_path: Path) -> None:
    from kansa.policy.bundled import bundled_packs
    from kansa.policy.judging import judge

    omnibus = [p for p in bundled_packs() if p.ref == "eu/ai-act@2026-omnibus"]
    image = {"kind": "gen_ai.call", "id": "r", "ts": "2026-09-15T10:00:00Z", "system": "img",
             "outcome": "ok", "attributes": {"kansa.output.modality": "image"}}
    f = tmp_path / "systems.json"
    f.write_text('{"img": {"roles": ["provider"], "placed_on_market": "2026-03-01"}}', "utf-8")
    got = {x.obligation: x.verdict for x in judge(image, omnibus, systems=load_systems(f))}
    assert got["art50-2-machine-readable-marking"] == "not_applicable"  # the grace period
