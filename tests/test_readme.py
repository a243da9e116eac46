"""The README's Python snippets run as written, each in a fresh interpreter, against a
ledger in a temporary $KANSA_HOME (and, for the SDK snippet, a stand-in OpenAI)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kansa
from kansa.capture.standin import BackgroundServer, create_standin_app

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"^```python\n(.*?)^```", README.read_text("utf-8"), re.M | re.S)


@pytest.fixture(scope="module")
def openai_url() -> Iterator[str]:
    with BackgroundServer(create_standin_app()) as server:
        yield f"{server.url}/v1"


def test_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 2
    assert any("asyncio.run(main())" in s for s in SNIPPETS)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_python_snippet_runs(snippet: str, tmp_path: Path, openai_url: str) -> None:
    home = tmp_path / "home"
    with kansa.Ledger.init(home):  # what 'kansa init' does
        pass
    env = {**os.environ, "KANSA_HOME": str(home), "OPENAI_BASE_URL": openai_url,
           "OPENAI_API_KEY": "sk-readme"}
    r = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with kansa.Ledger.open(home=home) as lg:
        records = list(lg.find())
    assert records, "the snippet recorded nothing"
    if "aappend" in snippet:
        # the sync append and the async one, both durable; main() printed the second's id
        assert len(records) == 2
        assert r.stdout.split() == [records[1].id, "1"]
    if "kansa.wrap" in snippet:
        kinds = [rec.entry.get("kind") for rec in records]
        assert "tool.call" in kinds and "agent.step" in kinds
        call = next(rec for rec in records if rec.entry.get("system") == "support-bot")
        assert call.entry["outcome"] == "ok"


def test_readme_record_example_appends(tmp_path: Path) -> None:
    """The README's example record line is a valid record, attributes and all."""
    import json

    (block,) = re.findall(r"^```json\n(.*?)^```", README.read_text("utf-8"), re.M | re.S)
    record = json.loads(block)
    assert record["gen_ai.operation.name"] == "chat" and record["attributes"]
    with kansa.Ledger.init(tmp_path / "home") as lg:
        r = lg.append(record)
        entry = lg.get(r.id).entry
    assert entry["gen_ai.operation.name"] == "chat"
    assert entry["attributes"] == record["attributes"]
