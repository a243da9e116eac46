#!/usr/bin/env python
"""Red team: bad input to the `kansa` command line gets a clear error, never a traceback.

Feeds a catalogue of named bad inputs (malformed JSON, 1e400, 2**53, lone surrogates,
oversize entries, deep nesting, CEL bombs, huge literals, bad YAML, bad index.json, ...)
to `kansa log append`, `kansa packs validate`, `kansa replay` and `kansa packs update
--from DIR`, each as a subprocess bounded in memory and CPU time (resource.setrlimit) and
in wall time, and counts an input as *clear* when:

  - the exit status is non-zero (and not a signal: no kill, no crash),
  - nothing looks like a traceback or a Rust panic,
  - the message names the problem (a pattern per input), and
  - nothing was appended to the ledger.

    .venv/bin/python bench/redteam_badinput.py            # the whole catalogue, < 3 min
    .venv/bin/python bench/redteam_badinput.py -v         # also print every message
    .venv/bin/python bench/redteam_badinput.py --jobs 1   # one subprocess at a time

Prints "bad inputs tried | clear errors" per class and in total (the target is all).
Exit status 0 when every input got a clear error, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

MEMORY = 1536 * 1024 * 1024  # bytes of address space per subprocess
CPU_SECONDS = 30
WALL_SECONDS = 60
KANSA = [sys.executable, "-m", "kansa"]
GOOD = {"ts": "2026-11-22T09:30:00Z", "system": "support-bot", "subject": "user-7",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.x": ["a", "b"], "input": "hi"}


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


@dataclass
class Case:
    cls: str
    name: str
    args: list[str]  # {dir} is replaced by the case's own directory
    expect: str  # a regular expression the message must match
    files: dict[str, bytes]


@dataclass
class Result:
    case: Case
    ok: bool
    why: str
    output: str
    seconds: float


def _jl(*lines: str) -> dict[str, bytes]:
    good = json.dumps(GOOD)
    return {"in.jsonl": ("\n".join([good, *lines, good]) + "\n").encode("utf-8",
                                                                    "surrogatepass")}


def _pack(expr: str) -> str:
    return yaml.safe_dump({
        "pack": "redteam/bad", "version": "1", "title": "t", "publisher": "red team",
        "sources": ["https://example.org/p"], "jurisdiction": "example", "status": "draft",
        "effective_from": "2026-01-01",
        "obligations": [{"id": "o-1", "citation": {"article": "1"}, "role": "deployer",
                         "legal_force": "binding",
                         "text": {"en": {"kind": "summary", "text": "s"}},
                         "check": {"expr": expr}}]}, sort_keys=False, width=10**9)


def _lit(n: int) -> str:
    return "[" + ",".join(str(i % 10) for i in range(n)) + "]"


def catalogue() -> list[Case]:
    cases: list[Case] = []

    def jsonl(name: str, line: str, expect: str) -> None:
        cases.append(Case("log append (JSON Lines)", name, ["log", "append", "{dir}/in.jsonl"],
                          expect, _jl(line)))

    jsonl("malformed JSON", '{"system": "s", "input": ', r"line 2: not valid JSON")
    jsonl("not an object", "[1, 2, 3]", r"line 2: each line must be a JSON object")
    jsonl("NaN literal", '{"system": "s", "latency_ms": NaN}', r"line 2: NaN")
    jsonl("1e400 in content", '{"system": "s", "input": {"v": 1e400}}',
          r"line 2, field 'input'.*1e400")
    jsonl("1e400 as latency", '{"system": "s", "latency_ms": 1e400}',
          r"line 2, field 'latency_ms'")
    jsonl("-1e400 attribute", '{"system": "s", "gen_ai.x": -1e400}',
          r"line 2, field 'gen_ai.x'.*(infinite|1e400)")
    jsonl("2**53 attribute", '{"system": "s", "gen_ai.x": 9007199254740992}',
          r"line 2, field 'gen_ai.x'.*2\*\*53")
    jsonl("2**53 token count", '{"system": "s", "gen_ai.usage.output_tokens": 9007199254740993}',
          r"line 2, field 'gen_ai.usage.output_tokens'.*2\*\*53")
    jsonl("2**64 in content", '{"system": "s", "input": [18446744073709551616]}',
          r"line 2, field 'input'.*2\*\*53")
    jsonl("5,000-digit integer", '{"system": "s", "input": ' + "9" * 5000 + "}",
          r"line 2: .*digits")
    jsonl("lone surrogate in content", '{"system": "s", "input": "x\\ud800"}',
          r"line 2, field 'input'.*surrogate")
    jsonl("lone surrogate in system", '{"system": "\\udfff"}', r"line 2, field 'system'.*surrogate")
    jsonl("lone surrogate in subject", '{"system": "s", "subject": "\\ud800"}',
          r"line 2, field 'subject'.*surrogate")
    jsonl("lone surrogate in a key", '{"system": "s", "attributes": {"\\ud800": 1}}',
          r"line 2, field .*surrogate")
    jsonl("oversize entry (70 KiB of attributes)",
          json.dumps({"system": "s", **{f"gen_ai.a{i}": "x" * 1000 for i in range(70)}}),
          r"line 2: .*65535 are allowed")
    jsonl("content nested 200 deep", '{"system": "s", "input": ' + "[" * 200 + "]" * 200 + "}",
          r"line 2, field 'input': nested deeper than 64")
    jsonl("content nested 1,000,000 deep",
          '{"system": "s", "input": ' + "[" * 1_000_000 + "]" * 1_000_000 + "}",
          r"line 2: nested deeper than 64")
    jsonl("unknown field", '{"system": "s", "prompt": "hi"}', r"line 2, field 'prompt'")
    jsonl("bad timestamp", '{"system": "s", "ts": "yesterday"}', r"line 2, field 'ts'")
    jsonl("timestamp before year 1 in UTC", '{"system": "s", "ts": "0001-01-01T00:00:00+01:00"}',
          r"line 2, field 'ts'.*out of range")
    jsonl("bad outcome (prefix once)", '{"system": "s", "outcome": "meh"}',
          r"line 2, field 'outcome': outcome 'meh'")
    cases.append(Case("log append (JSON Lines)", "not UTF-8",
                      ["log", "append", "{dir}/in.jsonl"], r"not UTF-8",
                      {"in.jsonl": json.dumps(GOOD).encode() + b"\n\xff\xfe\xfd\n"}))
    cases.append(Case("log append (JSON Lines)", "20 MB line",
                      ["log", "append", "{dir}/in.jsonl"], r"line 2: line is longer",
                      _jl('{"system": "s", "input": "' + "x" * 20_000_000 + '"}')))

    def pack(name: str, text: str, expect: str, cls: str = "packs validate (CEL)") -> None:
        cases.append(Case(cls, name, ["packs", "validate", "{dir}/p.yaml"], expect,
                          {"p.yaml": text.encode("utf-8", "surrogatepass")}))

    four = "record.a.all(w, record.b.all(x, record.c.all(y, record.d.all(z, true))))"
    pack("4-level .all()", _pack(four), r"obligation 'o-1': CEL expression too costly at 1:")
    pack("4-level .all() over literals", _pack(
        f"{_lit(100)}.all(w, {_lit(100)}.all(x, {_lit(100)}.all(y, {_lit(100)}"
        ".all(z, w+x+y+z >= 0))))"), r"obligation 'o-1': CEL expression too costly")
    pack("3-deep comprehension", _pack("[1].all(x, [1].all(y, [1].all(z, true)))"),
         r"nested 3 deep")
    pack("quadratic over the record", _pack("record.a.exists(x, x in record.b)"),
         r"evaluation steps")
    pack("map of record lists", _pack("record.a.map(x, record.a + record.a).size() > 0"),
         r"evaluation steps")
    pack("filter() over a record list", _pack("record.a.filter(x, x > 0).size() > 0"),
         r"map\(\) and filter\(\)")
    pack("matches() in a comprehension", _pack('record.a.exists(s, s.matches("(a+)+$"))'),
         r"matches\(\) compiles")
    pack("200k-element literal", _pack(_lit(200_000) + ".size() > 0"), r"characters long")
    pack("1,000-element literal", _pack(_lit(1000) + ".size() > 0"),
         r"literal of 1000 elements")
    pack("100k nested parentheses", _pack("(" * 100_000 + "true" + ")" * 100_000),
         r"characters long")
    pack("2,000 nested parentheses", _pack("(" * 2000 + "true" + ")" * 2000),
         r"nested more than")
    pack("long string literal", _pack("'" + "a" * 3000 + "' == record.outcome"),
         r"string literal")
    pack("CEL syntax error (prefix once)", _pack("record.outcome == "),
         r"p\.yaml:\d+: obligation 'o-1': CEL syntax error at 1:\d+")
    y = "packs validate (YAML)"
    pack("flow sequence nested 10,000 deep", "pack: " + "[" * 10_000 + "]" * 10_000,
         r"p\.yaml:1: YAML: nested deeper than 64", y)
    pack("block sequence nested 3,000 deep", "- " * 3000 + "x", r"nested deeper than 64", y)
    pack("mapping nested 3,000 deep", "{a: " * 3000 + "1" + "}" * 3000,
         r"nested deeper than 64", y)
    laughs = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(8))
    pack("billion laughs (aliases)", laughs, r"too large or too deeply nested", y)
    pack("unclosed quote", "pack: 'abc\nversion: 1\n", r"p\.yaml:\d+: YAML:", y)
    pack("tab indentation", "pack:\n\t- x\n", r"p\.yaml:\d+: YAML:", y)
    pack("python object tag", "pack: !!python/object/apply:os.system [ls]\n",
         r"p\.yaml:1: .*tag", y)
    pack("binary tag", "pack: !!binary aGVsbG8=\n", r"unsupported YAML tag", y)
    pack("duplicate key", _pack("true") + "pack: again\n", r"duplicate key 'pack'", y)
    pack("1e999", _pack("true").replace("status: draft", "status: draft\nnotes: 1.0e+999"),
         r"p\.yaml:\d+: '1\.0e\+999' is not a finite number", y)
    pack("5,000-digit number", _pack("true").replace(
        "status: draft", "status: draft\nnotes: " + "9" * 5000), r"p\.yaml:\d+: cannot read",
        y)
    pack("!!set and !!omap", _pack("true") + "extra: !!set {a, b}\n", r"unsupported YAML tag", y)
    pack("empty file", "", r"no YAML document", y)
    cases.append(Case(y, "not UTF-8", ["packs", "validate", "{dir}/p.yaml"], r"UTF-8",
                      {"p.yaml": b"pack: \xff\xfe\n"}))

    r = "replay"
    bomb = _pack(four)
    cases.append(Case(r, "CEL bomb pack", ["replay", "--pack", "{dir}/p.yaml"],
                      r"obligation 'o-1': CEL expression too costly", {"p.yaml": bomb.encode()}))
    cases.append(Case(r, "200k literal pack", ["replay", "--pack", "{dir}/p.yaml"],
                      r"characters long",
                      {"p.yaml": _pack(_lit(200_000) + ".size() > 0").encode()}))

    def systems(name: str, text: str, expect: str) -> None:
        cases.append(Case(r, f"systems.yaml: {name}", ["replay", "--systems", "{dir}/s.yaml"],
                          expect, {"s.yaml": text.encode("utf-8", "surrogatepass")}))

    systems("nested 10,000 deep", "support-bot: " + "[" * 10_000, r"nested deeper than 64")
    systems("billion laughs", laughs.replace("a: &a", "s: &a"), r"100,000 values")
    systems("100-digit integer", "support-bot: {n: " + "9" * 100 + "}", r"64 bits")
    systems("not a mapping", "- a\n- b\n", r"must map each system name")
    systems("bad YAML", "support-bot: {a: [}\n", r"not valid YAML")
    systems("binary tag", "support-bot: {a: !!binary aGVsbG8=}\n", r"not supported")

    f = "packs update --from (index.json)"

    def feed(name: str, data: bytes, expect: str) -> None:
        cases.append(Case(f, name, ["packs", "update", "--from", "{dir}/feed"], expect,
                          {"feed/index.json": data}))

    feed("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, r"nested deeper than 64")
    feed("nested 100 deep inside", b'{"kansa_pack_feed": 1, "packs": ' + b"[" * 100
         + b"]" * 100 + b"}", r"nested deeper than 64")
    feed("malformed JSON", b'{"kansa_pack_feed": 1, "packs": [', r"not valid JSON")
    feed("not UTF-8", b"\xff\xfe{}", r"not valid JSON")
    feed("5,000-digit integer", b'{"kansa_pack_feed": ' + b"9" * 5000 + b', "packs": []}',
         r"not valid JSON.*digits")
    feed("wrong format", b'{"kansa_pack_feed": "' + b"x" * 5000 + b'", "packs": []}',
         r"is not supported")
    feed("path escapes the feed", json.dumps({"kansa_pack_feed": 1, "packs": [
        {"pack": "a", "version": "1", "path": "../../etc/passwd", "sig": "x.sig"}]}).encode(),
        r"relative path inside the feed")
    feed("entry not an object", b'{"kansa_pack_feed": 1, "packs": [1]}',
         r"must have exactly pack, version, path and sig")
    cases.append(Case(f, "no index.json", ["packs", "update", "--from", "{dir}/feed"],
                      r"index\.json", {"feed/other": b""}))
    return cases


_TRACE = re.compile(r"Traceback \(most recent call last\)|panicked at|PanicException|"
                    r"RecursionError|MemoryError|^\w+Error: ", re.M)


def run_case(case: Case, base: Path, home: Path, size: Callable[[], int]) -> Result:
    d = base / re.sub(r"\W+", "-", f"{case.cls}-{case.name}")
    for rel, data in case.files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    args = [a.replace("{dir}", str(d)) for a in case.args]
    env = {**os.environ, "KANSA_HOME": str(home), "COLUMNS": "400", "NO_COLOR": "1"}
    t0 = time.monotonic()
    try:
        p = subprocess.run([*KANSA, *args], capture_output=True, env=env,
                           timeout=WALL_SECONDS, preexec_fn=_limits)
    except subprocess.TimeoutExpired:
        return Result(case, False, f"no answer within {WALL_SECONDS} s", "",
                      time.monotonic() - t0)
    secs = time.monotonic() - t0
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    flat = " ".join(out.split())
    if p.returncode < 0:
        why = f"killed by signal {-p.returncode} (time or memory bound)"
    elif p.returncode == 0:
        why = "exit status 0"
    elif _TRACE.search(out):
        why = "traceback or panic"
    elif not re.search(case.expect, flat, re.S):
        why = f"message does not match {case.expect!r}"
    else:
        why = ""
    return Result(case, not why, why, out, secs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="print every message")
    ap.add_argument("--jobs", type=int, default=2, help="subprocesses at a time (default 2)")
    args = ap.parse_args()
    from kansa.api import Ledger

    with tempfile.TemporaryDirectory(prefix="kansa-redteam-") as tmp:
        base = Path(tmp)
        home = base / "home"
        subprocess.run([*KANSA, "init", "--origin", "redteam.example/log"], check=True,
                       env={**os.environ, "KANSA_HOME": str(home)}, capture_output=True)
        seed = base / "seed.jsonl"
        seed.write_text("\n".join(json.dumps({**GOOD, "system": s})
                                  for s in ("support-bot", "hr-screening")) + "\n")
        subprocess.run([*KANSA, "log", "append", str(seed)], check=True,
                       env={**os.environ, "KANSA_HOME": str(home)}, capture_output=True)

        def size() -> int:
            with Ledger.open(home=home) as lg:
                return int(lg.log.size())

        before = size()
        cases = catalogue()
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda c: run_case(c, base, home, size), cases))
        appended = size() - before
        total_secs = time.monotonic() - t0

    classes: dict[str, list[Result]] = {}
    for res in results:
        classes.setdefault(res.case.cls, []).append(res)
    if appended:  # one shared ledger: an append by any case fails every log append case
        for res in classes.get("log append (JSON Lines)", []):
            res.ok, res.why = False, f"{appended} record(s) appended"
    w = max(len(c) for c in classes) + 2
    print(f"{'class':<{w}} {'bad inputs tried':>16} | {'clear errors':>12}")
    print("-" * (w + 32))
    for cls, rs in classes.items():
        print(f"{cls:<{w}} {len(rs):>16} | {sum(r.ok for r in rs):>12}")
    print("-" * (w + 32))
    ok = sum(r.ok for r in results)
    print(f"{'total':<{w}} {len(results):>16} | {ok:>12}")
    print(f"(clear: non-zero exit, no traceback or panic, message names the problem, nothing "
          f"appended; {total_secs:.0f} s, slowest case "
          f"{max(r.seconds for r in results):.1f} s; limits {MEMORY >> 20} MiB, "
          f"{CPU_SECONDS} s CPU, {WALL_SECONDS} s wall each)")
    for res in results:
        if not res.ok or args.verbose:
            mark = "ok  " if res.ok else "FAIL"
            print(f"\n{mark} {res.case.cls} / {res.case.name}: {res.why or 'clear'}")
            lines = [ln for ln in res.output.splitlines() if ln.strip()]
            for ln in lines[:6]:
                print("     " + ln[:300])
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
