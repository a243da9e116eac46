"""Red-team: the CLI as a new user meets it (files from other tools, pipes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_harness import init_home, run
from kansa.api import Ledger

LINE = b'{"ts": "2026-11-22T09:30:00Z", "system": "bot", "subject": "u-1", "input": "caf\xc3\xa9"}'


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return init_home(tmp_path / "home", "example.com/attack")


def _size(home: Path) -> int:
    with Ledger.open(home=home) as ledger:
        return int(ledger.log.size())


def test_log_append_file_with_bom_and_crlf(home: Path, tmp_path: Path) -> None:
    """Windows PowerShell and Notepad write UTF-8 with a byte order mark and CRLF."""
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + LINE + b"\r\n\r\n" + LINE.replace(b"u-1", b"u-2") + b"\r\n")
    code, out = run("log", "append", str(f), home=home)
    assert code == 0, out
    assert _size(home) == 2
    with Ledger.open(home=home) as ledger:
        assert [r.content for r in ledger.find(with_content=True)][0] == {"input": "café"}


def _stdin_append(home: Path, data: bytes) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KANSA_HOME": str(home), "LC_ALL": "C", "LANG": "C",
           "PYTHONUTF8": "0", "COLUMNS": "200"}
    return _decode(subprocess.run([sys.executable, "-m", "kansa", "log", "append", "-"],
                                  input=data, env=env, capture_output=True, timeout=120,
                                  check=False))


def _decode(r: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


def test_log_append_stdin_is_utf8_whatever_the_locale(home: Path) -> None:
    """Under the C locale Python decodes stdin with surrogateescape: a UTF-8 'é' became
    two lone surrogates and a Latin-1 byte was reported as "a lone surrogate (e.g.
    \\ud800)". Stdin is read as UTF-8 (a BOM allowed), as files are."""
    r = _stdin_append(home, b"\xef\xbb\xbf" + LINE + b"\n")
    assert r.returncode == 0, r.stdout + r.stderr
    with Ledger.open(home=home) as ledger:
        assert [x.content for x in ledger.find(with_content=True)] == [{"input": "café"}]
    r = _stdin_append(home, LINE.replace(b"caf\xc3\xa9", b"caf\xe9") + b"\n")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not UTF-8" in r.stdout + r.stderr
    assert "surrogate" not in r.stdout + r.stderr
    assert _size(home) == 1


def test_verify_accepts_the_homes_kept_checkpoint_file(home: Path, tmp_path: Path) -> None:
    """`kansa verify --checkpoint $KANSA_HOME/latest-checkpoint.json` (the copy kept
    outside the store, the obvious file to hand an auditor) failed with "note has no blank
    line separating text from signatures"."""
    f = tmp_path / "a.jsonl"
    f.write_bytes(LINE + b"\n")
    assert run("log", "append", str(f), home=home)[0] == 0
    kept = home / "latest-checkpoint.json"
    saved = tmp_path / "kept.json"
    saved.write_bytes(kept.read_bytes())
    code, out = run("verify", "--checkpoint", str(saved), home=home)
    assert code == 0, out
    # and it still catches a fork: a kept checkpoint of another log fails
    other = tmp_path / "other"
    assert run("init", "--origin", "example.com/attack", home=other)[0] == 0
    assert run("log", "append", str(f), home=other)[0] == 0
    code, out = run("verify", "--checkpoint", str(other / "latest-checkpoint.json"), home=home)
    assert code != 0 and "known checkpoint" in out


def test_log_append_duplicate_ids_are_line_errors_and_nothing_is_appended(
    home: Path, tmp_path: Path
) -> None:
    """A file whose line 2 reuses an id already in the log: lines 1 and 3 were appended,
    then 'error: record id ... is already in the log' with no line number and exit 1."""
    first = tmp_path / "1.jsonl"
    first.write_text('{"system": "s", "id": "rec-1", "input": "a"}\n')
    assert run("log", "append", str(first), home=home)[0] == 0
    second = tmp_path / "2.jsonl"
    second.write_text('{"system": "s", "id": "rec-3", "input": "c"}\n'
                      '{"system": "s", "id": "rec-1", "input": "a"}\n'
                      '{"system": "s", "id": "rec-4", "input": "d"}\n'
                      '{"system": "s", "id": "rec-4", "input": "e"}\n')
    code, out = run("log", "append", str(second), home=home)
    assert code == 2, out  # found before the store is opened
    assert "line 4, field 'id'" in out and "already used on line 3" in out
    assert _size(home) == 1
    second.write_text("\n".join(second.read_text().splitlines()[:3]) + "\n")
    code, out = run("log", "append", str(second), home=home)
    assert code == 2, out
    assert "line 2, field 'id'" in out and "already in the log" in out
    assert _size(home) == 1
    code, out = run("log", "append", str(second), "--skip-invalid", home=home)
    assert code == 3, out
    with Ledger.open(home=home) as ledger:
        assert [r.id for r in ledger.find()] == ["rec-1", "rec-3", "rec-4"]
