"""DetectStage in the capture pipeline: observe and flag, never block."""

from __future__ import annotations

from typing import Any

import pytest

from kansa.capture.pipeline import Call, Pipeline
from kansa.capture.shapes import CallInfo
from kansa.provenance.detect.detector import DetectResult, check_text
from kansa.provenance.detect.features import Features
from kansa.provenance.detect.stage import DetectStage, input_text

LONG = "A sentence long enough to be scored by the stage, repeated. " * 3
_F = Features(tokens=40, ll=-2.0, logrank=1.0, entropy=2.0, fdg=1.0, lrr=2.0)


class FakeDetector:
    def __init__(self, score: float, verdict: str) -> None:
        self.score_value, self.verdict, self.seen = score, verdict, []

    def score(self, text: str, language: str | None = None) -> DetectResult:
        check_text(text)
        self.seen.append(text)
        return DetectResult(self.score_value, self.verdict, "en", "smollm2-135m", 40, False,
                            0.02, 90, {"0.01": 0.9, "0.05": 0.7}, _F)


def _call(request: Any) -> Call:
    return Call("gateway", info=CallInfo(system="s", provider="openai", operation="chat",
                                         request=request))


@pytest.mark.parametrize(("request_body", "want"), [
    ({"messages": [{"role": "user", "content": "old"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": "new"}]}, "new"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "p1"},
                                                {"type": "image_url", "image_url": {}},
                                                {"type": "text", "text": "p2"}]}]}, "p1\np2"),
    ({"input": "responses api"}, "responses api"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "r2"}]}]}, "r2"),
    ({"prompt": ["a", "b"]}, "a\nb"),
    ({"model": "m"}, ""),
    (None, ""),
])
def test_input_text_reads_the_newest_user_text(request_body: Any, want: str) -> None:
    assert input_text(request_body) == want


def test_a_machine_like_input_is_flagged_and_recorded() -> None:
    det = FakeDetector(0.95, "likely-machine")
    call = _call({"messages": [{"role": "user", "content": LONG}]})
    assert Pipeline([DetectStage(det)]).before(call) is None  # never refused
    assert det.seen == [LONG]
    assert call.attributes["kansa.detect.score"] == 0.95
    assert call.attributes["kansa.detect.language"] == "en"
    assert call.attributes["kansa.detect.verdict"] == "likely-machine"
    assert call.attributes["kansa.detect.p_human"] == 0.02


def test_a_human_like_input_is_recorded_and_allowed() -> None:
    stage = DetectStage(FakeDetector(0.1, "no-signal"))
    v = stage.before(_call({"messages": [{"role": "user", "content": LONG}]}))
    assert v is not None and v.decision == "allow"
    assert v.attributes["kansa.detect.score"] == 0.1


def test_short_and_unscorable_inputs() -> None:
    det = FakeDetector(0.9, "likely-machine")
    stage = DetectStage(det, min_chars=100)
    assert stage.before(_call({"messages": [{"role": "user", "content": "hi"}]})) is None
    assert det.seen == []
    v = stage.before(_call({"prompt": "\x00\x01 binary " * 20}))
    assert v is not None and v.decision == "allow"
    assert "binary" in v.attributes["kansa.detect.error"]


def test_the_real_detector_scores_a_japanese_input() -> None:
    text = ("本日の会議では、来年度の予算案について議論が行われました。委員からは、図書館の"
            "開館時間を延長するための予算を増やすべきだという意見が多く出されました。")
    call = _call({"messages": [{"role": "user", "content": text}]})
    Pipeline([DetectStage(min_chars=20)]).before(call)
    assert call.attributes["kansa.detect.language"] == "ja"
    assert 0.0 <= call.attributes["kansa.detect.score"] <= 1.0


def test_on_an_event_loop_the_stage_scores_in_a_worker_thread() -> None:
    import asyncio
    import threading

    seen: list[str] = []

    class ThreadNoting(FakeDetector):
        def score(self, text: str, language: str | None = None) -> DetectResult:
            seen.append(threading.current_thread().name)
            return super().score(text, language)

    call = _call({"messages": [{"role": "user", "content": LONG}]})
    refusal = asyncio.run(Pipeline([DetectStage(ThreadNoting(0.8, "possibly-machine"))])
                          .abefore(call))
    assert refusal is None and call.attributes["kansa.detect.verdict"] == "possibly-machine"
    assert seen and seen[0] != threading.main_thread().name
