"""Personal data in text: Japanese identifiers and the usual international ones.

Pure Python (regular expressions, check digits, context words), offline: no NER model,
no suffix list, nothing fetched. The text is folded first (:func:`kansa.guard.fold.fold`:
full-width digits and hyphen variants, same length), so spans are in the text as given.

================  =================================================  =========================
kind              what                                               validator
================  =================================================  =========================
my_number         個人番号: 12 digits, check digit per the MIC         ``check_digit`` (invalid
                  ordinance (総務省令第85号 第5条)                         numbers are not reported)
phone_jp          fixed (0X-XXXX-XXXX), mobile 070/080/090, 050,      ``digits`` (the number of
                  0120/0800, +81 forms, full-width digits             digits fits the prefix)
phone             E.164 (``+`` country code, 8 to 15 digits)          ``digits``
postcode_jp       〒123-4567; 123-4567 beside 郵便番号/住所 or a      ``context``
                  prefecture
address_jp        prefecture + municipality (+ town and block), or    ``format``
                  a ward/city with a block number
person            a name before 様/さん/氏/殿/先生, after 氏名: /       ``context``
                  お名前: labels, after Mr/Ms/Dr
bank_account_jp   7 digits after 口座番号/普通/当座/account number      ``context``
drivers_licence   12 digits after 運転免許/免許証番号/driver's licence  ``context``
passport          2 letters + 7 digits after 旅券/パスポート/passport    ``context``
email             local@domain.tld                                    ``format``
payment_card      13-19 digits, a known IIN range                     ``luhn``
iban              country, check digits, BBAN of the country's length ``mod97``
us_ssn            123-45-6789 (not 000/666/9xx, 00, 0000)             ``format`` / ``context``
================  =================================================  =========================

Confidence (``score``) is higher with a context word (``マイナンバー``, ``TEL``, ...)
than without; callers pick a threshold (:data:`DEFAULT_MIN_SCORE`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator

from kansa.guard.findings import CHANNEL_USER, Finding, Technique, check_channel
from kansa.guard.fold import fold
from kansa.guard.secrets import resolve_overlaps

__all__ = ["DEFAULT_MIN_SCORE", "PII_KINDS", "iban_ok", "luhn_ok", "my_number_check_digit",
           "my_number_ok", "scan_pii"]

DETECTOR = "pii"
_TECH = (Technique.DATA_LEAKAGE, Technique.OWASP_SENSITIVE_DISCLOSURE)
DEFAULT_MIN_SCORE = 0.5

PII_KINDS = frozenset({"my_number", "phone_jp", "phone", "postcode_jp", "address_jp",
                       "person", "bank_account_jp", "drivers_licence", "passport", "email",
                       "payment_card", "iban", "us_ssn"})

# -- validators -----------------------------------------------------------------------------


def my_number_check_digit(first11: str) -> int:
    """The check digit of a My Number whose first 11 digits are ``first11``: with P(n)
    the n-th digit counted from the right (n = 1..11) and Q(n) = n + 1 for n <= 6, n - 5
    for n >= 7, r = sum(P(n) Q(n)) mod 11; the check digit is 0 if r <= 1, else 11 - r."""
    if len(first11) != 11 or not first11.isascii() or not first11.isdigit():
        raise ValueError("a My Number has 11 digits before its check digit")
    total = 0
    for n in range(1, 12):
        p = int(first11[11 - n])
        total += p * (n + 1 if n <= 6 else n - 5)
    r = total % 11
    return 0 if r <= 1 else 11 - r


def my_number_ok(digits: str) -> bool:
    """``digits`` (12 ASCII digits) is a My Number: its last digit is the check digit."""
    return (len(digits) == 12 and digits.isascii() and digits.isdigit()
            and my_number_check_digit(digits[:11]) == int(digits[11]))


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of a payment card number."""
    if not digits.isascii() or not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# IBAN lengths by country (SWIFT IBAN registry); a country not listed is not an IBAN
_IBAN_LEN = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_ok(iban: str) -> bool:
    """An IBAN (no spaces): a known country, its length, and mod 97 = 1 (ISO 13616)."""
    if not iban.isascii() or not iban.isalnum() or _IBAN_LEN.get(iban[:2]) != len(iban):
        return False
    if not iban[2:4].isdigit():
        return False
    moved = iban[4:] + iban[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


# -- patterns ---------------------------------------------------------------------------------

# Boundaries are ASCII classes, never \w: in Python \w matches kana and kanji, and a
# value is usually glued to Japanese text (電話番号は+81..., a@b.jpまで)
# not part of a longer number, nor of an identifier or hash (git commit ids, hex digests)
_NOT_BEFORE = r"(?<![0-9A-Za-z])(?<![0-9][ \-])"
_NOT_AFTER = r"(?![ \-]?[0-9])(?![A-Za-z])"

_PREFS = ("北海道|東京都|京都府|大阪府|(?:青森|岩手|宮城|秋田|山形|福島|茨城|栃木|群馬|埼玉|千葉|"
          "神奈川|新潟|富山|石川|福井|山梨|長野|岐阜|静岡|愛知|三重|滋賀|兵庫|奈良|和歌山|鳥取|島根|"
          "岡山|広島|山口|徳島|香川|愛媛|高知|福岡|佐賀|長崎|熊本|大分|宮崎|鹿児島|沖縄)県")
_KANJI = "一-龥々〆ヶケ"
_BLOCK = r"[0-9]+(?:(?:丁目|番地|番|号|条|線|-|の)[東西南北]?[0-9]*){0,4}"

_MY_NUMBER = re.compile(_NOT_BEFORE + r"([0-9]{4})[ \-]?([0-9]{4})[ \-]?([0-9]{4})"
                        + _NOT_AFTER)
_MY_NUMBER_CTX = re.compile(r"マイナンバー|個人番号|my ?number|individual number", re.I)

_PHONE_SEP = re.compile(r"(?<![0-9+\-.])\(?(0[1-9][0-9]{0,3})\)?[ \-]?([0-9]{1,4})[ \-]"
                        r"([0-9]{3,4})(?![0-9]|-[0-9])")
_PHONE_BARE = re.compile(r"(?<![0-9+\-.])(0[1-9][0-9]{8,9})(?![0-9]|-[0-9])")
_PHONE_81 = re.compile(r"(?<![0-9A-Za-z_])\+81[ \-]?(?:\(0\))?[ \-]?\(?0?([1-9][0-9]{0,3})\)?"
                       r"[ \-]?([0-9]{1,4})[ \-]?([0-9]{3,4})(?![0-9]|-[0-9])")
_PHONE_CTX = re.compile(r"電話|TEL|Tel|tel|phone|Phone|携帯|連絡先|FAX|Fax|℡|☎|📞")
_E164 = re.compile(r"(?<![0-9A-Za-z_+])\+([1-9][0-9]{0,2})((?:[ \-]?\(?[0-9]{1,5}\)?){2,6})"
                   r"(?![0-9]|-[0-9])")

_POSTCODE_MARK = re.compile(r"〒\s?([0-9]{3})-?([0-9]{4})(?![0-9]|-[0-9])")
_POSTCODE = re.compile(r"(?<![0-9\-])([0-9]{3})-([0-9]{4})(?![0-9]|-[0-9])")
_POSTCODE_CTX = re.compile(r"郵便番号|郵便|住所|所在地|postal|post code|postcode|zip", re.I)
_PREF_RX = re.compile(_PREFS)

_ADDRESS = re.compile(rf"(?:{_PREFS})[{_KANJI}ぁ-んァ-ヶー]{{0,8}}?[市区町村郡]"
                      rf"(?:[{_KANJI}のノ]{{0,10}}(?:{_BLOCK})?)?")
# without a prefecture, only with a block number (1-2-3, 1丁目2番): 区 or 市 alone is
# too common a character in prose
_ADDRESS_NOPREF = re.compile(rf"[{_KANJI}]{{1,5}}[市区町村][{_KANJI}のノ]{{1,10}}"
                             rf"(?=[0-9]+(?:丁目|番地|番|条|-)[0-9東西南北]){_BLOCK}")

_HONORIFIC = re.compile(rf"([{_KANJI}]{{1,4}}(?:[ 　][{_KANJI}]{{1,4}})?|[ァ-ヶー]{{2,12}}"
                        rf"(?:[・ 　][ァ-ヶー]{{2,12}})?)"
                        r"[ 　]?(?:様(?![式子々相態])|さま|さん|氏(?!名)|殿|先生|くん|ちゃん)")
# kanji that make a word with 様 (仕様 "specification", 模様, 多様, 同様 ...): not a name
_SAMA_WORDS = frozenset("仕模多同異一外左有態両各別今上殿")
# a value after a name label that reads as a sentence (a UI message), not a name
_SENTENCE = re.compile(r"ません|です|ます|では|ない|して|する|した|ください")
_NOT_NAME_WORDS = (  # words before an honorific that are not a name
    "皆 お客 客 各位 貴 奥 神 王 仏 患者 利用者 会員 皆々 担当 担当者 お母 お父 お姉 お兄 母 父 "
    "姉 兄 弟 妹 娘 息子 同 両 彼 当 貴社 御社 先方 相手 本人 ご本人 職員 社員 店員 店長 部長 "
    "課長 社長 係長 主任 所長 院長 校長 会長 理事長 議長 委員長 大臣 知事 市長 先輩 後輩 奥様 "
    "ユーザー ゲスト オーナー メンバー カスタマー スタッフ クライアント サポート ドライバー "
    "ホスト パートナー ファン お得意 得意 上 下 神様 仏様 お疲れ 御苦労 ご苦労 みな 皆様 "
    "医 教授 博士 准教授 講師 弁護士 税理士 会計士 作家 画家 選手 監督 お嬢 お坊 坊 嬢")
_NOT_NAMES = frozenset(_NOT_NAME_WORDS.split())
_TITLE_PREFIX = re.compile(r"^(?:部長|課長|社長|係長|主任|所長|院長|会長|担当|代表|専務|常務|"
                           r"取締役|次長|室長|店長)")
_NAME_LABEL = re.compile(r"(?:氏名|お名前|名前|フリガナ|ふりがな|患者名|契約者名?|申込者名?|"
                         r"受取人|宛名|被保険者名?)[ \t]*[:：][ \t　]*"
                         r"([^\n\r,，、。;；:：()（）<>\"'{}\[\]]{1,30}?)"
                         r"(?=[ \t　]*(?:$|[\n\r,，、。;；()（）<>\"'{}\[\]]|様|さん|殿))",
                         re.M)
_EN_LABEL = re.compile(r"(?<![A-Za-z\-])(?:Full name|Name)[ \t]*:[ \t]*"
                       r"([A-Z][a-z]+(?: [A-Z][a-z]+){1,2})"
                       r"(?=[ \t]*(?:$|[\n\r,;()<>\"'{}\[\]]))", re.M)
_EN_NAME = re.compile(r"(?<![A-Za-z])(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.? ([A-Z][a-z]+(?: [A-Z][a-z]+)?)")
_LATIN_NAME = re.compile(r"^[A-Z][a-z]+(?: [A-Z][a-z]+){1,2}$")

_BANK = re.compile(r"(?:口座番号|口座|普通預金|当座預金|普通|当座|(?i:account (?:number|no\.?)))"
                   r"[^0-9\n]{0,12}?" + _NOT_BEFORE + r"([0-9]{7})" + _NOT_AFTER)
_LICENCE = re.compile(r"(?:運転免許証?(?:の)?(?:番号)?|免許証番号|免許番号|"
                      r"(?i:driver'?s? licen[cs]e(?: (?:number|no\.?))?))[^0-9\n]{0,12}?"
                      r"(?<![0-9])([0-9]{4}[ \-]?[0-9]{4}[ \-]?[0-9]{4})" + _NOT_AFTER)
_PASSPORT = re.compile(r"(?:旅券番号?|パスポート(?:番号)?|(?i:passport(?: (?:number|no\.?))?))"
                       r"[^\n]{0,15}?(?<![A-Za-z])([A-Z]{2}[0-9]{7})(?![0-9])")
_EMAIL = re.compile(r"(?<![A-Za-z0-9_.+\-])[A-Za-z0-9._%+\-]{1,64}@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9_\-])")
_CARD = re.compile(_NOT_BEFORE + r"([0-9](?:[ \-]?[0-9]){12,18})" + _NOT_AFTER)
_CARD_IIN = re.compile(r"^(?:4|5[1-5]|2(?:2[2-9][1-9]|2[3-9]|[3-6]|7[01]|720)|3[47]|6011|"
                       r"64[4-9]|65|35(?:2[89]|[3-8])|3(?:0[0-5]|[68])|62)")
_IBAN = re.compile(r"(?<![A-Z0-9])([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)"
                   r"(?![A-Z0-9])")
_SSN = re.compile(r"(?<![0-9\-])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9]|-[0-9])")
_SSN_CTX = re.compile(r"SSN|social security", re.I)
_SSN_BARE = re.compile(r"(?:SSN|(?i:social security(?: number| no\.?)?))[^0-9\n]{0,12}"
                       r"(?<![0-9])([0-9]{9})(?![0-9])")

_CONTEXT_BEFORE = 24  # characters before a match in which a context word counts
_CONTEXT_AFTER = 8


def _near(t: str, start: int, end: int, rx: re.Pattern[str],
          before: int = _CONTEXT_BEFORE, after: int = _CONTEXT_AFTER) -> bool:
    return rx.search(t, max(0, start - before), min(len(t), end + after)) is not None


def _digits(s: str) -> str:
    return "".join(c for c in s if "0" <= c <= "9")


# -- the detectors: each yields (kind, start, end, score, validator) ------------------------

_Hit = tuple[str, int, int, float, str]


def _my_numbers(t: str) -> Iterator[_Hit]:
    for m in _MY_NUMBER.finditer(t):
        if my_number_ok(m.group(1) + m.group(2) + m.group(3)):
            ctx = _near(t, m.start(), m.end(), _MY_NUMBER_CTX)
            yield "my_number", m.start(), m.end(), 0.97 if ctx else 0.6, "check_digit"


def _jp_length_ok(d: str) -> bool:
    """Domestic Japanese numbers: 11 digits for mobile/IP/M2M (070/080/090/050/020) and
    0800, 10 for the rest (fixed lines, 0120, 0570)."""
    if d[:3] in ("070", "080", "090", "050", "020") or d[:4] == "0800":
        return len(d) == 11
    return len(d) == 10


def _phones_jp(t: str) -> Iterator[_Hit]:
    for m in _PHONE_SEP.finditer(t):
        d = _digits(m.group())
        if _jp_length_ok(d):
            yield "phone_jp", m.start(), m.end(), 0.9, "digits"
    for m in _PHONE_BARE.finditer(t):
        d = m.group(1)
        if not _jp_length_ok(d):
            continue
        if d[:3] in ("070", "080", "090", "050"):
            yield "phone_jp", m.start(), m.end(), 0.8, "digits"
        elif _near(t, m.start(), m.end(), _PHONE_CTX, after=0):
            yield "phone_jp", m.start(), m.end(), 0.75, "context"
    for m in _PHONE_81.finditer(t):
        d = "0" + m.group(1) + m.group(2) + m.group(3)
        if _jp_length_ok(d):
            yield "phone_jp", m.start(), m.end(), 0.95, "digits"


def _phones_e164(t: str) -> Iterator[_Hit]:
    if "+" not in t:
        return
    for m in _E164.finditer(t):
        if m.group(1).startswith("81") and len(m.group(1)) == 2:
            continue  # +81: the Japanese rules read it
        n = len(m.group(1)) + len(_digits(m.group(2)))
        if 8 <= n <= 15:
            ctx = _near(t, m.start(), m.end(), _PHONE_CTX)
            yield "phone", m.start(), m.end(), 0.85 if ctx else 0.7, "digits"


def _postcodes(t: str) -> Iterator[_Hit]:
    for m in _POSTCODE_MARK.finditer(t):
        yield "postcode_jp", m.start(), m.end(), 0.97, "format"
    for m in _POSTCODE.finditer(t):
        if (_near(t, m.start(), m.end(), _POSTCODE_CTX, after=0)
                or _PREF_RX.match(t, m.end() + (1 if t[m.end():m.end() + 1] in " 　" else 0))):
            yield "postcode_jp", m.start(), m.end(), 0.85, "context"


_CJK = re.compile("[\u3040-\u30ff\u3400-\u9fff]")  # kana and kanji


def _addresses(t: str) -> Iterator[_Hit]:
    if not ("都" in t or "道" in t or "府" in t or "県" in t or "市" in t or "区" in t
            or "町" in t or "村" in t):
        return
    for m in _ADDRESS.finditer(t):
        yield "address_jp", m.start(), m.end(), 0.85, "format"
    for m in _ADDRESS_NOPREF.finditer(t):
        yield "address_jp", m.start(), m.end(), 0.7, "format"


def _trim_name(name: str) -> tuple[int, str]:
    """Drop a title in front of a name (部長田中 -> 田中): (characters dropped, name)."""
    m = _TITLE_PREFIX.match(name)
    if m and len(name) - m.end() >= 1:
        return m.end(), name[m.end():]
    return 0, name


def _persons(t: str) -> Iterator[_Hit]:
    if not t.isascii() and _CJK.search(t):  # the Japanese rules need kanji or kana
        for m in _HONORIFIC.finditer(t):
            if m.group(1) in _NOT_NAMES:
                continue
            cut, name = _trim_name(m.group(1))
            if name.strip() in _NOT_NAMES or name.startswith(("お", "ご", "御")):
                continue
            if m.group().endswith("様") and name[-1] in _SAMA_WORDS:
                continue
            start = m.start(1) + cut
            yield "person", start, start + len(name), 0.7, "context"
        for m in _NAME_LABEL.finditer(t):
            name = m.group(1).strip()
            if not name or not any(c.isalpha() for c in name) or _SENTENCE.search(name):
                continue
            if name.isascii() and not _LATIN_NAME.match(name):
                continue  # "名前: build" is not a person
            start = m.start(1) + (len(m.group(1)) - len(m.group(1).lstrip()))
            yield "person", start, start + len(name), 0.9, "context"
    if "ame" in t:
        for m in _EN_LABEL.finditer(t):
            yield "person", m.start(1), m.end(1), 0.9, "context"
    if "M" in t or "D" in t or "P" in t:
        for m in _EN_NAME.finditer(t):
            yield "person", m.start(1), m.end(1), 0.7, "context"


def _bank_licence_passport(t: str) -> Iterator[_Hit]:
    for m in _BANK.finditer(t):
        yield "bank_account_jp", m.start(1), m.end(1), 0.85, "context"
    for m in _LICENCE.finditer(t):
        yield "drivers_licence", m.start(1), m.end(1), 0.9, "context"
    for m in _PASSPORT.finditer(t):
        yield "passport", m.start(1), m.end(1), 0.9, "context"


def _emails(t: str) -> Iterator[_Hit]:
    if "@" not in t:
        return
    for m in _EMAIL.finditer(t):
        yield "email", m.start(), m.end(), 0.95, "format"


def _cards(t: str) -> Iterator[_Hit]:
    for m in _CARD.finditer(t):
        d = _digits(m.group(1))
        if 13 <= len(d) <= 19 and _CARD_IIN.match(d) and luhn_ok(d):
            yield "payment_card", m.start(1), m.end(1), 0.9, "luhn"


def _ibans(t: str) -> Iterator[_Hit]:
    for m in _IBAN.finditer(t):
        raw = m.group(1)
        want = _IBAN_LEN.get(raw[:2])
        if want is None:
            continue
        # the pattern may take a following group of letters: cut at the country's length
        seen, end = 0, 0
        for i, c in enumerate(raw):
            if c != " ":
                seen += 1
                if seen == want:
                    end = i + 1
                    break
        if end and iban_ok(raw[:end].replace(" ", "")):
            yield "iban", m.start(1), m.start(1) + end, 0.95, "mod97"


def _ssns(t: str) -> Iterator[_Hit]:
    for m in _SSN.finditer(t):
        area, group, serial = m.group(1), m.group(2), m.group(3)
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        ctx = _near(t, m.start(), m.end(), _SSN_CTX)
        yield "us_ssn", m.start(), m.end(), 0.95 if ctx else 0.6, "format"
    for m in _SSN_BARE.finditer(t):
        yield "us_ssn", m.start(1), m.end(1), 0.9, "context"


# numbers: each needs a run of at least 7 digits (separators allowed), so they run only on
# windows around such runs: most code and prose has few, and a regex pass over a window
# costs a fraction of one over the whole text
_NUMERIC: tuple[tuple[frozenset[str], Callable[[str], Iterator[_Hit]]], ...] = (
    (frozenset({"my_number"}), _my_numbers),
    (frozenset({"phone_jp"}), _phones_jp),
    (frozenset({"phone"}), _phones_e164),
    (frozenset({"postcode_jp"}), _postcodes),
    (frozenset({"bank_account_jp", "drivers_licence", "passport"}), _bank_licence_passport),
    (frozenset({"payment_card"}), _cards),
    (frozenset({"iban"}), _ibans),
    (frozenset({"us_ssn"}), _ssns),
)
_TEXTUAL: tuple[tuple[frozenset[str], Callable[[str], Iterator[_Hit]]], ...] = (
    (frozenset({"address_jp"}), _addresses),
    (frozenset({"person"}), _persons),
    (frozenset({"email"}), _emails),
)
_RUN = re.compile(r"[0-9](?:[ \-()]{0,2}[0-9]){6,}")
_PAD_BEFORE = 48  # > the longest label + gap a numeric rule reads before its number
_PAD_AFTER = 16  # a prefecture after a postcode
_SEP = frozenset("0123456789 -()+")


def _windows(t: str) -> list[tuple[int, int]]:
    """Merged [start, end) windows around every run of 7+ digits, widened to the labels
    before and after, and never cutting a number (so boundaries read as in the text)."""
    out: list[tuple[int, int]] = []
    for m in _RUN.finditer(t):
        s, e = max(0, m.start() - _PAD_BEFORE), min(len(t), m.end() + _PAD_AFTER)
        while s > 0 and t[s - 1] in _SEP:
            s -= 1
        while e < len(t) and t[e] in _SEP:
            e += 1
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out


def scan_pii(text: str, channel: str = CHANNEL_USER, *, kinds: Collection[str] | None = None,
             min_score: float = DEFAULT_MIN_SCORE) -> list[Finding]:
    """The personal data in ``text`` (spans in ``text`` as given), one finding per
    stretch of text (the most confident kind wins an overlap), sorted by position.
    ``kinds``: only these (a :class:`~kansa.guard.findings.GuardError` names an unknown
    one); ``min_score``: drop findings below this confidence."""
    check_channel(channel)
    want: frozenset[str] | None = None
    if kinds is not None:
        want = frozenset(kinds)
        unknown = want - PII_KINDS
        if unknown:
            from kansa.errors import GuardError
            raise GuardError(f"unknown personal-data kind(s): {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(PII_KINDS))})")
    t = fold(text)
    hits: list[_Hit] = []
    for produces, detect in _TEXTUAL:
        if want is None or produces & want:
            hits += detect(t)
    for s, e in _windows(t):
        w = t[s:e]
        for produces, detect in _NUMERIC:
            if want is None or produces & want:
                hits += ((k, a + s, b + s, sc, v) for k, a, b, sc, v in detect(w))
    found = [Finding(DETECTOR, channel, kind, score, start, end, _TECH,
                     f"personal data ({kind.replace('_', ' ')})", {"validator": validator})
             for kind, start, end, score, validator in hits
             if score >= min_score and (want is None or kind in want)]
    return resolve_overlaps(found)
