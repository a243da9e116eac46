"""Text normalisation for traceback: the same answer, however it was copied, normalises
to the same string.

What is thrown away, and why:

* Unicode compatibility forms (NFKC) and case (casefold): copy-paste between editors,
  full-width / half-width forms in Japanese, ligatures;
* invisible characters: the C2PA A.8-style text wrapper (U+FEFF followed by variation
  selectors), zero-width spaces and joiners, soft hyphens: they are marks, not content;
* kansa's own labels: the Markdown front matter carrying the AIGC JSON and the visible
  disclosure lines (:data:`kansa.provenance.labels.DISCLOSURES`), so a labelled and an
  unlabelled copy normalise alike;
* HTML tags and entities (an HTML answer and its text compare alike);
* punctuation and the amount of white space: ``\\w+`` runs joined by one space (``\\w``
  matches CJK ideographs and kana, so Japanese keeps its characters; it has no spaces).
"""

from __future__ import annotations

import html
import re
import unicodedata

# U+FE00-U+FE0F and U+E0100-U+E01EF (variation selectors: the A.8 wrapper's bytes),
# U+FEFF (BOM / the wrapper's start), U+200B-U+200F, U+2060-U+2064 (zero-width), U+00AD
_INVISIBLE = re.compile(
    "[\ufe00-\ufe0f\U000e0100-\U000e01ef\ufeff\u200b-\u200f\u2060-\u2064\u00ad]")
_FRONT_MATTER = re.compile(r"\A---\n(?:.*\n)*?---\n", re.MULTILINE)
_WORD = re.compile(r"\w+")
_TAG = re.compile(r"<[A-Za-z/!][^<>]{0,4096}>")


def strip_invisible(text: str) -> str:
    return _INVISIBLE.sub("", text)


def normalise(text: str, *, disclosures: tuple[str, ...] = ()) -> str:
    """``text`` as traceback compares it (see the module's description). ``disclosures``:
    visible label texts to remove before comparing (default: kansa's own)."""
    if not disclosures:
        from kansa.provenance.labels import all_disclosures

        disclosures = all_disclosures()
    text = strip_invisible(text).replace("\r\n", "\n")
    if text.startswith("---\n"):
        m = _FRONT_MATTER.match(text)
        if m is not None and "AIGC" in m.group(0):
            text = text[m.end():]
    if "<" in text:  # HTML: the words, not the markup (tags, meta, entities)
        text = html.unescape(_TAG.sub(" ", text))
    for d in disclosures:
        if d in text:
            text = text.replace(d, " ")
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(text))
