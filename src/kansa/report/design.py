"""The security design document: systems, models, providers, data flows and controls in
force, drawn from the ledger's records and the home's configuration.

Everything a table shows is counted from stored entries (report/usage_scan.py) or read
from configuration (report/setup_facts.py); the fixed prose about data flows
(report/design_strings.py) describes what the code does (see docs/ARCHITECTURE.md and
``vault.py``), and whatever neither can tell is marked as to be completed by the
organisation. :func:`control_rows` is shared with the OECD HAIP draft.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kansa.report.design_strings import STRINGS as _t
from kansa.report.doc import Document, KeyValue, Para, Section, Table
from kansa.report.drafting import TBC, fmt_time, to_us
from kansa.report.i18n import check_lang
from kansa.report.setup_facts import LedgerFacts, Setup, fact_list, gather_setup
from kansa.report.usage_scan import Usage, scan_usage

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.home import Home


def _n(value: int) -> str:
    return f"{value:,}"


def _period(lang: str, since: datetime | str | None, until: datetime | str | None) -> str:
    if since is None and until is None:
        return _t(lang, "all")
    a = fmt_time(to_us(since), lang) if since is not None else "…"
    b = fmt_time(to_us(until), lang) if until is not None else "…"
    return f"{a} {_t(lang, 'to')} {b}"


def _known(lang: str, kind: str, value: str) -> str:
    """A value kansa knows a name for in the report's language (a role, an outcome, the
    bundled signer), else the value as recorded."""
    from kansa.report.i18n import keys, t

    key = f"{kind}.{value}"
    return t(lang, key) if key in keys(lang) else value


def _systems_section(lang: str, u: Usage, facts: Mapping[str, Mapping[str, Any]]) -> Section:
    rows = []
    for name in sorted(set(u.systems) | set(facts)):
        st, f = u.systems.get(name), facts.get(name, {})
        source = "src.both" if st and f else "src.records" if st else "src.config"
        rows.append((name or "—", _n(st.count) if st else "0",
                     fmt_time(st.first_us, lang) if st else _t(lang, "never"),
                     fmt_time(st.last_us, lang) if st else "—",
                     ("、" if lang == "ja" else ", ").join(
                         _known(lang, "role", r) for r in fact_list(f.get("roles")))
                     or "—",
                     ", ".join(fact_list(f.get("jurisdictions"))) or "—", _t(lang, source)))
    headers = tuple(_t(lang, k) for k in ("h.system", "h.records", "h.first", "h.last",
                                          "h.roles", "h.juris", "h.source"))
    return Section(_t(lang, "s.systems"), [Para(_t(lang, "systems.note")),
                                           Table(headers, tuple(rows),
                                                 align=("l", "r", "l", "l", "l", "l", "l"))],
                   anchor="systems")


def _config_remarks(lang: str, u: Usage,
                    facts: Mapping[str, Mapping[str, Any]]) -> list[Para]:
    """Differences between the models/providers a system is configured to use and those
    its records show."""
    out: list[Para] = []
    for name in sorted(facts):
        f = facts[name]
        used_models = {m for (_, req, resp), st in u.models.items() if name in st.systems
                       for m in (req, resp) if m}
        used_providers = {p for p, st in u.providers.items() if name in st.systems and p}
        for what, used in (("models", used_models), ("providers", used_providers)):
            if what not in f:  # not configured: nothing to compare with
                continue
            configured = set(fact_list(f[what]))
            if configured - used:
                out.append(Para(_t(lang, "cfg.unused", system=name,
                                   items=", ".join(sorted(configured - used))), "note"))
            if used - configured:
                out.append(Para(_t(lang, "cfg.undeclared", system=name, what=what,
                                   items=", ".join(sorted(used - configured))), "warning"))
    return out


def _models_section(lang: str, u: Usage, facts: Mapping[str, Mapping[str, Any]]) -> Section:
    sec = Section(_t(lang, "s.models"), [Para(_t(lang, "models.note"))], anchor="models")
    none = _t(lang, "none")
    if not u.models:
        sec.blocks.append(Para(_t(lang, "no.models"), "note"))
    else:
        prov_rows = tuple(
            (p or none, _n(st.count), _n(st.ok), _n(st.count - st.ok),
             _n(sum(1 for k in u.models if k[0] == p)), _n(st.input_tokens),
             _n(st.output_tokens), fmt_time(st.first_us, lang), fmt_time(st.last_us, lang))
            for p, st in sorted(u.providers.items()))
        sec.blocks.append(Table(
            tuple(_t(lang, k) for k in ("h.provider", "h.calls", "h.ok", "h.notok", "h.models",
                                        "h.in", "h.out", "h.first", "h.last")),
            prov_rows, caption=_t(lang, "cap.providers"),
            align=("l", "r", "r", "r", "r", "r", "r", "l", "l")))
        model_rows = tuple(
            (p or none, req or none, resp or none, ", ".join(sorted(st.systems)),
             _n(st.count), _n(st.ok), _n(st.count - st.ok), _n(st.input_tokens),
             _n(st.output_tokens), fmt_time(st.first_us, lang), fmt_time(st.last_us, lang))
            for (p, req, resp), st in sorted(u.models.items()))
        sec.blocks.append(Table(
            tuple(_t(lang, k) for k in ("h.provider", "h.req", "h.resp", "h.systems",
                                        "h.calls", "h.ok", "h.notok", "h.in", "h.out",
                                        "h.first", "h.last")),
            model_rows, caption=_t(lang, "cap.models"),
            align=("l", "l", "l", "l", "r", "r", "r", "r", "r", "l", "l")))
    sec.blocks.extend(_config_remarks(lang, u, facts))
    outcomes = Table((_t(lang, "h.outcome"), _t(lang, "h.count")),
                     tuple((_known(lang, "outcome", k) if k else "—", _n(v))
                           for k, v in sorted(u.outcomes.items())),
                     align=("l", "r"))
    kinds = Table((_t(lang, "h.kind"), _t(lang, "h.count")),
                  tuple((k or "—", _n(v)) for k, v in sorted(u.kinds.items())), align=("l", "r"))
    sec.subsections.append(Section(_t(lang, "s.outcomes"), [outcomes, kinds]))
    return sec


def _flows_section(lang: str, u: Usage, lf: LedgerFacts) -> Section:
    blocks: list[Any] = [Para(_t(lang, k)) for k in ("flow.intake", "flow.gateway", "flow.sdk",
                                                     "flow.otel")]
    blocks.append(Table((_t(lang, "h.intake"), _t(lang, "h.records")),
                        tuple((_t(lang, f"intake.{k}"), _n(u.intake.get(k, 0)))
                              for k in ("gateway", "otel", "other")),
                        caption=_t(lang, "cap.intake"), align=("l", "r")))
    if u.upstreams:
        blocks.append(Table((_t(lang, "h.upstream"), _t(lang, "h.records")),
                            tuple((k, _n(v)) for k, v in sorted(u.upstreams.items())),
                            caption=_t(lang, "cap.upstreams"), align=("l", "r")))
    blocks.append(Table(
        (_t(lang, "h.data"), _t(lang, "h.where"), _t(lang, "h.protection")),
        tuple((_t(lang, f"d.{k}"), _t(lang, f"w.{k}"), _t(lang, f"p.{k}"))
              for k in ("meta", "content", "keys", "subject", "sign", "gwkeys", "findings")),
        caption=_t(lang, "cap.stored")))
    blocks.append(Para(_t(lang, "flow.erasure")))
    blocks.append(Para(_t(lang, "flow.counts", content=_n(u.with_content),
                          subject=_n(u.with_subject), erasures=_n(u.erasures),
                          erased=_n(lf.erased_subjects))))
    return Section(_t(lang, "s.flows"), blocks, anchor="flows")


def _retention(lang: str, facts: Mapping[str, Mapping[str, Any]]) -> str:
    days = [_t(lang, "ret.days", days=f["log_retention_days"], system=name)
            for name, f in sorted(facts.items()) if "log_retention_days" in f]
    return "; ".join(days) if days else TBC[lang]


def _inline_state(lang: str, u: Usage, setup: Setup) -> str:
    parts = []
    snap = setup.policy
    if snap is not None:
        modes = ", ".join(f"{k}: {v}" for k, v in sorted(snap.modes.items()))
        parts.append(_t(lang, "st.inline.file", name=setup.policy_path or "",
                        packs=", ".join(p.ref for p in snap.packs),
                        mode=snap.default_mode, modes=modes or "—", hash=snap.hash))
        n = u.snapshots.get(snap.hash, 0)
        parts.append(_t(lang, "st.inline.match", n=_n(n), total=_n(sum(u.snapshots.values()))))
    if u.decisions:
        parts.append(_t(lang, "st.inline.dec", decisions=", ".join(
            f"{k} {_n(v)}" for k, v in sorted(u.decisions.items()))))
    return "; ".join(parts) or _t(lang, "st.inline.none")


def control_rows(lang: str, u: Usage, setup: Setup) -> list[tuple[str, str, str]]:
    """(control, state, evidence) rows: shared with the HAIP draft's section 2."""
    lf = setup.ledger
    rows = [(_t(lang, "c.tree"), _t(lang, "st.tree", size=_n(lf.size)), _t(lang, "ev.tree"))]
    cp = (_t(lang, "st.cp", n=_n(lf.checkpoints), size=_n(lf.latest_size or 0),
             when=fmt_time(lf.latest_us, lang), interval=lf.checkpoint_interval)
          if lf.latest_size is not None else _t(lang, "st.cp.none"))
    rows.append((_t(lang, "c.cp"), cp, _t(lang, "ev.cp")))
    rows.append((_t(lang, "c.key"), _t(lang, "st.key", origin=lf.origin, kid=lf.key_id),
                 _t(lang, "ev.key")))
    wit = (_t(lang, "st.wit", n=len(lf.witnesses),
              names=", ".join(f"{n} ({url})" for n, url in lf.witnesses),
              cos=lf.latest_cosignatures)
           if lf.witnesses else _t(lang, "st.wit.none"))
    rows.append((_t(lang, "c.wit"), wit, _t(lang, "ev.wit")))
    rows.append((_t(lang, "c.ret"), _t(lang, "st.ret", days=_retention(lang, setup.facts)),
                 _t(lang, "ev.ret")))
    rows.append((_t(lang, "c.enc"), _t(lang, "st.enc", erased=_n(lf.erased_subjects)),
                 _t(lang, "ev.enc")))
    keys = setup.keys
    gwk = (_t(lang, "st.gwk", active=keys.active, revoked=keys.revoked,
              req=_t(lang, "gwk.req" if keys.required else "gwk.notreq"))
           if keys is not None else _t(lang, "st.gwk.none"))
    rows.append((_t(lang, "c.gwk"), gwk, _t(lang, "ev.gwk")))
    rows.append((_t(lang, "c.fail"), _t(lang, "st.fail"), _t(lang, "ev.fail")))
    states = []
    active = [a.ref for a in setup.activations if a.until is None]
    if setup.activations:
        states.append(_t(lang, "st.packs.act", n=len(setup.activations),
                         active=", ".join(active) or "—"))
    if setup.judged:
        states.append(_t(lang, "st.packs.judged",
                         packs=", ".join(f"{p}@{v}" for p, v, _ in setup.judged)))
    rows.append((_t(lang, "c.packs"), "; ".join(states) or _t(lang, "st.packs.none"),
                 _t(lang, "ev.packs")))
    rows.append((_t(lang, "c.inline"), _inline_state(lang, u, setup), _t(lang, "ev.inline")))
    return rows


def activation_table(lang: str, setup: Setup) -> Table:
    rows = []
    for a in setup.activations:
        until = (f"{fmt_time(to_us(a.until), lang)} (#{a.until_index})"
                 if a.until is not None else _t(lang, "still.active"))
        rows.append((a.ref, a.hash, _known(lang, "signer", a.signer),
                     f"{fmt_time(to_us(a.since), lang)} (#{a.index})",
                     until))
    return Table(tuple(_t(lang, k) for k in ("h.pack", "h.hash", "h.signer", "h.since",
                                             "h.until")),
                 tuple(rows), caption=_t(lang, "cap.act"))


def build_design_document(
    ledger: Ledger,
    *,
    home: Home | None = None,
    lang: str = "en",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    systems: Mapping[str, Any] | None = None,
    policy: str | Path | None = None,
    now: datetime | None = None,
    usage: Usage | None = None,
) -> Document:
    """The security design document for records in [since, until).

    ``home`` defaults to the ledger's; ``systems`` adds system facts (as ``--systems``);
    ``policy`` is the inline enforcement policy file the gateway runs with; ``usage``
    lets a caller that already scanned the same window pass the result in."""
    check_lang(lang)
    home = home if home is not None else ledger.home
    u = usage if usage is not None else scan_usage(ledger.log.store, since=since, until=until)
    setup = gather_setup(ledger, home, systems=systems, policy=policy, usage=u,
                         whole_log=since is None and until is None)
    facts, lf = setup.facts, setup.ledger
    generated = to_us(now or datetime.now(UTC))
    doc = Document(title=_t(lang, "title"), lang=lang, subtitle=_t(lang, "subtitle"),
                   meta=[(_t(lang, "m.generated"), fmt_time(generated, lang)),
                         (_t(lang, "m.log"), lf.origin), (_t(lang, "m.key"), lf.key_id),
                         (_t(lang, "m.store"), lf.store),
                         (_t(lang, "m.period"), _period(lang, since, until)),
                         (_t(lang, "m.records"), _n(u.records))])
    systems_sec = _systems_section(lang, u, facts)
    systems_sec.blocks.insert(0, Para(_t(lang, "draft"), "note"))
    doc.sections.append(systems_sec)
    doc.sections.append(_models_section(lang, u, facts))
    doc.sections.append(_flows_section(lang, u, lf))
    controls = Section(_t(lang, "s.controls"), [
        Para(_t(lang, "controls.note")),
        Table((_t(lang, "h.control"), _t(lang, "h.state"), _t(lang, "h.evidence")),
              tuple(control_rows(lang, u, setup)))], anchor="controls")
    if setup.activations:
        controls.blocks.append(activation_table(lang, setup))
    doc.sections.append(controls)
    todo = Section(_t(lang, "s.todo"), [Para(_t(lang, "todo.intro"))], anchor="todo")
    todo.blocks.append(KeyValue(tuple((_t(lang, f"todo.{i}"), TBC[lang]) for i in range(1, 6))))
    doc.sections.append(todo)
    return doc
