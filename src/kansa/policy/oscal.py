"""NIST OSCAL in and out: rule packs as OSCAL catalogs, findings as OSCAL assessment-results.

A pack version becomes one OSCAL catalog (JSON, OSCAL 1.1.x model):

- ``metadata``: the pack's title and version, the publisher as a party, and kansa
  properties (namespace :data:`NS`) for the pack id, hash, jurisdiction, status, dates,
  time zone, ``title_ja`` and ``supersedes``; the pack's notes are the metadata remarks.
- ``controls``: one per obligation, in pack order. The control id is the obligation id
  made an OSCAL token (:func:`control_id`); the kansa id is kept in the
  ``obligation-id`` property. The texts are parts of the ``statement`` part, one per
  language (``lang`` and ``text-kind`` properties); a CEL check or an evidence duty is the
  ``assessment-method`` part (method TEST or EXAMINE); transitions, incident deadlines,
  verification and notes are kansa parts.
- ``back-matter``: one resource per pack source (in order), and the pack's verification.

The export is a pure function of the pack's parsed data (its hash): uuids are UUIDv5 of
the pack hash, languages and markers are sorted, and ``last-modified`` is the latest of the
pack's ``effective_from`` and the days it says it was checked, so the same pack always
gives the same bytes, whatever the YAML's layout or key order.

Import (:func:`catalog_to_pack`) rebuilds the pack's parsed data exactly, including which
optional keys the author wrote (values inherited from the pack are exported for OSCAL
readers with ``class: inherited`` and dropped again; explicit ``null`` and ``[]`` are
recorded in ``null`` / ``empty-list`` properties), so ``catalog_to_pack(
pack_to_catalog(p)).hash == p.hash``. Anything else in the kansa namespace that is not
understood is an error naming its JSON path; properties and parts in other namespaces are
ignored, so other tools may annotate a catalog without breaking the import.

Findings become OSCAL assessment-results (:func:`findings_to_assessment_results`): one
``result`` per run, one ``finding`` and one ``observation`` per (pack version,
obligation), whose ``relevant-evidence`` cite ledger entries (record id, entry index,
RFC 6962 leaf hash) and the signed checkpoint (in back-matter) that covers them.
:func:`stored_run` reads a replay stored beside the ledger back as a :class:`Run`.

Crosswalks become OSCAL 1.2 mapping-collections
(:func:`crosswalk_to_mapping_collection`), mapping controls of the packs' catalogs.

OSCAL restricts some strings: a property value or party name may not start or end with
white space or hold a line break, and a title may not hold a line break. A pack whose
jurisdiction, citation, publisher, title, ``title_ja`` or obligation titles break these
rules cannot be exported faithfully, and :func:`pack_to_catalog` says so instead of
altering it. Free text (texts, checks, notes, descriptions) goes into ``prose``, which
holds any string.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import yaml

from kansa.ledger.note import SignedCheckpoint
from kansa.policy.judging import EVIDENCE_NEEDED, FAIL, NOT_APPLICABLE, PASS, Finding
from kansa.policy.pack import Pack, PackError, PolicyError, parse_pack

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.policy.crosswalk import Crosswalk

NS = "https://kansa.dev/ns/oscal"
OSCAL_VERSION = "1.1.3"
_UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, NS)
_TOKEN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_BREAKS = ("\n", "\r", "\u2028", "\u2029", "\x85")
_ERR_RE = re.compile(r"^[^:]*:(\d+): (.*)$", re.S)


class OscalError(PolicyError):
    """An OSCAL document is malformed or not kansa's; the message starts with a JSON path."""


# -- small helpers -------------------------------------------------------------------------


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_UUID_NS, "\x1f".join(parts)))


def _safe_value(s: str) -> bool:
    """OSCAL's ``string`` type: no leading or trailing white space, no line break."""
    return bool(s) and s == s.strip() and not any(b in s for b in _BREAKS)


def _safe_title(s: str) -> bool:
    return bool(s) and not any(b in s for b in _BREAKS)


def _prop(name: str, value: str, *, cls: str | None = None, ns: str | None = NS) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name}
    if ns is not None:
        p["ns"] = ns
    p["value"] = value
    if cls is not None:
        p["class"] = cls
    return p


def _part(name: str, *, prose: str | None = None, props: list[dict[str, Any]] | None = None,
          parts: list[dict[str, Any]] | None = None, links: list[dict[str, Any]] | None = None,
          pid: str | None = None, ns: str | None = NS) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if pid is not None:
        p["id"] = pid
    p["name"] = name
    if ns is not None:
        p["ns"] = ns
    if props:
        p["props"] = props
    if prose is not None:
        p["prose"] = prose
    if parts:
        p["parts"] = parts
    if links:
        p["links"] = links
    return p


def control_id(obligation_id: str, taken: set[str]) -> str:
    """The obligation id as an OSCAL token (``:`` and ``/`` become ``_``; a leading digit
    gets a ``_`` prefix), made unique against ``taken`` with a ``-2``, ``-3`` ... suffix."""
    base = re.sub(r"[^A-Za-z0-9_.\-]", "_", obligation_id)
    if not re.match(r"^[A-Za-z_]", base):
        base = "_" + base
    cid, n = base, 1
    while cid in taken:
        n += 1
        cid = f"{base}-{n}"
    taken.add(cid)
    return cid


def _export_error(where: str, what: str, value: str) -> OscalError:
    return OscalError(f"{where}: {what} {value!r} cannot be written in OSCAL unchanged "
                      "(OSCAL strings may not start or end with white space or hold a line "
                      "break)")


def _value(where: str, what: str, value: str) -> str:
    if not _safe_value(value):
        raise _export_error(where, what, value)
    return value


def _empties(m: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Dotted paths of keys the author wrote as ``null`` or ``[]`` (which the structure
    alone cannot tell from an absent key), as ("null" | "empty-list", path)."""
    for k, v in m.items():
        path = f"{prefix}{k}"
        if v is None:
            yield "null", path
        elif isinstance(v, list) and not v:
            yield "empty-list", path
        elif isinstance(v, dict):
            yield from _empties(v, path + ".")
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    yield from _empties(item, f"{path}.{i}.")


def _last_modified(data: Mapping[str, Any]) -> str:
    days = [str(data["effective_from"])]
    for holder in (data, *data["obligations"]):
        ver = holder.get("verification")
        if isinstance(ver, dict) and ver.get("checked"):
            days.append(str(ver["checked"]))
    return f"{max(days)}T00:00:00Z"


# -- export: pack -> catalog ---------------------------------------------------------------


def pack_to_catalog(pack: Pack, *, last_modified: datetime | None = None,
                    published: datetime | None = None) -> dict[str, Any]:
    """One OSCAL catalog (the JSON object, ``{"catalog": {...}}``) for one pack version.

    ``published`` (when the catalog was made available) is written only when given: it is
    not part of the pack, so the default export stays a function of the pack alone."""
    data = pack.data
    where = pack.ref
    meta_props = [_prop("pack-id", pack.id), _prop("pack-hash", pack.hash)]
    for key, name in (("jurisdiction", "jurisdiction"), ("status", "status"),
                      ("effective_from", "effective-from"),
                      ("effective_until", "effective-until"), ("timezone", "timezone"),
                      ("title_ja", "title-ja"), ("supersedes", "supersedes")):
        if data.get(key) is not None:
            meta_props.append(_prop(name, _value(where, key, str(data[key]))))
    meta_props += [_prop(kind, path) for kind, path in sorted(_empties(
        {k: v for k, v in data.items() if k != "obligations"}))]
    if not _safe_title(pack.title):
        raise _export_error(where, "title", pack.title)
    publisher = _value(where, "publisher", pack.publisher)
    party = _uuid(pack.hash, "publisher")
    modified = _ts(last_modified) if last_modified is not None else _last_modified(data)
    metadata: dict[str, Any] = {"title": pack.title}
    if published is not None:
        metadata["published"] = _ts(published)
    metadata |= {
        "last-modified": modified,
        "version": pack.version,
        "oscal-version": OSCAL_VERSION,
        "props": meta_props,
        "roles": [{"id": "publisher", "title": "Publisher"}],
        "parties": [{"uuid": party, "type": "organization", "name": publisher}],
        "responsible-parties": [{"role-id": "publisher", "party-uuids": [party]}],
    }
    if pack.notes is not None:
        metadata["remarks"] = pack.notes
    taken: set[str] = set()
    controls = [_control(pack, o, control_id(str(o["id"]), taken))
                for o in data["obligations"]]
    resources = [{"uuid": _uuid(pack.hash, "source", str(i)), "title": url,
                  "props": [_prop("resource-kind", "source")], "rlinks": [{"href": url}]}
                 for i, url in enumerate(data["sources"])]
    ver = data.get("verification")
    if isinstance(ver, dict):
        res: dict[str, Any] = {"uuid": _uuid(pack.hash, "verification"),
                               "title": "How the pack's dates and status were checked",
                               "props": [_prop("resource-kind", "verification"),
                                         *_verification_props(ver)]}
        if ver.get("note") is not None:
            res["description"] = ver["note"]
        if ver.get("against") is not None:
            res["rlinks"] = [{"href": ver["against"]}]
        resources.append(res)
    return {"catalog": {
        "uuid": _uuid(pack.hash),
        "metadata": metadata,
        "controls": controls,
        "back-matter": {"resources": resources},
    }}


def _verification_props(ver: Mapping[str, Any]) -> list[dict[str, Any]]:
    props = [_prop("verification-status", str(ver["status"]))]
    if ver.get("checked") is not None:
        props.append(_prop("verification-checked", str(ver["checked"])))
    return props


def _control(pack: Pack, o: Mapping[str, Any], cid: str) -> dict[str, Any]:
    oid = str(o["id"])
    where = f"{pack.ref} obligation {oid!r}"
    eff = pack.obligation(oid)
    cit = o["citation"]
    props = [_prop("label", str(eff.citation), ns=None), _prop("obligation-id", oid)]
    for key in ("article", "paragraph", "item"):
        if cit.get(key) is not None:
            props.append(_prop(key, _value(where, f"citation.{key}", str(cit[key]))))
    roles = o["role"] if isinstance(o["role"], list) else [o["role"]]  # one prop per role
    props += [*(_prop("role", str(r)) for r in roles),
              _prop("legal-force", str(o["legal_force"]))]
    inherited = {"jurisdiction": eff.jurisdiction, "status": eff.status,
                 "effective_from": eff.effective_from.isoformat(),
                 "effective_until": eff.effective_until.isoformat()
                 if eff.effective_until else None}
    for key, effective in inherited.items():
        name = key.replace("_", "-")
        if o.get(key) is not None:
            props.append(_prop(name, _value(where, key, str(o[key]))))
        elif effective is not None and _safe_value(effective):
            props.append(_prop(name, effective, cls="inherited"))
    title = o.get("title")
    if title is None:
        props.append(_prop("title-generated", "true"))
    elif not _safe_title(str(title)):
        raise _export_error(where, "title", str(title))
    props += [_prop(kind, path) for kind, path in sorted(_empties(o))]
    texts = [_part("text", pid=f"{cid}_smt.{lang}", prose=str(body["text"]),
                   props=[_prop("lang", lang), _prop("text-kind", str(body["kind"]))],
                   links=[{"href": body["source_url"], "rel": "source"}]
                   if body.get("source_url") is not None else None)
             for lang, body in sorted(o["text"].items())]
    parts = [_part("statement", ns=None, pid=f"{cid}_smt", parts=texts),
             _assessment(o, cid)]
    parts += [_transition(t) for t in o.get("transitions") or []]
    if isinstance(o.get("incident"), dict):
        parts.append(_incident(o["incident"]))
    if isinstance(o.get("verification"), dict):
        ver = o["verification"]
        parts.append(_part("verification", props=_verification_props(ver),
                           prose=ver.get("note"),
                           links=[{"href": ver["against"], "rel": "verified-against"}]
                           if ver.get("against") is not None else None))
    if o.get("notes") is not None:
        parts.append(_part("notes", prose=str(o["notes"])))
    parts += [_part("reason", prose=str(tpl), props=[_prop("lang", lang)])
              for lang, tpl in sorted((o.get("reason") or {}).items())]
    control: dict[str, Any] = {"id": cid, "title": str(title) if title is not None
                               else str(eff.citation), "props": props}
    if o.get("source_url") is not None:
        control["links"] = [{"href": o["source_url"], "rel": "source"}]
    control["parts"] = parts
    return control


def _assessment(o: Mapping[str, Any], cid: str) -> dict[str, Any]:
    if "check" in o:
        ck = o["check"]
        sub = [_part("expr", prose=str(ck["expr"]))]
        if ck.get("applies") is not None:
            sub.insert(0, _part("applies", prose=str(ck["applies"])))
        props = [_prop("method", "TEST", ns=None), _prop("assessment", "check")]
        if ck.get("origin") is not None:
            props.append(_prop("check-origin", str(ck["origin"])))
        return _part("assessment-method", ns=None, pid=f"{cid}_asm", props=props, parts=sub)
    ev = o["evidence"]
    sub = [_part("applies", prose=str(ev["applies"]))] if ev.get("applies") is not None \
        else []
    return _part("assessment-method", ns=None, pid=f"{cid}_asm",
                 props=[_prop("method", "EXAMINE", ns=None), _prop("assessment", "evidence"),
                        _prop("evidence-kind", str(ev["kind"]))],
                 prose=str(ev["description"]), parts=sub)


def _transition(t: Mapping[str, Any]) -> dict[str, Any]:
    props = [_prop(k.replace("_", "-"), str(t[k]))
             for k in ("effective_from", "effective_until") if t.get(k) is not None]
    sub = [_part("applies-if", prose=str(t["applies_if"]))]
    if t.get("note") is not None:
        sub.append(_part("note", prose=str(t["note"])))
    return _part("transition", props=props, parts=sub)


def _incident(inc: Mapping[str, Any]) -> dict[str, Any]:
    deadlines = [_part("deadline", prose=str(d["case"]),
                       props=[_prop("within-hours", str(d["within_hours"]))])
                 for d in inc["deadlines"]]
    return _part("incident-reporting", parts=[_part("report-to", prose=str(inc["report_to"])),
                                              *deadlines])


def catalog_json(catalog: Mapping[str, Any]) -> bytes:
    """The catalog as UTF-8 JSON text, indented, keys in a stable order (the export bytes)."""
    return (json.dumps(catalog, ensure_ascii=False, indent=2) + "\n").encode()


# -- import: catalog -> pack ---------------------------------------------------------------


class _Node:
    """A JSON value and its path, with accessors that fail naming that path."""

    def __init__(self, value: Any, path: str) -> None:
        self.value = value
        self.path = path

    def err(self, msg: str) -> OscalError:
        return OscalError(f"{self.path}: {msg}")

    def obj(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.err(f"must be an object, not {_json_kind(self.value)}")
        return self.value

    def get(self, key: str, *, required: bool = True) -> _Node | None:
        m = self.obj()
        if key not in m:
            if required:
                raise self.err(f"lacks {key!r}")
            return None
        return _Node(m[key], f"{self.path}.{key}")

    def req(self, key: str) -> _Node:
        got = self.get(key)
        assert got is not None
        return got

    def items(self, key: str) -> list[_Node]:
        got = self.get(key, required=False)
        if got is None:
            return []
        if not isinstance(got.value, list):
            raise got.err(f"must be an array, not {_json_kind(got.value)}")
        return [_Node(v, f"{got.path}[{i}]") for i, v in enumerate(got.value)]

    def text(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.err(f"must be a non-empty string, not {_json_kind(self.value)}")
        return self.value


def _json_kind(v: Any) -> str:
    return {dict: "an object", list: "an array", type(None): "null", bool: "a boolean",
            int: "a number", float: "a number", str: "a string"}.get(type(v), type(v).__name__)


class _Props:
    """The kansa-namespace properties of one OSCAL object; taking one marks it used, and
    :meth:`done` rejects any left over (a misspelt or foreign kansa property)."""

    def __init__(self, holder: _Node) -> None:
        self.holder = holder
        self.props: list[tuple[_Node, str, str, str | None]] = []
        for p in holder.items("props"):
            if p.obj().get("ns") != NS:
                continue
            self.props.append((p, p.req("name").text(), p.req("value").text(),
                               p.obj().get("class")))
        self.used: set[int] = set()
        self.where: dict[str, str] = {}  # property name -> JSON path of the one taken

    def all(self, name: str, *, inherited: bool = False) -> list[str]:
        out = []
        for i, (p, n, v, cls) in enumerate(self.props):
            if n == name:
                self.used.add(i)
                if inherited or cls != "inherited":
                    out.append(v)
                    self.where[name] = p.path
        return out

    def one(self, name: str, *, required: bool = False) -> str | None:
        got = self.all(name)
        if len(got) > 1:
            raise self.holder.err(f"has {len(got)} kansa properties {name!r}; expected one")
        if not got and required:
            raise self.holder.err(f"lacks the kansa property {name!r} (ns {NS})")
        return got[0] if got else None

    def done(self) -> None:
        for i, (p, n, _, _) in enumerate(self.props):
            if i not in self.used:
                raise p.err(f"unknown kansa property {n!r}")


def _kparts(holder: _Node) -> list[tuple[_Node, str]]:
    """The parts of ``holder`` in the kansa namespace (and OSCAL's own statement and
    assessment-method parts), with their names."""
    out = []
    for p in holder.items("parts"):
        ns = p.obj().get("ns")
        name = p.req("name").text()
        if ns == NS or (ns is None and name in ("statement", "assessment-method")):
            out.append((p, name))
    return out


def _prose(p: _Node) -> str:
    return p.req("prose").text()


def _single(parts: list[tuple[_Node, str]], name: str, holder: _Node, *,
            required: bool = False) -> _Node | None:
    got = [p for p, n in parts if n == name]
    if len(got) > 1:
        raise got[1].err(f"a second {name!r} part; expected at most one")
    if not got and required:
        raise holder.err(f"lacks the {name!r} part")
    return got[0] if got else None


def _links(holder: _Node, rel: str) -> list[str]:
    return [link.req("href").text() for link in holder.items("links")
            if link.obj().get("rel") == rel]


def _one_link(holder: _Node, rel: str) -> str | None:
    got = _links(holder, rel)
    if len(got) > 1:
        raise holder.err(f"has {len(got)} links with rel {rel!r}; expected one")
    return got[0] if got else None


def _set_empty(target: dict[str, Any], kind: str, path: str, node: _Node,
               origin: dict[tuple[str | int, ...], str],
               base: tuple[str | int, ...]) -> None:
    keys = path.split(".")
    cur: Any = target
    for k in keys[:-1]:
        step: str | int = int(k) if k.isdigit() and isinstance(cur, list) else k
        try:
            cur = cur[step]
        except (KeyError, IndexError, TypeError):
            raise node.err(f"{kind} property {path!r} names a key that is not there") \
                from None
    if not isinstance(cur, dict) or keys[-1] in cur:
        raise node.err(f"{kind} property {path!r} names a key that is already set")
    cur[keys[-1]] = None if kind == "null" else []
    origin[(*base, *(int(k) if k.isdigit() else k for k in keys))] = node.path


@dataclass
class _Import:
    origin: dict[tuple[str | int, ...], str] = field(default_factory=dict)

    def pack_data(self, doc: Any) -> tuple[dict[str, Any], str]:
        root = _Node(doc, "$")
        cat = root.req("catalog")
        cat.path = "catalog"
        meta = cat.req("metadata")
        props = _Props(meta)
        pack_hash = props.one("pack-hash")
        if pack_hash is None:
            raise meta.err(f"lacks the kansa property 'pack-hash' (ns {NS}): this catalog "
                           "was not exported from a kansa rule pack")
        data: dict[str, Any] = {"pack": props.one("pack-id", required=True),
                                "version": meta.req("version").text(),
                                "title": meta.req("title").text()}
        self.origin.update({("pack",): props.where["pack-id"], ("version",): meta.path +
                            ".version", ("title",): meta.path + ".title"})
        data["publisher"] = self._publisher(meta)
        data["sources"], verification = self._resources(cat)
        for key, name in (("title_ja", "title-ja"), ("jurisdiction", "jurisdiction"),
                          ("status", "status"), ("effective_from", "effective-from"),
                          ("effective_until", "effective-until"), ("timezone", "timezone"),
                          ("supersedes", "supersedes")):
            got = props.one(name)
            if got is not None:
                data[key] = got
                self.origin[(key,)] = props.where[name]
        if verification is not None:
            data["verification"] = verification
        remarks = meta.get("remarks", required=False)
        if remarks is not None:
            data["notes"] = remarks.text()
            self.origin[("notes",)] = remarks.path
        controls = cat.items("controls")
        if not controls:
            raise cat.err("holds no controls: a kansa catalog has one per obligation")
        data["obligations"] = [self._obligation(c, i) for i, c in enumerate(controls)]
        for kind in ("null", "empty-list"):
            for path in props.all(kind):
                _set_empty(data, kind, path, meta, self.origin, ())
        props.done()
        return data, pack_hash

    def _publisher(self, meta: _Node) -> str:
        parties = meta.items("parties")
        roles = [r for r in meta.items("responsible-parties")
                 if r.obj().get("role-id") == "publisher"]
        if len(roles) != 1:
            raise meta.err("needs exactly one responsible-party with role-id 'publisher'")
        uuids = roles[0].items("party-uuids")
        if len(uuids) != 1:
            raise roles[0].err("the publisher role must name exactly one party")
        for p in parties:
            if p.obj().get("uuid") == uuids[0].value:
                self.origin[("publisher",)] = p.path + ".name"
                return p.req("name").text()
        raise uuids[0].err(f"no party has uuid {uuids[0].value!r}")

    def _resources(self, cat: _Node) -> tuple[list[str], dict[str, Any] | None]:
        bm = cat.get("back-matter", required=False)
        sources: list[str] = []
        verification = None
        for r in bm.items("resources") if bm is not None else []:
            props = _Props(r)
            kind = props.one("resource-kind")
            if kind == "source":
                links = r.items("rlinks")
                if len(links) != 1:
                    raise r.err("a pack source resource needs exactly one rlink")
                self.origin[("sources", len(sources))] = links[0].path + ".href"
                sources.append(links[0].req("href").text())
            elif kind == "verification":
                if verification is not None:
                    raise r.err("a second pack verification resource")
                verification = _verification(props)
                links = r.items("rlinks")
                if links:
                    verification["against"] = links[0].req("href").text()
                desc = r.get("description", required=False)
                if desc is not None:
                    verification["note"] = desc.text()
                self.origin[("verification",)] = r.path
            elif kind is not None:
                raise r.err(f"unknown kansa resource-kind {kind!r}")
            props.done()
        if not sources:
            raise cat.err("back-matter names no pack source (resources with the kansa "
                          "property resource-kind=source)")
        return sources, verification

    def _obligation(self, c: _Node, i: int) -> dict[str, Any]:
        base: tuple[str | int, ...] = ("obligations", i)
        self.origin[base] = c.path
        props = _Props(c)
        o: dict[str, Any] = {"id": props.one("obligation-id", required=True)}
        self.origin[(*base, "id")] = props.where["obligation-id"]
        if props.one("title-generated") != "true":
            o["title"] = c.req("title").text()
            self.origin[(*base, "title")] = c.path + ".title"
        cit = {k: v for k in ("article", "paragraph", "item")
               if (v := props.one(k)) is not None}
        if "article" not in cit:
            raise c.err(f"lacks the kansa property 'article' (ns {NS})")
        o["citation"] = cit
        self.origin.update({(*base, "citation", k): props.where[k] for k in cit})
        src = _one_link(c, "source")
        if src is not None:
            o["source_url"] = src
        roles = props.all("role")
        if not roles:
            raise c.err(f"lacks the kansa property 'role' (ns {NS})")
        o["role"] = roles[0] if len(roles) == 1 else roles
        self.origin[(*base, "role")] = props.where["role"]
        for key in ("jurisdiction", "legal_force", "status", "effective_from",
                    "effective_until"):
            got = props.one(key.replace("_", "-"), required=key in ("role", "legal_force"))
            if got is not None:
                o[key] = got
                self.origin[(*base, key)] = props.where[key.replace("_", "-")]
        props.all("jurisdiction", inherited=True)
        for key in ("status", "effective-from", "effective-until"):
            props.all(key, inherited=True)
        parts = _kparts(c)
        o["text"] = self._texts(c, parts, base)
        o.update(self._assessment(c, parts, base))
        transitions = [self._transition(p, base, n) for n, p in enumerate(
            q for q, name in parts if name == "transition")]
        if transitions:
            o["transitions"] = transitions
        inc = _single(parts, "incident-reporting", c)
        if inc is not None:
            o["incident"] = self._incident(inc)
        ver = _single(parts, "verification", c)
        if ver is not None:
            vp = _Props(ver)
            o["verification"] = _verification(vp)
            vp.done()
            against = _one_link(ver, "verified-against")
            if against is not None:
                o["verification"]["against"] = against
            if "prose" in ver.obj():
                o["verification"]["note"] = _prose(ver)
            self.origin[(*base, "verification")] = ver.path
        notes = _single(parts, "notes", c)
        if notes is not None:
            o["notes"] = _prose(notes)
            self.origin[(*base, "notes")] = notes.path
        reasons = [q for q, name in parts if name == "reason"]
        if reasons:
            o["reason"] = {}
            for q in reasons:
                qp = _Props(q)
                lang = qp.one("lang", required=True)
                assert lang is not None
                if lang in o["reason"]:
                    raise q.err(f"a second reason in language {lang!r}")
                o["reason"][lang] = _prose(q)
                qp.done()
            self.origin[(*base, "reason")] = reasons[0].path
        known = {"statement", "assessment-method", "transition", "incident-reporting",
                 "verification", "notes", "reason"}
        for p, name in parts:
            if name not in known:
                raise p.err(f"unknown kansa part {name!r}")
        for kind in ("null", "empty-list"):
            for path in props.all(kind):
                _set_empty(o, kind, path, c, self.origin, base)
        props.done()
        return o

    def _texts(self, c: _Node, parts: list[tuple[_Node, str]],
               base: tuple[str | int, ...]) -> dict[str, Any]:
        smt = _single(parts, "statement", c, required=True)
        assert smt is not None
        texts: dict[str, Any] = {}
        for p, name in _kparts(smt):
            if name != "text":
                raise p.err(f"unknown kansa part {name!r} in a statement")
            props = _Props(p)
            lang = props.one("lang", required=True)
            assert lang is not None
            if lang in texts:
                raise p.err(f"a second text in language {lang!r}")
            body: dict[str, Any] = {"kind": props.one("text-kind", required=True),
                                    "text": _prose(p)}
            props.done()
            src = _one_link(p, "source")
            if src is not None:
                body["source_url"] = src
            texts[lang] = body
            self.origin[(*base, "text", lang)] = p.path
        if not texts:
            raise smt.err("holds no text part (one per language, kansa namespace)")
        return texts

    def _assessment(self, c: _Node, parts: list[tuple[_Node, str]],
                    base: tuple[str | int, ...]) -> dict[str, Any]:
        am = _single(parts, "assessment-method", c, required=True)
        assert am is not None
        props = _Props(am)
        kind = props.one("assessment", required=True)
        sub = _kparts(am)
        applies = _single(sub, "applies", am)
        out: dict[str, Any] = {}
        if kind == "check":
            expr = _single(sub, "expr", am, required=True)
            assert expr is not None
            out["expr"] = _prose(expr)
            self.origin[(*base, "check", "expr")] = expr.path
            origin = props.one("check-origin")
            if origin is not None:
                out["origin"] = origin
        elif kind == "evidence":
            out["kind"] = props.one("evidence-kind", required=True)
            out["description"] = _prose(am)
        else:
            raise am.err(f"kansa property assessment is {kind!r}, not 'check' or 'evidence'")
        if applies is not None:
            out["applies"] = _prose(applies)
            self.origin[(*base, kind, "applies")] = applies.path
        for p, name in sub:
            if name not in ("applies", "expr"):
                raise p.err(f"unknown kansa part {name!r}")
        props.done()
        self.origin[(*base, kind)] = am.path
        return {kind: out}

    def _transition(self, p: _Node, base: tuple[str | int, ...], n: int) -> dict[str, Any]:
        props = _Props(p)
        t: dict[str, Any] = {}
        sub = _kparts(p)
        test = _single(sub, "applies-if", p, required=True)
        assert test is not None
        t["applies_if"] = _prose(test)
        for key in ("effective_from", "effective_until"):
            got = props.one(key.replace("_", "-"))
            if got is not None:
                t[key] = got
        note = _single(sub, "note", p)
        if note is not None:
            t["note"] = _prose(note)
        props.done()
        self.origin[(*base, "transitions", n)] = p.path
        self.origin[(*base, "transitions", n, "applies_if")] = test.path
        return t

    def _incident(self, p: _Node) -> dict[str, Any]:
        sub = _kparts(p)
        to = _single(sub, "report-to", p, required=True)
        assert to is not None
        deadlines = []
        for d, name in sub:
            if name == "deadline":
                dp = _Props(d)
                hours = dp.one("within-hours", required=True)
                assert hours is not None
                if not re.fullmatch(r"[0-9]{1,15}", hours):
                    raise d.err(f"within-hours {hours!r} is not a whole number")
                deadlines.append({"case": _prose(d), "within_hours": int(hours)})
                dp.done()
            elif name != "report-to":
                raise d.err(f"unknown kansa part {name!r}")
        return {"report_to": _prose(to), "deadlines": deadlines}


def _verification(props: _Props) -> dict[str, Any]:
    ver: dict[str, Any] = {"status": props.one("verification-status", required=True)}
    checked = props.one("verification-checked")
    if checked is not None:
        ver["checked"] = checked
    return ver


def catalog_to_pack_yaml(catalog: Any, *, check_hash: bool = True) -> tuple[Pack, str]:
    """The pack an OSCAL catalog (the parsed JSON) was exported from, and its YAML text.

    The catalog's structure is checked first (errors name the JSON path, e.g.
    ``catalog.controls[3].props[2]: ...``), then the rebuilt pack is validated as any pack
    file is (errors name the catalog path the offending value came from). With
    ``check_hash``, a catalog whose content no longer hashes to the ``pack-hash`` it
    carries (edited after export) is an error."""
    imp = _Import()
    data, claimed = imp.pack_data(catalog)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    try:
        pack = parse_pack(text, "<catalog>")
    except PackError as e:
        raise _located(e, text, imp.origin) from None
    if check_hash and pack.hash != claimed:
        raise OscalError(f"catalog.metadata.props: the catalog says it is pack {claimed} but "
                         f"its content hashes to {pack.hash}: it was changed after export "
                         "(import it without the hash check to accept the changes)")
    return pack, text


def catalog_to_pack(catalog: Any, *, check_hash: bool = True) -> Pack:
    """The pack an OSCAL catalog was exported from (see :func:`catalog_to_pack_yaml`)."""
    return catalog_to_pack_yaml(catalog, check_hash=check_hash)[0]


def _located(e: PackError, text: str, origin: Mapping[tuple[str | int, ...], str]) \
        -> OscalError:
    """A pack error in the YAML rebuilt from a catalog, re-addressed to the catalog path
    the offending value came from."""
    m = _ERR_RE.match(str(e))
    if m is None:
        return OscalError(f"catalog: {e}")
    line, reason = int(m.group(1)), m.group(2)
    from kansa.policy.pack import _compose

    try:
        _, lines = _compose(text, "<catalog>")
    except PackError:
        return OscalError(f"catalog: {reason}")
    at_line = sorted((p for p, n in lines.items() if n == line), key=len, reverse=True)
    for path in at_line:
        while path:
            if path in origin:
                return OscalError(f"{origin[path]}: {reason}")
            path = path[:-1]
    return OscalError(f"catalog: {reason}")


# -- findings -> assessment-results --------------------------------------------------------


@dataclass(frozen=True)
class LogAnchor:
    """The signed checkpoint that findings' evidence is cited against: every cited entry
    lies inside the tree it commits to (index < size)."""

    origin: str
    size: int
    root_hash: str  # base64, as written in the checkpoint
    note: str  # the signed checkpoint (C2SP signed note) text

    @classmethod
    def from_checkpoint(cls, signed: SignedCheckpoint) -> LogAnchor:
        cp = signed.checkpoint
        return cls(cp.origin, cp.size, base64.b64encode(cp.root).decode(),
                   signed.to_bytes().decode())


@dataclass(frozen=True)
class Run:
    """One judging run over ledger history: the pack versions, the period of evidence it
    covers (``start`` <= record time < ``end``), the findings to cite and the verdict
    counts per (pack hash, obligation). Without ``counts`` the findings are counted, so
    pass every finding then; with them (e.g. a stored run's tally, where only failing
    findings are kept), ``findings`` need only hold the ones to cite."""

    title: str
    start: datetime
    end: datetime
    packs: tuple[Pack, ...]
    findings: Iterable[Finding]
    counts: Mapping[tuple[str, str], Mapping[str, int]] | None = None
    records: int | None = None  # entries judged, when known
    digest: str | None = None  # ReplayResult.digest, when known
    run_id: str | None = None  # the stored run (policy_runs), when there is one
    judged_at: datetime | None = None  # when the run judged (a stored run's start), if known


_CITE_ORDER = (FAIL, EVIDENCE_NEEDED, PASS)


@dataclass
class _Tally:
    """What one run found for one (pack version, obligation): counts per verdict, and the
    first entries of each verdict (to cite as evidence)."""

    counts: dict[str, int] = field(default_factory=dict)
    cited: dict[str, list[Finding]] = field(default_factory=dict)

    def add(self, f: Finding, limit: int) -> None:
        self.counts[f.verdict] = self.counts.get(f.verdict, 0) + 1
        if f.verdict != NOT_APPLICABLE and f.index is not None:
            got = self.cited.setdefault(f.verdict, [])
            if len(got) < limit:
                got.append(f)

    def evidence(self, limit: int) -> list[Finding]:
        out = [f for v in _CITE_ORDER for f in self.cited.get(v, [])]
        return out[:limit]


def control_ids(pack: Pack) -> dict[str, str]:
    """Obligation id -> the control id :func:`pack_to_catalog` gives it."""
    taken: set[str] = set()
    return {o.id: control_id(o.id, taken) for o in pack.obligations}


def _ts(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise OscalError(f"time {dt.isoformat()} has no time zone")
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _tally(run: Run, limit: int) -> dict[tuple[str, str], _Tally]:
    if not run.packs:
        raise OscalError(f"run {run.title!r} names no pack version")
    known = {(p.hash, o.id) for p in run.packs for o in p.obligations}
    tallies: dict[tuple[str, str], _Tally] = {}
    for f in run.findings:
        if (f.pack_hash, f.obligation) not in known:
            raise OscalError(f"run {run.title!r}: a finding names obligation {f.obligation!r} "
                             f"of pack {f.pack_ref} {f.pack_hash}, which is not among the "
                             "run's packs")
        tallies.setdefault((f.pack_hash, f.obligation), _Tally()).add(f, limit)
    if run.counts is not None:
        for t in tallies.values():
            t.counts.clear()
        for key, counts in run.counts.items():
            tallies.setdefault(key, _Tally()).counts.update(counts)
    return tallies


def findings_to_assessment_results(
    runs: Sequence[Run],
    *,
    anchor: LogAnchor,
    leaf_hash: Callable[[int], bytes],
    evidence_limit: int = 20,
    title: str = "kansa: rule-pack findings over the ledger",
    last_modified: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """OSCAL assessment-results (``{"assessment-results": {...}}``) for judging runs.

    One ``result`` per run; in it one ``observation`` and one ``finding`` per (pack
    version, obligation) that applied to at least one entry. The finding's target is the
    obligation's statement in the pack's catalog (``<control-id>_smt``): not-satisfied if
    any entry failed (reason ``fail``) or evidence is still owed (reason ``other``), else
    satisfied (reason ``pass``). The observation counts verdicts and cites up to
    ``evidence_limit`` entries (failures first) as ``relevant-evidence``: record id, entry
    index, RFC 6962 leaf hash (``leaf_hash(index)``) and the signed checkpoint, kept in
    back-matter, whose tree holds them. Output is a pure function of the arguments;
    ``last_modified`` defaults to when the latest run judged (else to the latest run end),
    and is never later than ``now`` when a clock reading is given: a run's period may end
    tomorrow (it covers whole days), a document cannot have been modified then."""
    if not runs:
        raise OscalError("assessment-results need at least one run")
    cp_uuid = _uuid("checkpoint", anchor.origin, str(anchor.size), anchor.root_hash)
    packs: dict[str, Pack] = {}
    results = []
    for run in runs:
        for p in run.packs:
            packs.setdefault(p.hash, p)
        results.append(_result(run, anchor, cp_uuid, leaf_hash, evidence_limit))
    pack_res = {h: _uuid(h, "pack-resource") for h in packs}
    resources: list[dict[str, Any]] = [
        {"uuid": pack_res[h], "title": f"Rule pack {p.ref}",
         "description": f"The rule pack version judged against: {p.title}. Its OSCAL "
                        f"catalog is `kansa packs export-oscal` of the pack with hash "
                        f"{p.hash} (catalog uuid {_uuid(p.hash)}).",
         "props": [_prop("pack-id", p.id), _prop("pack-version", p.version),
                   _prop("pack-hash", p.hash), _prop("catalog-uuid", _uuid(p.hash))]}
        for h, p in packs.items()]
    resources.append({
        "uuid": cp_uuid,
        "title": f"Signed checkpoint of log {anchor.origin} at size {anchor.size}"
        if _safe_title(anchor.origin) else f"Signed checkpoint at size {anchor.size}",
        "description": "The C2SP tlog-checkpoint (signed note) the evidence is cited "
                       "against: every cited entry index is below its size, and each leaf "
                       "hash can be proven included under its root hash.",
        "props": [_prop("log-size", str(anchor.size)),
                  _prop("log-root-hash", anchor.root_hash)],
        "base64": {"filename": "checkpoint.txt", "media-type": "text/plain",
                   "value": base64.b64encode(anchor.note.encode()).decode()},
    })
    if len({r["uuid"] for r in results}) != len(results):
        raise OscalError("the same run is given twice (results would share a uuid)")
    modified = last_modified if last_modified is not None else max(
        r.judged_at or r.end for r in runs)
    if now is not None:
        modified = min(modified, now)
    body = json.dumps(results, sort_keys=True, ensure_ascii=False).encode()
    return {"assessment-results": {
        "uuid": _uuid("assessment-results", hashlib.sha256(body).hexdigest()),
        "metadata": {
            "title": title,
            "last-modified": _ts(modified),
            "version": f"{anchor.origin} size {anchor.size}"
            if _safe_value(anchor.origin) else str(anchor.size),
            "oscal-version": OSCAL_VERSION,
            "props": [_prop("log-size", str(anchor.size)),
                      _prop("log-root-hash", anchor.root_hash)],
        },
        "import-ap": {"href": f"#{pack_res[next(iter(packs))]}",
                      "remarks": "kansa writes no assessment plan: what was assessed is the "
                                 "rule pack versions listed in back-matter, each judged "
                                 "against every ledger entry in the run's period."},
        "results": results,
        "back-matter": {"resources": resources},
    }}


def _result(run: Run, anchor: LogAnchor, cp_uuid: str, leaf_hash: Callable[[int], bytes],
            limit: int) -> dict[str, Any]:
    tallies = _tally(run, limit)
    rid = _uuid("result", run.title, _ts(run.start), _ts(run.end), anchor.root_hash,
                *sorted(p.hash for p in run.packs), run.digest or "", run.run_id or "")
    totals: dict[str, int] = {}
    observations, findings, reviewed = [], [], []
    for pack in run.packs:
        cids = control_ids(pack)
        for o in pack.obligations:
            reviewed.append(cids[o.id])
            t = tallies.get((pack.hash, o.id))
            if t is None:
                continue
            for v, n in t.counts.items():
                totals[v] = totals.get(v, 0) + n
            if not any(n for v, n in t.counts.items() if v != NOT_APPLICABLE):
                continue
            obs = _observation(pack, o.id, t, rid, run, anchor, cp_uuid, leaf_hash, limit)
            observations.append(obs)
            findings.append(_finding(pack, o.id, cids[o.id], t, rid, obs["uuid"]))
    props = [_prop("pack-hash", p.hash) for p in run.packs]
    if run.run_id:
        props.append(_prop("run-id", _value("run", "run_id", run.run_id)))
    if run.records is not None:
        props.append(_prop("records", str(run.records)))
    if run.digest:
        props.append(_prop("replay-digest", f"sha256:{run.digest}"))
    props += [_prop(f"verdict-{v.replace('_', '-')}", str(n)) for v, n in sorted(totals.items())]
    refs = ", ".join(p.ref for p in run.packs)
    result: dict[str, Any] = {
        "uuid": rid,
        "title": run.title if _safe_title(run.title) else "kansa replay",
        "description": f"Ledger entries recorded between {_ts(run.start)} and {_ts(run.end)} "
                       f"judged under {refs}.",
        "start": _ts(run.start),
        "end": _ts(run.end),
        "props": props,
        "reviewed-controls": {
            "description": "Every obligation of the rule pack versions judged (controls of "
                           "their OSCAL catalogs).",
            "control-selections": [{"include-controls": [
                {"control-id": c} for c in dict.fromkeys(reviewed)]}]},
    }
    if observations:
        result["observations"] = observations
        result["findings"] = findings
    return result


def _observation(pack: Pack, oid: str, t: _Tally, rid: str, run: Run, anchor: LogAnchor,
                 cp_uuid: str, leaf_hash: Callable[[int], bytes],
                 limit: int) -> dict[str, Any]:
    o = pack.obligation(oid)
    counts = ", ".join(f"{n} {v}" for v, n in sorted(t.counts.items()))
    evidence = []
    for f in t.evidence(limit):
        assert f.index is not None
        if f.index >= anchor.size:
            raise OscalError(f"entry {f.index} is not covered by the checkpoint (size "
                             f"{anchor.size}): sign a newer checkpoint first")
        evidence.append({
            "href": f"#{cp_uuid}",
            "description": f"Ledger entry {f.index} (record {f.record_id}): {f.verdict}: "
                           f"{f.reason}",
            "props": [_prop("record-id", f.record_id) if _safe_value(f.record_id)
                      else _prop("record-id", "unnamed"),
                      _prop("entry-index", str(f.index)),
                      _prop("leaf-hash", "sha256:" + leaf_hash(f.index).hex()),
                      _prop("verdict", f.verdict),
                      _prop("checkpoint-size", str(anchor.size))],
        })
    obs: dict[str, Any] = {
        "uuid": _uuid(rid, pack.hash, oid, "observation"),
        "title": f"{pack.ref} {oid}",
        "description": f"Obligation {oid} ({o.citation}) of {pack.ref} judged against the "
                       f"ledger entries of the run: {counts}.",
        "props": [_prop("pack-hash", pack.hash), _prop("obligation-id", oid),
                  *(_prop(f"verdict-{v.replace('_', '-')}", str(n))
                    for v, n in sorted(t.counts.items()))],
        "methods": ["TEST" if o.check is not None else "EXAMINE"],
        "collected": _ts(run.end),
    }
    if evidence:
        obs["relevant-evidence"] = evidence
    return obs


def _finding(pack: Pack, oid: str, cid: str, t: _Tally, rid: str,
             obs_uuid: str) -> dict[str, Any]:
    o = pack.obligation(oid)
    if t.counts.get(FAIL):
        state, reason = "not-satisfied", "fail"
        applicable = sum(n for v, n in t.counts.items() if v != NOT_APPLICABLE)
        why = f"{t.counts[FAIL]} of {applicable} applicable ledger entries fail the check."
    elif t.counts.get(EVIDENCE_NEEDED):
        state, reason = "not-satisfied", "other"
        ev = o.evidence
        why = ("Evidence a person must supply is owed"
               + (f" ({ev.kind}: {ev.description})" if ev else "") + ".")
    else:
        state, reason = "satisfied", "pass"
        why = f"All {t.counts.get(PASS, 0)} applicable ledger entries pass the check."
    return {
        "uuid": _uuid(rid, pack.hash, oid, "finding"),
        "title": f"{oid} ({o.citation})",
        "description": f"{pack.ref} obligation {oid} ({o.citation}, {o.legal_force}): {why}",
        "props": [_prop("pack-hash", pack.hash), _prop("obligation-id", oid),
                  _prop("legal-force", o.legal_force)],
        "target": {"type": "statement-id", "target-id": f"{cid}_smt",
                   "status": {"state": state, "reason": reason}},
        "related-observations": [{"observation-uuid": obs_uuid}],
    }


def assessment_results_json(doc: Mapping[str, Any]) -> bytes:
    """Assessment-results as UTF-8 JSON text (indented, stable key order)."""
    return catalog_json(doc)


# -- from a ledger -------------------------------------------------------------------------


def pack_from_data(data: Mapping[str, Any], expect_hash: str) -> Pack:
    """A pack rebuilt from its parsed data (as stored beside the ledger), checked against
    the hash it was stored under."""
    pack = parse_pack(yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True),
                      f"<stored pack {expect_hash}>")
    if pack.hash != expect_hash:
        raise OscalError(f"the pack stored as {expect_hash} hashes to {pack.hash}")
    return pack


def _day_start(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def stored_run(ledger: Ledger, run_id: str | None = None, *,
               evidence_limit: int = 20) -> Run:
    """A replay stored beside the ledger (default: the latest) as a :class:`Run`: its packs
    (from ``policy_packs``), its verdict counts (``policy_tally``) and up to
    ``evidence_limit`` failing findings per obligation to cite (``policy_findings`` keeps
    the latest verdict of each entry, so a later replay under the same pack replaces
    them). The period is the run's ``since``/``until`` when given, else the UTC days of the
    records judged."""
    from kansa.policy.findings_store import FindingStore

    store = FindingStore(ledger.log.store)
    runs = store.runs()
    info = next((r for r in runs if run_id is None or r.run_id == run_id), None)
    if info is None:
        raise OscalError(f"no stored replay {run_id!r}" if run_id else
                         "no stored replay: run `kansa replay --pack ...` first")
    packs = []
    for p in info.packs:
        data = store.pack_json(p["hash"])
        if data is None:
            raise OscalError(f"run {info.run_id}: pack {p['hash']} is not stored")
        packs.append(pack_from_data(data, p["hash"]))
    counts: dict[tuple[str, str], dict[str, int]] = {}
    days: list[str] = []
    for row in store.tally(run=info.run_id):
        c = counts.setdefault((row.pack_hash, row.obligation), {})
        c[row.verdict] = c.get(row.verdict, 0) + row.n
        days.append(row.day)
    cited = [f for p in packs for o in p.obligations
             for f in store.findings(pack_hash=p.hash, obligation=o.id, verdict=FAIL,
                                     limit=evidence_limit)]
    start = (_parse_bound(info.since) if info.since else
             _day_start(min(days)) if days else info.started_at)
    end = (_parse_bound(info.until) if info.until else
           _day_start(max(days)) + timedelta(days=1) if days else info.started_at)
    title = "kansa replay under " + ", ".join(p.ref for p in packs)
    return Run(title, start, end, tuple(packs), cited, counts, info.records, info.digest,
               info.run_id, judged_at=info.started_at)


def _parse_bound(value: str) -> datetime:
    from kansa.records.model import parse_ts

    return parse_ts(value, field_name="since/until").astimezone(UTC)


def assessment_results_from_ledger(ledger: Ledger, runs: Sequence[Run], *,
                                   evidence_limit: int = 20,
                                   now: datetime | None = None) -> dict[str, Any]:
    """Assessment-results for ``runs``, citing the ledger's latest signed checkpoint (one
    is signed now if the log grew) and its entries' leaf hashes; ``last-modified`` is never
    later than ``now``."""
    from kansa.ledger.merkle import leaf_hash

    def leaf(index: int) -> bytes:
        row = ledger.log.store.entry(index)
        if row is None:
            raise OscalError(f"entry {index} is missing from the store")
        return leaf_hash(row.data)

    anchor = LogAnchor.from_checkpoint(ledger.checkpoint())
    return findings_to_assessment_results(runs, anchor=anchor, leaf_hash=leaf,
                                          evidence_limit=evidence_limit, now=now)


# -- crosswalks -> mapping-collection ------------------------------------------------------

MAPPING_OSCAL_VERSION = "1.2.0"  # the mapping-collection model first appears in OSCAL 1.2.0


def _version_for(ref: str, packs: Sequence[Pack]) -> Pack:
    """The pack version a version-independent ``pack-id#obligation-id`` is bound to: the
    latest (by effective_from, then version) of ``packs`` that has the obligation."""
    from kansa.policy.crosswalk import split_ref

    pack_id, oid = split_ref(ref)
    having = [p for p in packs if p.id == pack_id and any(o.id == oid for o in p.obligations)]
    if not having:
        raise OscalError(f"{ref}: no given version of pack {pack_id!r} has obligation {oid!r}")
    return max(having, key=lambda p: (p.effective_from, p.version))


def crosswalk_to_mapping_collection(cw: Crosswalk, packs: Sequence[Pack]) -> dict[str, Any]:
    """An OSCAL mapping-collection (``{"mapping-collection": {...}}``) for one crosswalk.

    Crosswalk references name obligations independently of version; here each is bound to
    the latest version among ``packs`` that has it, and its control id in that version's
    catalog (:func:`pack_to_catalog`). One ``mapping`` per (source catalog, target
    catalog), one ``map`` per crosswalk target with the crosswalk's relationship (read
    "source <relationship> target"), its confidence as the category and the shared evidence
    and the gap as remarks. The catalogs are back-matter resources carrying the pack hash
    and catalog uuid. A pure function of the crosswalk and the packs."""
    bound: dict[str, Pack] = {}
    for mp in cw.mappings:
        for ref in mp.refs:
            bound.setdefault(ref, _version_for(ref, packs))
    used = {p.hash: p for p in bound.values()}
    res_uuid = {h: _uuid("mapping-resource", h) for h in used}
    cids = {h: control_ids(p) for h, p in used.items()}

    def item(ref: str) -> dict[str, Any]:
        from kansa.policy.crosswalk import split_ref

        p = bound[ref]
        return {"type": "control", "id-ref": cids[p.hash][split_ref(ref)[1]],
                "props": [_prop("obligation-ref", ref)]}

    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for mp in cw.mappings:
        src = bound[mp.source]
        for t in mp.targets:
            remarks = f"Shared evidence: {mp.evidence}"
            if t.gap:
                remarks += f"\n\nGap: {t.gap}"
            m: dict[str, Any] = {
                "uuid": _uuid("map", cw.id, cw.version, mp.id, t.ref),
                "relationship": t.relationship,
                "sources": [item(mp.source)],
                "targets": [item(t.ref)],
            }
            if t.confidence:
                m["confidence-score"] = {"category": t.confidence}
            m["props"] = [_prop("crosswalk-mapping", mp.id)]
            m["remarks"] = remarks
            by_pair.setdefault((src.hash, bound[t.ref].hash), []).append(m)
    mappings = [{
        "uuid": _uuid("mapping", cw.id, cw.version, s, t),
        "source-resource": {"type": "catalog", "href": f"#{res_uuid[s]}"},
        "target-resource": {"type": "catalog", "href": f"#{res_uuid[t]}"},
        "maps": maps,
    } for (s, t), maps in by_pair.items()]
    modified = max(_last_modified(p.data) for p in used.values())
    return {"mapping-collection": {
        "uuid": _uuid("mapping-collection", cw.id, cw.version, *sorted(used)),
        "metadata": {
            "title": cw.title if _safe_title(cw.title) else cw.id,
            "last-modified": modified,
            "version": _value(cw.id, "version", cw.version),
            "oscal-version": MAPPING_OSCAL_VERSION,
            "props": [_prop("crosswalk-id", cw.id)],
            "remarks": cw.description,
        },
        "provenance": {
            "method": "human",
            "matching-rationale": "functional",
            "status": "draft",
            "mapping-description": cw.description,
        },
        "mappings": mappings,
        "back-matter": {"resources": [
            {"uuid": res_uuid[h], "title": f"OSCAL catalog of rule pack {p.ref}",
             "props": [_prop("pack-id", p.id), _prop("pack-version", p.version),
                       _prop("pack-hash", p.hash), _prop("catalog-uuid", _uuid(p.hash))]}
            for h, p in used.items()]},
    }}
