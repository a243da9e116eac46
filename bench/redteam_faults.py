"""Red team: no model call without its record.

Runs every fault class of tests/fault_classes.py (lone surrogates in every caller string,
oversize requests and answers, upstream 500 / hang / reset / partial stream, client abort
mid-stream) ``--tries`` times against a live ``kansa gateway`` process (the CLI, SQLite
ledger in a temp home) and the stand-in upstream (tests/standin.py), then stops the
gateway, opens its ledger and prints per fault class:

    tries | upstream calls (requests the stand-in received, by nonce) | records (of those
    tries) | upstream calls recorded | ids named to clients and found in the ledger

and the total "faults with records == upstream calls: X/Y", where a fault class counts when
every upstream call it made has its record and every x-kansa-record id named to a client
is in the ledger (target: always). Requests refused before the upstream (surrogates, 413)
are records without an upstream call. Figures, not assertions; tests/test_gateway_faults.py
asserts the same.

    .venv/bin/python bench/redteam_faults.py [--tries 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the fault catalogue and the stand-in live there

from fault_classes import FAULT_CONFIG, FAULTS, Ctx, Seen, audit, new_nonce  # noqa: E402
from kansa.api import Ledger  # noqa: E402
from standin import Standin  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _gateway(upstream: str, home: Path) -> Iterator[tuple[str, int]]:
    """`kansa gateway` as a process: read_timeout from a config file, the response limit
    from the CLI flag (both ways of setting it exercised)."""
    cfg = home.parent / "gateway.toml"
    cfg.write_text(f'read_timeout = {FAULT_CONFIG["read_timeout"]}\n'
                   f'[[upstream]]\nbase_url = "{upstream}"\n')
    port = _free_port()
    kansa = str(Path(sys.executable).with_name("kansa"))
    proc = subprocess.Popen(
        [kansa, "gateway", "--config", str(cfg), "--port", str(port), "--home", str(home),
         "--max-response-bytes", str(FAULT_CONFIG["max_response_bytes"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        end = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if proc.poll() is not None or time.monotonic() > end:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise SystemExit(f"the gateway did not start: {err}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # its own session: only what we started
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tries", type=int, default=5, help="runs of each fault class (5)")
    ap.add_argument("--stream-bomb-mb", type=int, default=300,
                    help="what the gzip SSE stream expands to, MB (300, as in the issue)")
    args = ap.parse_args()
    console = Console(width=150)  # one line per fault class, also when piped
    standin = Standin().start()
    tries: list[tuple[str, str, Seen]] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kansa-redteam-") as tmp:
        home = Path(tmp) / "home"
        subprocess.run([str(Path(sys.executable).with_name("kansa")), "init", "--home",
                        str(home), "--origin", "redteam.example/log"], check=True,
                       stdout=subprocess.DEVNULL)
        with _gateway(standin.url, home) as (url, pid):
            ctx = Ctx(url, standin, big_stream=args.stream_bomb_mb * 1000 * 1000)
            for i in range(args.tries):
                for name, fault in FAULTS.items():
                    nonce = new_nonce()
                    try:
                        seen = fault(ctx, nonce)
                    except Exception as e:  # a client-side surprise is a finding, not a crash
                        seen = Seen([], False, f"client error {e!r}")
                    tries.append((name, nonce, seen))
                console.print(f"  round {i + 1}/{args.tries} done "
                              f"({time.monotonic() - t0:.0f} s)", style="dim")
            time.sleep(0.5)  # a client that left mid-stream is recorded once noticed
            rss = _peak_rss_mb(pid)
        with Ledger.open(home=home) as ledger:
            tallies = audit(ledger, standin, tries)
            try:
                verified = f"ok ({ledger.verify().entries_checked} entries)"
            except Exception as e:  # a broken log is a finding to print
                verified = f"FAILED: {e}"
    standin.stop()

    table = Table(title=f"no model call without its record: {args.tries} tries per fault "
                        "class, kansa gateway (SQLite) + stand-in upstream")
    for col in ("fault class", "tries", "documented answer", "upstream calls", "records",
                "upstream calls recorded", "ids named to client and found"):
        table.add_column(col, justify="left" if col == "fault class" else "right")
    good = 0
    for name, t in tallies.items():
        good += t.sound
        table.add_row(name, str(t.tries), f"{t.expected}/{t.tries}", str(t.upstream_calls),
                      str(t.records), f"{t.upstream_recorded}/{t.upstream_calls}",
                      f"{t.named_found}/{t.named}",
                      style=None if t.sound else "bold red")
    console.print(table)
    print(f"faults with records == upstream calls: {good}/{len(tallies)}")
    print(f"ledger verify: {verified}; gateway peak RSS {rss:.0f} MB "
          f"(limits: max_response_bytes {FAULT_CONFIG['max_response_bytes']}, read_timeout "
          f"{FAULT_CONFIG['read_timeout']} s; the gzip stream expands to "
          f"{args.stream_bomb_mb} MB); {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
