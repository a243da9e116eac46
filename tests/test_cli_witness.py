"""`kansa witness` end to end: keygen, serve (a real process), add, collect, receipts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cli_harness import run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])




def test_witness_serve_add_collect_and_witnessed_receipt(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run("init", "--origin", "example.com/witnessed-log", home=home)[0] == 0
    records = tmp_path / "r.jsonl"
    records.write_text("\n".join(json.dumps({"system": "bot", "input": f"q{i}"})
                                 for i in range(5)) + "\n")
    assert run("log", "append", str(records), home=home)[0] == 0

    key_file = tmp_path / "w.key"
    code, out = run("witness", "keygen", "--name", "witness.example.org/w1", "-o",
                    str(key_file), home=home)
    assert code == 0, out
    witness_vkey = out.strip().splitlines()[-1]
    assert witness_vkey.startswith("witness.example.org/w1+")
    assert key_file.stat().st_mode & 0o777 == 0o600
    code, out = run("witness", "keygen", "--name", "w2", "-o", str(key_file), home=home)
    assert code == 1 and "not overwriting" in out

    log_vkey = (home / "log.vkey").read_text().strip()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kansa", "witness", "serve", "--key", str(key_file),
         "--log", log_vkey, "--state", str(tmp_path / "witness.db"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{port}/add-checkpoint", content=b"x", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "witness did not start"
                time.sleep(0.1)

        code, out = run("witness", "collect", home=home)
        assert code == 1 and "no witnesses configured" in out
        code, out = run("witness", "add", f"http://127.0.0.1:{port}", witness_vkey, home=home)
        assert code == 0, out
        code, out = run("witness", "collect", home=home)
        assert code == 0, out
        assert "witness.example.org/w1" in out and "cosigned size 5" in out

        # the cosignature travels with the checkpoint, the export and the receipts
        code, out = run("checkpoint", home=home)
        assert "— witness.example.org/w1 " in out
        receipt = tmp_path / "r.tlog-proof"
        assert run("prove", "--index", "2", "-o", str(receipt), home=home)[0] == 0
        code, out = run("verify-receipt", str(receipt), "--key", log_vkey, "--witness",
                        witness_vkey, home=home)
        assert code == 0, out
        export_dir = tmp_path / "export"
        assert run("export", str(export_dir), home=home)[0] == 0
        assert "— witness.example.org/w1 " in (export_dir / "checkpoint").read_text()

        # grow the log: the witness needs a consistency proof, collect provides it
        assert run("log", "append", str(records), home=home)[0] == 0
        code, out = run("witness", "collect", home=home)
        assert code == 0 and "cosigned size 10" in out, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    # a receipt demanding a witness that never cosigned fails
    other = tmp_path / "other.key"
    code, out = run("witness", "keygen", "--name", "witness.example.org/w9", "-o", str(other),
                    home=home)
    other_vkey = out.strip().splitlines()[-1]
    code, out = run("verify-receipt", str(receipt), "--key", log_vkey, "--witness", other_vkey,
                    home=home)
    assert code == 1 and "cosign" in out

    # a dead witness is reported, not fatal to the command's output
    code, out = run("witness", "collect", home=home)
    assert code == 1 and "✗" in out
