"""Why a finding fails, as a sentence a compliance officer reads, in the report's language.

Two entry points, both given the obligation (a ``kansa.policy.pack.Obligation``) and a
language:

- :func:`record_reason`: one failing record ("support-bot: the people it talks to are not
  told ... (Art. 50(1))");
- :func:`obligation_reason`: all failing records of an obligation ("34 records from
  support-bot failed: ... (Art. 50(2), applies since 2 Dec 2026)").

A pack may carry its own per-check reason template (``reason:`` mapping a language to a
template with ``{system}``, ``{model}``, ``{provider}``, ``{citation}``, ``{since}``,
``{until}``, ``{pack}``); it is preferred, in the report's language, when the obligation
object has one (attribute ``reason_template`` or ``reason``; absent attributes are fine).
Otherwise the sentence is generated from the obligation's title and citation. The
engine's stored generic reason ("check does not hold") is never shown as the reason.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from kansa.report.i18n import format_count, format_date, keys, t

_GENERIC = re.compile(r"^check does not hold(?: \(transition (\d+)\))?$")
_SENTENCE_END = re.compile(r"[。．]")
_TITLE_MAX = 90  # characters of a Japanese title cut from the pack's ja text


def reason_template(o: Any, lang: str) -> str | None:
    """The pack's reason template for ``lang``, if the obligation carries one."""
    for attr in ("reason_template", "reason"):
        v = getattr(o, attr, None)
        if isinstance(v, Mapping):
            tpl = v.get(lang)
            if isinstance(tpl, str) and tpl.strip():
                return tpl
        elif isinstance(v, str) and v.strip() and lang == "en":
            return v
    return None


def obligation_title(o: Any, lang: str) -> str:
    """The obligation's short title in ``lang``. Packs give titles in English; in Japanese
    the title is the first sentence of the pack's Japanese text when it has one (packs
    open their ja summaries with what the duty is), else the English title."""
    title = str(getattr(o, "title", None) or getattr(o, "id", ""))
    if lang != "ja":
        return title
    text = (getattr(o, "text", None) or {}).get("ja")
    if text is None or not getattr(text, "text", ""):
        return title
    first = _SENTENCE_END.split(str(text.text).strip(), maxsplit=1)[0].strip()
    if not first:
        return title
    return first if len(first) <= _TITLE_MAX else first[:_TITLE_MAX - 1] + "…"


def applies_since(o: Any, stored: str | None = None) -> date | None:
    """The day the duty applied from: a transition's date when the stored reason names
    one ("check does not hold (transition 2)"), else the obligation's."""
    m = _GENERIC.match(stored or "")
    trans = getattr(o, "transitions", ()) or ()
    if m and m.group(1):
        n = int(m.group(1))
        if 1 <= n <= len(trans) and trans[n - 1].effective_from is not None:
            d: date = trans[n - 1].effective_from
            return d
    eff = getattr(o, "effective_from", None)
    return eff if isinstance(eff, date) else None


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:  # a field kansa does not know stays visible
        return "{" + key + "}"


def _fill(tpl: str, fields: Mapping[str, str]) -> str:
    try:
        return string.Formatter().vformat(tpl, (), _Fields(fields))
    except (ValueError, IndexError, KeyError, AttributeError):
        return tpl


def _fields(o: Any, lang: str, *, system: str | None, model: str | None,
            provider: str | None, pack: str | None, since: date | None) -> dict[str, str]:
    unknown = t(lang, "reason.unknown")
    until = getattr(o, "effective_until", None)
    return {"system": system or unknown, "model": model or unknown,
            "provider": provider or unknown, "citation": str(getattr(o, "citation", "")),
            "since": format_date(lang, since) if since else unknown,
            "until": format_date(lang, until) if isinstance(until, date) else unknown,
            "pack": pack or unknown}


def record_reason(o: Any, lang: str, *, system: str | None = None, model: str | None = None,
                  provider: str | None = None, pack: str | None = None,
                  stored: str | None = None) -> str:
    """Why one record failed ``o``, in ``lang``: the pack's template for ``lang``; else the
    stored reason when it is specific and the report is in the language it was stored in
    (English); else a sentence from the obligation's title and citation."""
    since = applies_since(o, stored)
    tpl = reason_template(o, lang)
    if tpl is not None:
        return _fill(tpl, _fields(o, lang, system=system, model=model, provider=provider,
                                  pack=pack, since=since))
    if stored and lang == "en" and not _GENERIC.match(stored) and reason_template(o, "en"):
        return stored  # a pack template filled by the engine at replay time
    return t(lang, "reason.record", system=system or t(lang, "reason.unknown"),
             title=obligation_title(o, lang), citation=str(getattr(o, "citation", "")))


def obligation_reason(o: Any, lang: str, count: int,
                      systems: Sequence[tuple[str, int]] = (), *, pack: str | None = None,
                      stored: str | None = None) -> str:
    """Why ``count`` records failed ``o``, in ``lang``, naming the systems they came from
    (``systems``: (name, failing records), most first; may be empty when unknown)."""
    since = applies_since(o, stored)
    who = _who(lang, systems)
    tpl = reason_template(o, lang)
    if tpl is not None:
        top = systems[0][0] if len(systems) == 1 else None
        text = _fill(tpl, _fields(o, lang, system=top or who or None, model=None,
                                  provider=None, pack=pack, since=since))
        return t(lang, "reason.count_tpl", n=format_count(lang, count), text=text,
                 records=_records(lang, count))
    when = (t(lang, "reason.since", day=format_date(lang, since)) if since else "")
    key = "reason.obligation_from" if who else "reason.obligation"
    return t(lang, key, n=format_count(lang, count), who=who, records=_records(lang, count),
             title=obligation_title(o, lang), citation=str(getattr(o, "citation", "")),
             since=when)


# the engine's reasons for verdicts other than fail (policy/judging.py, judge_obligation),
# so a report can say them in its language; a reason not matched is shown as the engine
# gave it
_ENGINE = (
    (re.compile(r"^not in force until (\d{4}-\d{2}-\d{2})(?: \(transition (\d+)\))?$"),
     "engine.until"),
    (re.compile(r"^not in force since (\d{4}-\d{2}-\d{2})(?: \(transition (\d+)\))?$"),
     "engine.since"),
    (re.compile(r"^applies in (.+); the system is offered in (.+)$"), "engine.jurisdiction"),
    (re.compile(r"^applies to the (.+); the system is (.+)$"), "engine.role"),
    (re.compile(r"^does not apply to this record$"), "engine.not_applicable"),
    (re.compile(r"^check holds(?: \(transition (\d+)\))?$"), "engine.holds"),
)


def engine_reason(lang: str, reason: str) -> str:
    """The policy engine's reason for a verdict (stored in English) in ``lang``."""
    if lang == "en":
        return reason
    for rx, key in _ENGINE:
        m = rx.match(reason)
        if m is None:
            continue
        g = [x for x in m.groups()]
        if key in ("engine.until", "engine.since"):
            day = format_date(lang, date.fromisoformat(g[0]))
            text = t(lang, key, day=day)
            return text + (t(lang, "engine.transition", n=g[1]) if g[1] else "")
        if key == "engine.jurisdiction":
            return t(lang, key, where=g[0], offered=g[1])
        if key == "engine.role":
            roles = t(lang, "reason.join").join(_role(lang, r) for r in g[0].split(" or "))
            return t(lang, key, roles=roles,
                     system=t(lang, "reason.join").join(_role(lang, r.strip())
                                                        for r in g[1].split(",")))
        if key == "engine.holds":
            return t(lang, key) + (t(lang, "engine.transition", n=g[0]) if g[0] else "")
        return t(lang, key)
    return t(lang, "engine.other", text=reason)


def _role(lang: str, role: str) -> str:
    key = f"role.{role}"
    return t(lang, key) if key in keys(lang) else role


def _records(lang: str, n: int) -> str:
    return t(lang, "reason.record_one" if n == 1 else "reason.records")


def _who(lang: str, systems: Sequence[tuple[str, int]]) -> str:
    if not systems:
        return ""
    names = [s for s, _ in systems[:3]]
    more = len(systems) - len(names)
    joined = t(lang, "reason.join").join(names)
    return joined + (t(lang, "reason.more", n=more) if more > 0 else "")
