"""Length-preserving folding for the data detectors (secrets, personal data).

The detectors report spans that the pseudonymiser replaces in the text *as given*, so
the text they match on must have the same length as the original: NFKC cannot be used
here (it turns ``㍿`` into four characters and shifts every later offset). :func:`fold`
maps one character to one character:

* full-width ASCII (U+FF01..U+FF5E) to ASCII, the ideographic space to a space, so
  ``０９０－１２３４－５６７８`` is seen as ``090-1234-5678``;
* hyphen and dash variants (U+2010..U+2015, U+2212 minus, U+FE63, U+FF0D) to ``-``;
* the long-vowel marks ``ー``/``ｰ`` to ``-`` only between or beside digits (in a word
  they are part of the word: ``ユーザー``).

Zero-width characters are left in place (deleting them would shift spans); the guard's
normaliser flags them as smuggling.
"""

from __future__ import annotations

import functools
import re

__all__ = ["fold"]

_TABLE: dict[int, int] = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_TABLE[0x3000] = 0x20
for _c in (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE63, 0xFF0D):
    _TABLE[_c] = 0x2D
_LONG_VOWEL_BY_DIGIT = re.compile("(?<=[0-9])[ーｰ]|[ーｰ](?=[0-9])")


@functools.lru_cache(maxsize=32)  # the secrets and the personal-data scans fold one text
def fold(text: str) -> str:
    """``text`` with full-width ASCII and hyphen variants folded, same length."""
    if text.isascii():
        return text
    out = text.translate(_TABLE)
    if "ー" in out or "ｰ" in out:
        out = _LONG_VOWEL_BY_DIGIT.sub("-", out)
    return out
