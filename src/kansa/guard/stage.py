"""The guard as a capture pipeline stage (:class:`GuardStage`, name ``guard``).

*Before* a call leaves, the request is split into texts by channel
(:func:`request_texts`): OpenAI chat ``system``/``developer`` messages and Anthropic's
``system`` are ``system``; ``user`` messages are ``user``; ``tool``/``function`` messages,
Responses ``function_call_output`` items and Anthropic ``tool_result`` blocks are ``tool``
(or ``document`` if the tool is named in ``document_tools``); Anthropic ``document``
blocks, and text inside configured tags (``<document>...</document>`` by default) in any
user or tool text, are ``document``. Each text is scanned
(:class:`kansa.guard.injection.Scanner`) and each channel acts as configured:

* ``observe``: record scores and findings, decide nothing (decision ``allow``);
* ``flag``: the call goes ahead, the record says ``flag``;
* ``block``: the call is refused;
* ``require_approval``: the call is held for a human approval (the pipeline's one
  approval flow, :func:`kansa.policy.approvals.consume_or_request`).

*After* the answer, its text is scanned on the ``output`` channel, together with canary
leaks (:mod:`kansa.guard.canary`: canaries found in the request's system prompts, and
any configured ones). ``block`` on ``output`` holds a non-streamed answer where the
surface can (``call.holdable``).

Every decision goes into the record as ``kansa.guard.*`` attributes (the names are the
``ATTR_*`` constants below, documented in docs/VOCABULARY.md): scores and thresholds per
channel, the findings (detector, kind, score, technique ids: never the text itself, which
belongs in the record's sealed content), the technique ids, the action and the decision.

Configuration: :class:`GuardConfig`, from YAML (``kansa gateway --guard guard.yaml``)::

    channels:                  # action and (optional) threshold per channel
      user:     {action: flag}
      system:   {action: observe}
      tool:     {action: require_approval}
      document: {action: block, threshold: 0.6}
      output:   {action: flag}
    document_tools: [search, fetch_page]   # their results are documents, not tool output
    document_tags: [document, context]      # <document>..</document> text is a document
    canaries: [kansa-canary-0123456789abcdef]
    model: /path/to/injection.json.gz       # default: the model kansa ships
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kansa.guard.canary import detect as detect_canaries
from kansa.guard.canary import find_canaries
from kansa.guard.findings import (
    CHANNEL_DOCUMENT,
    CHANNEL_OUTPUT,
    CHANNEL_SYSTEM,
    CHANNEL_TOOL,
    CHANNEL_USER,
    Finding,
    GuardError,
    check_channel,
)
from kansa.guard.injection import InjectionModel, Scanner, ScanResult, default_scanner
from kansa.records import attributes as A

if TYPE_CHECKING:
    from kansa.capture.pipeline import Call, Verdict
    from kansa.records.model import UsageRecord

__all__ = ["ACTIONS", "ATTR_ACTION", "ATTR_CANARY_LEAK", "ATTR_DECISION", "ATTR_FINDINGS",
           "ATTR_FLAGGED", "ATTR_OUTPUT_DECISION", "ATTR_SCORE", "ATTR_TECHNIQUES",
           "ATTR_THRESHOLD", "ENV_CONFIG", "ChannelPolicy", "GuardConfig", "GuardStage",
           "entry_point", "request_texts", "response_texts"]

# record attribute names (kansa.records.attributes, docs/VOCABULARY.md)
ATTR_DECISION = A.KANSA_GUARD_DECISION            # before: allow/flag/block/approval_required
ATTR_OUTPUT_DECISION = A.KANSA_GUARD_OUTPUT_DECISION  # after, on the answer
ATTR_ACTION = A.KANSA_GUARD_ACTION                # the configured action(s) that decided
ATTR_FLAGGED = A.KANSA_GUARD_FLAGGED              # channels whose score reached the threshold
ATTR_FINDINGS = A.KANSA_GUARD_FINDINGS            # list of compact JSON findings
ATTR_TECHNIQUES = A.KANSA_GUARD_TECHNIQUES        # ATLAS / OWASP ids of flagged channels
ATTR_CANARY_LEAK = A.KANSA_GUARD_CANARY_LEAK      # true when a canary left in the answer
# per channel: its highest score, and the threshold it was compared with
ATTR_SCORE = {CHANNEL_USER: A.KANSA_GUARD_SCORE_USER, CHANNEL_SYSTEM: A.KANSA_GUARD_SCORE_SYSTEM,
              CHANNEL_TOOL: A.KANSA_GUARD_SCORE_TOOL,
              CHANNEL_DOCUMENT: A.KANSA_GUARD_SCORE_DOCUMENT,
              CHANNEL_OUTPUT: A.KANSA_GUARD_SCORE_OUTPUT}
ATTR_THRESHOLD = {CHANNEL_USER: A.KANSA_GUARD_THRESHOLD_USER,
                  CHANNEL_SYSTEM: A.KANSA_GUARD_THRESHOLD_SYSTEM,
                  CHANNEL_TOOL: A.KANSA_GUARD_THRESHOLD_TOOL,
                  CHANNEL_DOCUMENT: A.KANSA_GUARD_THRESHOLD_DOCUMENT,
                  CHANNEL_OUTPUT: A.KANSA_GUARD_THRESHOLD_OUTPUT}
# the answer's findings, flagged channels, ids and action (after), apart from the request's
_OUTPUT_NAMES = {A.KANSA_GUARD_FINDINGS: A.KANSA_GUARD_OUTPUT_FINDINGS,
                 A.KANSA_GUARD_FLAGGED: A.KANSA_GUARD_OUTPUT_FLAGGED,
                 A.KANSA_GUARD_TECHNIQUES: A.KANSA_GUARD_OUTPUT_TECHNIQUES,
                 A.KANSA_GUARD_ACTION: A.KANSA_GUARD_OUTPUT_ACTION}

OBSERVE, FLAG, BLOCK, REQUIRE_APPROVAL = "observe", "flag", "block", "require_approval"
ACTIONS = (OBSERVE, FLAG, BLOCK, REQUIRE_APPROVAL)
_DECISION = {OBSERVE: "allow", FLAG: "flag", BLOCK: "block",
             REQUIRE_APPROVAL: "approval_required"}
_SEVERITY = {OBSERVE: 0, FLAG: 1, REQUIRE_APPROVAL: 2, BLOCK: 3}
_MAX_TEXTS = 256          # texts scanned per request (the rest: a finding says so)
_MAX_FINDINGS = 32        # findings kept in the record
_DEFAULT_ACTIONS = {CHANNEL_USER: FLAG, CHANNEL_SYSTEM: OBSERVE, CHANNEL_TOOL: FLAG,
                    CHANNEL_DOCUMENT: FLAG, CHANNEL_OUTPUT: FLAG}


@dataclass(frozen=True)
class ChannelPolicy:
    """What a channel does when its score reaches its threshold (None: the model's
    calibrated one)."""

    action: str = FLAG
    threshold: float | None = None


@dataclass(frozen=True)
class GuardConfig:
    """The guard stage's configuration (see the module docstring for the YAML form)."""

    channels: Mapping[str, ChannelPolicy] = field(default_factory=lambda: {
        c: ChannelPolicy(a) for c, a in _DEFAULT_ACTIONS.items()})
    document_tools: frozenset[str] = frozenset()
    document_tags: tuple[str, ...] = ("document", "documents", "context", "retrieved")
    canaries: tuple[str, ...] = ()
    model: str | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "guard config") -> GuardConfig:
        """A config from parsed YAML/JSON; a :class:`GuardError` names the bad key."""
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise GuardError(f"{where}: expected a mapping, got {type(d).__name__}")
        known = {"channels", "document_tools", "document_tags", "canaries", "model"}
        extra = sorted(set(d) - known)
        if extra:
            raise GuardError(f"{where}: unknown key {extra[0]!r} (known: "
                             f"{', '.join(sorted(known))})")
        chans: dict[str, ChannelPolicy] = {c: ChannelPolicy(a)
                                           for c, a in _DEFAULT_ACTIONS.items()}
        raw = d.get("channels") or {}
        if not isinstance(raw, dict):
            raise GuardError(f"{where}: channels: expected a mapping of channel to settings")
        for c, v in raw.items():
            here = f"{where}: channels.{c}"
            check_channel(str(c), here)
            if isinstance(v, str):
                v = {"action": v}
            if not isinstance(v, dict):
                raise GuardError(f"{here}: expected an action or {{action, threshold}}")
            bad = sorted(set(v) - {"action", "threshold"})
            if bad:
                raise GuardError(f"{here}: unknown key {bad[0]!r} (known: action, threshold)")
            action = v.get("action", FLAG)
            if action not in ACTIONS:
                raise GuardError(f"{here}.action: {action!r} is not one of "
                                 f"{', '.join(ACTIONS)}")
            thr = v.get("threshold")
            if thr is not None and (isinstance(thr, bool) or not isinstance(thr, int | float)
                                    or not 0.0 <= float(thr) <= 1.0):
                raise GuardError(f"{here}.threshold: {thr!r} is not a number from 0 to 1")
            chans[str(c)] = ChannelPolicy(action, None if thr is None else float(thr))

        def strings(key: str) -> tuple[str, ...]:
            v = d.get(key) or []
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise GuardError(f"{where}: {key}: expected a list of strings")
            return tuple(v)

        tags = strings("document_tags") if "document_tags" in d else cls().document_tags
        for t in tags:
            if not re.fullmatch(r"[A-Za-z][\w.-]{0,63}", t):
                raise GuardError(f"{where}: document_tags: {t!r} is not a tag name")
        model = d.get("model")
        if model is not None and not isinstance(model, str):
            raise GuardError(f"{where}: model: expected a file path")
        return cls(chans, frozenset(strings("document_tools")), tags,
                   strings("canaries"), model)

    @classmethod
    def load(cls, path: str | Path) -> GuardConfig:
        """A config from a YAML file (a :class:`GuardError` names the file)."""
        import yaml

        p = Path(path)
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise GuardError(f"{p}: cannot read the guard config: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise GuardError(f"{p}: not valid YAML: {e}") from None
        cfg = cls.from_dict(d, str(p))
        if cfg.model is not None and not Path(cfg.model).is_absolute():
            cfg = GuardConfig(cfg.channels, cfg.document_tools, cfg.document_tags,
                              cfg.canaries, str((p.parent / cfg.model).resolve()))
        return cfg

    def action(self, channel: str) -> str:
        return self.channels.get(channel, ChannelPolicy(_DEFAULT_ACTIONS[channel])).action


# -- splitting a request into texts by channel ----------------------------------------------


def _parts(content: Any) -> Iterator[tuple[str, Any]]:
    """(kind, value) of a message's content: ``("text", str)`` for text, else the block."""
    if isinstance(content, str):
        yield "text", content
    elif isinstance(content, list):
        for b in content:
            if isinstance(b, str):
                yield "text", b
            elif isinstance(b, dict):
                t = b.get("type")
                if t in ("text", "input_text", "output_text") and isinstance(b.get("text"), str):
                    yield "text", b["text"]
                else:
                    yield "block", b


def _block_text(content: Any) -> str:
    return "\n".join(v for k, v in _parts(content) if k == "text")


def request_texts(request: Any, config: GuardConfig | None = None,
                  ) -> list[tuple[str, str, str]]:
    """``(channel, text, where)`` for each text of an OpenAI (chat, completions,
    responses) or Anthropic (messages) request body; ``where`` names its place
    (``messages[2]``) for the record. Text inside document tags is split out."""
    cfg = config or GuardConfig()
    out: list[tuple[str, str, str]] = []
    if not isinstance(request, dict):
        return out

    def add(channel: str, text: str, where: str) -> None:
        if not text:
            return
        if channel in (CHANNEL_USER, CHANNEL_TOOL) and cfg.document_tags:
            rest, docs = _split_tags(text, cfg.document_tags)
            for i, d in enumerate(docs):
                out.append((CHANNEL_DOCUMENT, d, f"{where}<doc {i}>"))
            text = rest
        if text.strip():
            out.append((channel, text, where))

    system = request.get("system")  # Anthropic
    if isinstance(system, str | list):
        add(CHANNEL_SYSTEM, _block_text(system), "system")
    instr = request.get("instructions")  # OpenAI Responses
    if isinstance(instr, str):
        add(CHANNEL_SYSTEM, instr, "instructions")
    prompt = request.get("prompt")  # completions
    if isinstance(prompt, str):
        add(CHANNEL_USER, prompt, "prompt")
    elif isinstance(prompt, list):
        for i, p in enumerate(prompt):
            if isinstance(p, str):
                add(CHANNEL_USER, p, f"prompt[{i}]")
    inp = request.get("input")  # Responses (embeddings' input is scanned as user too)
    if isinstance(inp, str):
        add(CHANNEL_USER, inp, "input")
    messages = request.get("messages")
    items: list[tuple[str, Any]] = []
    if isinstance(messages, list):
        items += [(f"messages[{i}]", m) for i, m in enumerate(messages)]
    if isinstance(inp, list):
        items += [(f"input[{i}]", m) for i, m in enumerate(inp)]
    tool_names: dict[str, str] = {}
    for where, m in items:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        mtype = m.get("type")
        if role == "assistant":
            for tc in m.get("tool_calls") or []:  # OpenAI: remember which tool is which
                if isinstance(tc, dict) and isinstance(tc.get("function"), dict):
                    tool_names[str(tc.get("id"))] = str(tc["function"].get("name", ""))
            for b in m.get("content") or [] if isinstance(m.get("content"), list) else []:
                if isinstance(b, dict) and b.get("type") == "tool_use":  # Anthropic
                    tool_names[str(b.get("id"))] = str(b.get("name", ""))
            continue
        if mtype == "function_call":
            tool_names[str(m.get("call_id"))] = str(m.get("name", ""))
            continue
        if mtype == "function_call_output":
            name = tool_names.get(str(m.get("call_id")), "")
            ch = CHANNEL_DOCUMENT if name in cfg.document_tools else CHANNEL_TOOL
            out_ = m.get("output")
            add(ch, out_ if isinstance(out_, str) else _block_text(out_), where)
            continue
        if role in ("system", "developer"):
            add(CHANNEL_SYSTEM, _block_text(m.get("content")), where)
        elif role in ("tool", "function"):
            name = str(m.get("name") or tool_names.get(str(m.get("tool_call_id")), ""))
            ch = CHANNEL_DOCUMENT if name in cfg.document_tools else CHANNEL_TOOL
            add(ch, _block_text(m.get("content")), where)
        elif role == "user" or (role is None and "content" in m):
            for j, (kind, v) in enumerate(_parts(m.get("content"))):
                here = f"{where}.content[{j}]"
                if kind == "text":
                    add(CHANNEL_USER, v, here)
                elif v.get("type") == "tool_result":
                    name = tool_names.get(str(v.get("tool_use_id")), "")
                    ch = CHANNEL_DOCUMENT if name in cfg.document_tools else CHANNEL_TOOL
                    c = v.get("content")
                    add(ch, c if isinstance(c, str) else _block_text(c), here)
                elif v.get("type") == "document":
                    src = v.get("source")
                    if isinstance(src, dict) and src.get("type") == "text":
                        add(CHANNEL_DOCUMENT, str(src.get("data", "")), here)
                    elif isinstance(src, dict) and src.get("type") == "content":
                        add(CHANNEL_DOCUMENT, _block_text(src.get("content")), here)
    return out


def _split_tags(text: str, tags: Sequence[str]) -> tuple[str, list[str]]:
    if "<" not in text:
        return text, []
    names = "|".join(re.escape(t) for t in tags)
    rx = re.compile(rf"<({names})(\s[^>]*)?>(.*?)</\1\s*>", re.DOTALL | re.IGNORECASE)
    docs = [m.group(3) for m in rx.finditer(text)]
    return (rx.sub(" ", text) if docs else text), docs


def response_texts(response: Any) -> list[str]:
    """The answer's text of an OpenAI (chat, completions, responses) or Anthropic
    response body."""
    out: list[str] = []
    if not isinstance(response, dict):
        return out
    for ch in response.get("choices") or []:
        if isinstance(ch, dict):
            msg = ch.get("message")
            if isinstance(msg, dict):
                t = _block_text(msg.get("content"))
                if t:
                    out.append(t)
            if isinstance(ch.get("text"), str):
                out.append(ch["text"])
    content = response.get("content")
    if isinstance(content, list):
        t = _block_text(content)
        if t:
            out.append(t)
    for item in response.get("output") or []:
        if isinstance(item, dict) and item.get("type") == "message":
            t = _block_text(item.get("content"))
            if t:
                out.append(t)
    if isinstance(response.get("output_text"), str):
        out.append(response["output_text"])
    return out


# -- the stage ------------------------------------------------------------------------------


def _compact(f: Finding) -> str:
    d: dict[str, Any] = {"c": f.channel, "d": f.detector, "k": f.kind, "s": round(f.score, 3)}
    if f.technique_ids:
        d["t"] = list(f.technique_ids)
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)[:1024]


class GuardStage:
    """The guard in the capture pipeline (see the module docstring)."""

    name = "guard"
    reads = frozenset({"input", "output"})

    def __init__(self, config: GuardConfig | None = None, *,
                 scanner: Scanner | None = None) -> None:
        self.config = config or GuardConfig()
        if scanner is None:
            thresholds = {c: p.threshold for c, p in self.config.channels.items()
                          if p.threshold is not None}
            if self.config.model is None and not thresholds:
                scanner = default_scanner()
            else:
                model = InjectionModel.load(self.config.model) if self.config.model else None
                scanner = Scanner(model, thresholds=thresholds)
        self.scanner = scanner

    # scanning ------------------------------------------------------------------------

    def scan_texts(self, texts: list[tuple[str, str, str]],
                   ) -> tuple[dict[str, ScanResult], list[Finding]]:
        """The highest-scoring result per channel, and every finding."""
        best: dict[str, ScanResult] = {}
        findings: list[Finding] = []
        for channel, text, _where in texts[:_MAX_TEXTS]:
            r = self.scanner.scan(text, channel)
            findings += r.findings
            if channel not in best or r.score > best[channel].score:
                best[channel] = r
        return best, findings

    def _decide(self, best: Mapping[str, ScanResult], findings: list[Finding],
                extra_flagged: Sequence[str] = ()) -> tuple[str, dict[str, Any], str]:
        """(action, attributes, message) for the scanned channels."""
        attrs: dict[str, Any] = {}
        for ch, r in best.items():
            attrs[ATTR_SCORE[ch]] = round(r.score, 4)
            attrs[ATTR_THRESHOLD[ch]] = round(r.threshold, 4)
        flagged = sorted({ch for ch, r in best.items() if r.flagged} | set(extra_flagged))
        action = OBSERVE
        for ch in flagged:
            a = self.config.action(ch)
            if _SEVERITY[a] > _SEVERITY[action]:
                action = a
        if findings:
            top = sorted(findings, key=lambda f: -f.score)[:_MAX_FINDINGS]
            attrs[ATTR_FINDINGS] = [_compact(f) for f in top]
        if flagged:
            attrs[ATTR_FLAGGED] = flagged
            techs = sorted({t for f in findings if f.channel in flagged
                            for t in f.technique_ids})
            if techs:
                attrs[ATTR_TECHNIQUES] = techs
            attrs[ATTR_ACTION] = [f"{ch}:{self.config.action(ch)}" for ch in flagged]
        message = ""
        if flagged:
            kinds = sorted({f.kind for f in findings if f.channel in flagged})
            message = (f"kansa guard: {', '.join(flagged)} text looks like prompt injection "
                       f"({', '.join(kinds) or 'classifier'})")
        return action, attrs, message

    def before(self, call: Call) -> Verdict | None:
        from kansa.capture.pipeline import Verdict

        info = call.info
        request = getattr(call, "request", None)  # the pipeline's rewrite API, if present
        if request is None and info is not None:
            request = info.request
        texts = request_texts(request, self.config)
        canaries = set(self.config.canaries)
        for ch, t, _ in texts:
            if ch == CHANNEL_SYSTEM:
                canaries.update(find_canaries(t))
        call.state["guard.canaries"] = canaries
        if not texts:
            return None
        best, findings = self.scan_texts(texts)
        action, attrs, message = self._decide(best, findings)
        decision = _DECISION[action]
        attrs[ATTR_DECISION] = decision
        return Verdict(decision, message, attrs)

    def after(self, call: Call, rec: UsageRecord) -> Verdict | None:
        from kansa.capture.pipeline import Verdict

        response = getattr(call, "response", None)
        if call.surface == "tool":  # kansa.tool: the result is untrusted input for later
            return self._tool_result(response)
        if response is None and call.info is not None:
            response = call.info.response
        texts = response_texts(response)
        if not texts:
            return None
        joined = "\n".join(texts)
        best, findings = self.scan_texts([(CHANNEL_OUTPUT, joined, "output")])
        canaries = call.state.get("guard.canaries")
        if canaries is None:  # no before moment (OTLP intake): configured canaries only
            canaries = set(self.config.canaries)
        leaks = detect_canaries(joined, sorted(canaries))
        findings += leaks
        action, attrs, message = self._decide(best, findings,
                                              [CHANNEL_OUTPUT] if leaks else [])
        if leaks:
            attrs[ATTR_CANARY_LEAK] = True
            message = "kansa guard: the answer leaks a system-prompt canary"
        decision = _DECISION[action]
        # after the answer there is no one to ask: approval means hold it, like block.
        # The before moment's names stay as they were: the answer's go under .output.
        attrs = {(_OUTPUT_NAMES.get(k, k)): v for k, v in attrs.items()}
        attrs[ATTR_OUTPUT_DECISION] = decision
        return Verdict(decision, message, attrs)

    def _tool_result(self, response: Any) -> Verdict | None:
        """A tool's result as ``kansa.tool`` records it (``{"name", "arguments",
        "result"}``), scanned on ``tool`` (``document`` for a tool in ``document_tools``)
        before the agent hands it to a model."""
        from kansa.capture.pipeline import Verdict

        if not isinstance(response, dict) or response.get("result") is None:
            return None
        result = response["result"]
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False,
                                                                 default=str)
        ch = (CHANNEL_DOCUMENT if str(response.get("name")) in self.config.document_tools
              else CHANNEL_TOOL)
        best, findings = self.scan_texts([(ch, text, "result")])
        action, attrs, message = self._decide(best, findings)
        attrs[ATTR_DECISION] = _DECISION[action]
        return Verdict(_DECISION[action], message, attrs)


ENV_CONFIG = "KANSA_GUARD"


def entry_point() -> GuardStage:
    """A zero-argument factory for the ``kansa.stages`` entry-point group: the stage with
    the YAML config named by ``$KANSA_GUARD`` (defaults without it). ``kansa.wrap`` takes no
    stages of its own, so this is how the SDK wrappers get the guard: a distribution of
    yours declares ``[project.entry-points."kansa.stages"] guard =
    "kansa.guard.stage:entry_point"`` (kansa does not, so the guard is opt-in)."""
    import os

    path = os.environ.get(ENV_CONFIG)
    return GuardStage(GuardConfig.load(path) if path else None)
