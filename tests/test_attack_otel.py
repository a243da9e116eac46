"""Red-team: OTLP spans carrying lone surrogates (JSON "\\ud800" escapes) still become
records: the span stands for a model call that happened; refusing it lost the record."""

from __future__ import annotations

from pathlib import Path

import kansa
from kansa.capture.otel import ingest, spans_from_otlp_json
from kansa.ledger.note import Signer

BODY = rb"""{"resourceSpans": [{"resource": {"attributes": [
  {"key": "service.name", "value": {"stringValue": "svc\ud800"}}]},
 "scopeSpans": [{"scope": {"name": "s\udfff"}, "spans": [{
  "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
  "name": "chat \ud800", "kind": 3, "startTimeUnixNano": "1767225600000000000",
  "endTimeUnixNano": "1767225601000000000",
  "status": {"code": 2, "message": "bad \udc00"},
  "attributes": [
   {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
   {"key": "gen_ai.request.model", "value": {"stringValue": "m\ud800"}},
   {"key": "gen_ai.user", "value": {"stringValue": "user\ud800"}},
   {"key": "gen_ai.x\udc01", "value": {"stringValue": "v"}},
   {"key": "gen_ai.prompt", "value": {"stringValue": "hi \ud83d\ude00 \ud800"}}]}]}]}]}"""


def test_surrogates_everywhere_in_a_span_still_record_it(tmp_path: Path) -> None:
    lg = kansa.Ledger.open(f"sqlite:///{tmp_path / 'l.db'}",
                           signer=Signer.generate("test.kansa/otel"), master_key=b"o" * 32)
    try:
        spans = spans_from_otlp_json(BODY)
        result = ingest(lg, spans)
        assert (result.recorded, result.rejected) == (1, 0), result.problems
        [rec] = list(lg.find(with_content=True))
        assert rec.entry["gen_ai.request.model"] == "m\\ud800"
        assert rec.content is not None and rec.content["input"] == "hi \U0001f600 \\ud800"
        assert [r.id for r in lg.find(subject="user\\ud800")] == [rec.id]
        lg.checkpoint()
        lg.verify()
    finally:
        lg.close()
