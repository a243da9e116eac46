"""Rule packs: one version of one instrument's obligations, authored as YAML ("laws are data").

A pack file is strict: unknown keys, duplicate ids or keys, bad enum values and bad dates
are rejected with ``PackError("file:line: reason")``. Every CEL expression is compiled at
load time. The pack's identity is ``sha256:`` + SHA-256 of the RFC 8785 canonical JSON of
the parsed pack (comments and layout do not change it), and every finding names it.

    pack: kansa.example/ai-logging          # instrument id
    version: "2"
    title: "EXAMPLE ONLY (not law): ..."
    publisher: ...
    sources: [https://...]
    jurisdiction: example
    status: draft                           # draft | adopted | in_force | repealed
    effective_from: 2026-07-01              # this version governs records from this day
    effective_until: null                   # ... until this day (exclusive)
    timezone: UTC                           # in which the dates above and below are days
    obligations:
      - id: log-2
        title: ...
        citation: {article: "2", paragraph: "1"}
        source_url: https://...
        jurisdiction: example               # default: the pack's
        role: deployer                      # provider | deployer | developer, or a list
        legal_force: binding                # binding | effort_duty | soft_law | voluntary
        status: draft                       # default: the pack's
        effective_from: 2026-07-01          # default: the pack's
        effective_until: 2027-01-01         # default: none (the pack's end chooses the
                                            # version in force, not when duties end)
        transitions:                        # first match wins; replaces the dates above
          - applies_if: 'system.placed_on_market < timestamp("2026-07-01T00:00:00Z")'
            effective_from: 2027-01-01
        text:
          en: {kind: summary, text: "..."}  # official | translation | summary
        check:
          applies: 'record.kind == "gen_ai.call"'
          expr: '"gen_ai.usage.input_tokens" in record'
          origin: instrument                # default; kansa: a control kansa adds, not
                                            # the instrument's words
        reason:                             # why a failing record fails (en required)
          en: "{system} logged no token counts ({citation}, applies since {since})"
          ja: "..."                         # placeholders: see REASON_FIELDS
        # or: evidence: {kind: document, description: "...", applies: '...'}
        verification:                       # was the citation checked, and against what?
          status: verified                  # verified | partly_verified | unverified
          checked: 2026-11-22
          against: https://...              # the source it was checked against
          note: "..."                       # what could not be confirmed, and why
        incident:                           # for reporting duties (incident drafts)
          report_to: "..."
          deadlines: [{case: "death of a person", within_hours: 240}]

Optional pack keys: ``title_ja`` (the instrument's Japanese title), ``supersedes``
(``version`` of the pack this one replaces; lineage for OSCAL), ``verification`` (as for
an obligation, for the pack's dates and status) and ``notes``.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from kansa.errors import KansaError
from kansa.errors import PolicyError as PolicyError  # re-exported: its old home
from kansa.records.model import canonical

STATUSES = ("draft", "adopted", "in_force", "repealed")
ROLES = ("provider", "deployer", "developer")
LEGAL_FORCES = ("binding", "effort_duty", "soft_law", "voluntary")
TEXT_KINDS = ("official", "translation", "summary")
EVIDENCE_KINDS = ("document", "attestation", "test_report", "contract", "record", "other")
VERIFICATION_STATUSES = ("verified", "partly_verified", "unverified")
CHECK_ORIGINS = ("instrument", "kansa")
# what a reason template may name: the record's system, model and provider, the
# obligation's citation, the day it applies from (or until), after transitions, the pack
REASON_FIELDS = ("system", "model", "provider", "citation", "since", "until", "pack")

_MAX_NODES = 200_000
_MAX_DEPTH = 64
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_LANG_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PackError(PolicyError):
    """A rule pack is malformed; the message starts with ``file:line:``."""


Path_ = tuple[str | int, ...]


# -- YAML with line numbers ----------------------------------------------------------------


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents nested deeper than 64 levels: its composer
    recurses once per level, so a deep document would raise RecursionError (its scanner
    and parser keep explicit stacks and are safe)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH + 1:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {_MAX_DEPTH} levels",
                    self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _compose(text: str, name: str) -> tuple[Any, dict[Path_, int]]:
    """Plain Python values (str, int, float, bool, None, list, dict) and the 1-based line
    of every path in them. Duplicate keys, non-string keys, aliases that loop or explode,
    nesting deeper than 64 levels and tags other than the YAML core schema's are errors."""
    try:
        root = yaml.compose(text, Loader=BoundedLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = e.problem or e.context or "malformed YAML"
        raise PackError(f"{name}:{line}: YAML: {reason}") from None
    except yaml.YAMLError as e:  # ReaderError (bad characters) and the like
        raise PackError(f"{name}:1: YAML: {_one_line(str(e))}") from None
    if root is None:
        raise PackError(f"{name}:1: the file holds no YAML document")
    lines: dict[Path_, int] = {}
    budget = [_MAX_NODES]
    constructor = yaml.constructor.SafeConstructor()

    def walk(node: yaml.Node, path: Path_, depth: int) -> Any:
        line = node.start_mark.line + 1
        lines[path] = line
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            raise PackError(f"{name}:{line}: the document is too large or too deeply nested")
        if not isinstance(node, yaml.ScalarNode) and node.tag not in (
                "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            raise PackError(f"{name}:{line}: unsupported YAML tag {node.tag!r}")
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode) or k.tag != "tag:yaml.org,2002:str":
                    kline = k.start_mark.line + 1
                    raise PackError(f"{name}:{kline}: mapping keys must be plain strings")
                if k.value in out:
                    raise PackError(f"{name}:{k.start_mark.line + 1}: duplicate key {k.value!r}")
                out[k.value] = walk(v, (*path, k.value), depth + 1)
                lines.setdefault((*path, k.value), k.start_mark.line + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(v, (*path, i), depth + 1) for i, v in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        tag = node.tag
        if tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
            return node.value  # dates stay the text the author wrote; validated later
        if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:bool",
                   "tag:yaml.org,2002:null", "tag:yaml.org,2002:float"):
            try:
                value = constructor.construct_object(node)
            except Exception:
                shown = node.value if len(node.value) <= 40 else node.value[:40] + "…"
                raise PackError(f"{name}:{line}: cannot read {shown!r}") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise PackError(f"{name}:{line}: {node.value!r} is not a finite number")
            return value
        raise PackError(f"{name}:{line}: unsupported YAML tag {tag!r}")

    return walk(root, (), 0), lines


def _one_line(s: str) -> str:
    return " ".join(s.split())


# -- the model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Citation:
    article: str
    paragraph: str | None = None
    item: str | None = None

    def __str__(self) -> str:
        # "Art. 50(2)" for numbered articles; plans, principles and code sections
        # ("Part 2 C, principle 6", "§22757.3") are printed as written
        s = f"Art. {self.article}" if self.article[:1].isdigit() else self.article
        if self.paragraph:
            s += f"({self.paragraph})"
        if self.item:
            s += f"({self.item})"
        return s


@dataclass(frozen=True)
class Text:
    kind: str  # official | translation | summary
    text: str
    source_url: str | None = None


@dataclass(frozen=True)
class Check:
    expr: str
    applies: str | None = None
    line: int = 0
    origin: str = "instrument"  # instrument | kansa (a control kansa adds as evidence)


@dataclass(frozen=True)
class Evidence:
    kind: str
    description: str
    applies: str | None = None
    line: int = 0


@dataclass(frozen=True)
class Transition:
    applies_if: str
    effective_from: date | None
    effective_until: date | None
    note: str | None = None
    line: int = 0


@dataclass(frozen=True)
class Verification:
    """Whether a citation, date or text was checked against a named source."""

    status: str  # verified | partly_verified | unverified
    checked: date | None = None
    against: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Deadline:
    case: str
    within_hours: int


@dataclass(frozen=True)
class Incident:
    """A reporting duty: to whom, and how soon after becoming aware, per case."""

    report_to: str
    deadlines: tuple[Deadline, ...]


@dataclass(frozen=True)
class Obligation:
    id: str
    title: str | None
    citation: Citation
    source_url: str | None
    jurisdiction: str
    role: str
    legal_force: str
    status: str
    effective_from: date
    effective_until: date | None
    transitions: tuple[Transition, ...]
    text: dict[str, Text]
    check: Check | None
    evidence: Evidence | None
    line: int = 0
    verification: Verification | None = None
    incident: Incident | None = None
    notes: str | None = None
    roles: tuple[str, ...] = ()  # every role the duty falls on (``role`` is the first)
    reason: dict[str, str] | None = None  # language -> template of a failing check's reason

    def __post_init__(self) -> None:
        if not self.roles:
            object.__setattr__(self, "roles", (self.role,))


@dataclass(frozen=True)
class Pack:
    id: str
    version: str
    title: str
    publisher: str
    sources: tuple[str, ...]
    jurisdiction: str
    status: str
    effective_from: date
    effective_until: date | None
    timezone: str
    obligations: tuple[Obligation, ...]
    notes: str | None
    data: dict[str, Any] = field(repr=False)  # the parsed pack, as hashed
    hash: str = ""  # "sha256:<hex>"
    source: str = ""  # the file it came from (not part of the hash)
    title_ja: str | None = None
    supersedes: str | None = None
    verification: Verification | None = None

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def tz(self) -> tzinfo:
        return UTC if self.timezone == "UTC" else ZoneInfo(self.timezone)

    def day_start(self, d: date) -> datetime:
        """The instant a day given in this pack begins (in the pack's time zone), in UTC."""
        return datetime(d.year, d.month, d.day, tzinfo=self.tz).astimezone(UTC)

    def obligation(self, oid: str) -> Obligation:
        for o in self.obligations:
            if o.id == oid:
                return o
        raise KeyError(oid)

    def canonical_json(self) -> bytes:
        return canonical(self.data)


# -- validation ----------------------------------------------------------------------------


class _V:
    """Validation helpers that know the file name and every path's line (also used for
    crosswalks and policy files, which raise their own error class)."""

    error: type[PolicyError] = PackError

    def __init__(self, name: str, lines: dict[Path_, int]) -> None:
        self.name = name
        self.lines = lines
        self.prefix = ""

    def line(self, path: Path_) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def err(self, path: Path_, msg: str) -> PolicyError:
        return self.error(f"{self.name}:{self.line(path)}: {self.prefix}{msg}")

    def mapping(self, value: Any, path: Path_, what: str, required: set[str],
                optional: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.err(path, f"{what} must be a mapping, not {_kind(value)}")
        for key in value:
            if key not in required and key not in optional:
                allowed = ", ".join(sorted(required | optional))
                raise self.err((*path, key), f"unknown key {key!r} in {what} (allowed: {allowed})")
        for key in sorted(required):
            if key not in value:
                raise self.err(path, f"{what} lacks {key!r}")
        return value

    def string(self, m: dict[str, Any], key: str, path: Path_, *, optional: bool = False,
               pattern: re.Pattern[str] | None = None) -> str | None:
        if key not in m or (optional and m[key] is None):
            if optional:
                return None
            raise self.err(path, f"lacks {key!r}")
        v = m[key]
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # article: 50 means "50"
            m[key] = v
        if not isinstance(v, str) or not v.strip():
            raise self.err((*path, key), f"{key} must be a non-empty string, not {_kind(v)}")
        if pattern is not None and not pattern.match(v):
            raise self.err((*path, key), f"{key} {v!r} is not a valid identifier")
        return v

    def enum(self, m: dict[str, Any], key: str, path: Path_, choices: tuple[str, ...],
             default: str | None = None) -> str:
        v = m.get(key, default)
        if v is None:
            raise self.err(path, f"lacks {key!r}")
        if v not in choices:
            raise self.err((*path, key),
                           f"{key} {v!r} is not one of {', '.join(choices)}")
        return str(v)

    def day(self, m: dict[str, Any], key: str, path: Path_, *,
            optional: bool = False) -> date | None:
        v = m.get(key)
        if v is None:
            if optional:
                return None
            raise self.err(path, f"lacks {key!r}")
        if isinstance(v, str) and _DATE_RE.match(v):
            try:
                return date.fromisoformat(v)
            except ValueError:
                pass
        raise self.err((*path, key), f"{key} is not a date (YYYY-MM-DD): {v!r}")

    def url(self, v: Any, path: Path_, what: str) -> str:
        if not isinstance(v, str) or not re.match(r"^https?://\S+$", v):
            raise self.err(path, f"{what} must be an http(s) URL, not {v!r}")
        return v

    def cel(self, m: dict[str, Any], key: str, path: Path_, oid: str, *,
            optional: bool = False) -> str | None:
        from kansa.policy.cel import CheckError, compile_check

        src = self.string(m, key, path, optional=optional)
        if src is None:
            return None
        try:
            compile_check(src, oid)
        except CheckError as e:  # the prefix already names the obligation
            raise self.err((*path, key), e.reason if self.prefix else str(e)) from None
        return src


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "empty", bool: "a boolean",
            int: "a number", float: "a number", str: "a string"}.get(type(v), type(v).__name__)


_PACK_REQUIRED = {"pack", "version", "title", "publisher", "sources", "jurisdiction", "status",
                  "effective_from", "obligations"}
_PACK_OPTIONAL = {"effective_until", "timezone", "notes", "title_ja", "supersedes",
                  "verification"}
_OBL_REQUIRED = {"id", "citation", "role", "legal_force", "text"}
_OBL_OPTIONAL = {"title", "source_url", "jurisdiction", "status", "effective_from",
                 "effective_until", "transitions", "check", "evidence", "notes",
                 "verification", "incident", "reason"}


def _obligation(v: _V, raw: Any, path: Path_, pack: dict[str, Any],
                pack_from: date, pack_until: date | None) -> Obligation:
    v.prefix = ""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        v.prefix = f"obligation {raw['id']!r}: "
    m = v.mapping(raw, path, "an obligation", _OBL_REQUIRED, _OBL_OPTIONAL)
    oid = v.string(m, "id", path, pattern=_ID_RE)
    assert oid is not None
    v.prefix = f"obligation {oid!r}: "
    cm = v.mapping(m["citation"], (*path, "citation"), "citation", {"article"},
                   {"paragraph", "item"})
    citation = Citation(
        str(v.string(cm, "article", (*path, "citation"))),
        v.string(cm, "paragraph", (*path, "citation"), optional=True),
        v.string(cm, "item", (*path, "citation"), optional=True),
    )
    source_url = None
    if m.get("source_url") is not None:
        source_url = v.url(m["source_url"], (*path, "source_url"), "source_url")
    jurisdiction = v.string(m, "jurisdiction", path, optional=True) or pack["jurisdiction"]
    # one role, or a list when a duty falls on several (the guidelines address
    # developers, providers and users alike)
    raw_role = m.get("role")
    if isinstance(raw_role, list):
        if not raw_role or len(set(map(str, raw_role))) != len(raw_role):
            raise v.err((*path, "role"), "role must be one role or a non-empty list of "
                        "distinct roles")
        roles = tuple(v.enum({"role": r}, "role", (*path, "role", i), ROLES)
                      for i, r in enumerate(raw_role))
    else:
        roles = (v.enum(m, "role", path, ROLES),)
    role = roles[0]
    legal_force = v.enum(m, "legal_force", path, LEGAL_FORCES)
    status = v.enum(m, "status", path, STATUSES, default=pack["status"])
    eff_from = v.day(m, "effective_from", path, optional=True) or pack_from
    # not the pack's end: that chooses the version in force; judged pinned ("had this
    # version governed"), a version's duties run on (Art. 53 of the AI Act as adopted)
    eff_until = v.day(m, "effective_until", path, optional=True)
    if eff_until is not None and eff_until <= eff_from:
        raise v.err((*path, "effective_until"), "effective_until must be after effective_from")
    transitions: list[Transition] = []
    traw = m.get("transitions") or []
    if not isinstance(traw, list):
        raise v.err((*path, "transitions"), f"transitions must be a list, not {_kind(traw)}")
    for i, t in enumerate(traw):
        tp = (*path, "transitions", i)
        tm = v.mapping(t, tp, "a transition", {"applies_if"},
                       {"effective_from", "effective_until", "note"})
        if "effective_from" not in tm and "effective_until" not in tm:
            raise v.err(tp, "a transition needs effective_from or effective_until")
        t_from = v.day(tm, "effective_from", tp, optional=True)
        t_until = v.day(tm, "effective_until", tp, optional=True)
        if t_from and t_until and t_until <= t_from:
            raise v.err((*tp, "effective_until"), "effective_until must be after effective_from")
        transitions.append(Transition(str(v.cel(tm, "applies_if", tp, oid)), t_from, t_until,
                                      v.string(tm, "note", tp, optional=True), v.line(tp)))
    tx = m["text"]
    if not isinstance(tx, dict) or not tx:
        raise v.err((*path, "text"), "text must map a language (en, ja, ...) to a text")
    texts: dict[str, Text] = {}
    for lang, body in tx.items():
        lp = (*path, "text", lang)
        if not _LANG_RE.match(lang):
            raise v.err(lp, f"{lang!r} is not a language tag (en, ja, ...)")
        bm = v.mapping(body, lp, f"text {lang!r}", {"kind", "text"}, {"source_url"})
        kind = v.enum(bm, "kind", lp, TEXT_KINDS)
        t_url = v.url(bm["source_url"], (*lp, "source_url"), "source_url") \
            if bm.get("source_url") is not None else None
        if kind == "official" and not (t_url or source_url):
            raise v.err((*lp, "kind"), f"text {lang!r} is marked official but names no "
                        "source_url to check it against")
        texts[lang] = Text(kind, str(v.string(bm, "text", lp)), t_url)
    check = evidence = None
    if ("check" in m) == ("evidence" in m):
        raise v.err(path, "needs exactly one of 'check' (a CEL test of each record) or "
                    "'evidence' (what a person must supply)")
    if "check" in m:
        cp = (*path, "check")
        ck = v.mapping(m["check"], cp, "check", {"expr"}, {"applies", "origin"})
        check = Check(str(v.cel(ck, "expr", cp, oid)), v.cel(ck, "applies", cp, oid,
                                                              optional=True), v.line(cp),
                      v.enum(ck, "origin", cp, CHECK_ORIGINS, default="instrument"))
    else:
        ep = (*path, "evidence")
        ev = v.mapping(m["evidence"], ep, "evidence", {"kind", "description"}, {"applies"})
        evidence = Evidence(v.enum(ev, "kind", ep, EVIDENCE_KINDS),
                            str(v.string(ev, "description", ep)),
                            v.cel(ev, "applies", ep, oid, optional=True), v.line(ep))
    notes = v.string(m, "notes", path, optional=True)
    title = v.string(m, "title", path, optional=True)
    verification = _verification(v, m, path)
    reason = _reason(v, m, path) if m.get("reason") is not None else None
    if reason is not None and check is None:
        raise v.err((*path, "reason"), "a reason template explains a failing check; this "
                    "obligation has no check")
    incident = None
    if m.get("incident") is not None:
        ip = (*path, "incident")
        im = v.mapping(m["incident"], ip, "incident", {"report_to", "deadlines"}, set())
        dl = im["deadlines"]
        if not isinstance(dl, list) or not dl:
            raise v.err((*ip, "deadlines"), "deadlines must be a non-empty list")
        deadlines = []
        for i, d in enumerate(dl):
            dp = (*ip, "deadlines", i)
            dm = v.mapping(d, dp, "a deadline", {"case", "within_hours"}, set())
            hours = dm["within_hours"]
            if isinstance(hours, bool) or not isinstance(hours, int) or hours <= 0:
                raise v.err((*dp, "within_hours"),
                            f"within_hours must be a positive whole number, not {hours!r}")
            deadlines.append(Deadline(str(v.string(dm, "case", dp)), hours))
        incident = Incident(str(v.string(im, "report_to", ip)), tuple(deadlines))
    v.prefix = ""
    return Obligation(oid, title, citation, source_url, jurisdiction, role, legal_force,
                      status, eff_from, eff_until, tuple(transitions), texts, check, evidence,
                      v.line(path), verification, incident, notes, roles, reason)


def _reason(v: _V, m: dict[str, Any], path: Path_) -> dict[str, str]:
    rp = (*path, "reason")
    rm = m["reason"]
    if not isinstance(rm, dict) or "en" not in rm:
        raise v.err(rp, "reason must map languages to templates, with at least 'en'")
    out: dict[str, str] = {}
    for lang in rm:
        if not _LANG_RE.match(lang):
            raise v.err((*rp, lang), f"{lang!r} is not a language tag (en, ja, ...)")
        tpl = str(v.string(rm, lang, rp))
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(tpl)
                      if f is not None]
        except ValueError as e:
            raise v.err((*rp, lang), f"reason template: {e}") from None
        for f, spec, conv in fields:
            if f not in REASON_FIELDS or spec or conv:
                raise v.err((*rp, lang), f"reason template: {{{f}}} is not one of "
                            + ", ".join("{" + n + "}" for n in REASON_FIELDS))
        out[lang] = tpl
    return out


def _verification(v: _V, m: dict[str, Any], path: Path_) -> Verification | None:
    if m.get("verification") is None:
        return None
    vp = (*path, "verification")
    vm = v.mapping(m["verification"], vp, "verification", {"status"},
                   {"checked", "against", "note"})
    status = v.enum(vm, "status", vp, VERIFICATION_STATUSES)
    against = v.url(vm["against"], (*vp, "against"), "against") \
        if vm.get("against") is not None else None
    if status != "unverified" and against is None:
        raise v.err((*vp, "status"), f"verification {status!r} must name the source it was "
                    "checked 'against'")
    if status != "verified" and not vm.get("note"):
        raise v.err((*vp, "status"), f"verification {status!r} needs a 'note' saying what "
                    "could not be confirmed")
    return Verification(status, v.day(vm, "checked", vp, optional=True), against,
                        v.string(vm, "note", vp, optional=True))


def parse_pack(text: str, name: str = "<pack>") -> Pack:
    """Parse and validate one pack from YAML text; ``name`` is used in error messages."""
    data, lines = _compose(text, name)
    v = _V(name, lines)
    m = v.mapping(data, (), "a pack", _PACK_REQUIRED, _PACK_OPTIONAL)
    pid = v.string(m, "pack", (), pattern=_ID_RE)
    version = v.string(m, "version", (), pattern=_ID_RE)
    title = v.string(m, "title", ())
    publisher = v.string(m, "publisher", ())
    jurisdiction = v.string(m, "jurisdiction", ())
    status = v.enum(m, "status", (), STATUSES)
    srcs = m["sources"]
    if not isinstance(srcs, list) or not srcs:
        raise v.err(("sources",), "sources must be a non-empty list of URLs")
    sources = tuple(v.url(s, ("sources", i), "a source") for i, s in enumerate(srcs))
    eff_from = v.day(m, "effective_from", ())
    assert eff_from is not None
    eff_until = v.day(m, "effective_until", (), optional=True)
    if eff_until is not None and eff_until <= eff_from:
        raise v.err(("effective_until",), "effective_until must be after effective_from")
    tz = m.get("timezone", "UTC")
    try:
        if not isinstance(tz, str) or (tz != "UTC" and ZoneInfo(tz) is None):
            raise ValueError
    except (ValueError, ZoneInfoNotFoundError):
        raise v.err(("timezone",), f"timezone {tz!r} is not an IANA time zone") from None
    notes = v.string(m, "notes", (), optional=True)
    title_ja = v.string(m, "title_ja", (), optional=True)
    supersedes = v.string(m, "supersedes", (), optional=True, pattern=_ID_RE)
    if supersedes is not None and supersedes == version:
        raise v.err(("supersedes",), "a pack version cannot supersede itself")
    pack_verification = _verification(v, m, ())
    obls = m["obligations"]
    if not isinstance(obls, list) or not obls:
        raise v.err(("obligations",), "obligations must be a non-empty list")
    obligations: list[Obligation] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(obls):
        o = _obligation(v, raw, ("obligations", i), m, eff_from, eff_until)
        if o.id in seen:
            raise v.err(("obligations", i, "id"),
                        f"duplicate obligation id {o.id!r} (first at line {seen[o.id]})")
        seen[o.id] = o.line
        obligations.append(o)
    try:
        digest = hashlib.sha256(canonical(data)).hexdigest()
    except KansaError as e:  # e.g. an integer beyond JSON's safe range
        raise PackError(f"{name}:1: the pack is not representable as canonical JSON: {e}") \
            from None
    return Pack(str(pid), str(version), str(title), str(publisher), sources, str(jurisdiction),
                status, eff_from, eff_until, tz, tuple(obligations), notes, data,
                f"sha256:{digest}", name, title_ja, supersedes, pack_verification)


def load_pack(path: str | Path, *, display: Callable[[Path], str] | None = None) -> Pack:
    """Read and validate a pack file (UTF-8 YAML)."""
    p = Path(path)
    name = display(p) if display else str(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise PackError(f"{name}:0: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PackError(f"{name}:{line}: not UTF-8 text") from None
    return parse_pack(text, name)
