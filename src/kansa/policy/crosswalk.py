"""Crosswalks: one piece of evidence serving several laws.

A crosswalk file (``src/kansa/policy/crosswalks/*.yaml``) groups obligations of different
packs that the same evidence serves (a C2PA manifest on an image, a log-retention
setting, an incident report) and says how each relates to the group's anchor, in the
relationship vocabulary of OSCAL's mapping-collection model (1.2.0). Obligations are
named version-independently as ``pack-id#obligation-id``: a mapping holds for every
version of the pack that has the obligation. A file is strict like a pack file: unknown
keys, duplicate keys or ids, unknown relationships and references that name no bundled
obligation are ``CrosswalkError("file:line: reason")``.

    crosswalk: kansa/labelling              # crosswalk id
    version: "1"
    title: Labelling of AI-generated content
    description: ...
    mappings:
      - id: machine-readable-mark
        title: A machine-readable mark on each generated output
        evidence: >-                        # what the shared evidence is
          record attribute kansa.output.label.machine_readable ...
        source: eu/ai-act#art50-2-machine-readable-marking    # the anchor
        targets:
          - ref: kr/ai-basic-act#art31-2-label-generative-output
            relationship: intersects-with   # read "source <relationship> target"
            gap: "..."                      # what the evidence does not cover
            confidence: high                # optional: high | medium | low

:func:`related` answers "which other obligations does the evidence for this one also
serve?", with the relationship where the crosswalk states one.
The OSCAL mapping-collection form of a crosswalk is written by ``kansa.policy.oscal``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kansa.policy.pack import _V, Pack, PolicyError, _compose

CROSSWALKS_DIR = Path(__file__).parent / "crosswalks"

# OSCAL 1.2 mapping-collection relationship names.
RELATIONSHIPS = ("equivalent-to", "equal-to", "subset-of", "superset-of", "intersects-with",
                 "no-relationship")
CONFIDENCES = ("high", "medium", "low")
_INVERSE = {"subset-of": "superset-of", "superset-of": "subset-of"}

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_REF_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._:/-]{0,127})#([A-Za-z0-9][A-Za-z0-9._:/-]{0,127})$")

_Path = tuple[str | int, ...]


class CrosswalkError(PolicyError):
    """A crosswalk file is malformed or names an unknown obligation (``file:line: ...``)."""


@dataclass(frozen=True)
class Target:
    ref: str
    relationship: str
    gap: str | None
    confidence: str | None
    line: int


@dataclass(frozen=True)
class Mapping:
    id: str
    title: str | None
    evidence: str
    source: str
    source_line: int
    targets: tuple[Target, ...]
    line: int

    @property
    def refs(self) -> tuple[str, ...]:
        return (self.source, *(t.ref for t in self.targets))


@dataclass(frozen=True)
class Crosswalk:
    id: str
    version: str
    title: str
    description: str
    mappings: tuple[Mapping, ...]
    source: str = ""  # the file it came from


@dataclass(frozen=True)
class Related:
    """An obligation that the evidence for the asked-about one also serves."""

    ref: str  # pack-id#obligation-id
    relationship: str | None  # "<asked> <relationship> <ref>"; None: only shares evidence
    crosswalk: str
    mapping: str
    evidence: str
    gap: str | None  # the gap stated for whichever side is not the anchor
    via: str  # the mapping's anchor (source)


def split_ref(ref: str) -> tuple[str, str]:
    """``pack-id#obligation-id`` -> (pack id, obligation id); ValueError if malformed."""
    m = _REF_RE.match(ref)
    if not m:
        raise ValueError(f"{ref!r} is not a reference of the form pack-id#obligation-id")
    return m.group(1), m.group(2)


# -- parsing -------------------------------------------------------------------------------


class _Reader(_V):
    """pack.py's line-aware validation helpers, raising CrosswalkError, plus the few
    crosswalk fields need."""

    error = CrosswalkError

    def text(self, m: dict[str, Any], key: str, path: _Path, *,
             optional: bool = False) -> str | None:
        v = m.get(key)
        if v is None and optional:
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # version: 1 means "1"
        if not isinstance(v, str) or not v.strip():
            raise self.err((*path, key), f"{key} must be a non-empty string")
        return v

    def ident(self, m: dict[str, Any], key: str, path: _Path) -> str:
        v = self.text(m, key, path)
        assert v is not None
        if not _ID_RE.match(v):
            raise self.err((*path, key), f"{key} {v!r} is not a valid identifier")
        return v

    def ref(self, m: dict[str, Any], key: str, path: _Path) -> str:
        v = self.text(m, key, path)
        assert v is not None
        try:
            split_ref(v)
        except ValueError as e:
            raise self.err((*path, key), str(e)) from None
        return v

    def choice(self, m: dict[str, Any], key: str, path: _Path, choices: tuple[str, ...], *,
               optional: bool = False) -> str | None:
        v = m.get(key)
        if v is None and optional:
            return None
        if v not in choices:
            raise self.err((*path, key), f"{key} {v!r} is not one of {', '.join(choices)}")
        return str(v)


def _target(r: _Reader, raw: Any, path: _Path) -> Target:
    m = r.mapping(raw, path, "a target", {"ref", "relationship"}, {"gap", "confidence"})
    relationship = r.choice(m, "relationship", path, RELATIONSHIPS)
    assert relationship is not None
    return Target(r.ref(m, "ref", path), relationship, r.text(m, "gap", path, optional=True),
                  r.choice(m, "confidence", path, CONFIDENCES, optional=True), r.line(path))


def _mapping(r: _Reader, raw: Any, path: _Path) -> Mapping:
    m = r.mapping(raw, path, "a mapping", {"id", "evidence", "source", "targets"}, {"title"})
    mid = r.ident(m, "id", path)
    source = r.ref(m, "source", path)
    traw = m["targets"]
    if not isinstance(traw, list) or not traw:
        raise r.err((*path, "targets"), f"mapping {mid!r}: targets must be a non-empty list")
    targets = tuple(_target(r, t, (*path, "targets", i)) for i, t in enumerate(traw))
    seen = {source: r.line((*path, "source"))}
    for t in targets:
        if t.ref in seen:
            raise CrosswalkError(f"{r.name}:{t.line}: mapping {mid!r} names {t.ref!r} twice "
                                 f"(first at line {seen[t.ref]})")
        seen[t.ref] = t.line
    evidence = r.text(m, "evidence", path)
    assert evidence is not None
    return Mapping(mid, r.text(m, "title", path, optional=True), evidence, source,
                   r.line((*path, "source")), targets, r.line(path))


def parse_crosswalk(text: str, name: str = "<crosswalk>") -> Crosswalk:
    """Parse and check the structure of one crosswalk (references are not resolved)."""
    try:
        data, lines = _compose(text, name)
    except PolicyError as e:  # the YAML reader reports as a pack; same file:line shape
        raise CrosswalkError(str(e)) from None
    r = _Reader(name, lines)
    m = r.mapping(data, (), "a crosswalk",
                  {"crosswalk", "version", "title", "description", "mappings"}, set())
    raw = m["mappings"]
    if not isinstance(raw, list) or not raw:
        raise r.err(("mappings",), "mappings must be a non-empty list")
    mappings: list[Mapping] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        mp = _mapping(r, item, ("mappings", i))
        if mp.id in seen:
            raise CrosswalkError(f"{name}:{mp.line}: duplicate mapping id {mp.id!r} "
                                 f"(first at line {seen[mp.id]})")
        seen[mp.id] = mp.line
        mappings.append(mp)
    title, description = r.text(m, "title", ()), r.text(m, "description", ())
    assert title is not None and description is not None
    return Crosswalk(r.ident(m, "crosswalk", ()), r.ident(m, "version", ()), title,
                     description, tuple(mappings), name)


def load_crosswalk(path: str | Path, *, name: str | None = None) -> Crosswalk:
    """Read and parse a crosswalk file (UTF-8 YAML)."""
    p = Path(path)
    shown = name or str(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise CrosswalkError(f"{shown}:0: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise CrosswalkError(f"{shown}:1: not UTF-8 text") from None
    return parse_crosswalk(text, shown)


# -- resolution against packs --------------------------------------------------------------


def obligation_index(packs: Iterable[Pack]) -> dict[str, set[str]]:
    """pack id -> the obligation ids any of its versions has."""
    index: dict[str, set[str]] = {}
    for p in packs:
        index.setdefault(p.id, set()).update(o.id for o in p.obligations)
    return index


def check_refs(cw: Crosswalk, index: dict[str, set[str]]) -> None:
    """Every reference must name an obligation of some version of a known pack."""
    for mp in cw.mappings:
        for ref, line in ((mp.source, mp.source_line), *((t.ref, t.line) for t in mp.targets)):
            pack_id, oid = split_ref(ref)
            if pack_id not in index:
                raise CrosswalkError(f"{cw.source}:{line}: {ref!r}: no pack {pack_id!r}")
            if oid not in index[pack_id]:
                raise CrosswalkError(f"{cw.source}:{line}: {ref!r}: pack {pack_id!r} has no "
                                     f"obligation {oid!r} in any version")


def crosswalk_files() -> list[Path]:
    return sorted(CROSSWALKS_DIR.glob("*.yaml"))


def load_crosswalks(files: Iterable[Path], packs: Iterable[Pack]) -> list[Crosswalk]:
    """Parse ``files`` and resolve their references against ``packs``; ids must be unique."""
    index = obligation_index(packs)
    out: list[Crosswalk] = []
    seen: dict[str, str] = {}
    for f in files:
        cw = load_crosswalk(f, name=f.name)
        if cw.id in seen:
            raise CrosswalkError(f"{cw.source}:1: crosswalk id {cw.id!r} is also used by "
                                 f"{seen[cw.id]}")
        seen[cw.id] = cw.source
        check_refs(cw, index)
        out.append(cw)
    return out


@functools.cache
def bundled_crosswalks() -> tuple[Crosswalk, ...]:
    """The shipped crosswalks, resolved against the shipped packs (loaded once: both ship
    with the package and loading every pack takes about a second)."""
    from kansa.policy.bundled import bundled_packs

    return tuple(load_crosswalks(crosswalk_files(), bundled_packs()))


# -- queries -------------------------------------------------------------------------------


def _inverse(relationship: str) -> str:
    return _INVERSE.get(relationship, relationship)


def related(ref: str, crosswalks: Sequence[Crosswalk] | None = None) -> list[Related]:
    """The obligations that the evidence for ``ref`` (``pack-id#obligation-id``) also serves.

    From the anchor of a mapping, each target comes with the stated relationship; from a
    target, the anchor comes with the inverse relationship (subset-of <-> superset-of) and
    the other targets with ``relationship=None`` (they share the evidence, but the
    crosswalk states no relation between them). Sorted by ref, then crosswalk and mapping;
    an unknown but well-formed ref gives an empty list."""
    split_ref(ref)
    cws = bundled_crosswalks() if crosswalks is None else crosswalks
    out: list[Related] = []
    for cw in cws:
        for mp in cw.mappings:
            if ref not in mp.refs:
                continue
            if ref == mp.source:
                out.extend(Related(t.ref, t.relationship, cw.id, mp.id, mp.evidence, t.gap,
                                   mp.source) for t in mp.targets)
                continue
            mine = next(t for t in mp.targets if t.ref == ref)
            out.append(Related(mp.source, _inverse(mine.relationship), cw.id, mp.id,
                               mp.evidence, mine.gap, mp.source))
            out.extend(Related(t.ref, None, cw.id, mp.id, mp.evidence, t.gap, mp.source)
                       for t in mp.targets if t.ref != ref)
    return sorted(out, key=lambda x: (x.ref, x.crosswalk, x.mapping))
