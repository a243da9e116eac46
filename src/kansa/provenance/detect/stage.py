"""``DetectStage``: score a call's input text in the capture pipeline (observe / flag only).

Before a call leaves, the stage reads the newest user text of the request
(``call.info.request``: chat ``messages``, Anthropic ``messages``, Responses ``input``,
completions ``prompt``), scores it with a shared :class:`Detector` and answers a
:class:`~kansa.capture.pipeline.Verdict` whose attributes go into the record:
``kansa.detect.score``, ``kansa.detect.language``, ``kansa.detect.verdict``,
``kansa.detect.p_human`` (docs/VOCABULARY.md). The decision is ``flag`` when the verdict
is ``likely-machine`` or ``possibly-machine``, else ``allow``: it never blocks. Text that
cannot be scored (binary, too large) is recorded as ``kansa.detect.error``; text shorter
than ``min_chars`` is not scored at all. Scoring costs tenths of a second to seconds of
CPU: on an event loop ``abefore`` runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kansa.capture.pipeline import Call, Verdict
from kansa.provenance.detect.errors import DetectError, DetectUnavailableError
from kansa.records import attributes as A

if TYPE_CHECKING:
    from kansa.provenance.detect.detector import Detector

__all__ = ["ATTR_ERROR", "ATTR_LANGUAGE", "ATTR_P_HUMAN", "ATTR_SCORE", "ATTR_VERDICT",
           "DetectStage", "input_text"]

ATTR_SCORE = A.KANSA_DETECT_SCORE
ATTR_LANGUAGE = A.KANSA_DETECT_LANGUAGE
ATTR_VERDICT = A.KANSA_DETECT_VERDICT
ATTR_P_HUMAN = A.KANSA_DETECT_P_HUMAN
ATTR_ERROR = A.KANSA_DETECT_ERROR
_FLAGGED = ("likely-machine", "possibly-machine")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # parts: {"type": "text" | "input_text", "text": ...}
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def input_text(request: Any) -> str:
    """The newest user text of a parsed request body ('' if none)."""
    if not isinstance(request, dict):
        return ""
    messages = request.get("messages")
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                return _text_of(m.get("content"))
        return ""
    for key in ("input", "prompt"):
        v = request.get(key)
        if isinstance(v, str):
            return v
        if isinstance(v, list):
            if all(isinstance(x, str) for x in v):
                return "\n".join(v)
            for m in reversed(v):
                if isinstance(m, dict) and m.get("role", "user") == "user":
                    return _text_of(m.get("content"))
    return ""


class DetectStage:
    """A capture stage that scores each call's input text and records the evidence."""

    name = "detect"
    reads = frozenset({"content"})

    def __init__(self, detector: Detector | None = None, *, min_chars: int = 100) -> None:
        if detector is None:
            try:
                from kansa.provenance.detect.detector import Detector
            except ModuleNotFoundError as e:  # fail at start-up, not per call
                raise DetectUnavailableError(
                    f"DetectStage needs the extra kansa[detect] ({e.name} is missing)") from e
            detector = Detector()
        self.detector = detector
        self.min_chars = min_chars

    def before(self, call: Call) -> Verdict | None:
        info = call.info
        text = input_text(info.request) if info is not None else ""
        if len(text.strip()) < self.min_chars:
            return None
        try:
            r = self.detector.score(text)
        except DetectUnavailableError:
            raise  # a missing runtime is a set-up fault: fail closed, as stages do
        except DetectError as e:
            return Verdict("allow", attributes={ATTR_ERROR: str(e)[:256]})
        attrs: dict[str, Any] = {ATTR_SCORE: round(r.score, 4), ATTR_LANGUAGE: r.language,
                                 ATTR_VERDICT: r.verdict}
        if r.p_human is not None:
            attrs[ATTR_P_HUMAN] = round(r.p_human, 4)
        decision = "flag" if r.verdict in _FLAGGED else "allow"
        return Verdict(decision, message=f"input text: {r.verdict}", attributes=attrs)

    async def abefore(self, call: Call) -> Verdict | None:
        _ = call.info  # the request is parsed on the loop; scoring runs in a worker thread
        return await asyncio.to_thread(self.before, call)
