"""What every guard detector reports: a :class:`Finding`, on one text of one channel.

A finding is pure data (JSON-ready through :meth:`Finding.to_dict`), so the scanner, the
pipeline stage, the CLI and the records all carry the same thing. ``technique_ids`` name
MITRE ATLAS techniques (``AML.T0051`` ...) and OWASP Top 10 for LLM Applications 2025
entries (``LLM01:2025`` ...), so reports and incident drafts can cite what was seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kansa.errors import GuardError

__all__ = ["CHANNELS", "CHANNEL_DOCUMENT", "CHANNEL_OUTPUT", "CHANNEL_SYSTEM", "CHANNEL_TOOL",
           "CHANNEL_USER", "Finding", "GuardError", "Technique", "check_channel"]

# Where a text comes from: who wrote it decides how far it is trusted and which
# threshold applies (a user may say "ignore that"; a retrieved web page should not).
CHANNEL_USER = "user"          # the person's prompt
CHANNEL_SYSTEM = "system"      # the operator's system / developer prompt
CHANNEL_TOOL = "tool"          # a tool or function result fed back to the model
CHANNEL_DOCUMENT = "document"  # retrieved text (RAG, web pages, files, e-mail)
CHANNEL_OUTPUT = "output"      # the model's answer
CHANNELS = (CHANNEL_USER, CHANNEL_SYSTEM, CHANNEL_TOOL, CHANNEL_DOCUMENT, CHANNEL_OUTPUT)


def check_channel(channel: str, where: str = "channel") -> str:
    """``channel`` if it is one of :data:`CHANNELS`, else a :class:`GuardError` naming
    ``where`` it came from."""
    if channel not in CHANNELS:
        raise GuardError(f"{where}: unknown channel {channel!r} "
                         f"(one of: {', '.join(CHANNELS)})")
    return channel


class Technique:
    """Technique ids a finding may carry (ATLAS ids as of ATLAS v5; OWASP LLM 2025)."""

    # MITRE ATLAS
    PROMPT_INJECTION = "AML.T0051"           # LLM Prompt Injection
    DIRECT_INJECTION = "AML.T0051.000"       # ... Direct
    INDIRECT_INJECTION = "AML.T0051.001"     # ... Indirect (documents, tool results)
    JAILBREAK = "AML.T0054"                  # LLM Jailbreak
    PROMPT_EXTRACTION = "AML.T0056"          # Extract LLM System Prompt
    DATA_LEAKAGE = "AML.T0057"               # LLM Data Leakage
    OBFUSCATION = "AML.T0068"                # LLM Prompt Obfuscation
    RESPONSE_RENDERING = "AML.T0077"         # LLM Response Rendering (markdown exfil)
    # OWASP Top 10 for LLM Applications 2025
    OWASP_PROMPT_INJECTION = "LLM01:2025"
    OWASP_SENSITIVE_DISCLOSURE = "LLM02:2025"
    OWASP_IMPROPER_OUTPUT = "LLM05:2025"
    OWASP_EXCESSIVE_AGENCY = "LLM06:2025"
    OWASP_SYSTEM_PROMPT_LEAKAGE = "LLM07:2025"


@dataclass(frozen=True)
class Finding:
    """One thing a detector saw in one text.

    ``detector``: which detector (``injection.rules``, ``injection.model``, ``normalise``,
    ``canary``, ``secrets``, ``pii``, ``agent`` ...). ``channel``: one of
    :data:`CHANNELS`. ``kind``: what was seen, a short stable identifier within the
    detector (``override``, ``chat_template``, ``zero_width`` ...). ``score``: 0..1,
    higher = more likely an attack (rules give a fixed weight). ``start``/``end``:
    character offsets in the text as given (before normalisation), or -1 if the finding
    is about the whole text or a decoded form of it. ``message``: one human sentence.
    ``extra``: detector-specific JSON-ready details (never the secret itself).
    """

    detector: str
    channel: str
    kind: str
    score: float = 1.0
    start: int = -1
    end: int = -1
    technique_ids: tuple[str, ...] = ()
    message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the form in records and in ``kansa guard scan`` output)."""
        d: dict[str, Any] = {"detector": self.detector, "channel": self.channel,
                             "kind": self.kind, "score": round(float(self.score), 4)}
        if self.start >= 0:
            d["start"], d["end"] = self.start, self.end
        if self.technique_ids:
            d["technique_ids"] = list(self.technique_ids)
        if self.message:
            d["message"] = self.message
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        """The inverse of :meth:`to_dict` (a :class:`GuardError` names a missing key)."""
        try:
            return cls(detector=str(d["detector"]), channel=str(d["channel"]),
                       kind=str(d["kind"]), score=float(d.get("score", 1.0)),
                       start=int(d.get("start", -1)), end=int(d.get("end", -1)),
                       technique_ids=tuple(str(t) for t in d.get("technique_ids", ())),
                       message=str(d.get("message", "")), extra=dict(d.get("extra", {})))
        except KeyError as e:
            raise GuardError(f"finding: missing key {e.args[0]!r}") from None
