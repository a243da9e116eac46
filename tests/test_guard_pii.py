"""Personal-data detection (kansa.guard.pii): the validators as properties (My Number
check digit, Luhn, IBAN mod 97), Japanese and international forms found with exact
spans, invalid numbers and lookalikes not, random Unicode never breaking it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kansa.errors import GuardError
from kansa.guard.pii import (
    PII_KINDS,
    iban_ok,
    luhn_ok,
    my_number_check_digit,
    my_number_ok,
    scan_pii,
)

digits = st.text(alphabet="0123456789", min_size=11, max_size=11)


def wide(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def kinds(text: str, **kw: object) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start:f.end]) for f in scan_pii(text, **kw)]  # type: ignore[arg-type]


# -- validators ---------------------------------------------------------------------------------


def test_my_number_check_digit_known_values() -> None:
    # worked by hand from the ordinance: 1..11 weights 2,3,4,5,6,7,2,3,4,5,6 from the right
    assert my_number_check_digit("12345678901") == 8
    assert my_number_check_digit("00000000000") == 0
    assert my_number_ok("123456789018")
    assert not my_number_ok("123456789012")
    with pytest.raises(ValueError):
        my_number_check_digit("１２３４５６７８９０１")  # full-width: fold first


@settings(max_examples=300)
@given(digits, st.integers(0, 9))
def test_my_number_exactly_one_check_digit_passes(first11: str, last: int) -> None:
    c = my_number_check_digit(first11)
    assert 0 <= c <= 9
    assert my_number_ok(first11 + str(last)) == (last == c)


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.data())
def test_luhn_detects_every_single_digit_change(body: str, data: st.DataObject) -> None:
    check = next(d for d in "0123456789" if luhn_ok(body + d))
    number = body + check
    i = data.draw(st.integers(0, len(number) - 1))
    other = data.draw(st.sampled_from([d for d in "0123456789" if d != number[i]]))
    assert luhn_ok(number)
    assert not luhn_ok(number[:i] + other + number[i + 1:])


def _iban(country: str, bban: str) -> str:
    n = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - n % 97:02d}{bban}"


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=18, max_size=18), st.data())
def test_iban_mod97_detects_every_single_digit_change(bban: str, data: st.DataObject) -> None:
    # ISO 7064 MOD 97-10 catches every single-digit substitution (a letter, read as two
    # digits, may escape it: not claimed)
    iban = _iban("DE", bban)  # DE: 22 characters, a numeric BBAN
    assert iban_ok(iban)
    i = data.draw(st.integers(2, len(iban) - 1))
    other = data.draw(st.sampled_from([c for c in "0123456789" if c != iban[i]]))
    assert not iban_ok(iban[:i] + other + iban[i + 1:])


def test_iban_known_examples_and_wrong_lengths() -> None:
    assert iban_ok("GB82WEST12345698765432")
    assert iban_ok("DE89370400440532013000")
    assert not iban_ok("GB82WEST1234569876543")  # one short
    assert not iban_ok("ZZ82WEST12345698765432")  # no such country


# -- Japanese ----------------------------------------------------------------------------------

MN = "123456789018"


@pytest.mark.parametrize("text,want", [
    (f"マイナンバー：{MN}", [("my_number", MN)]),
    (f"個人番号 {MN[:4]}-{MN[4:8]}-{MN[8:]} です", [("my_number", "1234-5678-9018")]),
    (f"個人番号は{wide(MN)}", [("my_number", wide(MN))]),
    (f"番号 {MN[:4]} {MN[4:8]} {MN[8:]}", [("my_number", "1234 5678 9018")]),
])
def test_my_number_forms(text: str, want: list[tuple[str, str]]) -> None:
    assert kinds(text) == want


def test_my_number_invalid_check_digit_is_not_reported() -> None:
    assert kinds("マイナンバー：123456789012") == []
    assert kinds("order 1234567890180") == []  # 13 digits: not a My Number


def test_my_number_context_raises_confidence() -> None:
    [bare] = scan_pii(f"id {MN}")
    [ctx] = scan_pii(f"マイナンバー {MN}")
    assert bare.score < ctx.score
    assert scan_pii(f"id {MN}", min_score=0.9) == []


@pytest.mark.parametrize("number", [
    "03-1234-5678", "06-6123-4567", "0466-12-3456", "090-1234-5678", "080 1234 5678",
    "070-1234-5678", "050-1234-5678", "0120-123-456", "0800-123-4567", "(03)1234-5678",
    "09012345678", "+81 90-1234-5678", "+81-3-1234-5678", "+81 (0)3 1234 5678",
    wide("090-1234-5678"), "０９０ー１２３４ー５６７８",
])
def test_japanese_phone_forms(number: str) -> None:
    assert kinds(f"連絡先 {number} まで") == [("phone_jp", number)]


@pytest.mark.parametrize("text", [
    "03-1234-567",  # too short for a fixed line
    "090-1234-567", "version 1.0.0123456789", "2024-01-0123", "00-1234-5678",
    "0312345678",  # ten bare digits without a telephone word
])
def test_not_japanese_phones(text: str) -> None:
    assert [k for k, _ in kinds(text) if k == "phone_jp"] == []


def test_bare_fixed_number_with_a_telephone_word() -> None:
    assert kinds("TEL 0312345678") == [("phone_jp", "0312345678")]


@pytest.mark.parametrize("text,want", [
    ("〒100-0001", "〒100-0001"), ("〒 1000001", "〒 1000001"),
    ("郵便番号 100-0001", "100-0001"), ("100-0001 東京都", "100-0001"),
    (f"〒{wide('150-0002')}", f"〒{wide('150-0002')}"),
])
def test_postcodes(text: str, want: str) -> None:
    assert ("postcode_jp", want) in kinds(text)


def test_seven_digits_with_a_hyphen_alone_are_not_a_postcode() -> None:
    assert kinds("ticket 123-4567 closed") == []


@pytest.mark.parametrize("text,want", [
    ("住所は東京都千代田区丸の内1丁目2番3号です", "東京都千代田区丸の内1丁目2番3号"),
    ("大阪府大阪市北区梅田3-1-1に", "大阪府大阪市北区梅田3-1-1"),
    ("北海道札幌市中央区北1条西2丁目", "北海道札幌市中央区北1条西2丁目"),
    ("神奈川県横浜市", "神奈川県横浜市"),
    ("千代田区丸の内1-2-3", "千代田区丸の内1-2-3"),
])
def test_addresses(text: str, want: str) -> None:
    assert ("address_jp", want) in kinds(text)


@pytest.mark.parametrize("text,name", [
    ("山田太郎様へ", "山田太郎"), ("先日、田中さんと話した", "田中"), ("鈴木 一郎 様", "鈴木 一郎"),
    ("部長田中様", "田中"), ("氏名：佐藤 花子\n", "佐藤 花子"), ("お名前: 高橋健\n", "高橋健"),
    ("Dear Dr. Jane Smith,", "Jane Smith"), ("Full name: John Smith\n", "John Smith"),
    ("マイケル・ジョーダンさん", "マイケル・ジョーダン"),
])
def test_names_by_honorific_and_label(text: str, name: str) -> None:
    assert ("person", name) in kinds(text)


@pytest.mark.parametrize("text", [
    "お客様各位", "皆様、皆さん、お疲れ様です", "ユーザーさんの声", "担当者様", "お母さん",
    "name: build\n", "氏名欄に記入", "同氏は", "彼氏", "リソース仕様をコンパイル", "模様です",
    "多様型", "同様に", "様式", "不正な文の名前: 空ではいけません\n",
])
def test_not_names(text: str) -> None:
    assert [k for k, _ in kinds(text) if k == "person"] == []


@pytest.mark.parametrize("text,kind,value", [
    ("三菱UFJ銀行 渋谷支店 普通 1234567", "bank_account_jp", "1234567"),
    ("口座番号：7654321", "bank_account_jp", "7654321"),
    ("運転免許証番号 123456789012", "drivers_licence", "123456789012"),
    ("免許証番号: 1234-5678-9012", "drivers_licence", "1234-5678-9012"),
    ("旅券番号 TK1234567", "passport", "TK1234567"),
    ("Passport No. XR7654321", "passport", "XR7654321"),
])
def test_context_numbers(text: str, kind: str, value: str) -> None:
    assert (kind, value) in kinds(text)


def test_context_numbers_need_their_context() -> None:
    assert kinds("1234567") == []
    assert kinds("TK1234567") == []
    # a licence number that passes the My Number check is read as a licence in context
    assert kinds(f"運転免許 {MN}") == [("drivers_licence", MN)]


# -- international -----------------------------------------------------------------------------


@pytest.mark.parametrize("text,kind,value", [
    ("mail taro.yamada+x@example.co.jp now", "email", "taro.yamada+x@example.co.jp"),
    ("card 4111 1111 1111 1111 exp", "payment_card", "4111 1111 1111 1111"),
    ("card 5500-0000-0000-0004", "payment_card", "5500-0000-0000-0004"),
    ("amex 378282246310005", "payment_card", "378282246310005"),
    ("JCB 3530111333300000", "payment_card", "3530111333300000"),
    ("IBAN GB82 WEST 1234 5698 7654 32 ok", "iban", "GB82 WEST 1234 5698 7654 32"),
    ("DE89370400440532013000", "iban", "DE89370400440532013000"),
    ("SSN 123-45-6789", "us_ssn", "123-45-6789"),
    ("social security number 123456789", "us_ssn", "123456789"),
    ("call +1 415 555 2671", "phone", "+1 415 555 2671"),
    ("+442071838750", "phone", "+442071838750"),
])
def test_international(text: str, kind: str, value: str) -> None:
    assert (kind, value) in kinds(text)


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",  # Luhn fails
    "1234 5678 9012 3452",  # Luhn passes, no card network starts with 1
    "GB82 WEST 1234 5698 7654 33", "000-12-3456", "666-12-3456", "123-00-4567",
    "user@localhost", "a@b", "@decorator", "+1 2",
    "commit 0ac6c98294d666762960824d3932", "Upstream-Name: Maven Resolver\n",
    "hash 8e206c1721564c91dd05ea46b5262670011155ab",
])
def test_international_lookalikes(text: str) -> None:
    assert kinds(text) == []


def test_kinds_filter_and_unknown_kind() -> None:
    text = f"マイナンバー {MN} mail a.b@example.com"
    assert kinds(text, kinds=["email"]) == [("email", "a.b@example.com")]
    with pytest.raises(GuardError, match="unknown personal-data kind"):
        scan_pii(text, kinds=["shoe_size"])


def test_every_kind_is_covered_by_a_test_here() -> None:
    seen = {"my_number", "phone_jp", "postcode_jp", "address_jp", "person",
            "bank_account_jp", "drivers_licence", "passport", "email", "payment_card",
            "iban", "us_ssn", "phone"}
    assert seen == PII_KINDS


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_random_unicode_never_raises_and_findings_do_not_overlap(text: str) -> None:
    found = scan_pii(text)
    for a, b in zip(found, found[1:], strict=False):
        assert a.end <= b.start
    for f in found:
        assert 0 <= f.start < f.end <= len(text)


@settings(max_examples=200, deadline=None)
@given(digits, st.sampled_from(["", "-", " ", "－"]),
       st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Nd"]), max_size=60))
def test_any_valid_my_number_in_context_is_found(first11: str, sep: str, noise: str) -> None:
    n = first11 + str(my_number_check_digit(first11))
    shown = sep.join([n[:4], n[4:8], n[8:]])
    text = f"{noise}\nマイナンバー: {shown}\n{noise}"
    assert ("my_number", shown) in kinds(text)


def _unwindowed(text: str) -> list[tuple[str, int, int]]:
    """The reference: every rule over the whole text (no digit-run windows)."""
    from kansa.guard import pii
    from kansa.guard.findings import Finding
    from kansa.guard.fold import fold
    from kansa.guard.secrets import resolve_overlaps

    t = fold(text)
    hits = [h for _, d in pii._TEXTUAL + pii._NUMERIC for h in d(t)]
    found = resolve_overlaps([Finding("pii", "user", k, sc, a, b) for k, a, b, sc, _ in hits
                              if sc >= pii.DEFAULT_MIN_SCORE])
    return [(f.kind, f.start, f.end) for f in found]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(
    ["0", "1", "2", "3", "9", "-", " ", "(", ")", "+", "81", "090", "〒", "TEL ", "口座番号 ",
     "マイナンバー", "SSN ", "GB82 WEST ", "passport TK", "東京都", "x", "。", "\n", "4111",
     "1234-5678-9018", "@a.jp", "a"]), max_size=60))
def test_digit_run_windows_find_what_the_whole_text_scan_finds(parts: list[str]) -> None:
    text = "".join(parts)
    assert [(f.kind, f.start, f.end) for f in scan_pii(text)] == _unwindowed(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_fold_keeps_the_length_and_folds_digits_and_dashes(text: str) -> None:
    from kansa.guard.fold import fold

    folded = fold(text)
    assert len(folded) == len(text)
    for a, b in zip(text, folded, strict=True):
        if "０" <= a <= "９":
            assert b == chr(ord(a) - 0xFEE0)
        if a in "‐‑‒–—―−－﹣":
            assert b == "-"
    assert fold("ユーザー") == "ユーザー" and fold("０９０ー１") == "090-1"
