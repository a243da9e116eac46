"""A command that needs an optional extra which is not installed says which extra, with
exit code 1 and no traceback (the base install of the README's first command has none)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# a fresh interpreter in which the named modules cannot be imported, running `kansa ARGS`
HIDE = textwrap.dedent("""
    import sys
    from importlib.abc import MetaPathFinder

    hidden = set(sys.argv[1].split(","))

    class Hide(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in hidden:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Hide())
    sys.argv = ["kansa", *sys.argv[2:]]
    from kansa.cli import main
    main()
""")


@pytest.mark.parametrize(("hidden", "args", "extra"), [
    ("numpy", ["provenance", "demo"], "provenance"),
    ("numpy,ik_llama_cpp", ["detect", "text", "-"], "detect"),
])
def test_a_missing_extra_is_named_not_a_traceback(hidden: str, args: list[str], extra: str,
                                                 tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", HIDE, hidden, *args], input="some text",
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"kansa[{extra}]" in r.stderr


def test_other_missing_modules_are_not_hidden(tmp_path: Path) -> None:
    """Only the extras' modules get the friendly message: a missing base dependency is a
    broken install and keeps its traceback."""
    r = subprocess.run([sys.executable, "-c", HIDE, "numpy,yaml", "packs", "list"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0
    assert "ModuleNotFoundError" in r.stderr and "yaml" in r.stderr
