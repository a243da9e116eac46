"""The capture pipeline stage for secrets and personal data, in both directions.

:class:`DataGuardStage` (``name = "guard.data"``):

* **before** a call leaves, it scans the request body's content strings (messages,
  system prompt, tool-call arguments, tool results: :func:`~kansa.guard.pseudonym.walk_strings`)
  and applies, per finding, the action its kind is given for the *outgoing* direction:
  ``observe`` (recorded only), ``flag`` (the call goes ahead, flagged), ``block`` (refused),
  ``redact`` (``[REDACTED:KIND]``, irreversible) or ``pseudonymise`` (a subject-keyed token,
  restored in the answer). A rewritten body replaces the outgoing one
  (``Verdict(request=...)``); with ``can_rewrite=False`` a call that needed rewriting is
  refused rather than sent in clear (fail closed).
* **after** the answer, it scans the answer (text and tool-call arguments) *before*
  restoring (the values it put tokens in place of are not leaks; anything else is),
  applies the *incoming* action (``observe`` / ``flag`` / ``block``: the answer is held /
  ``redact``), then restores the tokens and hands the caller the restored answer
  (``Verdict(response=...)``).

What it records (``kansa.guard.data.*``, docs/VOCABULARY.md): counts, kinds, the actions
taken and keyed hashes of the values (:func:`~kansa.guard.pseudonym.keyed_hash`); never a
value. Actions are looked up by kind (``my_number``), then detector (``secrets``/``pii``),
then ``*``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kansa.capture.pipeline import Call, Verdict
from kansa.errors import GuardError
from kansa.guard.findings import Finding, Technique
from kansa.guard.pii import PII_KINDS
from kansa.guard.pseudonym import (
    TOKEN,
    Keyring,
    PseudonymMap,
    PseudonymStore,
    VaultKeyring,
    keyed_hash,
    restore,
    scan_text,
    walk_strings,
)
from kansa.guard.secrets import SECRET_KINDS
from kansa.records import attributes as A

if TYPE_CHECKING:
    from kansa.guard.ner import NerScanner
    from kansa.records.model import UsageRecord

__all__ = ["ACTIONS", "DataGuardStage", "DataPolicy"]

OBSERVE, FLAG, BLOCK, REDACT, PSEUDONYMISE = "observe", "flag", "block", "redact", "pseudonymise"
ACTIONS = (OBSERVE, FLAG, REDACT, PSEUDONYMISE, BLOCK)  # weakest to strongest
_RANK = {a: i for i, a in enumerate(ACTIONS)}
# the record attributes of each direction: findings, kinds, action, hashes, techniques
_DIRECTION_ATTRS = {
    "out": (A.KANSA_GUARD_DATA_OUT_FINDINGS, A.KANSA_GUARD_DATA_OUT_KINDS,
            A.KANSA_GUARD_DATA_OUT_ACTION, A.KANSA_GUARD_DATA_OUT_HASHES,
            A.KANSA_GUARD_DATA_OUT_TECHNIQUES),
    "in": (A.KANSA_GUARD_DATA_IN_FINDINGS, A.KANSA_GUARD_DATA_IN_KINDS,
           A.KANSA_GUARD_DATA_IN_ACTION, A.KANSA_GUARD_DATA_IN_HASHES,
           A.KANSA_GUARD_DATA_IN_TECHNIQUES),
}
_MAX_HASHES = 32  # keyed hashes per record (a long conversation repeats them)
_STATE = "guard.data"


def _check(direction: str, actions: Mapping[str, str]) -> dict[str, str]:
    known = SECRET_KINDS | PII_KINDS | {"secrets", "pii", "*"}
    out = {}
    for k, a in actions.items():
        if k not in known:
            raise GuardError(f"guard.data {direction}: unknown kind {k!r} (a kind, 'secrets', "
                             f"'pii' or '*')")
        if a not in ACTIONS:
            raise GuardError(f"guard.data {direction}: unknown action {a!r} for {k} "
                             f"(one of: {', '.join(ACTIONS)})")
        if direction == "incoming" and a == PSEUDONYMISE:
            raise GuardError(f"guard.data incoming: {k}: an answer cannot be pseudonymised "
                             "(nothing would restore it): use redact")
        out[k] = a
    return out


@dataclass(frozen=True)
class DataPolicy:
    """Which action each kind gets, per direction. Default: outgoing secrets blocked,
    personal data pseudonymised; in answers, secrets redacted, personal data flagged."""

    outgoing: Mapping[str, str] = field(default_factory=lambda: {"secrets": BLOCK,
                                                                 "pii": PSEUDONYMISE})
    incoming: Mapping[str, str] = field(default_factory=lambda: {"secrets": REDACT,
                                                                 "pii": FLAG})
    min_score: float = 0.5
    ner: bool = False  # also GiNZA NER for names and places (the kansa[ner] extra)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outgoing", _check("outgoing", self.outgoing))
        object.__setattr__(self, "incoming", _check("incoming", self.incoming))
        if not 0.0 <= self.min_score <= 1.0:
            raise GuardError(f"guard.data: min_score {self.min_score} is not within 0..1")

    @classmethod
    def from_dict(cls, d: Any, where: str = "guard data config") -> DataPolicy:
        """A policy from parsed YAML/JSON: ``outgoing`` and ``incoming`` (kind, detector
        or ``*`` -> action), ``min_score``; a :class:`GuardError` names the bad key."""
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise GuardError(f"{where}: expected a mapping, got {type(d).__name__}")
        known = {"outgoing", "incoming", "min_score", "ner"}
        extra = sorted(set(d) - known)
        if extra:
            raise GuardError(f"{where}: unknown key {extra[0]!r} (known: "
                             f"{', '.join(sorted(known))})")
        kw: dict[str, Any] = {}
        for k in ("outgoing", "incoming"):
            if k in d:
                if not isinstance(d[k], dict):
                    raise GuardError(f"{where}: {k}: expected a mapping of kind to action")
                kw[k] = {str(a): str(b) for a, b in d[k].items()}
        if "min_score" in d:
            try:
                kw["min_score"] = float(d["min_score"])
            except (TypeError, ValueError):
                raise GuardError(f"{where}: min_score: expected a number") from None
        if "ner" in d:
            if not isinstance(d["ner"], bool):
                raise GuardError(f"{where}: ner: expected true or false")
            kw["ner"] = d["ner"]
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> DataPolicy:
        """A policy from a YAML (or JSON) file."""
        import yaml

        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise GuardError(f"{path}: cannot read the guard data config: {e.strerror}") from None
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise GuardError(f"{path}: not YAML: {e}") from None
        return cls.from_dict(d, str(path))

    @staticmethod
    def _of(table: Mapping[str, str], f: Finding) -> str:
        return table.get(f.kind) or table.get(f.detector) or table.get("*") or OBSERVE

    def out_action(self, f: Finding) -> str:
        return self._of(self.outgoing, f)

    def in_action(self, f: Finding) -> str:
        return self._of(self.incoming, f)


def _subject(call: Call) -> str | None:
    """The data subject as the caller named it (``CallInfo.subject``): the vault derives
    its key from that name. Not ``call.subject``, which is the ledger's pseudonym of it
    (keying by the pseudonym would make a second subject that erasure never reaches)."""
    info = call.info
    return info.subject if info is not None else None


class DataGuardStage:
    """Secrets and personal data, both directions (see the module docstring).
    ``keyring``: where subject keys come from (:class:`~kansa.guard.pseudonym.VaultKeyring`
    over the ledger's vault, so erasure reaches the tokens and mapping); ``store``: keep
    mappings (sealed) across calls."""

    name = "guard.data"
    reads = frozenset({"content"})

    def __init__(self, keyring: Keyring, *, policy: DataPolicy | None = None,
                 store: PseudonymStore | None = None, can_rewrite: bool | None = None,
                 ) -> None:
        self.keyring = keyring
        self.policy = policy or DataPolicy()
        self.store = store
        # every surface with a before moment replaces the request (Verdict.request);
        # False: refuse a call that would need rewriting (for a surface that cannot)
        self.can_rewrite = True if can_rewrite is None else can_rewrite
        self.ner: NerScanner | None = None
        if self.policy.ner:
            from kansa.guard.ner import NerScanner, available

            if not available():
                raise GuardError("guard.data: ner: true needs the NER extra: pip install "
                                 "'kansa[ner]' (spaCy and ja-ginza)")
            self.ner = NerScanner()

    @classmethod
    def for_ledger(cls, ledger: Any, *, policy: DataPolicy | None = None,
                   keep_mappings: bool = True) -> DataGuardStage:
        """The stage over a :class:`kansa.Ledger`'s vault (mappings kept in its store)."""
        kr = VaultKeyring(ledger.vault)
        return cls(kr, policy=policy, store=PseudonymStore(kr) if keep_mappings else None)

    def _scan(self, text: str, channel: str) -> list[Finding]:
        return scan_text(text, min_score=self.policy.min_score, channel=channel, ner=self.ner)

    # -- before ---------------------------------------------------------------------------

    def before(self, call: Call) -> Verdict | None:
        body = call.request
        if body is None:
            return None
        subject = _subject(call)
        group, secret = self.keyring.secret(subject)
        mapping = PseudonymMap(group, secret)
        found: list[Finding] = []
        actions: list[str] = []
        policy = self.policy

        def one(s: str, key: str) -> str:
            fs = self._scan(s, "user")
            if not fs:
                return s
            found.extend(fs)
            parts, at = [], 0
            for f in fs:
                a = policy.out_action(f)
                actions.append(a)
                if a not in (REDACT, PSEUDONYMISE):
                    continue
                v = s[f.start:f.end]
                parts.append(s[at:f.start])
                parts.append(mapping.token(f.kind, v) if a == PSEUDONYMISE
                             else f"[REDACTED:{f.kind.upper()}]")
                at = f.end
            if not parts:
                return s
            parts.append(s[at:])
            return "".join(parts)

        # scanning strings of the body, values cut from the strings as they were: a value
        # is hashed from the same text as it is tokenised from
        values: list[tuple[str, str]] = []

        def collect(s: str, key: str) -> str:
            before = len(found)
            out = one(s, key)
            values.extend((f.kind, s[f.start:f.end]) for f in found[before:])
            return out

        new_body = walk_strings(body, collect)
        if not found:
            return None
        strongest = max(actions, key=_RANK.__getitem__)
        attrs = self._attrs("out", found, actions, values, secret)
        rewritten = new_body is not body
        if rewritten:
            attrs[A.KANSA_GUARD_DATA_PSEUDONYMISED] = actions.count(PSEUDONYMISE)
            attrs[A.KANSA_GUARD_DATA_REDACTED] = actions.count(REDACT)
        if strongest == BLOCK:
            kinds = sorted({f.kind for f, a in zip(found, actions, strict=True) if a == BLOCK})
            return Verdict("block", f"kansa: refused: the request carries {', '.join(kinds)}",
                           attrs)
        if rewritten and not self.can_rewrite:
            return Verdict("block", "kansa: refused: the request carries personal data or "
                           "secrets to rewrite, and this surface cannot rewrite a request",
                           attrs)
        if mapping.tokens:
            call.state[_STATE] = mapping
            if self.store is not None:
                self.store.save(mapping)
        decision = "flag" if FLAG in actions else "allow"
        if not rewritten:
            return Verdict(decision, "", attrs)
        return Verdict(decision, "", attrs, request=new_body)

    async def abefore(self, call: Call) -> Verdict | None:
        # the keyring and the mapping store touch the database: off the event loop
        return await asyncio.to_thread(self.before, call)

    # -- after ----------------------------------------------------------------------------

    def after(self, call: Call, rec: UsageRecord) -> Verdict | None:
        body = call.response
        if body is None:
            return None
        mapping: PseudonymMap | None = call.state.get(_STATE)
        found: list[Finding] = []
        values: list[tuple[str, str]] = []
        tokens_seen: set[str] = set()

        def scan(s: str, key: str) -> str:
            fs = self._scan(s, "output")
            found.extend(fs)
            values.extend((f.kind, s[f.start:f.end]) for f in fs)
            if "<" in s:
                tokens_seen.update(m.group() for m in TOKEN.finditer(s))
            return s

        walk_strings(body, scan)
        if mapping is None and tokens_seen and self.store is not None:
            # tokens from an earlier call of this subject (the mapping kept in the store)
            mapping = self.store.load(_subject(call), tokens_seen)
        attrs: dict[str, Any] = {}
        secret = b""
        if mapping is not None:
            secret = mapping.secret
        elif found:
            secret = self.keyring.secret(_subject(call))[1]
        actions = [self.policy.in_action(f) for f in found]
        new_body = body
        if found:
            attrs.update(self._attrs("in", found, actions, values, secret))
            if REDACT in actions:
                red = {(k, v) for (k, v), a in zip(values, actions, strict=True) if a == REDACT}
                new_body = walk_strings(new_body, lambda s, key: self._redact(s, red))
        if mapping is not None and mapping.tokens:
            new_body, n = restore(new_body, mapping)
            attrs[A.KANSA_GUARD_DATA_RESTORED] = n
        if not attrs:
            return None
        if found and BLOCK in actions:
            kinds = sorted({f.kind for f, a in zip(found, actions, strict=True) if a == BLOCK})
            return Verdict("block", f"the answer carries {', '.join(kinds)}", attrs)
        decision = "flag" if FLAG in actions else "allow"
        if new_body is body:
            return Verdict(decision, "", attrs)
        # not rewritable (a stream, the OTLP intake): the pipeline records it as not applied
        return Verdict(decision, "", attrs, response=new_body)

    async def aafter(self, call: Call, rec: UsageRecord) -> Verdict | None:
        return await asyncio.to_thread(self.after, call, rec)

    def _redact(self, s: str, red: set[tuple[str, str]]) -> str:
        fs = [f for f in self._scan(s, "output") if (f.kind, s[f.start:f.end]) in red]
        if not fs:
            return s
        parts, at = [], 0
        for f in fs:
            parts += [s[at:f.start], f"[REDACTED:{f.kind.upper()}]"]
            at = f.end
        parts.append(s[at:])
        return "".join(parts)

    @staticmethod
    def _attrs(direction: str, found: list[Finding], actions: list[str],
               values: list[tuple[str, str]], secret: bytes) -> dict[str, Any]:
        findings, kinds, action, hashes_attr, techniques = _DIRECTION_ATTRS[direction]
        hashes = sorted({keyed_hash(secret, k, v) for k, v in values})[:_MAX_HASHES]
        return {findings: len(found), kinds: sorted({f.kind for f in found}),
                action: max(actions, key=_RANK.__getitem__), hashes_attr: hashes,
                techniques: [Technique.DATA_LEAKAGE, Technique.OWASP_SENSITIVE_DISCLOSURE]}
