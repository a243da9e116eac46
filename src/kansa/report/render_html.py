"""Render a :class:`~kansa.report.doc.Document` as one self-contained HTML file.

Everything is inline (CSS, charts as SVG), so the file can be mailed, archived or opened
offline; nothing is fetched. Every piece of text from the document is escaped (record
fields and pack text come from outside and may hold markup), colours are accepted only
in a small safe syntax, and a print stylesheet keeps tables and charts on whole pages.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator

from kansa.report.doc import Block, Chart, Code, Document, KeyValue, Para, Section, Table

_CSS = """
:root { --ink: #1b1f24; --muted: #5b6570; --rule: #d6dbe0; --note: #eef4fb;
        --warn: #fdf1e6; --warn-ink: #8a3b00; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", "Hiragino Sans",
       "Hiragino Kaku Gothic ProN", "Noto Sans JP", "IPAexGothic", Meiryo, sans-serif;
       color: var(--ink); margin: 2rem auto; max-width: 60rem; padding: 0 1rem;
       line-height: 1.55; }
h1 { font-size: 1.7rem; margin: 0 0 .2rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid var(--rule); padding-bottom: .2rem;
     margin-top: 2.2rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
h4, h5, h6 { font-size: 1rem; margin-top: 1.2rem; }
.subtitle { color: var(--muted); margin: 0 0 1rem; font-size: 1.1rem; }
.meta { margin-bottom: 1.5rem; }
table { border-collapse: collapse; width: 100%; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid var(--rule); padding: .3rem .45rem; vertical-align: top;
         text-align: left; overflow-wrap: anywhere; }
th { background: #f3f5f7; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; color: var(--muted); padding: .2rem 0; }
table.kv th { width: 28%; }
table.small { font-size: .82rem; }
details.code { margin: .6rem 0; }
details.code summary { cursor: pointer; color: var(--muted); }
p.note { background: var(--note); padding: .5rem .7rem; border-left: 4px solid #6b9bd2; }
p.warning { background: var(--warn); color: var(--warn-ink); padding: .5rem .7rem;
            border-left: 4px solid #d9822b; font-weight: 600; }
p.small { color: var(--muted); font-size: .85rem; }
figure { margin: .8rem 0 1.2rem; }
figcaption { color: var(--muted); font-size: .9rem; }
pre { background: #f6f8fa; border: 1px solid var(--rule); padding: .6rem; font-size: .8rem;
      white-space: pre-wrap; overflow-wrap: anywhere;
      font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
svg { max-width: 100%; height: auto; }
svg text { font-size: 11px; fill: var(--muted); }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; }
  h3, h4 { break-after: avoid; }
  table, figure, pre { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""

DEFAULT_COLORS = ("#2e7d32", "#c62828", "#9e9e9e", "#f9a825", "#1565c0", "#6a1b9a",
                  "#00838f", "#ef6c00")
_SAFE_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,20})$")
_ANCHOR_BAD = re.compile(r"[^A-Za-z0-9_.:-]+")
_FILE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def esc(text: object) -> str:
    """HTML-escape ``text`` (quotes too: the result may stand in an attribute)."""
    return html.escape(_clean(str(text)), quote=True)


def _clean(text: str) -> str:
    """Drop characters HTML cannot carry: C0 controls other than tab and newline, lone
    surrogates and non-characters, which would make the file invalid or unreadable."""
    return "".join(
        ch for ch in text
        if (ch in "\t\n" or ord(ch) >= 0x20) and not 0xD800 <= ord(ch) <= 0xDFFF
        and ord(ch) not in (0x7F, 0xFFFE, 0xFFFF)
    )


def safe_color(value: str | None, fallback: str) -> str:
    """``value`` if it is a plain CSS colour (#hex or a name), else ``fallback``: a
    colour goes into an SVG attribute, so nothing else may pass."""
    return value if value is not None and _SAFE_COLOR.match(value) else fallback


def series_colors(chart: Chart) -> list[str]:
    given = dict(chart.colors)
    return [safe_color(given.get(name), DEFAULT_COLORS[i % len(DEFAULT_COLORS)])
            for i, (name, _) in enumerate(chart.series)]


def render_html(doc: Document) -> str:
    """The document as a complete HTML5 page (UTF-8, ``lang`` set, nothing external)."""
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{esc(_lang(doc.lang))}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(doc.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{esc(doc.title)}</h1>",
    ]
    if doc.subtitle:
        parts.append(f'<p class="subtitle">{esc(doc.subtitle)}</p>')
    if doc.meta:
        parts.append(_kv(tuple(doc.meta), "meta kv"))
    parts.append("</header>")
    parts.append("<main>")
    for section in doc.sections:
        parts.extend(_section(section, 2))
    parts.append("</main>")
    parts.append("</body>")
    parts.append("</html>")
    return "\n".join(parts) + "\n"


def _lang(lang: str) -> str:
    return lang if re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", lang) else "und"


def _section(section: Section, level: int) -> Iterator[str]:
    h = min(level, 6)
    anchor = _ANCHOR_BAD.sub("-", section.anchor) if section.anchor else ""
    yield "<section>" if not anchor else f'<section id="{esc(anchor)}">'
    yield f"<h{h}>{esc(section.heading)}</h{h}>"
    for block in section.blocks:
        yield _block(block)
    for sub in section.subsections:
        yield from _section(sub, level + 1)
    yield "</section>"


def _block(block: Block) -> str:
    if isinstance(block, Para):
        cls = block.style if block.style in ("note", "warning", "small") else ""
        text = esc(block.text).replace("\n", "<br>")
        return f'<p class="{cls}">{text}</p>' if cls else f"<p>{text}</p>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, KeyValue):
        return _kv(block.pairs, "kv")
    if isinstance(block, Code):
        if block.download:
            href = "data:text/plain;charset=utf-8;base64," + base64.b64encode(
                _clean(block.text).encode("utf-8")).decode("ascii")
            name = _FILE_BAD.sub("-", block.download) or "download.txt"
            return (f'<details class="code"><summary>{esc(block.caption or name)}</summary>'
                    f'<pre>{esc(block.text)}</pre><p class="small"><a href="{href}" '
                    f'download="{esc(name)}">{esc(name)}</a></p></details>')
        cap = f"<figcaption>{esc(block.caption)}</figcaption>" if block.caption else ""
        return f"<figure>{cap}<pre>{esc(block.text)}</pre></figure>"
    if isinstance(block, Chart):
        return _chart(block)
    raise TypeError(f"render_html: unknown block type {type(block).__name__}")


def _kv(pairs: tuple[tuple[str, str], ...], cls: str) -> str:
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{_lines(v)}</td></tr>'
                   for k, v in pairs)
    return f'<table class="{cls}"><tbody>{rows}</tbody></table>'


def _lines(text: str) -> str:
    """A cell's text, escaped, its line breaks kept."""
    return esc(text).replace("\n", "<br>")


def _table(tb: Table) -> str:
    width = max([len(tb.headers), *(len(r) for r in tb.rows)], default=0)
    align = tuple(tb.align or ())

    def cls(i: int) -> str:
        return ' class="r"' if i < len(align) and align[i] == "r" else ""

    out = ['<table class="small">' if tb.small else "<table>"]
    if tb.caption:
        out.append(f"<caption>{esc(tb.caption)}</caption>")
    if tb.headers:
        heads = [esc(tb.headers[i]) if i < len(tb.headers) else "" for i in range(width)]
        cells = "".join(f'<th scope="col"{cls(i)}>{h}</th>' for i, h in enumerate(heads))
        out.append(f"<thead><tr>{cells}</tr></thead>")
    out.append("<tbody>")
    for row in tb.rows:
        cells = "".join(f"<td{cls(i)}>{_lines(row[i]) if i < len(row) else ''}</td>"
                        for i in range(width))
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# chart geometry (SVG user units)
_W, _H, _LEFT, _TOP, _BOTTOM, _LEGEND = 720, 260, 56, 16, 44, 22


def chart_ticks(labels: tuple[str, ...], most: int = 8) -> list[int]:
    """Which labels to print under the bars (at most ``most``, first and last always)."""
    n = len(labels)
    if n <= most:
        return list(range(n))
    step = -(-(n - 1) // (most - 1))
    ticks = list(range(0, n - 1, step))
    if n - 1 - ticks[-1] < step / 2 and len(ticks) > 1:
        ticks.pop()
    return [*ticks, n - 1]


def chart_totals(chart: Chart) -> list[int]:
    n = len(chart.labels)
    return [sum(max(0, vals[i]) for _, vals in chart.series if i < len(vals)) for i in range(n)]


def _chart(chart: Chart) -> str:
    n = len(chart.labels)
    colors = series_colors(chart)
    totals = chart_totals(chart)
    peak = max(totals, default=0) or 1
    plot_w, plot_h = _W - _LEFT - 8, _H - _TOP - _BOTTOM
    legend_rows = -(-len(chart.series) // 4)
    height = _H + _LEGEND * legend_rows
    out = [f'<figure><figcaption>{esc(chart.title)}</figcaption>',
           f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" '
           f'width="{_W}" height="{height}" role="img" aria-label="{esc(chart.title)}">']
    out.append(f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_LEFT + plot_w}" '
               f'y2="{_TOP + plot_h}" stroke="#888"/>')
    out.append(f'<text x="{_LEFT - 6}" y="{_TOP + 8}" text-anchor="end">{peak:,}</text>')
    out.append(f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end">0</text>')
    if n:
        slot = plot_w / n
        bar = max(slot * 0.8, 0.5)
        for i in range(n):
            y = float(_TOP + plot_h)
            x = _LEFT + i * slot + (slot - bar) / 2
            for (name, vals), color in zip(chart.series, colors, strict=True):
                v = max(0, vals[i]) if i < len(vals) else 0
                if not v:
                    continue
                h = v / peak * plot_h
                y -= h
                out.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar:.2f}" '
                           f'height="{h:.2f}" fill="{color}"><title>'
                           f'{esc(chart.labels[i])} {esc(name)}: {v:,}</title></rect>')
        for i in chart_ticks(chart.labels):
            x = _LEFT + (i + 0.5) * slot
            out.append(f'<text x="{x:.2f}" y="{_TOP + plot_h + 16}" text-anchor="middle">'
                       f"{esc(chart.labels[i])}</text>")
    for k, ((name, _), color) in enumerate(zip(chart.series, colors, strict=True)):
        lx = _LEFT + (k % 4) * 165
        ly = _H - 8 + (k // 4) * _LEGEND
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{lx + 17}" y="{ly}">{esc(name)}</text>')
    out.append("</svg></figure>")
    return "".join(out)
