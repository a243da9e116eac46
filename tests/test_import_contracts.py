"""Import contracts: the layers of docs/ARCHITECTURE.md, checked on the source.

An AST walk over src/kansa (no import is executed) collects every ``import kansa...`` and
``from kansa... import`` of every module, including imports inside functions (a lazy
import is still a dependency) and under ``if TYPE_CHECKING:`` (kept apart: they count
for layering, not for cycles, since they never run). The contracts:

1. a module never imports a module of a higher layer (``LAYERS`` below);
2. ``kansa.records`` never touches storage (``kansa.ledger.storage``): records are data;
3. ``kansa.ledger`` imports no HTTP library (starlette, uvicorn, httpx, aiohttp);
4. only the CLI (the ``kansa.cli`` package) imports typer or rich, and no ``cli_*``
   module lives elsewhere;
5. no import cycle between modules at run time (TYPE_CHECKING imports left out).

A violation that cannot be fixed yet goes in ``ALLOWED`` with the reason; an entry that
no longer matches anything fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "kansa"

# The layers, lowest first (docs/ARCHITECTURE.md, "Layers"). A module may import its own
# layer and any lower one. A key names a module or a package (every module under it); the
# longest key that is a prefix of a module's name decides.
LAYERS: dict[str, int] = {
    # 0: imported by every layer, import nothing of kansa but each other
    "kansa.errors": 0,
    "kansa._random": 0,
    "kansa._bounds": 0,
    "kansa._time": 0,
    # 1: the transparency log: bytes in, proofs out
    "kansa.ledger": 1,
    # 2: usage records, RFC 8785 entries, JSON Lines
    "kansa.records": 2,
    # 3: the public Python API, the content vault, $KANSA_HOME, the witness over HTTP
    "kansa.vault": 3,
    "kansa.api": 3,
    "kansa.home": 3,
    "kansa.witness_http": 3,
    # 4: rule packs and judging (knows nothing of HTTP callers)
    "kansa.policy": 4,
    # 5: turning calls into records; asks policy for inline decisions
    "kansa.capture": 5,
    # 6: (reserved) guard, provenance
    "kansa.guard": 6,
    "kansa.provenance": 6,
    # 7: documents built from records and findings
    "kansa.report": 7,
    "kansa.web": 7,
    # 8: the `kansa` command (every command module and the demo are in kansa.cli)
    "kansa.cli": 8,
    "kansa.__main__": 8,
}
CLI_LAYER = 8
CLI = "kansa.cli"  # the package of every command (docs/ARCHITECTURE.md, "Where to add")
# kansa/__init__.py re-exports the public API from every layer (lazily, PEP 562)
FACADE = "kansa"

HTTP_LIBRARIES = ("starlette", "uvicorn", "httpx", "aiohttp")
CLI_LIBRARIES = ("typer", "rich")

# (importer, imported): known layer violations, each with why it stays for now
ALLOWED: set[tuple[str, str]] = {
    # the old import path of the witness's HTTP server and client, which moved out of the
    # ledger layer to kansa.witness_http: forwarded lazily (PEP 562) for existing callers
    ("kansa.ledger.witness", "kansa.witness_http"),
    # the old import path of the content vault, which moved from records/ (pure data) to
    # kansa.vault beside the API: a re-export for existing callers; nothing in kansa uses it
    ("kansa.records.vault", "kansa.vault"),
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a module (or a name in one: resolved by trimming, see ``resolve``)
    line: int
    type_only: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def walk(node: ast.AST, type_only: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for n in child.body:
                    yield from walk_one(n, True)
                for n in child.orelse:
                    yield from walk_one(n, type_only)
            else:
                yield from walk_one(child, type_only)

    def walk_one(node: ast.AST, type_only: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for a in node.names:
                yield Import(name, a.name, node.lineno, type_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # `from pkg import mod` imports pkg.mod
                yield Import(name, f"{mod}.{a.name}", node.lineno, type_only)
        else:
            yield from walk(node, type_only)

    yield from walk(tree, False)


def resolve(imported: str, known: dict[str, Path]) -> str | None:
    """The kansa module an import names (``from kansa.x import Y`` names kansa.x)."""
    parts = imported.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def layer_of(module: str) -> int:
    best = ""
    for key in LAYERS:
        if (module == key or module.startswith(key + ".")) and len(key) > len(best):
            best = key
    if not best:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and ARCHITECTURE.md)")
    return LAYERS[best]


def is_cli(module: str) -> bool:
    """In the CLI package: the only modules that may import typer or rich."""
    return module == CLI or module.startswith(CLI + ".")


def all_imports() -> list[Import]:
    known = modules()
    return [i for name, path in known.items() for i in imports_of(name, path)]


def kansa_edges() -> list[Import]:
    known = modules()
    out = []
    for i in all_imports():
        target = resolve(i.imported, known) if i.imported.startswith("kansa") else None
        if target is not None and target != i.importer:
            out.append(Import(i.importer, target, i.line, i.type_only))
    return out


# --- the contracts -----------------------------------------------------------------------


def layer_violations() -> set[tuple[str, str]]:
    found = set()
    for i in kansa_edges():
        if i.importer == FACADE or i.imported == FACADE:
            continue
        if layer_of(i.imported) > layer_of(i.importer):
            found.add((i.importer, i.imported))
    return found


def test_every_module_has_a_layer() -> None:
    for name in modules():
        if name != FACADE:
            layer_of(name)


def test_no_lower_layer_imports_a_higher_one() -> None:
    found = layer_violations()
    new = {(a, b, layer_of(a), layer_of(b)) for a, b in found - ALLOWED}
    assert not new, "imports against the layers (importer, imported, their layers):\n" + \
        "\n".join(map(str, sorted(new)))


def test_allowlist_is_current() -> None:
    stale = ALLOWED - layer_violations()
    assert not stale, f"ALLOWED lists imports that no longer exist; remove them: {stale}"


def test_records_never_touch_storage() -> None:
    bad = [i for i in kansa_edges()
           if i.importer.startswith("kansa.records") and i.imported == "kansa.ledger.storage"
           and (i.importer, i.imported) not in ALLOWED]
    assert not bad, bad


def test_ledger_speaks_no_http() -> None:
    bad = [i for i in all_imports()
           if i.importer.startswith("kansa.ledger")
           and i.imported.split(".")[0] in HTTP_LIBRARIES]
    assert not bad, bad


def test_only_cli_modules_import_typer_or_rich() -> None:
    bad = [i for i in all_imports()
           if i.imported.split(".")[0] in CLI_LIBRARIES and not is_cli(i.importer)]
    assert not bad, bad


def test_every_command_module_is_in_the_cli_package() -> None:
    stray = [name for name in modules()
             if name.rpartition(".")[2].startswith(("cli_", "_cli"))]
    assert not stray, f"command modules go in {CLI} (docs/ARCHITECTURE.md): {stray}"


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for i in kansa_edges():
        if not i.type_only and FACADE not in (i.importer, i.imported):
            graph.setdefault(i.importer, set()).add(i.imported)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_walk_sees_what_it_must() -> None:
    """The checker itself: lazy and TYPE_CHECKING imports are found, and layers resolve."""
    edges = {(i.importer, i.imported, i.type_only) for i in kansa_edges()}
    assert ("kansa.api", "kansa.vault", False) in edges
    assert ("kansa.policy.pack", "kansa.policy.cel", False) in edges  # inside a method
    assert ("kansa.policy.replay", "kansa.api", True) in edges  # under TYPE_CHECKING
    assert layer_of("kansa.cli.packs") == CLI_LAYER and is_cli("kansa.cli.packs")
    assert not is_cli("kansa.client") and not is_cli("kansa.policy.replay")
    assert layer_of("kansa.ledger.merkle") < layer_of("kansa.records.model")


# --- what importing loads ----------------------------------------------------------------


def _loaded_after(statement: str) -> list[str]:
    code = (f"{statement}; import sys; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('kansa'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=SRC.parent)
    return out.stdout.split()


def test_merkle_stands_alone() -> None:
    assert set(_loaded_after("import kansa.ledger.merkle")) <= {
        "kansa", "kansa.errors", "kansa.ledger", "kansa.ledger.merkle"}


def test_import_kansa_loads_only_the_errors() -> None:
    assert _loaded_after("import kansa") == ["kansa", "kansa.errors"]


@pytest.mark.parametrize("name", ["Ledger", "UsageRecord", "wrap", "PolicyBlocked"])
def test_public_names_load_on_use(name: str) -> None:
    import kansa

    assert name in kansa.__all__ and name in dir(kansa)
    assert getattr(kansa, name).__name__ == name


def test_old_import_paths_still_work() -> None:
    from kansa import errors
    from kansa.ledger import witness
    from kansa.policy import inline, pack
    from kansa.records import vault as old_vault
    from kansa.report import evidence, i18n

    assert old_vault.Vault.__module__ == "kansa.vault"
    assert witness.create_witness_app.__module__ == "kansa.witness_http"
    assert inline.PolicyBlocked is errors.PolicyBlocked
    assert pack.PolicyError is errors.PolicyError
    assert evidence.ReportError is errors.ReportError
    assert i18n.ReportLanguageError is errors.ReportLanguageError
