"""Red-team: an erase that stops between its transaction and its record."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kansa.api import Ledger
from kansa.cli import app
from kansa.errors import VerificationError
from kansa.ledger.note import Signer


def _open(url: str) -> Ledger:
    return Ledger.open(url, signer=Signer.generate("test.kansa/erase"), master_key=b"m" * 32)


def test_erase_interrupted_before_its_record_can_be_completed(store_url: str) -> None:
    """Ledger.erase destroys the key in one transaction and appends its kansa.erasure
    record after it. Killed (or the store gone) in between, `verify` failed for ever:
    the second erase found no key ("already erased") and appended nothing."""
    lg = _open(store_url)
    try:
        for i in range(3):
            lg.append({"system": "s", "subject": "alice", "input": f"secret {i}"})
        lg.append({"system": "s", "subject": "bob", "input": "b"})
        lg.checkpoint()
        lg.vault.erase("alice")  # the transaction committed; the process dies here
        with pytest.raises(VerificationError, match="run the same erase again"):
            lg.verify()
        e = lg.erase("alice")
        assert e.pseudonym is None and len(e.completed) == 1
        lg.checkpoint()
        lg.verify()
        # nothing left to complete: the usual "already erased"
        with pytest.raises(Exception, match="already erased"):
            lg.erase("alice")
        # an ordinary erase afterwards is unaffected
        assert lg.erase("bob").completed == ()
        lg.checkpoint()
        lg.verify()
        assert [r.content_state for r in lg.find(with_content=True)
                if r.entry.get("kind") == "gen_ai.call"] == ["erased"] * 4
    finally:
        lg.close()


def test_cli_erase_completes_an_interrupted_erase(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"KANSA_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    assert runner.invoke(app, ["init"], env=env).exit_code == 0
    with Ledger.open(home=tmp_path / "home") as lg:
        lg.append({"system": "s", "subject": "alice", "input": "x"})
        lg.vault.erase("alice")
    assert runner.invoke(app, ["verify"], env=env).exit_code != 0
    r = runner.invoke(app, ["erase", "--subject", "alice"], env=env)
    assert r.exit_code == 0, r.output
    assert "stopped before recording itself" in r.output
    r = runner.invoke(app, ["verify"], env=env)
    assert r.exit_code == 0, r.output
