"""``kansa log append|show``: append usage records from JSON Lines and read them back."""

from __future__ import annotations

import io
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import RenderableType
from rich.markup import escape
from rich.text import Text

from kansa.cli._common import (
    Column,
    HomeOpt,
    StoreOpt,
    command_group,
    console,
    errors,
    fail,
    open_ledger,
    out,
    print_table,
    progress,
)
from kansa.errors import RecordError
from kansa.records.attributes import (
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)

app = command_group("log", "Append usage records and read them back.")


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed standard input
        return False


def _when(ts: str) -> str:
    """A record time for a table: the date and the time to the second (--json has it
    all), with a space between them so a narrow column breaks there, never inside."""
    day, sep, clock = ts.partition("T")
    return f"{day} {clock[:8]}" if sep else ts


APPEND_EXIT_CODES = """Exit status: 0 every record was appended (or the input held none); 1 an error
that is not about one line (unreadable file, not UTF-8: nothing was appended; store or
key problem); 2 nothing was appended because some lines are invalid;
3 with --skip-invalid, the valid lines were appended and the invalid ones skipped."""

EXIT_APPEND_PARTIAL = 3


@app.command("append", epilog=APPEND_EXIT_CODES)
def log_append(
    file: Annotated[
        str, typer.Argument(help="JSON Lines file of flat records, or - for standard input.")
    ] = "-",
    home: HomeOpt = None,
    store: StoreOpt = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(help="Append the valid lines and report the invalid ones (exit 3), "
                     "instead of appending nothing when any line is invalid (exit 2)."),
    ] = False,
) -> None:
    """Append usage records from JSON Lines, e.g.

    {"ts": "2026-11-22T09:30:00Z", "system": "support-bot", "subject": "user-7",
    "gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 31,
    "attributes": {"kansa.ai_disclosure": true}, "input": "...", "output": "..."}

    Content ('input', 'output', 'gen_ai.input.messages', ...) is stored encrypted per data
    subject; the ledger entry holds only a salted commitment to it. Every line is checked
    completely first (JSON, fields, canonical RFC 8785 encoding, the 65,535-byte entry
    bound): by default, one invalid line means nothing is appended.
    """
    from kansa.records.jsonl import bounded_lines, parse_numbered
    from kansa.records.model import UsageRecord

    with errors():
        if file == "-" and _is_terminal(sys.stdin):
            # someone typed 'kansa log append' with nothing piped in: say what it waits for
            end = "Ctrl-Z then Enter" if sys.platform == "win32" else "Ctrl-D"
            console.print(f"reading JSON Lines from standard input… ({end} to end)")
        try:
            # UTF-8 whatever the locale (under C, Python decodes stdin with surrogateescape:
            # bytes that are not UTF-8 became lone surrogates), a leading BOM allowed
            stream = (io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="strict")
                      if file == "-" else open(file, encoding="utf-8-sig"))  # noqa: SIM115
        except OSError as e:
            raise fail(f"cannot read {file}: {e.strerror}") from None
        try:
            numbered = list(parse_numbered(bounded_lines(stream)))
        except UnicodeDecodeError as e:
            raise fail(f"{file}: not UTF-8 text ({e.reason}); nothing was appended") from None
        except OSError as e:
            raise fail(f"cannot read {file}: {e.strerror}; nothing was appended") from None
        finally:
            if file == "-":
                stream.detach()  # leave sys.stdin open
            else:
                stream.close()

        def refuse_if_bad(parsed: list[UsageRecord | RecordError]) -> None:
            bad = [p for p in parsed if isinstance(p, RecordError)]
            if bad and (not skip_invalid or len(bad) == len(parsed)):
                for err in bad[:50]:
                    console.print(f"[red]✗[/] {escape(file)}: {escape(str(err))}")
                if len(bad) > 50:
                    console.print(f"[red]… and {len(bad) - 50} more invalid lines[/]")
                raise fail(
                    f"{len(bad)} invalid line(s); nothing was appended"
                    + ("" if skip_invalid else " (fix them, or pass --skip-invalid)"),
                    code=2,
                )

        refuse_if_bad([p for _n, p in numbered])  # before the store is even opened
        if not numbered:
            out.print("no records to append")
            return
        ledger = open_ledger(home, store)
        try:
            # ids the log already holds: errors now, with their line, before anything is
            # appended (the append refused them only after appending the lines before)
            taken = ledger.log.store.existing_ext_ids(
                [p.id for _n, p in numbered if isinstance(p, UsageRecord)])
            parsed = [RecordError(f"record id {p.id!r} is already in the log; record ids "
                                  "are unique (give this record another id, or leave the "
                                  "id out to get a fresh one)", line=n, field="id")
                      if isinstance(p, UsageRecord) and p.id in taken else p
                      for n, p in numbered]
            refuse_if_bad(parsed)
            bad = [p for p in parsed if isinstance(p, RecordError)]
            good = [p for p in parsed if isinstance(p, UsageRecord)]
            for err in bad[:50]:
                console.print(f"[red]✗[/] {escape(file)}: {escape(str(err))}")
            if len(bad) > 50:
                console.print(f"[red]… and {len(bad) - 50} more invalid lines[/]")
            with progress() as prog:
                task = prog.add_task("appending", total=len(good))
                done = ledger.append_many(good, progress=lambda n: prog.advance(task, n))
            cp = ledger.checkpoint()
        finally:
            ledger.close()
        out.print(
            f"appended {len(done)} record(s) at {done[0].index}..{done[-1].index}; "
            f"checkpoint signed at size {cp.checkpoint.size}"
        )
        if bad:
            console.print(f"[yellow]skipped {len(bad)} invalid line(s)[/]")
            raise typer.Exit(EXIT_APPEND_PARTIAL)


@app.command("show")
def log_show(
    home: HomeOpt = None,
    store: StoreOpt = None,
    since: Annotated[str | None, typer.Option(help="From this time (RFC 3339).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (RFC 3339).")] = None,
    system: Annotated[str | None, typer.Option(help="Only this system.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this request or response model.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this data subject.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many records.")] = 50,
    content: Annotated[bool, typer.Option(help="Decrypt and show content too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show records, oldest first, filtered by time, system, model and subject."""
    with errors():
        ledger = open_ledger(home, store)
        try:
            rows = list(
                ledger.find(since=since, until=until, system=system, model=model,
                            subject=subject, limit=limit, with_content=content)
            )
        finally:
            ledger.close()
        if as_json:
            for r in rows:
                obj = {"index": r.index, "entry": r.entry, "content_state": r.content_state}
                if content:
                    obj["content"] = r.content
                    if r.content_problem:
                        obj["content_problem"] = r.content_problem
                # stored text goes out verbatim: plain writes, never through rich, whose
                # markup would drop "[tool]" and choke on "[/INST]"
                sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            return
        # the record id is what 'kansa prove' takes: always shown, never cut
        columns = [Column("#", priority=3, whole=True, justify="right"),
                   Column("record id", whole=True),
                   Column("time (UTC)", min_width=10),
                   Column("system", priority=1, min_width=24),
                   Column("model", priority=2, min_width=24),
                   Column("outcome", whole=True),
                   Column("tokens in/out", priority=4, min_width=7),
                   Column("kind", priority=5)]
        if content:
            columns.append(Column("content", min_width=24))
        table: list[list[RenderableType]] = []
        for r in rows:
            e = r.entry
            # Text cells: a recorded "[tool]" or "[/INST]" is text, not rich markup
            cells: list[RenderableType] = [Text(c) for c in (
                str(r.index),
                str(r.id),
                _when(str(e.get("ts", ""))),
                str(e.get("system", "")),
                str(e.get(GEN_AI_REQUEST_MODEL, e.get(GEN_AI_RESPONSE_MODEL, ""))),
                str(e.get("outcome", "")),
                f"{e.get(GEN_AI_USAGE_INPUT_TOKENS, '-')}/"
                f"{e.get(GEN_AI_USAGE_OUTPUT_TOKENS, '-')}",
                str(e.get("kind", "")),
            )]
            if content:
                if r.content_state == "erased":
                    cells.append(Text("erased", style="italic"))
                elif r.content_state == "missing":
                    cells.append(Text(f"missing: {r.content_problem}", style="bold red"))
                elif r.content is None:
                    cells.append(Text(""))
                else:
                    text = json.dumps(r.content, ensure_ascii=False)
                    cells.append(Text(text[:80] + ("…" if len(text) > 80 else "")))
            table.append(cells)
        print_table(out, columns, table)
        out.print(f"{len(rows)} record(s)")
