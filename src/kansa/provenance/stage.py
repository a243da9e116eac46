"""The labelling stage of the capture pipeline (name ``provenance``), and its config.

A labels file (YAML)::

    producer: Example KK            # GB 45438 ContentProducer (name or code)
    systems:
      "*":         {jurisdictions: [EU], language: en}
      support-bot: {jurisdictions: [CN, JP], language: ja, text_wrapper: true}
      image-gen:   {jurisdictions: [US-CA], c2pa: true}

Per system (``"*"``: every other): ``jurisdictions`` (the visible label's wording and
place, :data:`kansa.provenance.labels.DISCLOSURES`), ``language`` (ja/en), ``visible``,
``metadata`` (the AIGC JSON where the format has a carrier), ``text_wrapper`` (the
invisible, strippable wrapper) and ``c2pa`` (sign images; needs ``kansa provenance
keygen``).

At the *after* moment the stage labels a non-streamed answer (OpenAI chat completions
and Responses, Anthropic messages: every text part; images API ``b64_json``: XMP and a
C2PA manifest) and records what it applied (``kansa.output.label.*``). It never loses a
record or breaks a stream: a streamed answer is recorded as not labelled
(``kansa.output.label.error``: ``streamed``) because its events have already left; an
answer the surface cannot rewrite, or a label that fails, is recorded the same way and
the answer goes out unlabelled.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kansa.capture.pipeline import Call, Verdict
from kansa.errors import FormatError, KansaError
from kansa.provenance.keys import ProvenanceKeys
from kansa.provenance.labels import LANGUAGES, Labelled, TextLabel, aigc, label_text
from kansa.records.attributes import (
    KANSA_OUTPUT_LABEL_CARRIER,
    KANSA_OUTPUT_LABEL_CONTENT_ID,
    KANSA_OUTPUT_LABEL_ERROR,
    KANSA_OUTPUT_LABEL_MACHINE_READABLE,
    KANSA_OUTPUT_LABEL_PRODUCER,
    KANSA_OUTPUT_LABEL_VISIBLE,
    KANSA_OUTPUT_MODALITY,
)
from kansa.records.model import UsageRecord

ATTR_ERROR = KANSA_OUTPUT_LABEL_ERROR
_NO_CONTENT = frozenset({"embeddings", "list_models"})
# operations whose answers are text: a streamed one is recorded as an unlabelled text
# output (kansa.output.modality "text"), so the packs' labelling checks apply to it
_TEXT_OPERATIONS = frozenset({"chat", "text_completion"})
_KEYS = {"jurisdictions", "language", "visible", "metadata", "text_wrapper", "c2pa",
         "placement"}


@dataclass(frozen=True)
class SystemLabels:
    text: TextLabel
    c2pa: bool = False


@dataclass(frozen=True)
class LabelConfig:
    producer: str
    systems: Mapping[str, SystemLabels] = field(default_factory=dict)

    def for_system(self, system: str) -> SystemLabels | None:
        return self.systems.get(system) or self.systems.get("*")

    @classmethod
    def from_dict(cls, doc: Any, where: str = "labels") -> LabelConfig:
        if not isinstance(doc, dict):
            raise FormatError(f"{where}: expected a mapping with 'producer' and 'systems'")
        producer = doc.get("producer")
        if not isinstance(producer, str) or not producer.strip():
            raise FormatError(f"{where}: 'producer' (the GB 45438 ContentProducer) is "
                              "required")
        systems = doc.get("systems") or {}
        if not isinstance(systems, dict):
            raise FormatError(f"{where}: 'systems' must map system names to settings")
        out: dict[str, SystemLabels] = {}
        for name, s in systems.items():
            s = s or {}
            if not isinstance(s, dict):
                raise FormatError(f"{where}: systems.{name} must be a mapping")
            unknown = set(s) - _KEYS
            if unknown:
                raise FormatError(f"{where}: systems.{name}: unknown setting(s) "
                                  f"{', '.join(sorted(unknown))} (known: "
                                  f"{', '.join(sorted(_KEYS))})")
            jur = s.get("jurisdictions", [])
            if not isinstance(jur, list) or not all(isinstance(j, str) for j in jur):
                raise FormatError(f"{where}: systems.{name}.jurisdictions must be a list")
            lang = s.get("language", "en")
            if lang not in LANGUAGES:
                raise FormatError(f"{where}: systems.{name}.language must be one of "
                                  f"{', '.join(LANGUAGES)}")
            place = s.get("placement")
            if place not in (None, "start", "end"):
                raise FormatError(f"{where}: systems.{name}.placement: start or end")
            out[str(name)] = SystemLabels(
                TextLabel(producer, tuple(jur), lang, bool(s.get("visible", True)),
                          bool(s.get("metadata", True)), bool(s.get("text_wrapper", False)),
                          place), bool(s.get("c2pa", False)))
        return cls(producer, out)

    @classmethod
    def load(cls, path: str | Path) -> LabelConfig:
        import yaml

        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise KansaError(f"cannot read the labels file {p}: {e.strerror}") from None
        if len(raw) > 1 << 20:
            raise FormatError(f"{p}: a labels file is at most 1 MiB")
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise FormatError(f"{p}: not YAML: {e}") from None
        return cls.from_dict(doc, str(p))


# -- answers: where the text is ----------------------------------------------------------------


def _label_parts(body: Any, fn: Callable[[str], str]) -> Any:
    """A copy of an answer body with ``fn(text) -> text`` applied to every text part.
    Copy on write: only the dicts and lists on the way to a text are copied (a deep copy
    of the whole body cost more than the labels themselves)."""
    if not isinstance(body, dict):
        return body
    new = dict(body)
    choices = body.get("choices")
    if isinstance(choices, list):  # OpenAI chat completions / completions
        out = []
        for c in choices:
            if isinstance(c, dict):
                msg = c.get("message")
                if isinstance(msg, dict) and isinstance(msg.get("content"), str) \
                        and msg["content"]:
                    c = {**c, "message": {**msg, "content": fn(msg["content"])}}
                elif isinstance(c.get("text"), str) and c["text"]:
                    c = {**c, "text": fn(c["text"])}
            out.append(c)
        new["choices"] = out
    content = body.get("content")
    if isinstance(content, list):  # Anthropic messages
        new["content"] = [
            {**b, "text": fn(b["text"])} if isinstance(b, dict) and b.get("type") == "text"
            and isinstance(b.get("text"), str) and b["text"] else b for b in content]
    output = body.get("output")
    if isinstance(output, list):  # OpenAI Responses
        items = []
        for item in output:
            if isinstance(item, dict) and isinstance(item.get("content"), list):
                item = {**item, "content": [
                    {**p, "text": fn(p["text"])} if isinstance(p, dict)
                    and p.get("type") == "output_text" and isinstance(p.get("text"), str)
                    else p for p in item["content"]]}
            items.append(item)
        new["output"] = items
    data = body.get("data")
    if isinstance(data, list):  # images: copied here, signed by the caller
        new["data"] = [dict(d) if isinstance(d, dict) else d for d in data]
    return new


def _images(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return [d for d in body["data"] if isinstance(d, dict) and isinstance(
            d.get("b64_json"), str)]
    return []


@dataclass
class Outcome:
    body: Any  # the labelled answer (a copy), or None if nothing changed
    attributes: dict[str, Any]


def label_answer(body: Any, cfg: SystemLabels, keys: ProvenanceKeys, record_id: str,
                 system: str) -> Outcome:
    """Label a non-streamed answer body (pure but for C2PA signing). Never raises for
    a label that cannot be applied: that is in the attributes."""
    producer = cfg.text.producer
    applied: list[Labelled] = []
    key = keys.label_key

    def one(text: str) -> str:
        got = label_text(text, cfg.text, key, record_id)
        applied.append(got)
        return got.text

    new = _label_parts(body, one)
    images = _images(new)
    if not applied and not images:
        return Outcome(None, {KANSA_OUTPUT_LABEL_VISIBLE: False,
                              KANSA_OUTPUT_LABEL_MACHINE_READABLE: [],
                              ATTR_ERROR: "no text or image in the answer to label"})
    attrs: dict[str, Any] = {}
    marks: list[str] = []
    if applied:
        first = applied[0]
        attrs = first.attributes(producer, record_id)
        marks = list(first.marks)
        attrs[KANSA_OUTPUT_MODALITY] = "text"
    errors: list[str] = []
    for img in images:
        try:
            raw = base64.b64decode(img["b64_json"], validate=True)
            from kansa.provenance.media import label_image

            out, m = label_image(raw, keys, record_id=record_id, system=system,
                                 producer=producer,
                                 aigc_fields=aigc(keys.label_key, producer, record_id),
                                 c2pa_manifest=cfg.c2pa)
            img["b64_json"] = base64.b64encode(out).decode()
            marks += [x for x in m if x not in marks]
            attrs[KANSA_OUTPUT_MODALITY] = "image"
            attrs[KANSA_OUTPUT_LABEL_PRODUCER] = producer
            attrs[KANSA_OUTPUT_LABEL_CONTENT_ID] = record_id
        except (ValueError, KansaError) as e:
            errors.append(f"image: {e}")
    attrs[KANSA_OUTPUT_LABEL_MACHINE_READABLE] = marks
    attrs.setdefault(KANSA_OUTPUT_LABEL_VISIBLE, False)
    if errors:
        attrs[ATTR_ERROR] = "; ".join(errors)[:512]
    return Outcome(new, attrs)


class LabelStage:
    """The ``provenance`` pipeline stage (see the module's description)."""

    name = "provenance"
    reads = frozenset({"system"})

    def __init__(self, config: LabelConfig, keys: ProvenanceKeys) -> None:
        self.config = config
        self.keys = keys

    def _skip(self, rec: UsageRecord) -> SystemLabels | None:
        """The system's labels, or None for a record that produced no content (a failed
        call, an agent step, embeddings, a model listing)."""
        if rec.kind != "gen_ai.call" or rec.outcome != "ok" or rec.operation in _NO_CONTENT:
            return None
        return self.config.for_system(rec.system)

    def after(self, call: Call, rec: UsageRecord) -> Verdict | None:
        cfg = self._skip(rec)
        if cfg is None:
            return None
        return self._verdict(call, rec, cfg, None)

    async def aafter(self, call: Call, rec: UsageRecord) -> Verdict | None:
        cfg = self._skip(rec)
        if cfg is None:
            return None
        body = call.response
        if _images(body):  # C2PA signing takes ~150 ms: off the loop
            out = await asyncio.to_thread(label_answer, body, cfg, self.keys, rec.id,
                                          rec.system)
            return self._verdict(call, rec, cfg, out)
        return self._verdict(call, rec, cfg, None)

    def _verdict(self, call: Call, rec: UsageRecord, cfg: SystemLabels,
                 done: Outcome | None) -> Verdict | None:
        body = call.response
        if body is None:
            # a streamed answer (its events have left) or a surface that passes no body
            why = "streamed: the answer left before it could be labelled"
            rec.attributes.update({KANSA_OUTPUT_LABEL_VISIBLE: False,
                                   KANSA_OUTPUT_LABEL_MACHINE_READABLE: [],
                                   ATTR_ERROR: why})
            if rec.operation in _TEXT_OPERATIONS:
                rec.attributes.setdefault(KANSA_OUTPUT_MODALITY, "text")
            return None
        out = done if done is not None else label_answer(body, cfg, self.keys, rec.id,
                                                         rec.system)
        if out.body is not None and not call.rewritable:
            out = Outcome(None, {**out.attributes, KANSA_OUTPUT_LABEL_VISIBLE: False,
                                 KANSA_OUTPUT_LABEL_MACHINE_READABLE: [],
                                 ATTR_ERROR: "this surface cannot rewrite the answer"})
            for k in (KANSA_OUTPUT_LABEL_PRODUCER, KANSA_OUTPUT_LABEL_CONTENT_ID,
                      KANSA_OUTPUT_LABEL_CARRIER):
                out.attributes.pop(k, None)
        rec.attributes.update(out.attributes)
        if out.body is None:
            return None
        # the pipeline delivers it where the answer can still be rewritten
        return Verdict("allow", attributes=out.attributes, response=out.body)


def stage_from_environment() -> LabelStage:
    """A :class:`LabelStage` from ``$KANSA_LABELS`` (the labels file) and the keys in
    ``$KANSA_HOME``: the factory to name in a ``kansa.stages`` entry point so the SDK
    wrappers and the OTLP intake label too (kansa does not register it itself: without
    the file it would stop every surface from starting)::

        [project.entry-points."kansa.stages"]
        provenance = "kansa.provenance.stage:stage_from_environment"
    """
    import os

    from kansa.home import default_home

    path = os.environ.get("KANSA_LABELS")
    if not path:
        raise KansaError("KANSA_LABELS is not set: the provenance stage needs a labels file")
    return LabelStage(LabelConfig.load(path), ProvenanceKeys.load(default_home()))
