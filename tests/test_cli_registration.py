"""The CLI's one registration style (docs/ARCHITECTURE.md, "Where to add: a command").

Every module of ``kansa.cli`` but the private helpers (``_common``, the demo's story)
exposes its commands as one ``app``: a ``command_group`` (``kansa NAME ...``) or a set of
``commands`` that join the app including it. The root includes the modules of
``COMMANDS``; a group includes its sub-modules the same way. Commands are declared with
``@app.command("name")``; nothing is registered as ``x.command(...)(function)`` nor with
``add_typer(..., name=..., cls=...)``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import typer

import kansa.cli
from kansa.cli import COMMANDS, app
from kansa.cli._common import HelpGroup

CLI_DIR = Path(kansa.cli.__file__).parent


def command_modules() -> dict[str, typer.Typer]:
    """Each public module of the package and its ``app``."""
    found = {}
    for info in pkgutil.iter_modules([str(CLI_DIR)]):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"kansa.cli.{info.name}")
            assert isinstance(getattr(module, "app", None), typer.Typer), \
                f"kansa.cli.{info.name} exposes no `app` (a helper? name it _{info.name})"
            found[info.name] = module.app
    return found


def included(parent: typer.Typer) -> Iterator[typer.Typer]:
    """Every app reachable from ``parent`` through ``add_typer``."""
    for group in parent.registered_groups:
        assert group.typer_instance is not None
        yield group.typer_instance
        yield from included(group.typer_instance)


def test_every_command_module_is_reachable_from_the_root_once() -> None:
    reachable = list(included(app))
    for name, module_app in command_modules().items():
        assert sum(a is module_app for a in reachable) == 1, f"kansa.cli.{name}"
    assert [g.typer_instance for g in app.registered_groups] == [m.app for m in COMMANDS]
    assert not app.registered_commands  # the root only includes modules


def test_groups_print_their_help_when_run_bare() -> None:
    for sub in included(app):
        if sub.info.name:  # a group; unnamed apps join their parent
            assert sub.info.cls is HelpGroup, sub.info.name
            assert not sub.registered_callback or sub.info.invoke_without_command


def test_commands_are_declared_with_the_decorator() -> None:
    for path in sorted(CLI_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            # x.command("name")(function): the old style
            assert not (isinstance(func, ast.Call) and isinstance(func.func, ast.Attribute)
                        and func.func.attr == "command"), f"{path.name}:{node.lineno}"
            # add_typer(sub, name=..., cls=...): the name and help belong to the sub-app
            if isinstance(func, ast.Attribute) and func.attr == "add_typer":
                assert not node.keywords, f"{path.name}:{node.lineno}"
