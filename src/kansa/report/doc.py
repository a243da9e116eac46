"""The document model every report builder produces and every renderer consumes.

Builders (evidence report, security design document, OECD HAIP draft, incident drafts)
know about records, findings and laws but nothing of HTML or PDF; renderers know HTML and
PDF but nothing of laws. Text is already in the document's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Para:
    """A paragraph. ``style`` lets a renderer set notes and warnings apart."""

    text: str
    style: Literal["normal", "note", "warning", "small"] = "normal"


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str | None = None
    # per column: "l" (text) or "r" (numbers); default all "l"
    align: tuple[str, ...] | None = None
    small: bool = False  # set in a smaller type (a summary that must fit one page)


@dataclass(frozen=True)
class Chart:
    """A stacked bar chart: one bar per label (e.g. a day), one stack per series
    (e.g. a verdict). ``series`` maps series name -> one value per label."""

    title: str
    labels: tuple[str, ...]
    series: tuple[tuple[str, tuple[int, ...]], ...]
    colors: tuple[tuple[str, str], ...] = ()  # series name -> CSS colour


@dataclass(frozen=True)
class KeyValue:
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Code:
    """Preformatted text (a checkpoint, a receipt), shown verbatim in a monospace font."""

    text: str
    caption: str | None = None
    # a file name: HTML shows the text folded (details) with a link that saves it as this
    # file, byte for byte (a receipt to verify); PDF prints it as usual
    download: str | None = None


Block = Para | Table | Chart | KeyValue | Code


@dataclass
class Section:
    heading: str
    blocks: list[Block] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)
    anchor: str | None = None
    new_page: bool = False  # PDF: start on a new page (an executive summary, an appendix)


@dataclass
class Document:
    title: str
    lang: str  # "en" | "ja"
    subtitle: str | None = None
    meta: list[tuple[str, str]] = field(default_factory=list)  # shown under the title
    sections: list[Section] = field(default_factory=list)
