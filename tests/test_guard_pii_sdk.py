"""The secrets and personal-data stage through the SDK wrapper (``kansa.wrap(client,
stages=[...])``) with a real openai client and the stand-in upstream that echoes what it
received: the upstream sees tokens only, the caller's answer has the values back, and the
record's content holds none of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

import kansa
from kansa.api import Ledger
from kansa.capture.sdk import flush, last_record_id
from kansa.guard.data_stage import DataGuardStage
from kansa.records.attributes import KANSA_GUARD_DATA_OUT_KINDS, KANSA_PIPELINE_REWRITTEN
from standin import Standin

MAIL = "taro.yamada.42@example.co.jp"
PHONE = "080-2718-2818"
TEXT = f"山田様の連絡先は{MAIL}、電話{PHONE}です。要約して。"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.init(tmp_path / "home")
    yield led
    led.close()


def test_wrap_takes_stages_and_the_data_guard_round_trips(ledger: Ledger,
                                                          standin: Standin) -> None:
    client = kansa.wrap(openai.OpenAI(base_url=standin.url, api_key="sk", max_retries=0),
                        ledger=ledger, system="bot", subject="taro",
                        stages=[DataGuardStage.for_ledger(ledger)])
    out = client.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": TEXT}])
    sent = json.dumps(standin.requests[-1]["body"], ensure_ascii=False)
    assert MAIL not in sent and PHONE not in sent  # only tokens left the process
    answer = out.choices[0].message.content or ""
    assert MAIL in answer and PHONE in answer  # restored for the caller
    flush(10)
    rec = ledger.get(str(last_record_id()))
    a = rec.entry["attributes"]
    assert {"email", "phone_jp"} <= set(a[KANSA_GUARD_DATA_OUT_KINDS])
    assert "guard.data:request" in a[KANSA_PIPELINE_REWRITTEN]
    assert rec.content is not None
    stored = json.dumps(rec.content, ensure_ascii=False)
    assert MAIL not in stored and PHONE not in stored


def test_wrap_rejects_something_that_is_not_a_stage(ledger: Ledger, standin: Standin) -> None:
    with pytest.raises(TypeError, match="not a pipeline stage"):
        kansa.wrap(openai.OpenAI(base_url=standin.url, api_key="sk"), ledger=ledger,
                   stages=[object()])  # type: ignore[list-item]
