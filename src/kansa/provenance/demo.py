"""The provenance demo (issue 10, item 6, first half), on a passed-in clock.

Label an answer at the capture seam, strip every label from the copy and edit it,
then trace the copy back to its record and prove the record with a receipt that
verifies offline against the log's key. ``kansa provenance demo`` narrates it;
tests/test_provenance.py runs it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kansa.api import Ledger
from kansa.capture.pipeline import Call, Pipeline
from kansa.ledger.receipt import verify_receipt
from kansa.provenance.keys import ProvenanceKeys, keygen
from kansa.provenance.labels import LABEL_PREFIX
from kansa.provenance.normalise import strip_invisible
from kansa.provenance.stage import LabelConfig, LabelStage
from kansa.provenance.trace import Tracer
from kansa.records.attributes import (
    GEN_AI_OUTPUT_MESSAGES,
)
from kansa.records.model import UsageRecord

ANSWER = (
    "Thank you for your question about the delayed shipment. Your order left our "
    "warehouse in Osaka on Monday and is now with the courier. Deliveries to Hokkaido "
    "take two to three extra days in winter, so it should arrive by Friday. If it has "
    "not arrived by then, reply to this message and we will send a replacement at no "
    "cost. We are sorry for the wait and appreciate your patience.")

LABELS = {"producer": "Example KK", "systems": {
    "support-bot": {"jurisdictions": ["CN", "JP"], "language": "en", "text_wrapper": True}}}


@dataclass
class DemoStep:
    title: str
    text: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    record_id: str
    delivered: str
    copy: str
    traced_to: str | None
    method: str | None
    receipt_verified: bool
    steps: list[DemoStep]


def strip_labels(text: str) -> str:
    """What someone removing the labels by hand would do: drop front matter, the
    bracketed disclosure line and every invisible character."""
    text = strip_invisible(text)
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.DOTALL)
    return "\n".join(line for line in text.splitlines()
                     if not re.fullmatch(r"\s*[\[【(].*(AI|人工智能).*[\]】)]\s*", line)).strip()


def copy_edit(text: str, rng: random.Random) -> str:
    """A human copy-edit: a few words swapped for synonyms, the last sentence dropped."""
    swaps = {"Thank you": "Thanks", "delayed": "late", "now": "currently",
             "should": "will likely", "reply to": "answer", "sorry": "very sorry",
             "appreciate": "value"}
    for a, b in swaps.items():
        if rng.random() < 0.9:
            text = text.replace(a, b)
    sentences = text.split(". ")
    return ". ".join(sentences[:-1]) + "."


def run_demo(home: Path, clock: Callable[[], datetime], *, seed: int = 7) -> DemoResult:
    """Run the demo in ``home`` (a new ledger home) with record times from ``clock``."""
    steps: list[DemoStep] = []
    ledger = Ledger.init(home, origin="demo.kansa/provenance")
    try:
        keygen(home, "Example KK", alg="ed25519", now=clock())
        keys = ProvenanceKeys.load(home)
        pipeline = Pipeline([LabelStage(LabelConfig.from_dict(LABELS), keys)])
        rec = UsageRecord(system="support-bot", ts=clock(), provider="openai",
                          operation="chat", request_model="gpt-4o-mini",
                          subject="customer-4711",
                          content={GEN_AI_OUTPUT_MESSAGES: [
                              {"role": "assistant", "content": ANSWER}]})
        body = {"id": "chatcmpl-demo", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": ANSWER}}]}
        call = _answered(body)
        pipeline.after(call, rec)
        delivered = _delivered(call)
        ledger.append(rec)
        steps.append(DemoStep("1. the gateway labels the answer and records what it applied",
                              delivered, {k: v for k, v in rec.attributes.items()
                                          if k.startswith(LABEL_PREFIX)}))
        copy = copy_edit(strip_labels(delivered), random.Random(seed))
        steps.append(DemoStep("2. someone strips every label and copy-edits the text", copy))
        tracer = Tracer(ledger, keys)
        n = tracer.index_new()
        steps.append(DemoStep("3. the index follower fingerprints new outputs",
                              facts={"indexed": n}))
        found = tracer.trace(copy.encode())
        if not found:
            steps.append(DemoStep("4. traceback found nothing"))
            return DemoResult(rec.id, delivered, copy, None, None, False, steps)
        best = found[0]
        summary = tracer.public_summary(best)
        entry = ledger.get(best.record_id).entry_bytes
        verify_receipt(summary["receipt"].encode(), ledger.verifier, entry)
        steps.append(DemoStep("4. traced back to its record; the receipt verifies",
                              facts={"record": summary["record"], "match": summary["match"],
                                     "log_index": summary["log_index"]}))
        return DemoResult(rec.id, delivered, copy, best.record_id, best.method, True, steps)
    finally:
        ledger.close()


def _answered(body: dict[str, Any]) -> Call:
    call = Call("gateway")
    call.answered(lambda: body, rewritable=True)
    return call


def _delivered(call: Call) -> str:
    """The answer text the caller received (the stage's replacement, as delivered)."""
    assert call.delivered is not None, "the stage did not rewrite the answer"
    got = json.loads(call.delivered)
    return str(got["choices"][0]["message"]["content"])
