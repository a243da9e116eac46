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
