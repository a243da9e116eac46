"""mypy (strict, the project's configuration) accepts the public API as callers use it:
``except kansa.PolicyBlocked`` and the other names ``kansa/__init__.py`` imports lazily."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_public_api_type_checks() -> None:
    api = pytest.importorskip("mypy.api")
    stdout, stderr, status = api.run([
        "--config-file", str(ROOT / "pyproject.toml"),
        "--cache-dir", str(ROOT / ".mypy_cache"),
        str(ROOT / "tests" / "typing" / "public_api.py"),
    ])
    assert status == 0, stdout + stderr
