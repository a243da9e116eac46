"""Prompt-injection and jailbreak detection: rules plus a small shipped linear model, with
a threshold per channel.

Every text is first normalised (:mod:`kansa.guard.normalise`); the scan reads the
normalised text and each payload decoded from it. Two detectors score it:

* **rules** (``injection.rules``): regular expressions for override phrasing (English and
  Japanese), chat-template tokens, prompt extraction, role switches, instructions addressed
  to the assistant from inside a document, and exfiltration (markdown images or links
  carrying data, "send it to <address>"). Each rule has a fixed weight and its technique
  ids.
* **the model** (``injection.model``, not on the output channel): a logistic regression
  over sparse features (lower-cased word unigrams and bigrams, character 4-grams of Latin
  words, character 2/3-grams of Japanese runs), read from ``models/injection.json.gz``.
  It scores *segments* (lines and sentences packed up to :data:`SEGMENT_CHARS`), so one
  injected sentence in a long benign document is not diluted by the rest of it; a text's
  model score is its highest segment (plus the whole text, on short-text channels).

Why a linear model in pure Python: it needs nothing beyond the standard library at run
time (no numpy, no onnxruntime, no torch), it loads in about a second, the model is a
0.6 MB file that can be read and diffed, and a 512-token text scores in 1-2 ms of CPU
on this class of machine; a transformer classifier would be ~100x slower on 2 cores and
hundreds of MB. Training and calibration: ``bench/guard_train.py``.

The text's score is a noisy-OR of the model score, the rule weights and the normalise
findings (each a probability-like weight): several weak signals add up, one strong one is
enough. A text is *flagged* when its score reaches its channel's threshold, calibrated on
validation data at the false-positive rate stored beside it in the model file.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from kansa.guard.findings import (
    CHANNEL_DOCUMENT,
    CHANNEL_OUTPUT,
    CHANNEL_SYSTEM,
    CHANNEL_TOOL,
    CHANNEL_USER,
    CHANNELS,
    Finding,
    GuardError,
    Technique,
    check_channel,
)
from kansa.guard.normalise import normalise

__all__ = ["DEFAULT_MODEL", "HEAD_OF_CHANNEL", "RULES", "Head", "InjectionModel", "Rule",
           "ScanResult", "Scanner", "features", "rule_findings", "segments"]

T = Technique
_DIRECT = (T.PROMPT_INJECTION, T.DIRECT_INJECTION, T.OWASP_PROMPT_INJECTION)
_INDIRECT = (T.PROMPT_INJECTION, T.INDIRECT_INJECTION, T.OWASP_PROMPT_INJECTION)
_JAIL = (T.JAILBREAK, T.OWASP_PROMPT_INJECTION)
_EXTRACT = (T.PROMPT_EXTRACTION, T.OWASP_SYSTEM_PROMPT_LEAKAGE)
_EXFIL = (T.DATA_LEAKAGE, T.RESPONSE_RENDERING, T.OWASP_SENSITIVE_DISCLOSURE,
          T.OWASP_IMPROPER_OUTPUT)

SEGMENT_CHARS = 320  # segments are packed up to this many characters
MAX_SCAN_CHARS = 200_000  # longer texts are scanned in their first this many characters
# channels whose texts are short, self-contained messages: the whole text is scored too
_WHOLE_TEXT_CHANNELS = (CHANNEL_USER, CHANNEL_SYSTEM, CHANNEL_OUTPUT)


@dataclass(frozen=True)
class Rule:
    """One rule: ``kind`` (stable id), a regex, a weight (0..1), technique ids, the
    language it is written for, and the channels it applies to (empty: all)."""

    kind: str
    pattern: re.Pattern[str]
    weight: float
    techniques: tuple[str, ...]
    lang: str = "en"
    channels: tuple[str, ...] = ()
    # lower-case substrings one of which any match must contain: a cheap test that spares
    # running the regex over texts that cannot match (most texts, for most rules)
    needles: tuple[str, ...] = ()


def _r(kind: str, rx: str, weight: float, techniques: tuple[str, ...], lang: str = "en",
       channels: tuple[str, ...] = (), needles: str = "") -> Rule:
    return Rule(kind, re.compile(rx, re.IGNORECASE | re.MULTILINE), weight, techniques,
                lang, channels, tuple(needles.split("|")) if needles else ())


_UNTRUSTED = (CHANNEL_TOOL, CHANNEL_DOCUMENT)
# Weights are chosen so that one unambiguous hit (an override, a chat-template token)
# crosses every channel's threshold alone, while softer hints ("in your reply") need the
# model or another rule to agree.
RULES: tuple[Rule, ...] = (
    _r("override",
       r"\b(ignore|disregard|forget|skip|override|bypass|neglect|drop)\b[^.\n]{0,40}?\b"
       r"(previous|prior|above|earlier|preceding|former|original|all|any|your|the|these|"
       r"those|system)\b[^.\n]{0,30}?\b(instructions?|directions?|prompts?|rules|guidelines"
       r"|directives?|context|messages?|commands?|constraints)\b", 0.8, _DIRECT,
       needles='ignor|disregard|forget|skip|overrid|bypass|neglect|drop'),
    _r("new_instructions",
       r"\b(new|updated|real|actual|true|revised|additional|important|urgent)\s+"
       r"(instructions?|task|directives?|orders|system prompt)\s*[:!-]", 0.5, _DIRECT,
       needles='instruction|task|directive|orders|system prompt'),
    _r("role_switch",
       r"\byou\s+are\s+(now|no\s+longer)\b|\bfrom\s+now\s+on,?\s+you\b|\b(act|pretend|behave|"
       r"respond)\s+(as|like)\b[^.\n]{0,40}\b(unrestricted|unfiltered|jailbroken|uncensored|"
       r"evil|without\s+(any\s+)?(restrictions|limits|filters|rules))", 0.6, _JAIL,
       needles='you are|from now on|act |pretend|behave|respond'),
    _r("jailbreak_persona",
       r"\b(DAN|do\s+anything\s+now|developer\s+mode|jailbreak(ed)?|god\s+mode|"
       r"no\s+(ethical|moral)\s+(guidelines|restrictions)|STAN|AIM\s+mode)\b", 0.55, _JAIL,
       needles='dan|anything now|developer mode|jailbreak|god mode|ethical|moral|stan|aim mode'),
    _r("chat_template",
       r"<\|\s*(im_start|im_end|system|user|assistant|endoftext|begin_of_text|"
       r"start_header_id|end_header_id|eot_id|end_of_turn)\s*\|>|\[/?INST\]|<</?SYS>>|"
       r"<start_of_turn>|<end_of_turn>|</?(system|instructions?)>", 0.85, _DIRECT,
       needles='|>|inst]|sys>>|_of_turn>|system>|instruction'),
    _r("role_prefix", r"^\s*(#{1,3}\s*)?(system|assistant|developer)\s*(message|prompt)?\s*:",
       0.35, _INDIRECT, channels=_UNTRUSTED, needles=':'),
    _r("prompt_extraction",
       r"\b(reveal|show|print|repeat|output|display|leak|dump|share|tell\s+me|give\s+me|"
       r"what\s+(is|are|was|were))\b[^.\n]{0,40}?\b(system|initial|original|hidden|secret|"
       r"internal|developer|previous|above)\s+(prompt|instructions?|message|rules|"
       r"guidelines|configuration)", 0.7, _EXTRACT,
       needles='prompt|instruction|message|rules|guideline|configuration'),
    _r("prompt_extraction",
       r"\brepeat\s+(the\s+)?(words|text|everything)\s+above\b|\bwhat\s+was\s+written\s+"
       r"(above|before)\b|\bstarting\s+with\s+['\"]?you\s+are\b", 0.75, _EXTRACT,
       needles='repeat|written|you are'),
    _r("exfil_markdown_image",
       r"!\[[^\]\n]{0,100}\]\(\s*<?https?://[^)\s]+[?&][^)\s]*=", 0.7, _EXFIL, needles='!['),
    _r("exfil_markdown_link",
       r"\[[^\]\n]{0,100}\]\(\s*<?https?://[^)\s]+[?&][^)\s]*(data|secret|token|key|pass|"
       r"prompt|q|chat|history|content|info|user|email|conv)[a-z_]*=\s*[^)\s&]*"
       r"(\{|\$|%7B|<)", 0.6, _EXFIL, needles=']('),
    _r("exfil_send",
       r"\b(send|forward|e-?mail|mail|post|upload|transfer|leak|exfiltrate)\b[^.\n]{0,80}?"
       r"\b(to|at)\s+[\w.+-]+@[\w-]+\.[\w.]+", 0.45, _EXFIL, channels=_UNTRUSTED, needles='@'),
    _r("addressed_to_assistant",
       r"\b(AI|assistant|chatbot|language\s+model|LLM|GPT|Claude|agent)\b[^.\n]{0,40}?\b"
       r"(must|should|needs?\s+to|is\s+(instructed|required)\s+to|has\s+to)\b", 0.35,
       _INDIRECT, channels=_UNTRUSTED, needles='must|should|need|instructed|required|has to'),
    _r("in_your_reply",
       r"\b(in|to|into|within)\s+your\s+(response|reply|answer|output|summary|message)\b|"
       r"\byour\s+(response|reply|answer)\s+(must|should)\b|\b(when|while|before|after)\s+"
       r"(you\s+are\s+)?(summari[sz]|answer|respond|repl(y|ying)|translat)", 0.35, _INDIRECT,
       channels=_UNTRUSTED, needles='your|summar|answer|respond|repl|translat'),
    _r("hidden_comment",
       r"<!--[^>]{0,300}?\b(ignore|instruction|assistant|AI|prompt|you\s+must)\b", 0.6,
       _INDIRECT, needles="<!--"),
    # Japanese
    _r("override",
       r"(これまで|以前|前|上記|上|先ほど|今まで|最初|元)の?(すべての|全ての|全部の|一切の)?"
       r"(指示|命令|指令|ルール|設定|プロンプト|制約|ガイドライン)(は|を)?(すべて|全て|全部)?"
       r"(無視|忘れ|破棄|取り消|無効)", 0.8, _DIRECT, "ja", needles='無視|忘れ|破棄|取り消|無効'),
    _r("override", r"(指示|命令|ルール|制約|制限)を?(無視|無効に)(して|しろ|せよ|してください)",
       0.6, _DIRECT, "ja", needles='無視|無効'),
    _r("new_instructions", r"(新しい|本当の|重要な|緊急の|追加の)(指示|命令|タスク)\s*[:：]", 0.5,
       _DIRECT, "ja", needles='指示|命令|タスク'),
    _r("role_switch",
       r"(あなた|君|お前)は(今から|これから|もう|今後).{0,30}(制限|制約|ルール|フィルター|検閲)"
       r"(の|が|は)?(ない|なし|ありません|一切ない)|(制限|制約)(の)?ない(AI|アシスタント)", 0.6,
       _JAIL, "ja", needles='ない|なし|ありません'),
    _r("jailbreak_persona", r"開発者モード|脱獄|ジェイルブレイク|DANモード|何でもできる(AI|モード)",
       0.55, _JAIL, "ja", needles='開発者モード|脱獄|ジェイルブレイク|モード|何でもできる'),
    _r("prompt_extraction",
       r"(システムプロンプト|初期(の)?(指示|設定|プロンプト)|内部(の)?(指示|ルール|設定)|"
       r"隠された指示|秘密の指示|最初に与えられた指示).{0,20}(教えて|表示|出力|見せ|公開|繰り返|"
       r"書き出|開示)", 0.75, _EXTRACT, "ja", needles='プロンプト|指示|設定|ルール'),
    _r("in_your_reply",
       r"(回答|返信|応答|返答|要約|出力)(の(最後|冒頭|中|末尾))?に.{0,40}(追加|含め|記載|入れ|"
       r"挿入|書き加え)", 0.35, _INDIRECT, "ja", _UNTRUSTED, needles='に'),
    _r("addressed_to_assistant",
       r"(AI|アシスタント|チャットボット|言語モデル|エージェント)(は|への指示)", 0.3,
       _INDIRECT, "ja", _UNTRUSTED,
       needles='ai|アシスタント|チャットボット|言語モデル|エージェント'),
    _r("exfil_send",
       r"(送信|転送|送って|送付|メールして).{0,30}[\w.+-]+@[\w-]+\.[\w.]+|[\w.+-]+@[\w-]+\.[\w.]+"
       r"\s*(に|へ|宛て?に?)(送信|転送|送って|送付|メール)", 0.45, _EXFIL, "ja", _UNTRUSTED,
       needles='@'),
)


def rule_findings(text: str, channel: str, *, offset_ok: bool = True) -> list[Finding]:
    """The rules that match ``text`` on ``channel``, one finding per rule kind (its first
    match). ``offset_ok``: the offsets refer to the original text (else -1)."""
    out: dict[str, Finding] = {}
    low = text.lower()
    for rule in RULES:
        if rule.channels and channel not in rule.channels:
            continue
        if rule.kind in out and out[rule.kind].score >= rule.weight:
            continue
        if rule.needles and not any(n in low for n in rule.needles):
            continue
        m = rule.pattern.search(text)
        if m is None:
            continue
        out[rule.kind] = Finding(
            "injection.rules", channel, rule.kind, rule.weight,
            m.start() if offset_ok else -1, m.end() if offset_ok else -1, rule.techniques,
            f"rule {rule.kind} ({rule.lang}) matched {_excerpt(m.group(0))!r}")
    return list(out.values())


def _excerpt(s: str, n: int = 80) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


# -- features (the same function trains the model: bench/guard_train.py) ----------------

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[\u3040-\u30ff\u3400-\u9fff\uff66-\uff9f]+|"
                    r"[^\sa-z0-9\u3040-\u30ff\u3400-\u9fff\uff66-\uff9f]")
_CJK0 = 0x3040


@functools.lru_cache(maxsize=65536)
def _token(t: str) -> tuple[str, str, tuple[str, ...]]:
    """(the word a token stands for, its ``w:`` feature, its character n-gram features).
    Tokens repeat across texts, so this is worked out once per token per process."""
    if ord(t[0]) >= _CJK0 and len(t) > 1:  # a Japanese run: its 2- and 3-grams
        grams = tuple("j:" + t[i:i + 2] for i in range(len(t) - 1)) + tuple(
            "k:" + t[i:i + 3] for i in range(len(t) - 2))
        return t[:2], "w:" + t[:2], grams
    if len(t) >= 5 and t.isalnum():
        w = "<" + t + ">"
        return t, "w:" + t, tuple("c:" + w[i:i + 4] for i in range(len(w) - 3))
    return t, "w:" + t, ()


def features(text: str) -> set[str]:
    """The model's features of one text: ``w:`` word unigrams, ``b:`` word bigrams,
    ``c:`` character 4-grams of Latin words of 5+ characters (spelling variants such as
    ``d1sregard``), ``j:`` / ``k:`` character 2- and 3-grams of Japanese runs (no word
    segmenter; a run counts as one word, its first two characters)."""
    feats: set[str] = set()
    words: list[str] = []
    for t in _TOKEN.findall(text.lower()):
        w, wf, grams = _token(t)
        words.append(w)
        feats.add(wf)
        if grams:
            feats.update(grams)
    feats.update(["b:" + a + " " + b for a, b in zip(words, words[1:], strict=False)])
    return feats


_SPLIT = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])|\n+")


def segments(text: str, size: int = SEGMENT_CHARS) -> list[tuple[int, int]]:
    """Spans of ``text`` to score apart: lines and sentences, packed together up to
    ``size`` characters (a longer sentence is cut into ``size`` pieces)."""
    spans: list[tuple[int, int]] = []
    start = 0
    pieces: list[tuple[int, int]] = []
    for m in _SPLIT.finditer(text):
        if m.start() > start:
            pieces.append((start, m.start()))
        start = m.end()
    if start < len(text):
        pieces.append((start, len(text)))
    cur_s, cur_e = -1, -1
    for s, e in pieces:
        while e - s > size:
            if cur_s >= 0:
                spans.append((cur_s, cur_e))
                cur_s = -1
            spans.append((s, s + size))
            s += size
        if cur_s < 0:
            cur_s, cur_e = s, e
        elif e - cur_s <= size:
            cur_e = e
        else:
            spans.append((cur_s, cur_e))
            cur_s, cur_e = s, e
    if cur_s >= 0:
        spans.append((cur_s, cur_e))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


DEFAULT_MODEL = "injection.json.gz"


# Two heads share the features: what is an attack depends on who wrote the text. A user
# may ask "What is the capital of Brazil?"; the same sentence inside a retrieved web page
# is an instruction smuggled to the model (BIPIA's attacks are exactly such tasks).
HEAD_DIRECT, HEAD_INDIRECT = "direct", "indirect"
# The output channel has no head: a model's answer is not a prompt (an answer explaining
# prompt injection would read as one); answers are checked by the rules (exfiltration
# through markdown, chat-template tokens), the normalise findings and canaries.
HEAD_OF_CHANNEL = {CHANNEL_USER: HEAD_DIRECT, CHANNEL_SYSTEM: HEAD_DIRECT,
                   CHANNEL_TOOL: HEAD_INDIRECT, CHANNEL_DOCUMENT: HEAD_INDIRECT}


@dataclass(frozen=True)
class Head:
    """One linear head: feature weights and a bias."""

    weights: Mapping[str, float]
    bias: float

    def score_features(self, feats: Iterable[str]) -> float:
        """The probability-like score of one feature set (the logistic of a linear sum
        scaled by 1/sqrt(number of features), the training normalisation)."""
        fs = feats if isinstance(feats, set | frozenset | list | tuple) else list(feats)
        if not fs:
            return _sigmoid(self.bias)
        # map/filter/sum run in C: the per-feature loop is most of a scan's time
        total = sum(filter(None, map(self.weights.get, fs)))
        return _sigmoid(self.bias + total / math.sqrt(len(fs)))


class InjectionModel:
    """The shipped linear model: one :class:`Head` for direct text (user, system, output)
    and one for untrusted text (tool, document), and the thresholds per channel, with the
    false-positive rate each was calibrated at (in ``meta``)."""

    def __init__(self, heads: Mapping[str, Head], thresholds: Mapping[str, float],
                 meta: Mapping[str, Any] | None = None) -> None:
        missing = {HEAD_DIRECT, HEAD_INDIRECT} - set(heads)
        if missing:
            raise GuardError(f"injection model: no {sorted(missing)[0]!r} head")
        self.heads = dict(heads)
        self.thresholds = dict(thresholds)
        self.meta = dict(meta or {})

    @classmethod
    def load(cls, path: str | Path | None = None) -> InjectionModel:
        """Read a model file (JSON, gzip-compressed if it ends in ``.gz``); None: the one
        shipped with kansa. A bad file is a :class:`GuardError` naming it."""
        where = str(path) if path is not None else f"kansa/guard/models/{DEFAULT_MODEL}"
        try:
            if path is None:
                raw = resources.files("kansa.guard").joinpath("models", DEFAULT_MODEL)\
                    .read_bytes()
            else:
                raw = Path(path).read_bytes()
            if where.endswith(".gz"):
                raw = gzip.decompress(raw)
            d = json.loads(raw)
        except (OSError, ValueError, EOFError) as e:
            raise GuardError(f"{where}: cannot read the injection model: {e}") from None
        try:
            thresholds = {check_channel(c, f"{where}: thresholds"): float(t["threshold"])
                          for c, t in d["thresholds"].items()}
            heads = {name: Head({str(k): float(v) for k, v in h["weights"].items()},
                                float(h["bias"]))
                     for name, h in d["heads"].items()}
            return cls(heads, thresholds, {k: v for k, v in d.items() if k != "heads"})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise GuardError(f"{where}: not an injection model file ({type(e).__name__}: "
                             f"{e})") from None

    def head(self, channel: str) -> Head | None:
        """The head that scores ``channel`` (None: the model does not score it)."""
        name = HEAD_OF_CHANNEL.get(channel)
        return self.heads[name] if name is not None else None

    def score(self, text: str, channel: str = CHANNEL_USER) -> float:
        head = self.head(channel)
        return head.score_features(features(text)) if head is not None else 0.0

    def best_segment(self, text: str, channel: str = CHANNEL_USER, *, whole: bool = False,
                     ) -> tuple[float, int, int]:
        """The highest segment score of ``text`` and its span (and the whole text's
        score, if ``whole``); 0 for a channel without a head."""
        head = self.head(channel)
        best, bs, be = 0.0, 0, 0
        if head is None:
            return best, bs, be
        spans = segments(text)
        for s, e in spans:
            p = head.score_features(features(text[s:e]))
            if p > best:
                best, bs, be = p, s, e
        if whole and len(spans) > 1 and len(text) <= 4 * SEGMENT_CHARS:
            p = head.score_features(features(text))
            if p > best:
                best, bs, be = p, 0, len(text)
        return best, bs, be


@functools.cache
def _shipped() -> InjectionModel:
    return InjectionModel.load()


@dataclass(frozen=True)
class ScanResult:
    """The verdict on one text: ``score`` (0..1, higher = more likely an attack), whether
    it reached its channel's ``threshold`` (``flagged``), and every finding."""

    channel: str
    score: float
    threshold: float
    flagged: bool
    findings: tuple[Finding, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "score": round(self.score, 4),
                "threshold": round(self.threshold, 4), "flagged": self.flagged,
                "findings": [f.to_dict() for f in self.findings]}


_TECH_MODEL = {CHANNEL_USER: _DIRECT + (T.JAILBREAK,), CHANNEL_SYSTEM: _DIRECT,
               CHANNEL_TOOL: _INDIRECT, CHANNEL_DOCUMENT: _INDIRECT, CHANNEL_OUTPUT: _INDIRECT}
# below this the model's score is not worth a finding of its own (it still counts)
_MODEL_FINDING_MIN = 0.5


class Scanner:
    """Scans texts of a channel: normalise, rules, the model; combine; compare with the
    channel's threshold. ``thresholds`` override the model's calibrated ones."""

    def __init__(self, model: InjectionModel | None = None, *,
                 thresholds: Mapping[str, float] | None = None) -> None:
        self.model = model if model is not None else _shipped()
        self.thresholds = dict(self.model.thresholds)
        for c, t in (thresholds or {}).items():
            check_channel(c, "thresholds")
            if not 0.0 <= float(t) <= 1.0:
                raise GuardError(f"thresholds: {c}: {t!r} is not between 0 and 1")
            self.thresholds[c] = float(t)
        for c in CHANNELS:
            self.thresholds.setdefault(c, 0.5)

    def scan(self, text: str, channel: str = CHANNEL_USER) -> ScanResult:
        check_channel(channel)
        if not isinstance(text, str):
            raise GuardError(f"scan: text must be a string, not {type(text).__name__}")
        text = text[:MAX_SCAN_CHARS]
        norm = normalise(text, channel)
        findings: list[Finding] = list(norm.findings)
        whole = channel in _WHOLE_TEXT_CHANNELS
        # the normalised text keeps offsets only where nothing was removed or folded
        same = norm.text == text
        rule_hits = rule_findings(norm.text, channel, offset_ok=same)
        model_p, ms, me = self.model.best_segment(norm.text, channel, whole=whole)
        for d in norm.decoded:
            for f in rule_findings(d.text, channel, offset_ok=False):
                rule_hits.append(Finding(f.detector, channel, f.kind, f.score, d.start, d.end,
                                         f.technique_ids + (T.OBFUSCATION,),
                                         f"{f.message} in a {d.kind} payload"))
            p, _, _ = self.model.best_segment(d.text, channel, whole=True)
            if p > model_p:
                model_p, ms, me = p, d.start, d.end
        findings += rule_hits
        if model_p >= _MODEL_FINDING_MIN:
            findings.append(Finding(
                "injection.model", channel, "classifier", model_p,
                ms if same else -1, me if same else -1, _TECH_MODEL[channel],
                f"the injection model scores a passage {model_p:.2f}"))
        # noisy-OR: independent signals add up; the strongest rule of each kind counts once
        keep = 1.0 - model_p
        for f in findings:
            if f.detector != "injection.model":
                keep *= 1.0 - min(max(f.score, 0.0), 0.99)
        score = 1.0 - keep
        thr = self.thresholds[channel]
        return ScanResult(channel, score, thr, score >= thr, tuple(findings))


@functools.cache
def default_scanner() -> Scanner:
    """A :class:`Scanner` with the shipped model and thresholds (loaded once)."""
    return Scanner()
