"""`kansa detect text` with the real models (the extra kansa[detect] is installed in CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from kansa.cli import app
from kansa.provenance.detect.detector import VERDICTS

runner = CliRunner()

# SmolLM2-135M's own greedy continuation of "The city council announced on Monday that"
MACHINE = (
    "The city council announced on Monday that it will be removing the 2023-2024 tax "
    "credits from the state's budget.\n\nThe tax credits, which were set to expire in "
    "2023, will expire on January 1, 2024, and will be replaced by a new tax credit of "
    "1.25% of the state's annual property tax revenue. The tax credit will be used to "
    "fund a new public"
)
# written for this test
HUMAN = (
    "Grandpa swore the pike in Lake Hollis bit only on Thursdays, and only if you hummed "
    "something by Patsy Cline, badly. We never caught one. What we caught instead was a "
    "sunburn, a rusted Schwinn fender, and a lifelong suspicion of anyone selling bait "
    "out of a Buick trunk at dawn."
)
JAPANESE = (
    "本日の会議では、来年度の予算案について議論が行われました。委員からは、図書館の開館時間を"
    "延長するための予算を増やすべきだという意見が多く出されました。一方で、新しい橋の建設に"
    "ついては、技術者の報告を待ってから判断することになりました。"
)


def _run(args: list[str], stdin: str | bytes | None = None) -> tuple[int, list[dict], str]:
    r = runner.invoke(app, ["detect", "text", *args], input=stdin)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    return r.exit_code, lines, r.stderr


def test_one_text_from_stdin_gives_a_score_with_its_uncertainty() -> None:
    code, out, _ = _run(["-"], MACHINE)
    assert code == 0 and len(out) == 1
    r = out[0]
    assert r["id"] == "-" and r["language"] == "en" and r["model"] == "smollm2-135m"
    assert 0.0 <= r["score"] <= 1.0 and r["verdict"] in VERDICTS
    u = r["uncertainty"]
    assert 0 < u["p_human"] <= 1 and u["n_calibration_human"] >= 20
    assert u["thresholds"]["fpr_0.01"] >= u["thresholds"]["fpr_0.05"]
    assert u["tokens"] > 40 and u["truncated"] is False


def test_a_model_greedy_text_scores_above_a_quirky_human_one(tmp_path: Path) -> None:
    f = tmp_path / "human.txt"
    f.write_text(HUMAN, encoding="utf-8")
    _, (human,), _ = _run([str(f)])
    _, (machine,), _ = _run(["-"], MACHINE)
    assert machine["score"] > human["score"]
    assert machine["verdict"] in ("likely-machine", "possibly-machine")
    assert human["verdict"] == "no-signal"
    assert machine["uncertainty"]["p_human"] < human["uncertainty"]["p_human"]


def test_jsonl_keeps_every_good_line_and_names_each_bad_one(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join([
        json.dumps({"id": "ja-1", "text": JAPANESE}, ensure_ascii=False),
        '{"id": "broken", "text": ',
        json.dumps({"id": "no-text"}),
        json.dumps({"id": "empty", "text": "   "}),
        json.dumps({"id": 7, "text": MACHINE}),
    ]) + "\n", encoding="utf-8")
    code, out, err = _run(["--jsonl", str(f)])
    assert code == 1
    scored = {o["id"]: o for o in out if "score" in o}
    assert set(scored) == {"ja-1", 7}
    assert scored["ja-1"]["language"] == "ja" and scored["ja-1"]["model"] == "gemma3-270m"
    assert scored[7]["language"] == "en"
    errors = {o["line"]: o["error"] for o in out if "error" in o}
    assert set(errors) == {2, 3, 4}
    assert "line 2:" in err and "line 3:" in err and "empty" in errors[4]
    assert "3 line(s) could not be scored" in err


def test_binary_and_missing_files_get_a_clear_error(tmp_path: Path) -> None:
    b = tmp_path / "x.bin"
    b.write_bytes(b"\x00\x01\x02\xff\xfe" * 50)
    code, out, err = _run([str(b)])
    assert code == 1 and out == [] and "not UTF-8" in err
    code, _, err = _run([str(tmp_path / "nope.txt")])
    assert code == 1 and "no such file" in err


def test_without_the_extra_the_command_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['numpy'] = None\n"
            "from kansa.cli import main\n"
            "sys.argv = ['kansa', 'detect', 'text', '-']\n"
            "main()\n")
    r = subprocess.run([sys.executable, "-c", code], input=b"some text", capture_output=True,
                       timeout=60)
    assert r.returncode == 1
    assert b"pip install 'kansa[detect]'" in r.stderr
