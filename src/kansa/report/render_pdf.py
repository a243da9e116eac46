"""Render a :class:`~kansa.report.doc.Document` as PDF, Japanese included.

Stack, chosen on purpose:

- **fpdf2** (PyPI, pure Python, maintained): embeds TrueType and OpenType fonts as
  subsets through fontTools, writes Identity-H CID fonts with ToUnicode maps (so text
  extracted from the PDF is the text written), wraps lines, draws tables that repeat
  their header row across pages, and has an outline (bookmarks). WeasyPrint would need
  pango from Debian, which a fresh ``pip install`` does not bring; ReportLab cannot embed
  the CFF-outline OpenType fonts most Japanese fonts ship as, and splits a TrueType font
  into 256-glyph subsets.
- **IPAexGothic** (``ipaexg.ttf``, IPAex font 00301), shipped inside kansa in
  ``report/fonts/`` with its licence, so every install has it. The IPA Font License v1.0
  (OSI-approved) allows redistributing the unmodified font and embedding it in
  documents. (It used to come from the PyPI package ``japanize-matplotlib``, which drags
  in matplotlib and numpy and has not been released since 2020.) It is a
  TrueType font: pypdf, pdftotext and viewers extract its text without stray spaces,
  which the CFF Noto CJK packages did not give with fpdf2 (their /W widths come out
  keyed by the wrong ids). Only the glyphs used are embedded (a report is tens of KB).

A character the font lacks (emoji, rare scripts) is drawn as ``?`` rather than as an
invisible glyph, so nothing in a report silently disappears from the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import Align
from fpdf.fonts import TTFFont

from kansa.errors import ReportError
from kansa.report.doc import Block, Chart, Code, Document, KeyValue, Para, Section, Table
from kansa.report.render_html import chart_ticks, chart_totals, series_colors

FONT_FILE = Path(__file__).parent / "fonts" / "ipaexg.ttf"
_FAMILY = "kansa-jp"
_MONO = "courier"


class ReportFontError(ReportError):
    """The Japanese font kansa embeds in PDF reports cannot be found."""


def japanese_font_path() -> Path:
    """Where kansa's copy of IPAexGothic is."""
    if not FONT_FILE.is_file():
        raise ReportFontError(
            f"the Japanese font for PDF reports ({FONT_FILE}) is missing from this "
            "installation; reinstall kansa (pip install -e .)")
    return FONT_FILE


_NO_BREAK_BEFORE = frozenset("、。，．・：；？！）」』】〕》〉ー々ゝゞ”’,.;:!?)]}")
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
        self.c_margin = 0  # cells carry no padding of their own: layout adds it
        self.widths: dict[tuple[str, float, str], float] = {}
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

    @property
    def bottom(self) -> float:
        return float(self.h - self.b_margin)

    def char_width(self, ch: str) -> float:
        key = (self.font_family, self.font_size_pt, ch)
        w = self.widths.get(key)
        if w is None:
            w = self.widths[key] = float(self.get_string_width(ch))
        return w

    def wrap(self, text: str, width: float) -> list[str]:
        """``text`` (already fitted) broken into lines no wider than ``width``."""
        lines: list[str] = []
        for para in text.split("\n"):
            lines.extend(self._wrap_para(para, width))
        return lines

    def _wrap_para(self, s: str, width: float) -> list[str]:
        # Greedy and linear (fpdf2's own line breaking measures each line again for
        # every character it adds, which made long reports take minutes). Breaks go
        # after spaces, hyphens and slashes, and between CJK characters except before
        # closing punctuation; a word wider than the line is cut between characters.
        out: list[str] = []
        start, i, w, brk = 0, 0, 0.0, -1
        n = len(s)
        while i < n:
            ch = s[i]
            cw = self.char_width(ch)
            if w + cw > width and i > start:
                if brk > start:
                    out.append(s[start:brk].rstrip(" "))
                    start = brk
                    while start < n and s[start] == " ":
                        start += 1
                else:
                    out.append(s[start:i])
                    start = i
                i, w, brk = start, 0.0, -1
                continue
            w += cw
            nxt = s[i + 1] if i + 1 < n else ""
            if nxt and nxt not in _NO_BREAK_BEFORE and (
                    ch in " -/" or ord(ch) >= 0x2E80 or ord(nxt) >= 0x2E80):
                brk = i + 1
            i += 1
        out.append(s[start:])
        return out

    def write_lines(self, lines: Sequence[str], line_h: float, *, x: float | None = None,
                    w: float | None = None, fill: tuple[int, int, int] | None = None,
                    pad: float = 0.0) -> None:
        """Draw ``lines`` from the current position down, onto new pages as needed,
        each line on a band of ``fill`` (with ``pad`` mm of it above and below)."""
        x = self.l_margin if x is None else x
        w = self.width if w is None else w
        if fill is not None:
            self.set_fill_color(*fill)
        if pad and fill is not None:
            if self.get_y() + pad + line_h > self.bottom:
                self.add_page()
            self.rect(x, self.get_y(), w, pad, style="F")
            self.set_y(self.get_y() + pad)
        for line in lines:
            if self.get_y() + line_h > self.bottom:
                self.add_page()
                if fill is not None:
                    self.set_fill_color(*fill)
            y = self.get_y()
            if fill is not None:
                self.rect(x, y, w, line_h, style="F")
            self.set_xy(x + pad, y)
            self.cell(w - 2 * pad, line_h, line)
            self.set_xy(x, y + line_h)
        if pad and fill is not None:
            self.rect(x, self.get_y(), w, pad, style="F")
            self.set_y(self.get_y() + pad)
        self.set_x(self.l_margin)

    def text_block(self, text: str, size: float, line_h: float, *,
                   fill: tuple[int, int, int] | None = None, pad: float = 0.0,
                   family: str = _FAMILY) -> None:
        self.set_font(family, size=size)
        self.write_lines(self.wrap(text, self.width - 2 * pad), line_h, fill=fill, pad=pad)

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
    pdf.text_block(pdf.fit(doc.title), 20, 9)
    if doc.subtitle:
        pdf.set_text_color(90, 90, 90)
        pdf.text_block(pdf.fit(doc.subtitle), 12, 6.5)
        pdf.set_text_color(0, 0, 0)
    pdf.ln(3)
    if doc.meta:
        _kv(pdf, tuple(doc.meta))
    pdf.ln(2)


def _section(pdf: _PDF, section: Section, level: int) -> None:
    size = _HEADING_SIZES.get(level, 10.5)
    if section.new_page and pdf.get_y() > pdf.t_margin + 1:
        pdf.add_page()
    pdf.room(size * 1.6 + 12)
    pdf.ln(3 if level > 1 else 5)
    heading = pdf.fit(section.heading) or "-"
    pdf.start_section(heading[:200], level=level - 1)
    pdf.set_text_color(20, 45, 90)
    pdf.text_block(heading, size, size * 0.55)
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
    pdf.set_text_color(*ink)
    pdf.text_block(pdf.fit(p.text), size, size * 0.53, fill=fill, pad=1.8 if fill else 0.0)
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
            if i < len(align) and align[i] == "r":  # numbers whole, short headers too
                least[i] = max(least[i], min(longest, 18.0 if row is rows[0] else 30.0))
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


_HEAD_FILL = (243, 245, 247)
_PAD_X, _PAD_Y = 1.2, 0.8


def _grid(pdf: _PDF, headers: Sequence[str], rows: Sequence[Sequence[str]],
          align: Sequence[str], caption: str | None, *, kv: bool = False,
          size: float = 8.5) -> None:
    """A table with borders; the header row is repeated on every page the table spans,
    and a row too tall for one page continues on the next."""
    n = max([len(headers), *(len(r) for r in rows)], default=0)
    if n == 0:
        return
    line_h = size * 0.5
    if caption:
        pdf.set_text_color(90, 90, 90)
        pdf.text_block(pdf.fit(caption), size, 4.5)
        pdf.set_text_color(0, 0, 0)
    pdf.set_font(_FAMILY, size=size)
    body = [[pdf.fit(r[i]) if i < len(r) else "" for i in range(n)] for r in rows]
    head = [pdf.fit(headers[i]) if i < len(headers) else "" for i in range(n)] if headers else []
    widths = (pdf.width * 0.3, pdf.width * 0.7) if kv and n == 2 else \
        _col_widths(pdf, [head, *body] if head else [[""] * n, *body], n, align)
    right = [i < len(align) and align[i] == "r" for i in range(n)]

    def lines_of(row: Sequence[str]) -> list[list[str]]:
        return [pdf.wrap(cell, widths[i] - 2 * _PAD_X) for i, cell in enumerate(row)]

    head_lines = lines_of(head) if head else None

    def draw(cells: list[list[str]], fills: Sequence[bool]) -> None:
        rows_n = max((len(c) for c in cells), default=1) or 1
        h = rows_n * line_h + 2 * _PAD_Y
        x, y = pdf.l_margin, pdf.get_y()
        for i, lines in enumerate(cells):
            if fills[i]:
                pdf.set_fill_color(*_HEAD_FILL)
            pdf.rect(x, y, widths[i], h, style="DF" if fills[i] else "D")
            for k, line in enumerate(lines):
                pdf.set_xy(x + _PAD_X, y + _PAD_Y + k * line_h)
                pdf.cell(widths[i] - 2 * _PAD_X, line_h, line,
                         align=Align.R if right[i] else Align.L)
            x += widths[i]
        pdf.set_xy(pdf.l_margin, y + h)

    def height(cells: list[list[str]]) -> float:
        return max((len(c) for c in cells), default=1) * line_h + 2 * _PAD_Y

    def new_page() -> None:
        pdf.add_page()
        pdf.set_font(_FAMILY, size=size)
        if head_lines is not None:
            draw(head_lines, [True] * n)

    pdf.set_draw_color(200, 206, 212)
    first = height(head_lines) if head_lines else 0.0
    if body and pdf.get_y() + first + height(lines_of(body[0])) > pdf.bottom:
        pdf.add_page()  # keep the header with the first row
        pdf.set_font(_FAMILY, size=size)
    if head_lines is not None:
        draw(head_lines, [True] * n)
    fills = [kv and i == 0 for i in range(n)]
    page_room = pdf.bottom - pdf.t_margin - first - 2 * _PAD_Y
    for row in body:
        cells = lines_of(row)
        while cells:
            h = height(cells)
            if pdf.get_y() + h <= pdf.bottom:
                draw(cells, fills)
                break
            if h <= page_room:
                new_page()
                continue
            fit = int((pdf.bottom - pdf.get_y() - 2 * _PAD_Y) // line_h)
            if fit < 1:
                new_page()
                continue
            draw([c[:fit] for c in cells], fills)
            cells = [c[fit:] for c in cells]
            new_page()
    pdf.ln(2.5)


def _table(pdf: _PDF, tb: Table) -> None:
    _grid(pdf, tb.headers, tb.rows, tb.align or (), tb.caption,
          size=7.6 if tb.small else 8.5)


def _kv(pdf: _PDF, pairs: tuple[tuple[str, str], ...]) -> None:
    _grid(pdf, (), [(k, v) for k, v in pairs], (), None, kv=True)


def _code(pdf: _PDF, code: Code) -> None:
    if code.caption:
        pdf.set_text_color(90, 90, 90)
        pdf.text_block(pdf.fit(code.caption), 8.5, 4.5)
        pdf.set_text_color(0, 0, 0)
    text = code.text.rstrip("\n")
    text = "".join(ch for ch in text if ch == "\n" or ord(ch) >= 0x20)
    family = _MONO
    try:
        text.encode("windows-1252")
    except UnicodeEncodeError:  # a checkpoint origin or receipt in another script
        family = _FAMILY
        text = pdf.fit(text)
    pdf.text_block(text or " ", 7.2, 3.4, fill=(246, 248, 250), pad=1.8, family=family)
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
    pdf.text_block(pdf.fit(chart.title), 9, 4.8)
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
