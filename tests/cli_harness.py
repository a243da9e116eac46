"""The `kansa` command in-process for tests: run it against a KANSA_HOME of the test's."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from kansa.cli import app

runner = CliRunner()


def run(*args: str, home: Path, columns: int | None = None) -> tuple[int, str]:
    """``kansa ARGS`` with ``KANSA_HOME=home``: (exit code, output). ``columns`` sets the
    terminal width (wide, so that a table does not fold the cells a test looks for)."""
    env = {"KANSA_HOME": str(home)}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    r = runner.invoke(app, [*args], env=env)
    return r.exit_code, r.output


def init_home(home: Path, origin: str) -> Path:
    """``kansa init --origin ORIGIN`` in ``home``; fails the test if it does not succeed."""
    code, out = run("init", "--origin", origin, home=home)
    assert code == 0, out
    return home
