"""``kansa provenance keygen|verify|index|serve|demo``: label what our models produce and
answer "did our system produce this?".

    kansa provenance keygen --org "Example KK"          # once: label key + C2PA certificate
    kansa gateway --upstream URL --labels labels.yaml   # label answers as they pass
    kansa provenance index                              # fingerprint new outputs
    kansa provenance verify answer.txt                  # which record is this from?
    kansa provenance serve --port 8790                  # the public detection endpoint

Listed in ``kansa.cli.COMMANDS``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from kansa.cli._common import HomeOpt, StoreOpt, command_group, console, out
from kansa.cli._common import errors as _errors
from kansa.records.attributes import (
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
)

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.provenance.trace import Tracer

app = command_group(
    "provenance",
    "Label what your AI systems produce (visible disclosures, GB 45438 AIGC metadata, C2PA "
    "manifests for images) and trace a text or image back to the record that produced it, "
    "with a receipt anyone can verify.\n\n"
    "Start with **kansa provenance keygen --org NAME**, then run the gateway with "
    "**--labels labels.yaml** (see docs/design/provenance.md for the file).")


def _home(home: Path | None) -> Path:
    from kansa.home import default_home
    return home if home is not None else default_home()


def _tracer(home: Path | None, store: str | None) -> tuple[Ledger, Tracer]:
    from kansa.api import Ledger
    from kansa.provenance.keys import ProvenanceKeys
    from kansa.provenance.trace import Tracer

    h = _home(home)
    keys = ProvenanceKeys.load(h)
    ledger = Ledger.open(store, home=h)
    return ledger, Tracer(ledger, keys)


@app.command("keygen")
def keygen_command(
    org: Annotated[str, typer.Option("--org", help="The organisation's name: the C2PA "
                                     "certificate's subject and the labels' producer.")],
    alg: Annotated[str, typer.Option("--alg", help="C2PA signing algorithm: es256 or "
                                     "ed25519 (both verify with c2pa-rs).")] = "es256",
    force: Annotated[bool, typer.Option("--force", help="Replace existing keys (labels and "
                                        "fingerprints made with the old ones stop "
                                        "verifying).")] = False,
    home: HomeOpt = None,
) -> None:
    """Make the organisation's provenance keys in $KANSA_HOME/provenance/: a secret for
    label bindings and the fingerprint index, and a self-signed C2PA signing certificate
    (publish c2pa.pem so verifiers can trust it; nothing is sent anywhere)."""
    from kansa.provenance.keys import keygen

    with _errors():
        d = keygen(_home(home), org, alg=alg, now=datetime.now(UTC), force=force)
    out.print(f"provenance keys in {escape(str(d))}: secret.key (keep it secret), "
              f"c2pa.key, c2pa.pem (publish this certificate)")


@app.command("label")
def label_command(
    file: Annotated[Path, typer.Argument(help="A PNG or JPEG image, or a text/Markdown/"
                                         "HTML file, produced by the system.")],
    record: Annotated[str, typer.Option("--record", help="The id of the record that "
                                        "produced it (the labels name it).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the "
                                         "labelled file.")],
    producer: Annotated[str, typer.Option("--producer", help="GB 45438 ContentProducer "
                                          "(your organisation's name or code).")],
    jurisdiction: Annotated[list[str] | None, typer.Option(
        "--jurisdiction", help="Where the output is offered (repeatable): CN, EU, KR, "
        "US-CA, JP; chooses the visible label of a text.")] = None,
    language: Annotated[str, typer.Option("--language", help="ja or en.")] = "en",
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Label a file produced outside the gateway: images get GB 45438 XMP and a C2PA
    manifest signed with your certificate; text gets the visible label and, for Markdown
    or HTML, the AIGC metadata. The record must exist in the ledger."""
    from kansa.api import Ledger
    from kansa.provenance.keys import ProvenanceKeys
    from kansa.provenance.labels import TextLabel, aigc, label_text
    from kansa.provenance.media import label_image, sniff

    with _errors():
        h = _home(home)
        keys = ProvenanceKeys.load(h)
        data = _read(file)
        with Ledger.open(store, home=h) as ledger:
            entry = ledger.get(record).entry  # refuses an unknown record
        if sniff(data) is not None:
            got, marks = label_image(data, keys, record_id=record,
                                     system=str(entry.get("system", "")), producer=producer,
                                     aigc_fields=aigc(keys.label_key, producer, record))
            output.write_bytes(got)
        else:
            from kansa.errors import FormatError
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError(f"{file}: not UTF-8 text, nor a PNG or JPEG image"
                                  ) from None
            lab = label_text(text, TextLabel(producer, tuple(jurisdiction or ()), language),
                             keys.label_key, record)
            marks = lab.marks
            output.write_text(lab.text, encoding="utf-8")
    out.print(f"wrote {escape(str(output))}: marks {', '.join(marks) or 'none'} "
              f"(record {record})")


@app.command("index")
def index_command(home: HomeOpt = None, store: StoreOpt = None) -> None:
    """Fingerprint the outputs appended since the last run (and drop the fingerprints
    of erased subjects). Resumes where it stopped; 'serve --follow-every' does this
    continuously."""
    with _errors():
        ledger, tracer = _tracer(home, store)
        try:
            n = tracer.index_new()
            total = tracer.index.count()
        finally:
            ledger.close()
    out.print(f"indexed {n} new output(s); {total} in the index")


@app.command("verify")
def verify_command(
    file: Annotated[str, typer.Argument(help="A text or PNG/JPEG file, or - for "
                                        "standard input.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full answer (with "
                                          "receipts) as JSON.")] = False,
    receipt_dir: Annotated[Path | None, typer.Option(
        "--receipts", help="Write each match's tlog-proof receipt to DIR/<record>.proof "
        "with the entry inside (check it with 'kansa verify-receipt').")] = None,
    no_index: Annotated[bool, typer.Option("--no-index", help="Do not index new outputs "
                                           "first.")] = False,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Did our system produce this? Looks for embedded marks (C2PA, GB 45438 AIGC, the
    text wrapper), then the exact normalised text, then fingerprints that survive
    copy-editing, truncation and reordering. Exit 0 if a record was found, 3 if not."""
    with _errors():
        data = sys.stdin.buffer.read() if file == "-" else _read(Path(file))
        ledger, tracer = _tracer(home, store)
        try:
            if not no_index:
                tracer.index_new()
            found = [tracer.public_summary(f) for f in tracer.trace(data)]
            if receipt_dir is not None:
                # the organisation's own copy: the entry rides in the receipt (self-contained)
                receipt_dir.mkdir(parents=True, exist_ok=True)
                for f in found:
                    rid = f["record"]["id"]
                    (receipt_dir / f"{rid}.proof").write_bytes(ledger.prove(rid))
        finally:
            ledger.close()
    if as_json:
        out.print_json(json.dumps({"found": found, "count": len(found)}))
    elif not found:
        out.print("no record of this organisation's systems matches this input")
    for f in found if not as_json else ():
        r, m = f["record"], f["match"]
        score = (f" (Jaccard {m['jaccard']:.2f}, containment {m['containment']:.2f})"
                 if "jaccard" in m else "")
        model = r.get(GEN_AI_RESPONSE_MODEL) or r.get(GEN_AI_REQUEST_MODEL) or "-"
        out.print(f"record {r['id']}  {r.get('ts', '')}  system "
                  f"{escape(str(r.get('system')))}  model {escape(str(model))}")
        out.print(f"  found by {m['method']}{score}; log index {f['log_index']}, "
                  f"leaf {f['leaf_hash'][:16]}...")
    if not found:
        raise typer.Exit(3)


def _read(path: Path) -> bytes:
    from kansa.errors import KansaError
    from kansa.provenance.trace import MAX_INPUT_BYTES
    try:
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise KansaError(f"{path}: {size} bytes, over the {MAX_INPUT_BYTES}-byte limit")
        return path.read_bytes()
    except OSError as e:
        raise KansaError(f"cannot read {path}: {e.strerror}") from None


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8790,
    follow_every: Annotated[float, typer.Option(
        "--follow-every", min=0, help="Index new outputs every N seconds (0: never; run "
        "'kansa provenance index' yourself).")] = 5.0,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """The public detection endpoint: POST /v1/verify with a text or image, GET
    /v1/records/ID. Answers carry provenance data and receipts only, never content or
    personal data."""
    import uvicorn

    from kansa.provenance.server import create_app

    with _errors():
        ledger, tracer = _tracer(home, store)
    console.print(f"kansa provenance on http://{host}:{port}/v1/verify "
                  f"({tracer.index.count()} outputs indexed)")
    try:
        uvicorn.run(create_app(tracer, follow_every=follow_every), host=host, port=port,
                    access_log=False, log_level="warning")
    finally:
        ledger.close()


def _show_invisible(text: str) -> str:
    import re
    return re.sub("\ufeff[\ufe00-\ufe0f\U000e0100-\U000e01ef]+",
                  lambda m: f"<text wrapper: {len(m.group(0))} invisible characters>", text)


@app.command("demo")
def demo_command(
    home: Annotated[Path, typer.Option("--home", help="A new directory for the demo's "
                                       "ledger (must not exist).")] = Path(
                                           "kansa-provenance-demo"),
) -> None:
    """Label an answer, strip its labels and edit it, then trace the copy back to its
    record and verify the receipt (on a fixed scenario clock)."""
    from kansa.errors import KansaError
    from kansa.provenance.demo import run_demo

    with _errors():
        if home.exists():
            raise KansaError(f"{home} exists: give --home a new directory")
        result = run_demo(home, lambda: datetime(2026, 12, 3, 9, 0, tzinfo=UTC))
    for step in result.steps:
        out.print(f"[bold]{escape(step.title)}[/]")
        if step.text:
            out.print(escape(_show_invisible(step.text)))
        for k, v in step.facts.items():
            out.print(f"  {escape(k)}: {escape(json.dumps(v, ensure_ascii=False))}")
    if result.traced_to != result.record_id:
        raise typer.Exit(1)
