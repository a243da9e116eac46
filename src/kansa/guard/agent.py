"""Agent actions: provenance gating for tool calls (the pipeline stage ``agent``).

Indirect prompt injection reaches an agent through what it reads: a tool's result, a
retrieved document, a web page. A classifier that reads that text misses most of it
(instructions in documents look like ordinary tasks), so this stage does not try to
tell an injected instruction from a real one. It asks two questions a reviewer can check:

1. **Does the tool call derive from untrusted text?** Every tool result and every
   retrieved text is untrusted; the user's and the operator's messages are trusted.
   :class:`Provenance` keeps, per conversation, the untrusted and trusted text seen, and
   :func:`derive` says whether a tool call's arguments carry

   * an **e-mail address** or a **URL** (or a URL's host) that appears in untrusted text
     and nowhere in trusted text (the address an injected "send the file to ..." names),
   * a **copied run**: a stretch of at least ``min_copy`` characters (default 24, after
     NFKC, case folding, whitespace collapsed, zero-width and tag characters dropped)
     shared with untrusted text and absent from trusted text. Runs are probed every
     ``min_copy // 4`` characters, so any run of 1.25 x ``min_copy`` is always found.

   Limits, on purpose: a paraphrase, a translation, an encoding (base64 of the data), a
   value shorter than ``min_copy`` that is neither an address nor a URL (an account
   number, a file name), or an injection that makes the agent *choose* an existing,
   trusted destination are not found. Content the user also typed is not taint (the
   user may quote a document). The check is about where a value came from, not whether
   it is malicious: a legitimate copy from a tool result is reported too, and the
   configuration decides what that costs (``flag`` instead of approval, say).

2. **What can the tool do?** The configuration (:class:`AgentConfig`) classifies each
   tool as ``read_only``, ``destructive`` and/or ``open_world`` and may give an open-world
   tool an **egress allowlist** (hosts, domains with their subdomains, ``@domain`` for
   e-mail), checked against the e-mail addresses and URL hosts in the arguments that
   name destinations (``destinations``: e.g. ``to``, ``cc``; default: every argument, so
   an address quoted in a mail's body counts unless the configuration says otherwise).
   MCP tool ``annotations`` (readOnlyHint, destructiveHint, openWorldHint) are untrusted
   hints, as the MCP specification says: they are recorded, never obeyed; a tool the
   configuration does not name counts as destructive and open-world.

Each rule that fires (``tainted``, ``destructive``, ``open_world``, ``egress``,
``unknown_tool``) has a decision in the configuration: ``allow``, ``flag``, ``block`` or
``require_approval``; the strictest wins. The decision and why are recorded on the call's
record (``kansa.agent.*``, see docs/VOCABULARY.md) with MITRE ATLAS and OWASP LLM ids.

Surfaces: ``kansa.tool`` (surface ``tool``: before the tool runs, ``Call.request`` is
``{"name", "arguments"}``; after, the result becomes untrusted text of the conversation)
and the model answers of the gateway and the SDK wrappers (the after moment reads
OpenAI ``tool_calls``, Responses ``function_call`` items and Anthropic ``tool_use``
blocks, with the request's tool results as untrusted text, and holds an answer whose
tool calls need approval: an approval request per tool call is opened, resumable by id
through ``kansa.tool(..., approval=ID)`` or the adapters in :mod:`kansa.guard.adapters`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kansa._time import to_us
from kansa.errors import GuardError
from kansa.guard.findings import Technique
from kansa.records import attributes as A

if TYPE_CHECKING:
    from kansa.capture.pipeline import Call, Verdict
    from kansa.policy.approvals import Approvals
    from kansa.records.model import UsageRecord

__all__ = ["ATTR", "AgentConfig", "AgentGuardStage", "Decision", "Provenance", "Taint",
           "ToolCall", "ToolPolicy", "decide", "derive", "tool_calls_in"]

# tool classes
READ_ONLY, DESTRUCTIVE, OPEN_WORLD = "read_only", "destructive", "open_world"
CLASSES = (READ_ONLY, DESTRUCTIVE, OPEN_WORLD)
# decisions (the pipeline's words; require_approval in a configuration)
ALLOW, FLAG, BLOCK, APPROVAL_REQUIRED = "allow", "flag", "block", "approval_required"
_SEVERITY = {ALLOW: 0, FLAG: 1, APPROVAL_REQUIRED: 2, BLOCK: 3}
_CONFIG_DECISIONS = {"allow": ALLOW, "flag": FLAG, "block": BLOCK,
                     "require_approval": APPROVAL_REQUIRED}
# rules
TAINTED, EGRESS, UNKNOWN_TOOL = "tainted", "egress", "unknown_tool"
RULES = (TAINTED, DESTRUCTIVE, OPEN_WORLD, EGRESS, UNKNOWN_TOOL)
DEFAULT_RULES: Mapping[str, str] = {
    TAINTED: APPROVAL_REQUIRED,      # arguments derive from untrusted text
    DESTRUCTIVE: APPROVAL_REQUIRED,  # the tool changes or deletes things
    OPEN_WORLD: APPROVAL_REQUIRED,   # reaches outside, and no allowlist bounds where
    EGRESS: BLOCK,                   # a destination outside the tool's allowlist
    UNKNOWN_TOOL: APPROVAL_REQUIRED,  # not in the configuration
}
# which techniques a rule points at (ATLAS, OWASP LLM Top 10 2025)
RULE_TECHNIQUES: Mapping[str, tuple[str, ...]] = {
    TAINTED: (Technique.PROMPT_INJECTION, Technique.INDIRECT_INJECTION,
              Technique.OWASP_PROMPT_INJECTION),
    DESTRUCTIVE: (Technique.OWASP_EXCESSIVE_AGENCY,),
    OPEN_WORLD: (Technique.OWASP_EXCESSIVE_AGENCY,),
    EGRESS: (Technique.DATA_LEAKAGE, Technique.OWASP_SENSITIVE_DISCLOSURE),
    UNKNOWN_TOOL: (Technique.OWASP_EXCESSIVE_AGENCY,),
}


class ATTR:
    """Record attributes of the agent stage (docs/VOCABULARY.md)."""

    DECISION = A.KANSA_AGENT_DECISION            # allow | flag | block | approval_required
    RULES = A.KANSA_AGENT_RULES                  # the rules that fired (list)
    TOOLS = A.KANSA_AGENT_TOOLS                  # tool names judged (list, in order)
    ARGS_SHA256 = A.KANSA_AGENT_ARGUMENTS_SHA256  # per tool call, RFC 8785 form (list)
    TAINT_SOURCES = A.KANSA_AGENT_TAINT_SOURCES  # untrusted sources the arguments came from
    TAINT_KINDS = A.KANSA_AGENT_TAINT_KINDS      # email | url | host | copied (list)
    EGRESS_DENIED = A.KANSA_AGENT_EGRESS_DENIED  # destination domains off the allowlist
    HINTS = A.KANSA_AGENT_HINTS                  # MCP annotations as given (untrusted)
    TECHNIQUES = A.KANSA_AGENT_TECHNIQUE_IDS     # ATLAS / OWASP ids (list)
    REASON = A.KANSA_AGENT_REASON                # one human sentence
    CONFIG = A.KANSA_AGENT_CONFIG                # sha256 of the configuration
    APPROVALS = A.KANSA_AGENT_APPROVALS          # approval requests opened (after moment)
    UNTRUSTED = A.KANSA_AGENT_UNTRUSTED          # a tool result taken in as untrusted


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolPolicy:
    """What one tool may do. ``known``: named in the configuration (an unknown tool is
    destructive and open-world). ``egress``: allowed destinations, or None: unbounded."""

    name: str
    classes: frozenset[str]
    egress: tuple[str, ...] | None = None
    known: bool = True
    # the arguments that name where the call goes (e.g. to, cc, url); None: all of them
    destinations: tuple[str, ...] | None = None

    def allows(self, kind: str, dest: str) -> bool:
        """Whether destination ``dest`` (a host, or an e-mail address) is allowed."""
        if self.egress is None:
            return True
        host = dest.rpartition("@")[2] if kind == "email" else dest
        for a in self.egress:
            if a.startswith("@"):
                if kind == "email" and host == a[1:]:
                    return True
            elif host == a or host.endswith("." + a):
                return True
        return False


def _hash(data: Any) -> str:
    return "sha256:" + hashlib.sha256(
        json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


_HOST = re.compile(r"^@?(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                   r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class AgentConfig:
    """Tool classes, egress allowlists and the decision of each rule. ``min_copy``: the
    shortest shared run (characters) that counts as copied. ``hash``: of the
    configuration, recorded with every decision."""

    tools: Mapping[str, ToolPolicy] = field(default_factory=dict)
    rules: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RULES))
    min_copy: int = 24
    approval_ttl_hours: float = 24.0
    hash: str = ""

    @classmethod
    def parse(cls, data: Any, where: str = "agent configuration") -> AgentConfig:
        """From a mapping (as YAML or JSON loads it)::

            tools:
              read_document: {class: read_only}
              send_email: {class: open_world, egress: ["@example.co.jp"],
                           destinations: [to, cc, bcc]}
              delete_file: {class: [destructive]}
            rules: {tainted: require_approval, egress: block}   # the rest: defaults
            min_copy: 24
            approval_ttl_hours: 24

        Anything else is a :class:`~kansa.errors.GuardError` naming the key."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise GuardError(f"{where}: expected a mapping with tools and rules")
        unknown = set(data) - {"tools", "rules", "min_copy", "approval_ttl_hours"}
        if unknown:
            raise GuardError(f"{where}: unknown key {sorted(unknown)[0]!r} (tools, rules, "
                             "min_copy, approval_ttl_hours)")
        tools: dict[str, ToolPolicy] = {}
        raw_tools = data.get("tools") or {}
        if not isinstance(raw_tools, Mapping):
            raise GuardError(f"{where}: tools: expected a mapping of tool name to settings")
        for name, spec in raw_tools.items():
            tools[str(name)] = _tool(str(name), spec, f"{where}: tools.{name}")
        rules = dict(DEFAULT_RULES)
        raw_rules = data.get("rules") or {}
        if not isinstance(raw_rules, Mapping):
            raise GuardError(f"{where}: rules: expected a mapping of rule to decision")
        for rule, dec in raw_rules.items():
            if rule not in RULES:
                raise GuardError(f"{where}: rules: unknown rule {rule!r} "
                                 f"(one of: {', '.join(RULES)})")
            if dec not in _CONFIG_DECISIONS:
                raise GuardError(f"{where}: rules.{rule}: {dec!r} is not a decision "
                                 f"(one of: {', '.join(_CONFIG_DECISIONS)})")
            rules[rule] = _CONFIG_DECISIONS[dec]
        min_copy = data.get("min_copy", 24)
        if isinstance(min_copy, bool) or not isinstance(min_copy, int) or not 8 <= min_copy <= 4096:
            raise GuardError(f"{where}: min_copy: expected an integer from 8 to 4096")
        ttl = data.get("approval_ttl_hours", 24.0)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 24 * 366:
            raise GuardError(f"{where}: approval_ttl_hours: expected hours, more than 0")
        canon = {"tools": {n: {"classes": sorted(t.classes),
                               "egress": None if t.egress is None else list(t.egress),
                               "destinations": None if t.destinations is None
                               else list(t.destinations)}
                           for n, t in sorted(tools.items())},
                 "rules": dict(sorted(rules.items())), "min_copy": min_copy,
                 "approval_ttl_hours": float(ttl)}
        return cls(tools, rules, min_copy, float(ttl), _hash(canon))

    @classmethod
    def load(cls, path: str | Path) -> AgentConfig:
        """From a YAML (or JSON) file."""
        import yaml

        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise GuardError(f"{p}: cannot read the agent configuration: {e.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise GuardError(f"{p}: not YAML: {e}") from None
        return cls.parse(data, str(p))

    def tool(self, name: str) -> ToolPolicy:
        """The policy of tool ``name`` (an unknown tool: destructive and open-world)."""
        t = self.tools.get(name)
        if t is not None:
            return t
        return ToolPolicy(name, frozenset({DESTRUCTIVE, OPEN_WORLD}), None, known=False)


def _tool(name: str, spec: Any, where: str) -> ToolPolicy:
    if isinstance(spec, str):
        spec = {"class": spec}
    if not isinstance(spec, Mapping):
        raise GuardError(f"{where}: expected a class name or a mapping (class, egress)")
    unknown = set(spec) - {"class", "egress", "destinations"}
    if unknown:
        raise GuardError(f"{where}: unknown key {sorted(unknown)[0]!r} (class, egress, "
                         "destinations)")
    raw = spec.get("class")
    classes = [raw] if isinstance(raw, str) else raw
    if not isinstance(classes, list) or not classes or not all(c in CLASSES for c in classes):
        raise GuardError(f"{where}: class: one or more of {', '.join(CLASSES)}")
    if READ_ONLY in classes and DESTRUCTIVE in classes:
        raise GuardError(f"{where}: a tool cannot be both read_only and destructive")
    egress = spec.get("egress")
    if egress is not None:
        if not isinstance(egress, list) or not all(isinstance(e, str) for e in egress):
            raise GuardError(f"{where}: egress: a list of hosts, domains or @domains")
        egress = [e.strip().lower().rstrip(".") for e in egress]
        bad = next((e for e in egress if not _HOST.match(e)), None)
        if bad is not None:
            raise GuardError(f"{where}: egress: {bad!r} is not a host, domain or @domain")
    dests = spec.get("destinations")
    if dests is not None and (not isinstance(dests, list) or not dests
                              or not all(isinstance(d, str) and d for d in dests)):
        raise GuardError(f"{where}: destinations: a list of argument names (to, cc, url ...)")
    return ToolPolicy(name, frozenset(classes), None if egress is None else tuple(egress),
                      destinations=None if dests is None else tuple(dests))


# -- provenance ------------------------------------------------------------------------------


_INVISIBLE = dict.fromkeys([0x00, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD, 0x180E]
                           + list(range(0xE0000, 0xE0080)))
_SPACE = re.compile(r"\s+")
_EMAIL = re.compile(r"[a-z0-9][a-z0-9._%+\-]{0,63}@(?:[a-z0-9\-]{1,63}\.)+[a-z]{2,63}")
_URL = re.compile(r"\b(?:https?|ftp|wss?)://[^\s<>\"'`)\]}]+")


def normalise(text: str) -> str:
    """What copies are compared on: NFKC, case folded, zero-width and tag characters
    dropped, whitespace collapsed (so a copy survives reflowing and full-width forms)."""
    t = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()
    return _SPACE.sub(" ", t).strip()


def _emails(norm: str) -> Iterator[str]:
    """The e-mail addresses in normalised text. The pattern runs only in a window around
    each '@' (an address is at most 64 + 255 characters), so text without one costs one
    search and long text is not scanned position by position."""
    seen: set[tuple[int, int]] = set()
    i = norm.find("@")
    while i != -1:
        lo = max(0, i - 64)
        for m in _EMAIL.finditer(norm, lo, min(len(norm), i + 256)):
            span = m.span()
            if span[0] <= i < span[1] and span not in seen:
                seen.add(span)
                yield m.group(0)
        i = norm.find("@", i + 1)


def _indicators(norm: str) -> Iterator[tuple[str, str]]:
    """(kind, value) of the addresses in normalised text: emails, URLs and their hosts."""
    for e in _emails(norm):
        yield "email", e
    if "://" not in norm:
        return
    for m in _URL.finditer(norm):
        url = m.group(0).rstrip(".,;:!?")
        yield "url", url
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if host:
            yield "host", host.rstrip(".")


@dataclass
class _Text:
    source: str
    norm: str
    _inds: tuple[tuple[str, str], ...] | None = None  # its addresses, found once

    def indicators(self) -> tuple[tuple[str, str], ...]:
        if self._inds is None:  # a benign race: two threads compute the same tuple
            self._inds = tuple(_indicators(self.norm))
        return self._inds


@dataclass
class _Conversation:
    untrusted: list[_Text] = field(default_factory=list)
    trusted: list[str] = field(default_factory=list)
    chars: int = 0


@dataclass(frozen=True)
class Taint:
    """Where a tool call's arguments came from: ``sources`` (untrusted sources, in the
    order found) and ``kinds`` (email, url, host, copied)."""

    sources: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sources)


class Provenance:
    """The untrusted and trusted text seen, per conversation (thread-safe). At most
    ``max_conversations`` are kept (least recently used dropped) and ``max_chars`` per
    conversation (oldest text dropped first): a bound, so a long agent run or a flood of
    conversations cannot grow memory without end."""

    def __init__(self, *, max_conversations: int = 1024, max_chars: int = 1 << 20) -> None:
        self.max_conversations = max_conversations
        self.max_chars = max_chars
        self._lock = threading.Lock()
        self._convs: OrderedDict[str, _Conversation] = OrderedDict()

    def _conv(self, key: str) -> _Conversation:
        c = self._convs.get(key)
        if c is None:
            c = self._convs[key] = _Conversation()
            while len(self._convs) > self.max_conversations:
                self._convs.popitem(last=False)
        else:
            self._convs.move_to_end(key)
        return c

    def _trim(self, c: _Conversation) -> None:
        while c.chars > self.max_chars and (c.untrusted or c.trusted):
            if c.untrusted:
                c.chars -= len(c.untrusted.pop(0).norm)
            else:
                c.chars -= len(c.trusted.pop(0))

    def untrusted(self, conversation: str, text: str, source: str) -> None:
        """Take ``text`` in as untrusted (a tool result, a retrieved document) from
        ``source`` (e.g. ``tool:read_document``)."""
        n = normalise(text)
        if not n:
            return
        with self._lock:
            c = self._conv(conversation)
            if any(t.norm == n and t.source == source for t in c.untrusted):
                return
            c.untrusted.append(_Text(source, n))
            c.chars += len(n)
            self._trim(c)

    def trusted(self, conversation: str, text: str) -> None:
        """Take ``text`` in as trusted (the user's or the operator's own words)."""
        n = normalise(text)
        if not n:
            return
        with self._lock:
            c = self._conv(conversation)
            if n in c.trusted:
                return
            c.trusted.append(n)
            c.chars += len(n)
            self._trim(c)

    def snapshot(self, conversation: str) -> tuple[list[_Text], list[str]]:
        with self._lock:
            c = self._convs.get(conversation)
            if c is None:
                return [], []
            return list(c.untrusted), list(c.trusted)

    def forget(self, conversation: str) -> None:
        with self._lock:
            self._convs.pop(conversation, None)


def _leaves(value: Any, depth: int = 0) -> Iterator[str]:
    """The strings of a JSON value (keys too: a key can carry data), bounded in depth."""
    if depth > 64:
        raise GuardError("tool arguments nest deeper than 64 levels")
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _leaves(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v, depth + 1)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def derive(arguments: Any, untrusted: Iterable[_Text | tuple[str, str]],
           trusted: Iterable[str] = (), *, min_copy: int = 24) -> Taint:
    """Whether ``arguments`` derive from ``untrusted`` texts ((source, text) pairs, or
    texts already normalised) rather than ``trusted`` ones (see the module's notes)."""
    unt = [t if isinstance(t, _Text) else _Text(t[0], normalise(t[1])) for t in untrusted]
    if not unt:
        return Taint()
    # normalising is idempotent: texts from a Provenance (normalised) or raw both work
    tru = " \x00 ".join(normalise(x) for x in trusted)
    sources: list[str] = []
    kinds: list[str] = []

    def hit(kind: str, source: str) -> None:
        if source not in sources:
            sources.append(source)
        if kind not in kinds:
            kinds.append(kind)

    # addresses that first appeared in untrusted text (and never in trusted text)
    first: dict[tuple[str, str], str] = {}
    for t in unt:
        for ind in t.indicators():
            if ind not in first and ind[1] not in tru:
                first[ind] = t.source
    step = max(1, min_copy // 4)
    # one search per probe over all untrusted text (NUL cannot occur in normalised text,
    # so no probe spans two texts); the source is looked up only on a hit
    joined = "\x00".join(t.norm for t in unt)
    for leaf in _leaves(arguments):
        n = normalise(leaf)
        if not n:
            continue
        for ind in _indicators(n):
            src = first.get(ind)
            if src is not None:
                hit(ind[0], src)
        if len(n) < min_copy:
            continue
        for i in range(0, len(n) - min_copy + 1, step):
            piece = n[i:i + min_copy]
            if piece not in joined or piece in tru:
                continue
            src = next((t.source for t in unt if piece in t.norm), None)
            if src is not None:
                hit("copied", src)
                break
    return Taint(tuple(sources), tuple(kinds))


def destinations(arguments: Any) -> list[tuple[str, str]]:
    """(kind, value) of the places a tool call's arguments point at: e-mail addresses
    (kind ``email``) and URL hosts (kind ``host``)."""
    out: list[tuple[str, str]] = []
    for leaf in _leaves(arguments):
        for kind, v in _indicators(normalise(leaf)):
            if kind in ("email", "host") and (kind, v) not in out:
                out.append((kind, v))
    return out


# -- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One tool call to judge: its name, its arguments (JSON), an id if the surface
    gives one, and MCP annotations if any (untrusted hints)."""

    name: str
    arguments: Any
    call_id: str | None = None
    hints: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    """The agent stage's decision on one tool call: the ``decision``, the ``rules`` that
    fired (rule -> its decision), ``taint``, destinations off the allowlist, the
    arguments' SHA-256 and a human ``reason``."""

    call: ToolCall
    decision: str
    rules: Mapping[str, str]
    taint: Taint
    egress_denied: tuple[str, ...]
    arguments_sha256: str
    reason: str

    @property
    def technique_ids(self) -> tuple[str, ...]:
        out: list[str] = []
        for r in self.rules:
            for t in RULE_TECHNIQUES[r]:
                if t not in out:
                    out.append(t)
        return tuple(out)


def _args_sha256(arguments: Any) -> str:
    from kansa.policy.approvals import ApprovalError, arguments_sha256

    try:
        return arguments_sha256(arguments)
    except ApprovalError as e:
        raise GuardError(str(e)) from None


def decide(config: AgentConfig, call: ToolCall, untrusted: Iterable[_Text | tuple[str, str]],
           trusted: Iterable[str] = ()) -> Decision:
    """Judge one tool call against ``config`` with the conversation's text (pure: no
    state, no I/O)."""
    t = config.tool(call.name)
    taint = derive(call.arguments, untrusted, trusted, min_copy=config.min_copy)
    fired: dict[str, str] = {}
    why: list[str] = []
    if not t.known:
        fired[UNKNOWN_TOOL] = config.rules[UNKNOWN_TOOL]
        why.append(f"{call.name} is not in the configuration (counted as destructive and "
                   "open-world; its annotations are hints, not trusted)")
    if taint:
        fired[TAINTED] = config.rules[TAINTED]
        why.append(f"its arguments derive from untrusted content ({', '.join(taint.kinds)} "
                   f"from {', '.join(taint.sources)})")
    if DESTRUCTIVE in t.classes:
        fired[DESTRUCTIVE] = config.rules[DESTRUCTIVE]
        if t.known:
            why.append(f"{call.name} is destructive")
    denied: list[str] = []
    if OPEN_WORLD in t.classes:
        if t.egress is None:
            fired[OPEN_WORLD] = config.rules[OPEN_WORLD]
            if t.known:
                why.append(f"{call.name} reaches outside with no egress allowlist")
        else:
            where = call.arguments
            if t.destinations is not None and isinstance(where, Mapping):
                where = [where.get(k) for k in t.destinations]
            for kind, dest in destinations(where):
                if not t.allows(kind, dest):
                    dom = dest.rpartition("@")[2]
                    if dom not in denied:
                        denied.append(dom)
            if denied:
                fired[EGRESS] = config.rules[EGRESS]
                why.append(f"destination outside {call.name}'s allowlist: {', '.join(denied)}")
    decision = max(fired.values(), key=_SEVERITY.__getitem__, default=ALLOW)
    reason = "; ".join(why) if why else f"{call.name}: no rule fired"
    return Decision(call, decision, fired, taint, tuple(denied),
                    _args_sha256(call.arguments), reason)


def attributes(decisions: list[Decision], config: AgentConfig) -> dict[str, Any]:
    """The record attributes for the decisions on one call's tool calls."""
    if not decisions:
        return {}
    overall = max((d.decision for d in decisions), key=_SEVERITY.__getitem__)
    rules: list[str] = []
    sources: list[str] = []
    kinds: list[str] = []
    denied: list[str] = []
    tech: list[str] = []
    for d in decisions:
        for lst, new in ((rules, d.rules), (sources, d.taint.sources), (kinds, d.taint.kinds),
                         (denied, d.egress_denied), (tech, d.technique_ids)):
            lst.extend(x for x in new if x not in lst)
    a: dict[str, Any] = {
        ATTR.DECISION: overall, ATTR.RULES: rules,
        ATTR.TOOLS: [d.call.name[:1024] for d in decisions],
        ATTR.ARGS_SHA256: [d.arguments_sha256 for d in decisions],
        ATTR.REASON: "; ".join(f"{d.call.name}: {d.decision}: {d.reason}"
                               for d in decisions)[:1024],
        ATTR.CONFIG: config.hash,
    }
    if sources:
        a[ATTR.TAINT_SOURCES] = [s[:1024] for s in sources]
        a[ATTR.TAINT_KINDS] = kinds
    if denied:
        a[ATTR.EGRESS_DENIED] = [x[:1024] for x in denied]
    if tech:
        a[ATTR.TECHNIQUES] = tech
    hints = [f"{d.call.name}:{k}={v}" for d in decisions for k, v in (d.call.hints or {}).items()
             if k.endswith("Hint")]
    if hints:
        a[ATTR.HINTS] = [h[:1024] for h in hints]
    return a


# -- reading calls ---------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """The text of a message content: a string, or a list of parts/blocks with text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, Mapping):
                for k in ("text", "content", "output"):
                    v = p.get(k)
                    if isinstance(v, str | list):
                        parts.append(_text_of(v))
                        break
        return "\n".join(x for x in parts if x)
    if content is None:
        return ""
    return json.dumps(content, ensure_ascii=False, default=str)


def request_texts(request: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """(untrusted (source, text) pairs, trusted texts) of a model request: OpenAI chat
    ``messages`` (tool / function roles untrusted), Anthropic ``messages`` and ``system``
    (``tool_result`` and ``document`` blocks untrusted), OpenAI Responses ``input``
    (``function_call_output`` items untrusted). Assistant turns are neither."""
    unt: list[tuple[str, str]] = []
    tru: list[str] = []
    if not isinstance(request, Mapping):
        return unt, tru
    system = request.get("system") or request.get("instructions")
    if system:
        tru.append(_text_of(system))
    items = request.get("messages")
    if items is None:
        items = request.get("input")
        if isinstance(items, str):
            tru.append(items)
            items = None
    for m in items if isinstance(items, list) else ():
        if not isinstance(m, Mapping):
            continue
        role, typ = m.get("role"), m.get("type")
        if typ == "function_call_output":
            unt.append((f"tool:{m.get('call_id') or '?'}", _text_of(m.get("output"))))
        elif role in ("tool", "function"):
            src = m.get("name") or m.get("tool_call_id") or "?"
            unt.append((f"tool:{src}", _text_of(m.get("content"))))
        elif role in ("user", "system", "developer"):
            content = m.get("content")
            if isinstance(content, list):
                plain = []
                for b in content:
                    if isinstance(b, Mapping) and b.get("type") == "tool_result":
                        unt.append((f"tool:{b.get('tool_use_id') or '?'}",
                                    _text_of(b.get("content"))))
                    elif isinstance(b, Mapping) and b.get("type") == "document":
                        src = b.get("source")
                        data = src.get("data") if isinstance(src, Mapping) else None
                        title = b.get("title") or "document"
                        unt.append((f"document:{title}", _text_of(data)))
                    else:
                        plain.append(b)
                tru.append(_text_of(plain))
            else:
                tru.append(_text_of(content))
    return unt, tru


def _arguments(raw: Any) -> Any:
    """Tool-call arguments as given: OpenAI sends a JSON string; one that does not parse
    is judged as the string it is."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            return raw
    return raw


def _sid(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _list(v: Any) -> list[Any]:
    """``v`` if it is a list, else empty: an answer of the wrong shape has no tool calls."""
    return v if isinstance(v, list) else []


def tool_calls_in(response: Any) -> list[ToolCall]:
    """The tool calls a model answer asks for: OpenAI chat ``choices[].message.tool_calls``
    (and the older ``function_call``), OpenAI Responses ``output[]`` ``function_call``
    items, Anthropic ``content[]`` ``tool_use`` blocks."""
    out: list[ToolCall] = []
    if not isinstance(response, Mapping):
        return out
    for ch in _list(response.get("choices")):
        msg = ch.get("message") if isinstance(ch, Mapping) else None
        if not isinstance(msg, Mapping):
            continue
        for tc in _list(msg.get("tool_calls")):
            fn = tc.get("function") if isinstance(tc, Mapping) else None
            if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
                out.append(ToolCall(fn["name"], _arguments(fn.get("arguments")),
                                    _sid(tc.get("id"))))
        fc = msg.get("function_call")
        if isinstance(fc, Mapping) and isinstance(fc.get("name"), str):
            out.append(ToolCall(fc["name"], _arguments(fc.get("arguments"))))
    for item in _list(response.get("output")):
        if (isinstance(item, Mapping) and item.get("type") == "function_call"
                and isinstance(item.get("name"), str)):
            out.append(ToolCall(item["name"], _arguments(item.get("arguments")),
                                _sid(item.get("call_id"))))
    for b in _list(response.get("content")):
        if (isinstance(b, Mapping) and b.get("type") == "tool_use"
                and isinstance(b.get("name"), str)):
            out.append(ToolCall(b["name"], b.get("input"), _sid(b.get("id"))))
    return out


# -- the stage -------------------------------------------------------------------------------

_HELD_ATTRS = "agent.held_attributes"  # call.state: a held tool call's decision attributes
_ATTR_APPROVAL = A.KANSA_POLICY_APPROVAL  # the approval a call carries (held or passed)


def _request(call: Call) -> Any:
    r = getattr(call, "request", None)
    if r is None and call.info is not None:
        r = call.info.request
    return r


def _response(call: Call) -> Any:
    r = getattr(call, "response", None)
    if r is None and call.info is not None:
        r = call.info.response
    return r


def conversation_of(call: Call) -> str:
    """Which conversation a call belongs to: its ``gen_ai.conversation.id``
    (``c:<id>``), else the agent step it runs in (``p:<step record id>``), else one per
    system (``s:<system>``). A tool call says it through ``call.state`` (kansa.tool sets
    the scope), a model call through its CallInfo."""
    from kansa.capture.pipeline import CALL_SCOPE

    scope = call.state.get(CALL_SCOPE)
    info = call.info
    if isinstance(scope, Mapping):
        conv, parent, system = scope.get("conversation"), scope.get("parent"), scope.get("system")
    elif info is not None:
        conv, system = info.conversation_id, info.system
        parent = info.attributes.get(A.KANSA_PARENT_ID) if info.attributes else None
    else:
        return ""
    if isinstance(conv, str) and conv:
        return f"c:{conv}"
    if isinstance(parent, str) and parent:
        return f"p:{parent}"
    return f"s:{system or ''}"


class AgentGuardStage:
    """The pipeline stage ``agent`` (see the module's notes). ``provenance``: shared with
    whatever else marks text (a retriever calling :meth:`mark_untrusted`). ``approvals``:
    where an answer held at the after moment opens its tool calls' approval requests
    (None: the answer is held, no request opened)."""

    name = "agent"
    reads = frozenset({A.GEN_AI_TOOL_NAME})

    def __init__(self, config: AgentConfig | None = None, *,
                 provenance: Provenance | None = None,
                 approvals: Callable[[], Approvals] | None = None) -> None:
        self.config = config if config is not None else AgentConfig.parse({})
        self.provenance = provenance if provenance is not None else Provenance()
        self.approvals = approvals

    def mark_untrusted(self, conversation: str, text: str, source: str = "document") -> None:
        """Take retrieved text in as untrusted for ``conversation`` (as
        :func:`conversation_of` names it: ``c:<conversation id>`` ...)."""
        self.provenance.untrusted(conversation, text, source)

    def mark_trusted(self, conversation: str, text: str) -> None:
        """Take the user's or operator's own words in as trusted for ``conversation``
        (an agent that calls tools without a model call through kansa registers its task
        here, so what the user typed is not counted as taint)."""
        self.provenance.trusted(conversation, text)

    def check(self, name: str, arguments: Any, *, conversation: str,
              hints: Mapping[str, Any] | None = None) -> Decision:
        """Judge one tool call of ``conversation`` with what it has seen (no pipeline:
        for the adapters, and for agents that call tools their own way)."""
        unt, tru = self.provenance.snapshot(conversation)
        return decide(self.config, ToolCall(name, arguments, hints=hints), unt, tru)

    def _verdict(self, ds: list[Decision], extra: Mapping[str, Any] | None = None,
                 message: str = "") -> Verdict:
        from kansa.capture.pipeline import Obligation, Verdict

        attrs = attributes(ds, self.config)
        if extra:
            attrs.update(extra)
        decision = attrs[ATTR.DECISION]
        obligations = tuple(Obligation(f"agent#{r}", "", d) for x in ds
                            for r, d in x.rules.items() if d in (BLOCK, APPROVAL_REQUIRED))
        msg = message or f"kansa agent guard: {attrs[ATTR.REASON]}"
        return Verdict(decision, msg, attrs, tuple(dict.fromkeys(obligations)),
                       f"agent:{self.config.hash}", self.config.approval_ttl_hours)

    # before: a tool about to run (surface "tool")
    def before(self, call: Call) -> Verdict | None:
        if call.surface != "tool":
            return None
        req = _request(call)
        if not isinstance(req, Mapping) or not isinstance(req.get("name"), str):
            raise GuardError("a tool call reached the agent stage without a tool name")
        tc = ToolCall(req["name"], req.get("arguments"), _sid(req.get("call_id")),
                      req.get("annotations") if isinstance(req.get("annotations"), Mapping)
                      else None)
        unt, tru = self.provenance.snapshot(conversation_of(call))
        d = decide(self.config, tc, unt, tru)
        v = self._verdict([d])
        if d.decision in (ALLOW, FLAG) and self._resumes(call, tc):
            # resumed with an approval for exactly this call (an edit the guard now
            # allows): it still goes through the approval flow, so the approval is used
            # once and the record names it
            call.state[_HELD_ATTRS] = dict(v.attributes)
            return replace(v, decision=APPROVAL_REQUIRED,
                           message=f"kansa agent guard: {tc.name} resumes an approval")
        if d.decision == APPROVAL_REQUIRED:
            from kansa.capture.pipeline import HELD_TOOL_CALL

            call.state[HELD_TOOL_CALL] = (tc.name, tc.arguments)
            # if an approval lets it through, the pipeline keeps no verdict attributes:
            # the after moment puts these back, so the record says why it needed one
            call.state[_HELD_ATTRS] = dict(v.attributes)
        return v

    def _resumes(self, call: Call, tc: ToolCall) -> bool:
        """Whether the tool call carries an approved or edited approval given for exactly
        it (needs ``approvals``; kansa.tool passes the id it carries in its scope)."""
        from kansa.capture.pipeline import CALL_SCOPE
        from kansa.policy.approvals import APPROVED, EDITED, ApprovalError, tool_call_digest

        scope = call.state.get(CALL_SCOPE)
        given = scope.get("approval") if isinstance(scope, Mapping) else None
        if self.approvals is None or not isinstance(given, str) or not given:
            return False
        ap = self.approvals()
        a = ap.get(given)
        if a is None or a.tool != tc.name:
            return False
        at = to_us(call.at) if call.at is not None else ap.now_us()
        try:
            digest = tool_call_digest(tc.name, tc.arguments)
        except ApprovalError:
            return False
        return a.state(at) in (APPROVED, EDITED) and digest in (a.digest, a.edited_digest)

    # after: a tool's result is untrusted; a model answer's tool calls are judged
    def after(self, call: Call, rec: UsageRecord) -> Verdict | None:
        conv = conversation_of(call)
        resp = _response(call)
        if call.surface == "tool":
            held = call.state.get(_HELD_ATTRS)
            if held and ATTR.DECISION not in rec.attributes:
                rec.attributes.update(held)
            if call.approval and held:
                rec.attributes.setdefault(_ATTR_APPROVAL, call.approval)
            if isinstance(resp, Mapping) and "result" in resp and resp["result"] is not None:
                req = _request(call)
                name = req.get("name") if isinstance(req, Mapping) else None
                self.provenance.untrusted(conv, _text_of(resp["result"]),
                                          f"tool:{name or rec.tool_name or '?'}")
                rec.attributes[ATTR.UNTRUSTED] = f"tool:{name or rec.tool_name or '?'}"
            return None
        unt, tru = request_texts(_request(call))
        for src, text in unt:
            self.provenance.untrusted(conv, text, src)
        for text in tru:
            self.provenance.trusted(conv, text)
        calls = tool_calls_in(resp)
        if not calls:
            return None
        # the request's own tool results first (its sources are the ones to name), then
        # what the conversation saw before (kansa.tool results, marked documents)
        u2, t2 = self.provenance.snapshot(conv)
        own = [_Text(src, normalise(text)) for src, text in unt]
        seen = {(o.source, o.norm) for o in own}
        u2 = own + [x for x in u2 if (x.source, x.norm) not in seen]
        ds = [decide(self.config, tc, u2, t2) for tc in calls]
        v = self._verdict(ds)
        if v.decision not in (BLOCK, APPROVAL_REQUIRED):
            rec.attributes.update(v.attributes)
            return None
        if not call.holdable:
            # a streamed answer, one already delivered, an OTLP span: it went ahead, so the
            # record says flag (what happened) and what the guard would have decided
            rec.attributes.update(v.attributes)
            rec.attributes[ATTR.DECISION] = FLAG
            rec.attributes[ATTR.REASON] = (f"not held (the answer could not be withheld); "
                                           f"would have been {v.decision}: "
                                           f"{v.attributes[ATTR.REASON]}")[:1024]
            return None
        extra: dict[str, Any] = {}
        msg = v.message
        if v.decision == APPROVAL_REQUIRED and self.approvals is not None:
            ids = self._open(call, rec, [d for d in ds if d.decision == APPROVAL_REQUIRED], v)
            extra[ATTR.APPROVALS] = ids
            msg = (f"{msg} (approval requests: {', '.join(ids)}; resume each tool call with "
                   "its id once decided)")
        return self._verdict(ds, extra, msg)

    def _open(self, call: Call, rec: UsageRecord, ds: list[Decision], v: Verdict) -> list[str]:
        from kansa.policy.approvals import tool_call_digest

        assert self.approvals is not None
        ap = self.approvals()
        ids = []
        for d in ds:
            a = ap.request(digest=tool_call_digest(d.call.name, d.call.arguments),
                           record_id=rec.id or (call.info.record_id if call.info else ""),
                           snapshot=v.snapshot, system=rec.system,
                           app=rec.app, model=rec.request_model,
                           obligations=[f"agent#{r}" for r, x in d.rules.items()
                                        if x == APPROVAL_REQUIRED],
                           ttl_hours=self.config.approval_ttl_hours, tool=d.call.name,
                           arguments=d.call.arguments, now=call.at)
            ids.append(a.id)
        return ids
