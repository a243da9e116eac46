"""Normalise a text before it is scanned, and say what hiding was undone.

Detectors see the text as the model would *understand* it, not as it was spelled: the
published evasions of injection detectors (zero-width characters, Unicode tag smuggling,
variation-selector "emoji smuggling", homoglyphs, base64) reach 70-88% attack success
against classifiers that read the raw string, so every guard detector reads the output of
:func:`normalise` instead. Each undoing is also reported as a :class:`Finding` of detector
``normalise`` (hiding text is itself a signal: benign text rarely carries tag characters).

Pure functions, no state, no I/O. Offsets in findings refer to the text as given.

* invisible characters (zero-width, bidi controls, soft hyphen, word joiners) are removed;
* Unicode tag characters (U+E0000-E007F) are removed and the ASCII they spell is
  *decoded* and scanned (``hidden``);
* runs of variation selectors (U+FE00-FE0F, U+E0100-E01EF) are removed; a run of two or
  more is decoded as bytes (the emoji-smuggling encoding) and scanned if it is text;
* NFKC folds compatibility forms (fullwidth ``ｉｇｎｏｒｅ``, mathematical letters);
* homoglyphs: a word whose every non-ASCII letter is a confusable of an ASCII letter
  (Cyrillic ``іgnоrе``) is folded to ASCII; a real Cyrillic or Greek word is left alone;
* base64 (standard and URL-safe), hex and percent-encoded runs and, when it reads more like
  English than the text itself, the rot13 form, are decoded and scanned too (``decoded``).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from kansa.guard.findings import CHANNEL_USER, Finding, Technique

__all__ = ["Decoded", "Normalised", "fold_homoglyphs", "normalise", "strip_invisible"]

DETECTOR = "normalise"
_OBF = (Technique.OBFUSCATION, Technique.OWASP_PROMPT_INJECTION)

# Removed everywhere: they render as nothing, so nothing legitimate depends on them
# for meaning (ZWJ inside emoji sequences is lost too; the scan text is not shown).
_INVISIBLE = frozenset(
    [0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFFA0]
    + list(range(0x200B, 0x2010))   # ZWSP, ZWNJ, ZWJ, LRM, RLM
    + list(range(0x202A, 0x202F))   # bidi embeddings and overrides
    + list(range(0x2060, 0x2065))   # word joiner, invisible operators
    + list(range(0x2066, 0x206A))   # bidi isolates
    + [0xFEFF])
_BIDI = frozenset(list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A)))
_TAG_FIRST, _TAG_LAST = 0xE0000, 0xE007F


def _is_vs(cp: int) -> bool:
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


def _vs_byte(cp: int) -> int:
    # the emoji-smuggling encoding: VS1-16 carry bytes 0-15, VS17-256 bytes 16-255
    return cp - 0xFE00 if cp <= 0xFE0F else cp - 0xE0100 + 16


# Confusables of ASCII letters and digits that NFKC leaves alone (Cyrillic, Greek,
# Armenian, Cherokee and Latin lookalikes), from Unicode's confusables.txt (the
# "MA" table), cut to single characters that map to one ASCII character.
_CONFUSABLES: dict[str, str] = {
    # Cyrillic lower / upper
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "і": "i", "ј": "j",
    "к": "k", "ӏ": "l", "м": "m", "п": "n", "о": "o", "р": "p", "ԛ": "q", "г": "r",
    "ѕ": "s", "т": "t", "ս": "u", "ѵ": "v", "ԝ": "w", "х": "x", "у": "y", "ɡ": "g",
    "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K",
    "М": "M", "О": "O", "Р": "P", "Ѕ": "S", "Т": "T", "Х": "X", "Ү": "Y", "Ԁ": "D",
    "Ԍ": "G", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u",
    "χ": "x", "γ": "y", "ε": "e", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H",
    "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y",
    "Χ": "X",
    # Armenian, Cherokee, Latin extensions
    "օ": "o", "ց": "g", "հ": "h", "ո": "n", "ւ": "l", "Տ": "S", "Ꭺ": "A", "Ꮯ": "C",
    "Ꭼ": "E", "Ꮋ": "H", "Ꮃ": "W", "ı": "i", "ȷ": "j", "ʀ": "r", "ʏ": "y", "ᴀ": "a",
    "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɪ": "i", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m",
    "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w",
    "ᴢ": "z", "ƅ": "b", "ɑ": "a", "ꮃ": "w",
}
_CONFUSABLE_ONE = {k: v for k, v in _CONFUSABLES.items() if len(k) == 1}
_CONFUSABLE_SCRIPTS = frozenset({"CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE"})
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# encoded payloads (bounded: a run longer than this is not decoded, only its prefix)
_MAX_PAYLOADS = 16
_MAX_PAYLOAD_CHARS = 8192
# maximal runs of base64 characters (a left-to-right greedy scan finds each run whole)
_B64 = re.compile(r"[A-Za-z0-9+/_=-]{16,}")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:(?:\\x|0x)?[0-9A-Fa-f]{2}[ :]?){8,}(?![0-9A-Fa-f])")
# cheap test that a hex payload may be there (the _HEX regex backtracks on every a-f word)
_HEX_HINT = re.compile(r"[0-9A-Fa-f]{16}|(?:\\x[0-9A-Fa-f]{2}){4}|(?:[0-9A-Fa-f]{2}[ :]){7}|"
                       r"(?:0x[0-9A-Fa-f]{2}[ :]?){4}")
_PCT = re.compile(r"(?:%[0-9A-Fa-f]{2}[^%\s]{0,3}){6,}")
_ROT13_HINT = re.compile(r"\brot[-_ ]?13\b", re.IGNORECASE)
# frequent English words: rot13 is decoded when its form has clearly more of them
_COMMON_WORDS = (
    "the be to of and a in that have i it for not on with he as you do at this but his by "
    "from they we say her she or an will my one all would there their what so up out if "
    "about who get which go me when make can like time no just him know take people into "
    "your good some could them see other than then now look only come its over think also "
    "back after use two how our work first well way even new want because any these give "
    "day most us is are was were instructions ignore previous all prompt system reveal "
    "tell secret password rules")
_COMMON = frozenset(_COMMON_WORDS.split())


@dataclass(frozen=True)
class Decoded:
    """A payload found encoded in the text, and what it says. ``kind``: ``base64``,
    ``hex``, ``percent``, ``rot13``, ``tag`` (tag-character smuggling) or
    ``variation_selector``; ``start``/``end``: where in the original text."""

    kind: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Normalised:
    """The text to scan (``text``), the payloads decoded from it (``decoded``, each to be
    scanned too) and the findings about hiding (``findings``)."""

    original: str
    text: str
    decoded: tuple[Decoded, ...] = ()
    findings: tuple[Finding, ...] = ()

    def texts(self) -> list[tuple[str, str]]:
        """Every text a detector should read: ``("text", text)`` then each decoded
        payload as ``(kind, text)``."""
        return [("text", self.text)] + [(d.kind, d.text) for d in self.decoded]


_HIDDEN = re.compile("[" + "".join(chr(c) for c in sorted(_INVISIBLE))
                     + "\ufe00-\ufe0f\U000e0000-\U000e007f\U000e0100-\U000e01ef]")


def strip_invisible(text: str) -> tuple[str, list[Finding], list[Decoded]]:
    """Remove invisible, tag and variation-selector characters; report them, and decode
    what tag characters and variation-selector runs spell."""
    if _HIDDEN.search(text) is None:  # the common case: nothing hidden, no loop in Python
        return text, [], []
    out: list[str] = []
    findings: list[Finding] = []
    decoded: list[Decoded] = []
    zw = bidi = 0
    first_zw = -1
    i, n = 0, len(text)
    while i < n:
        cp = ord(text[i])
        if _TAG_FIRST <= cp <= _TAG_LAST:
            j = i
            while j < n and _TAG_FIRST <= ord(text[j]) <= _TAG_LAST:
                j += 1
            hidden = "".join(chr(ord(c) - _TAG_FIRST) for c in text[i:j]
                             if 0x20 <= ord(c) - _TAG_FIRST <= 0x7E)
            findings.append(Finding(
                DETECTOR, "", "tag_characters", 0.9, i, j, _OBF,
                f"{j - i} Unicode tag characters (invisible) spelling {len(hidden)} "
                "ASCII characters"))
            if hidden.strip():
                decoded.append(Decoded("tag", i, j, hidden))
            i = j
            continue
        if _is_vs(cp):
            j = i
            while j < n and _is_vs(ord(text[j])):
                j += 1
            # one selector after a character is ordinary (emoji vs text presentation)
            if j - i >= 2 or not 0xFE0E <= cp <= 0xFE0F:
                raw = bytes(_vs_byte(ord(c)) for c in text[i:j])
                msg = raw.decode("utf-8", errors="replace")
                findings.append(Finding(
                    DETECTOR, "", "variation_selectors", 0.8, i, j, _OBF,
                    f"a run of {j - i} variation selectors (emoji smuggling)"))
                if _texty(msg):
                    decoded.append(Decoded("variation_selector", i, j, msg))
            i = j
            continue
        if cp in _INVISIBLE:
            if cp in _BIDI:
                bidi += 1
            else:
                zw += 1
                if first_zw < 0:
                    first_zw = i
            i += 1
            continue
        out.append(text[i])
        i += 1
    if zw:
        findings.append(Finding(DETECTOR, "", "zero_width", min(0.3 + 0.05 * zw, 0.7),
                                first_zw, first_zw + 1, _OBF,
                                f"{zw} zero-width or invisible characters removed"))
    if bidi:
        findings.append(Finding(DETECTOR, "", "bidi_controls", 0.5, -1, -1, _OBF,
                                f"{bidi} bidirectional control characters removed"))
    return "".join(out), findings, decoded


def fold_homoglyphs(text: str) -> tuple[str, int]:
    """Fold words whose every non-ASCII letter is an ASCII confusable; return the text and
    how many words were folded. Words with any other non-ASCII letter (real Cyrillic,
    Greek, Japanese) are kept as they are, and so are all-confusable words in a text that
    is otherwise written in Cyrillic, Greek, Armenian or Cherokee."""
    if text.isascii():
        return text, 0
    folded = 0
    # In text that is really written in one of these scripts ("как" is three Cyrillic
    # confusables), fold only words that mix in ASCII letters; else any confusable word.
    native = any(c not in _CONFUSABLE_ONE and c.isalpha() and not c.isascii()
                 and unicodedata.name(c, "").split(" ", 1)[0] in _CONFUSABLE_SCRIPTS
                 for c in text)

    def word(m: re.Match[str]) -> str:
        nonlocal folded
        w = m.group(0)
        if w.isascii():
            return w
        if native and not any(c.isascii() and c.isalpha() for c in w):
            return w
        if all(c.isascii() or c in _CONFUSABLE_ONE for c in w):
            folded += 1
            return "".join(_CONFUSABLE_ONE.get(c, c) for c in w)
        return w

    return _WORD.sub(word, text), folded


def _texty(s: str) -> bool:
    """Decoded bytes worth scanning: mostly printable, with letters (not binary noise)."""
    if len(s) < 4:
        return False
    printable = sum(1 for c in s if c.isprintable() or c.isspace())
    letters = sum(1 for c in s if c.isalpha())
    return printable >= 0.9 * len(s) and letters >= 0.4 * len(s) and "\ufffd" not in s


def _utf8(raw: bytes) -> str | None:
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return s if _texty(s) else None


def _decode_b64(run: str) -> str | None:
    s = run.rstrip("=")
    if "=" in s or len(run) - len(s) > 2:  # padding only at the end, at most two
        return None
    if len(s) % 4 == 1:
        return None
    # a long word of letters only is far more often a word or identifier than base64
    if s.isalpha() and (s.islower() or s.isupper()):
        return None
    padded = s + "=" * (-len(s) % 4)
    for altchars in (b"+/", b"-_"):
        try:
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        got = _utf8(raw)
        if got is not None:
            return got
    return None


def _decode_hex(run: str) -> str | None:
    digits = re.sub(r"\\x|0x|[ :]", "", run)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _utf8(bytes.fromhex(digits))
    except ValueError:
        return None


def _englishness(s: str) -> int:
    return sum(1 for w in re.findall(r"[a-z]+", s.lower()) if w in _COMMON)


def _payloads(text: str) -> list[Decoded]:
    out: list[Decoded] = []
    hexy = _HEX_HINT.search(text) is not None
    for kind, rx, dec in (("base64", _B64, _decode_b64), ("hex", _HEX, _decode_hex)):
        if kind == "hex" and not hexy:
            continue
        for m in rx.finditer(text):
            if len(out) >= _MAX_PAYLOADS:
                return out
            got = dec(m.group(0)[:_MAX_PAYLOAD_CHARS])
            if got is not None:
                out.append(Decoded(kind, m.start(), m.end(), got))
    for m in _PCT.finditer(text) if "%" in text else ():
        if len(out) >= _MAX_PAYLOADS:
            return out
        got = _utf8(unquote_to_bytes(m.group(0)[:_MAX_PAYLOAD_CHARS]))
        if got is not None:
            out.append(Decoded("percent", m.start(), m.end(), got))
    return out


def _rot13(text: str) -> Decoded | None:
    """The rot13 reading of the text, if it is said to be rot13 or reads as English
    clearly better than the text does (one cheap count of frequent words each way)."""
    if not any(c.isascii() and c.isalpha() for c in text[:_MAX_PAYLOAD_CHARS]):
        return None
    head = text[:_MAX_PAYLOAD_CHARS]
    hinted = _ROT13_HINT.search(head) is not None
    before = _englishness(head)
    if before >= 8 and not hinted:  # plainly English already: not worth a rot13 reading
        return None
    rot = codecs.encode(head, "rot13")
    after = _englishness(rot)
    if (hinted and after >= 1) or (after >= 3 and after > 2 * before):
        return Decoded("rot13", 0, len(head), rot)
    return None


def normalise(text: str, channel: str = CHANNEL_USER, *, decode: bool = True) -> Normalised:
    """The text as a detector should read it, the payloads hidden in it, and findings
    (detector ``normalise``, on ``channel``) for each kind of hiding undone."""
    if not isinstance(text, str):
        raise TypeError(f"normalise() takes a str, not {type(text).__name__}")
    stripped, findings, decoded = strip_invisible(text)
    nfkc = (stripped if unicodedata.is_normalized("NFKC", stripped)
            else unicodedata.normalize("NFKC", stripped))
    folded, n_folded = fold_homoglyphs(nfkc)
    if n_folded:
        findings.append(Finding(DETECTOR, "", "homoglyphs", min(0.3 + 0.1 * n_folded, 0.8),
                                -1, -1, _OBF,
                                f"{n_folded} words written with lookalike letters folded "
                                "to ASCII"))
    if nfkc != stripped and _compat_letters(stripped):
        findings.append(Finding(DETECTOR, "", "compatibility_forms", 0.2, -1, -1, _OBF,
                                "fullwidth or styled letters folded by NFKC"))
    if decode:
        for d in _payloads(text if text.isascii() else folded):
            decoded.append(d)
        r = _rot13(folded)
        if r is not None:
            decoded.append(r)
        for d in decoded:
            if d.kind in ("base64", "hex", "percent", "rot13"):
                findings.append(Finding(DETECTOR, "", f"encoded_{d.kind}", 0.3, d.start,
                                        d.end, _OBF,
                                        f"a {d.kind} payload decoded to {len(d.text)} "
                                        "characters of text"))
    findings = [Finding(f.detector, channel, f.kind, f.score, f.start, f.end,
                        f.technique_ids, f.message) for f in findings]
    # decoded payloads are normalised too (tag text is ASCII already; others may not be)
    decoded = [Decoded(d.kind, d.start, d.end,
                       fold_homoglyphs(unicodedata.normalize("NFKC",
                                                             strip_invisible(d.text)[0]))[0])
               for d in decoded]
    return Normalised(text, folded, tuple(decoded), tuple(findings))


def _compat_letters(s: str) -> bool:
    # fullwidth Latin letters or mathematical alphanumerics (U+1D400-1D7FF): styled
    # letters used to slip past keyword rules; NFKC of Japanese half-width kana is not
    return any(0xFF21 <= ord(c) <= 0xFF3A or 0xFF41 <= ord(c) <= 0xFF5A
               or 0x1D400 <= ord(c) <= 0x1D7FF for c in s)
