"""The rule packs shipped inside kansa (``src/kansa/policy/packs/<area>/*.yaml``).

Bundled packs are trusted because they come with the installed package; packs from
anywhere else must be signed by a trusted publisher (``kansa packs add``). The fictional
``example/`` packs are not part of the bundle; tests and the demo load them by path.
"""

from __future__ import annotations

from pathlib import Path

from kansa.policy.pack import Pack, load_pack

PACKS_DIR = Path(__file__).parent / "packs"
_EXCLUDED = {"example"}


def bundled_pack_files() -> list[Path]:
    """Every bundled pack file, sorted by path."""
    return sorted(p for p in PACKS_DIR.glob("*/*.yaml") if p.parent.name not in _EXCLUDED)


def bundled_packs() -> list[Pack]:
    """Every bundled pack version, parsed and validated (sorted by pack id, then path)."""
    packs = [load_pack(p, display=lambda q: str(q.relative_to(PACKS_DIR)))
             for p in bundled_pack_files()]
    return sorted(packs, key=lambda p: (p.id, p.effective_from, p.version))


def example_pack_files() -> list[Path]:
    """The fictional example packs (for tests and the demo; they cite no real law)."""
    return sorted((PACKS_DIR / "example").glob("*.yaml"))
