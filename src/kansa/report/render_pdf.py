"""Render a :class:`~kansa.report.doc.Document` as PDF, Japanese included.

Stack, chosen on purpose:

- **fpdf2** (PyPI, pure Python, maintained): embeds TrueType and OpenType fonts as
  subsets through fontTools, writes Identity-H CID fonts with ToUnicode maps (so text
  extracted from the PDF is the text written), wraps lines, draws tables that repeat
  their header row across pages, and has an outline (bookmarks). WeasyPrint would need
  pango from Debian, which a fresh ``pip install`` does not bring; ReportLab cannot embed
  the CFF-outline OpenType fonts most Japanese fonts ship as, and splits a TrueType font
  into 256-glyph subsets.
- **IPAexGothic** (``ipaexg.ttf``), from the PyPI package ``japanize-matplotlib``, a
  dependency of kansa, so every ``pip install`` has it. The IPA Font License v1.0
  (OSI-approved) allows redistributing the font and embedding it in documents. It is a
  TrueType font: pypdf, pdftotext and viewers extract its text without stray spaces,
  which the CFF Noto CJK packages did not give with fpdf2 (their /W widths come out
  keyed by the wrong ids). Only the glyphs used are embedded (a report is tens of KB).

A character the font lacks (emoji, rare scripts) is drawn as ``?`` rather than as an
invisible glyph, so nothing in a report silently disappears from the page.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import Align, TableCellFillMode, WrapMode, XPos, YPos
from fpdf.fonts import FontFace, TTFFont
from fpdf.util import Padding

from kansa.errors import KansaError
from kansa.report.doc import Block, Chart, Code, Document, KeyValue, Para, Section, Table
from kansa.report.render_html import chart_ticks, chart_totals, series_colors

FONT_PACKAGE = "japanize_matplotlib"
FONT_FILE = "fonts/ipaexg.ttf"
_FAMILY = "kansa-jp"
_MONO = "courier"


class ReportFontError(KansaError):
    """The Japanese font kansa embeds in PDF reports cannot be found."""


def japanese_font_path() -> Path:
    """Where IPAexGothic is installed (found without importing its package, which would
    import matplotlib)."""
    spec = importlib.util.find_spec(FONT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / FONT_FILE
        if path.is_file():
            return path
    raise ReportFontError(
        f"the Japanese font for PDF reports ({FONT_FILE} of the {FONT_PACKAGE.replace('_', '-')}"
        " package) is not installed; reinstall kansa (pip install -e .) or "
        "'pip install japanize-matplotlib'")


_PAGE_MARGIN = 15.0
_HEADING_SIZES = {1: 16.0, 2: 13.0, 3: 11.5}
_BODY = 9.5
_LINE = 5.0


class _PDF(FPDF):
    def __init__(self, doc_title: str, font: Path) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.doc_title = doc_title
        self.set_margins(_PAGE_MARGIN, _PAGE_MARGIN, _PAGE_MARGIN)
        self.set_auto_page_break(True, margin=_PAGE_MARGIN + 3)
        # the standard monospace font then covers the em dash of signature lines
        self.core_fonts_encoding = "windows-1252"
        self.add_font(_FAMILY, "", str(font))
        loaded = self.fonts[_FAMILY.lower()]
        assert isinstance(loaded, TTFFont)
        self.cmap: set[int] = set(loaded.cmap)
        self.alias_nb_pages()

    def footer(self) -> None:
        self.set_y(-_PAGE_MARGIN)
        self.set_font(_FAMILY, size=7.5)
        self.set_text_color(110, 110, 110)
        self.cell(0, 4, self.fit(self.doc_title)[:120], align=Align.L)
        self.set_x(self.l_margin)
        self.cell(0, 4, f"{self.page_no()} / {{nb}}", align=Align.R)
        self.set_text_color(0, 0, 0)

    def fit(self, text: str) -> str:
        """``text`` with what the font cannot draw replaced (see the module docstring)."""
        out = []
        for ch in text:
            o = ord(ch)
            if ch in "\n\t":
                out.append(" " if ch == "\t" else ch)
            elif o < 0x20 or 0x7F <= o < 0xA0 or 0xD800 <= o <= 0xDFFF:
                continue
            elif o in self.cmap:
                out.append(ch)
            else:
                out.append("?")
        return "".join(out)

    @property
    def width(self) -> float:
        return float(self.w - self.l_margin - self.r_margin)

    def room(self, need: float) -> None:
        """Start a new page unless ``need`` mm are left on this one."""
        if self.get_y() + need > self.h - self.b_margin:
            self.add_page()


def render_pdf(doc: Document, path: str | Path, *, font: str | Path | None = None) -> Path:
    """Write ``doc`` as a PDF file at ``path`` (A4, the font embedded as a subset)."""
    pdf = _PDF(doc.title, Path(font) if font else japanese_font_path())
    pdf.set_title(pdf.fit(doc.title))
    pdf.set_lang(doc.lang)
    pdf.set_creator("kansa")
    pdf.set_creation_date(datetime.now(UTC))
    pdf.add_page()
    _title(pdf, doc)
    for section in doc.sections:
        _section(pdf, section, 1)
    out = Path(path)
    pdf.output(str(out))
    return out


def _title(pdf: _PDF, doc: Document) -> None:
    pdf.set_font(_FAMILY, size=20)
    pdf.multi_cell(pdf.width, 9, pdf.fit(doc.title), align=Align.L,
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if doc.subtitle:
        pdf.set_font(_FAMILY, size=12)
        pdf.set_text_color(90, 90, 90)
        pdf.multi_cell(pdf.width, 6.5, pdf.fit(doc.subtitle), align=Align.L,
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
    pdf.ln(3)
    if doc.meta:
        _kv(pdf, tuple(doc.meta))
    pdf.ln(2)


def _section(pdf: _PDF, section: Section, level: int) -> None:
    size = _HEADING_SIZES.get(level, 10.5)
    pdf.room(size * 1.6 + 12)
    pdf.ln(3 if level > 1 else 5)
    heading = pdf.fit(section.heading) or "-"
    pdf.start_section(heading[:200], level=level - 1)
    pdf.set_font(_FAMILY, size=size)
    pdf.set_text_color(20, 45, 90)
    pdf.multi_cell(pdf.width, size * 0.55, heading, align=Align.L,
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    if level == 1:
        y = pdf.get_y() + 0.8
        pdf.set_draw_color(190, 198, 206)
        pdf.line(pdf.l_margin, y, pdf.l_margin + pdf.width, y)
        pdf.ln(2.5)
    else:
        pdf.ln(1)
    for block in section.blocks:
        _block(pdf, block)
    for sub in section.subsections:
        _section(pdf, sub, level + 1)


def _block(pdf: _PDF, block: Block) -> None:
    pdf.set_x(pdf.l_margin)
    if isinstance(block, Para):
        _para(pdf, block)
    elif isinstance(block, Table):
        _table(pdf, block)
    elif isinstance(block, KeyValue):
        _kv(pdf, block.pairs)
    elif isinstance(block, Code):
        _code(pdf, block)
    elif isinstance(block, Chart):
        _chart(pdf, block)
    else:
        raise TypeError(f"render_pdf: unknown block type {type(block).__name__}")
    pdf.set_x(pdf.l_margin)


_PARA_STYLES: dict[str, tuple[float, tuple[int, int, int], tuple[int, int, int] | None]] = {
    # style -> (font size, text colour, fill colour)
    "normal": (_BODY, (0, 0, 0), None),
    "note": (_BODY, (20, 40, 70), (232, 241, 251)),
    "warning": (_BODY, (138, 59, 0), (253, 236, 220)),
    "small": (7.5, (90, 90, 90), None),
}


def _para(pdf: _PDF, p: Para) -> None:
    size, ink, fill = _PARA_STYLES.get(p.style, _PARA_STYLES["normal"])
    pdf.set_font(_FAMILY, size=size)
    pdf.set_text_color(*ink)
    if fill is not None:
        pdf.set_fill_color(*fill)
    pdf.multi_cell(pdf.width, size * 0.53, pdf.fit(p.text), align=Align.L,
                   fill=fill is not None, padding=Padding(1.5, 2, 1.5, 2) if fill else 0,
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.ln(1.6)


def _col_widths(pdf: _PDF, rows: Sequence[Sequence[str]], n: int,
                align: Sequence[str]) -> tuple[float, ...]:
    """Column widths: each column gets its minimum (numbers whole, text 14 mm), then the
    rest of the page in proportion to how much wider each column would like to be."""
    natural = [0.0] * n
    least = [0.0] * n
    for row in rows[:300]:
        for i in range(n):
            text = row[i] if i < len(row) else ""
            longest = max((pdf.get_string_width(line) for line in text.split("\n")),
                          default=0.0) + 3
            natural[i] = max(natural[i], min(longest, 110.0))
            if i < len(align) and align[i] == "r" and row is not rows[0]:
                least[i] = max(least[i], min(longest, 30.0))
    least = [max(m, min(nat, 14.0)) for m, nat in zip(least, natural, strict=True)]
    spare = pdf.width - sum(least)
    if spare <= 0:
        return tuple(m / sum(least) * pdf.width for m in least)
    extra = [max(nat - m, 0.0) for nat, m in zip(natural, least, strict=True)]
    total = sum(extra)
    if total <= spare:  # everything fits: give the rest to the widest columns alike
        return tuple(m + x + (spare - total) * (x / total if total else 1 / n)
                     for m, x in zip(least, extra, strict=True))
    return tuple(m + x / total * spare for m, x in zip(least, extra, strict=True))


def _grid(pdf: _PDF, headers: Sequence[str], rows: Sequence[Sequence[str]],
          align: Sequence[str], caption: str | None, *, kv: bool = False) -> None:
    n = max([len(headers), *(len(r) for r in rows)], default=0)
    if n == 0:
        return
    size = 8.5
    pdf.set_font(_FAMILY, size=size)
    if caption:
        pdf.set_text_color(90, 90, 90)
        pdf.multi_cell(pdf.width, 4.5, pdf.fit(caption), align=Align.L,
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
    body = [[pdf.fit(r[i]) if i < len(r) else "" for i in range(n)] for r in rows]
    head = [pdf.fit(headers[i]) if i < len(headers) else "" for i in range(n)] if headers else []
    widths = (pdf.width * 0.3, pdf.width * 0.7) if kv and n == 2 else \
        _col_widths(pdf, [head, *body] if head else [[""] * n, *body], n, align)
    aligns = tuple("RIGHT" if i < len(align) and align[i] == "r" else "LEFT" for i in range(n))
    if not body and not head:
        return
    pdf.set_draw_color(200, 206, 212)
    pdf.set_fill_color(255, 255, 255)  # a fill left over from a note or a chart
    grey = FontFace(fill_color=(243, 245, 247))
    kw: dict[str, Any] = {
        "col_widths": widths, "text_align": aligns, "line_height": size * 0.5,
        "first_row_as_headings": bool(head), "headings_style": grey,
        "repeat_headings": 1 if head else 0, "wrapmode": WrapMode.CHAR,
        "padding": (0.8, 1.2), "cell_fill_mode": TableCellFillMode.NONE,
    }
    if kv:
        kw["first_row_as_headings"] = False
    with pdf.table(**kw) as table:
        for r in ([head] if head else []) + body:
            row = table.row()
            for i, cell in enumerate(r):
                row.cell(cell, style=grey if kv and i == 0 else None)
    pdf.ln(2.5)


def _table(pdf: _PDF, tb: Table) -> None:
    _grid(pdf, tb.headers, tb.rows, tb.align or (), tb.caption)


def _kv(pdf: _PDF, pairs: tuple[tuple[str, str], ...]) -> None:
    _grid(pdf, (), [(k, v) for k, v in pairs], (), None, kv=True)


def _code(pdf: _PDF, code: Code) -> None:
    if code.caption:
        pdf.set_font(_FAMILY, size=8.5)
        pdf.set_text_color(90, 90, 90)
        pdf.multi_cell(pdf.width, 4.5, pdf.fit(code.caption), align=Align.L,
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
    text = code.text.rstrip("\n")
    text = "".join(ch for ch in text if ch == "\n" or ord(ch) >= 0x20)
    try:
        text.encode("windows-1252")
        pdf.set_font(_MONO, size=7.2)
    except UnicodeEncodeError:  # a checkpoint origin or receipt in another script
        pdf.set_font(_FAMILY, size=7.2)
        text = pdf.fit(text)
    pdf.set_fill_color(246, 248, 250)
    pdf.multi_cell(pdf.width, 3.4, text or " ", align=Align.L, fill=True,
                   wrapmode=WrapMode.CHAR, padding=Padding(1.5, 2, 1.5, 2),
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _rgb(color: str) -> tuple[int, int, int]:
    """#rgb / #rrggbb to RGB; named colours (allowed in HTML) become grey here."""
    c = color.lstrip("#")
    if len(c) in (3, 4):
        c = "".join(ch * 2 for ch in c[:3])
    if len(c) in (6, 8):
        try:
            return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
        except ValueError:
            pass
    return 120, 120, 120


def _chart(pdf: _PDF, chart: Chart) -> None:
    legend_rows = -(-len(chart.series) // 4)
    plot_h = 42.0
    pdf.room(plot_h + 22 + 5 * legend_rows)
    pdf.set_font(_FAMILY, size=9)
    pdf.multi_cell(pdf.width, 4.8, pdf.fit(chart.title), align=Align.L,
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left = pdf.l_margin + 14
    plot_w = pdf.width - 16
    top = pdf.get_y() + 2
    base = top + plot_h
    totals = chart_totals(chart)
    peak = max(totals, default=0) or 1
    colors = [_rgb(c) for c in series_colors(chart)]
    pdf.set_draw_color(140, 140, 140)
    pdf.line(left, base, left + plot_w, base)
    pdf.set_font(_FAMILY, size=6.5)
    pdf.set_text_color(90, 90, 90)
    pdf.set_xy(pdf.l_margin, top - 1.5)
    pdf.cell(12.5, 3, f"{peak:,}", align=Align.R)
    pdf.set_xy(pdf.l_margin, base - 1.5)
    pdf.cell(12.5, 3, "0", align=Align.R)
    n = len(chart.labels)
    if n:
        slot = plot_w / n
        bar = max(slot * 0.8, 0.15)
        for i in range(n):
            y = base
            x = left + i * slot + (slot - bar) / 2
            for (_, vals), rgb in zip(chart.series, colors, strict=True):
                v = max(0, vals[i]) if i < len(vals) else 0
                if not v:
                    continue
                h = v / peak * plot_h
                y -= h
                pdf.set_fill_color(*rgb)
                pdf.rect(x, y, bar, h, style="F")
        for i in chart_ticks(chart.labels, most=6):
            label = pdf.fit(chart.labels[i])[:24]
            w = pdf.get_string_width(label)
            cx = left + (i + 0.5) * slot - w / 2
            pdf.set_xy(min(max(cx, pdf.l_margin), pdf.l_margin + pdf.width - w), base + 1)
            pdf.cell(w, 3, label)
    y = base + 6
    for k, ((name, _), rgb) in enumerate(zip(chart.series, colors, strict=True)):
        lx = left + (k % 4) * (plot_w / 4)
        ly = y + (k // 4) * 5
        pdf.set_fill_color(*rgb)
        pdf.rect(lx, ly, 3, 3, style="F")
        pdf.set_xy(lx + 4, ly)
        pdf.cell(plot_w / 4 - 5, 3, pdf.fit(name)[:40])
    pdf.set_text_color(0, 0, 0)
    pdf.set_xy(pdf.l_margin, y + 5 * legend_rows + 2)
