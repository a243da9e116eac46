"""Secrets and personal-data detectors (kansa.guard.secrets / pii / data_stage): recall per
kind on generated positives, false positives on real code and prose from this machine,
and latency per 512-token text. Prints each figure beside its target (issue #11).

    .venv/bin/python bench/guard_data.py [--n 1000] [--seed 7]

Positives: each kind generated N times (random valid values: My Numbers with their check
digit, phones in every form incl. +81 and full-width, postcodes, keys of each format ...)
inside Japanese and English template sentences, with and without a context word where
the kind allows both; a positive counts as found if a finding of that kind covers the
value exactly.

Negatives (real text on this machine, no personal data expected, none generated):
* code: the Python 3.11 standard library (/usr/lib/python3.11, test/ excluded: it holds
  test keys and certificates on purpose), cut into 2,048-character chunks (~512 tokens);
* English prose: /usr/share/doc (README, copyright, changelog files, .gz included);
* Japanese prose: every ja message catalogue in /usr/share/locale/ja (gettext .mo:
  translated UI text of apt, glib, libc, grep, ...) and vim's Japanese tutor, cut into
  768-character chunks (~512 tokens).
A false positive is a chunk with at least one finding (per family); findings are listed
by kind, because some are real: the stdlib and Debian's changelogs and copyright files
name their authors' e-mail addresses (and "Dr. Tobias Quathamer"), so personal data is
also shown without e-mail.
"""

from __future__ import annotations

import argparse
import gettext
import gzip
import json
import random
import statistics
import string
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kansa.guard.data_stage import DataGuardStage
from kansa.guard.pii import PII_KINDS, my_number_check_digit, scan_pii
from kansa.guard.pseudonym import StaticKeyring, scan_text
from kansa.guard.secrets import SECRET_KINDS, scan_secrets

ALNUM = string.ascii_letters + string.digits


def wide(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


class Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def s(self, n: int, alphabet: str = ALNUM) -> str:
        while True:
            v = "".join(self.r.choice(alphabet) for _ in range(n))
            if alphabet != ALNUM or (any(c.isupper() for c in v) and any(c.islower() for c in v)
                                     and any(c.isdigit() for c in v)):
                return v

    def d(self, n: int) -> str:
        return "".join(self.r.choice(string.digits) for _ in range(n))

    def pick(self, xs: list[str]) -> str:
        return self.r.choice(xs)

    # -- values ---------------------------------------------------------------------------

    def my_number(self) -> str:
        first = self.d(11)
        n = first + str(my_number_check_digit(first))
        form = self.r.randrange(4)
        shown = [n, f"{n[:4]}-{n[4:8]}-{n[8:]}", f"{n[:4]} {n[4:8]} {n[8:]}", wide(n)][form]
        return shown

    def phone_jp(self) -> str:
        kind = self.r.randrange(8)
        if kind == 0:
            v = f"0{self.pick(['70', '80', '90'])}-{self.d(4)}-{self.d(4)}"
        elif kind == 1:
            v = f"0{self.pick(['70', '80', '90'])}{self.d(8)}"
        elif kind == 2:
            v = f"03-{self.d(4)}-{self.d(4)}"
        elif kind == 3:
            # real area codes: 4 digits + 2 + 4, or 3 + 3 + 4
            area = self.pick(["0466", "0422", "0299", "0744", "0120"])
            v = (f"{area}-{self.d(2)}-{self.d(4)}" if area != "0120"
                 else f"0120-{self.d(3)}-{self.d(3)}")
            if self.r.random() < .5:
                v = f"0{self.pick(['45', '52', '92', '75', '78', '11'])}-{self.d(3)}-{self.d(4)}"
        elif kind == 4:
            v = f"0120-{self.d(3)}-{self.d(3)}"
        elif kind == 5:
            v = f"050-{self.d(4)}-{self.d(4)}"
        elif kind == 6:
            v = f"+81 {self.pick(['90', '80', '70'])}-{self.d(4)}-{self.d(4)}"
        else:
            v = f"+81-{self.pick(['3', '4', '6'])}-{self.d(4)}-{self.d(4)}"  # 2-digit areas
        return wide(v) if self.r.random() < 0.2 else v

    def postcode_jp(self) -> str:
        return f"{self.d(3)}-{self.d(4)}"

    def luhn_card(self) -> str:
        prefix = self.pick(["4", "51", "55", "2221", "34", "37", "6011", "3530", "62"])
        length = 15 if prefix in ("34", "37") else 16
        body = prefix + self.d(length - len(prefix) - 1)
        for c in string.digits:
            from kansa.guard.pii import luhn_ok
            if luhn_ok(body + c):
                n = body + c
                break
        return " ".join(n[i:i + 4] for i in range(0, len(n), 4)) if self.r.random() < .5 else n

    def iban(self) -> str:
        country, n = self.pick(["DE", "GB", "FR", "NL", "ES"]), 0
        length = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24}[country]
        if country in ("GB", "NL"):
            bban = self.s(4, string.ascii_uppercase) + self.d(length - 8)
        else:
            bban = self.d(length - 4)
        n = int("".join(str(int(c, 36)) for c in bban + country + "00"))
        v = f"{country}{98 - n % 97:02d}{bban}"
        return " ".join(v[i:i + 4] for i in range(0, len(v), 4)) if self.r.random() < .5 else v

    def ssn(self) -> str:
        r = self.r
        return f"{r.randint(1, 665):03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"


def _jwt(g: Gen) -> str:
    import base64

    def b(o: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()

    return f"{b({'alg': 'HS256', 'typ': 'JWT'})}.{b({'sub': g.d(8), 'iat': 1700000000})}." \
           f"{g.s(43, ALNUM + '-_')}"


SURNAMES = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
GIVEN = ["太郎", "花子", "健", "美咲", "翔太", "陽菜", "大輔", "結衣"]
PREFS = ["東京都", "大阪府", "北海道", "神奈川県", "愛知県", "福岡県", "京都府", "沖縄県"]
CITIES = ["千代田区", "横浜市中区", "札幌市中央区", "名古屋市中村区", "福岡市博多区", "那覇市"]
TOWNS = ["丸の内", "本町", "栄", "博多駅前", "中央"]

# kind -> (value maker, templates with and without context: {v} is the value)
Maker = Callable[[Gen], str]
CASES: dict[str, tuple[Maker, list[str]]] = {
    "openai_key": (lambda g: "sk-proj-" + g.s(g.r.randint(100, 156), ALNUM + "-_"),
                   ["OPENAI_API_KEY={v}", "このキー {v} を使ってください", "key: '{v}'"]),
    "anthropic_key": (lambda g: "sk-ant-api03-" + g.s(93, ALNUM + "-_") + "AA",
                      ["ANTHROPIC_API_KEY=\"{v}\"", "鍵は{v}です"]),
    "google_api_key": (lambda g: "AIza" + g.s(35, ALNUM + "-_"),
                       ["?key={v}&q=1", "GOOGLE_API_KEY: {v}"]),
    "github_token": (lambda g: g.pick(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + g.s(36)
                     if g.r.random() < .7 else "github_pat_" + g.s(22) + "_" + g.s(59),
                     ["token = \"{v}\"", "git clone https://{v}@github.com/x/y"]),
    "aws_access_key_id": (lambda g: g.pick(["AKIA", "ASIA"]) + g.s(16, string.ascii_uppercase
                                                                   + "234567"),
                          ["aws_access_key_id = {v}", "id {v} で"]),
    "aws_secret_access_key": (lambda g: g.s(40, ALNUM + "/+"),
                              ["aws_secret_access_key = {v}",
                               "AKIAIOSFODNN7EXAMPLE / {v}"]),
    "slack_token": (lambda g: "xoxb-" + g.d(12) + "-" + g.d(13) + "-" + g.s(24),
                    ["SLACK_BOT_TOKEN={v}"]),
    "stripe_key": (lambda g: g.pick(["sk_live_", "rk_live_", "sk_test_"]) + g.s(99),
                   ["stripe.api_key = '{v}'"]),
    "jwt": (_jwt, ["Authorization: Bearer {v}", "トークン {v}"]),
    "private_key": (lambda g: "-----BEGIN PRIVATE KEY-----\nMIIEv" + g.s(60) + "\n"
                    + g.s(64) + "\n-----END PRIVATE KEY-----", ["{v}", "鍵:\n{v}\n以上"]),
    "my_number": (Gen.my_number, ["マイナンバーは{v}です", "個人番号：{v}", "番号 {v} で登録",
                                  "My Number {v}"]),
    "phone_jp": (Gen.phone_jp, ["電話番号は{v}です", "TEL: {v}", "連絡先 {v}（平日）",
                                "{v}までお電話ください", "call me on {v}"]),
    "postcode_jp": (lambda g: g.pick(["〒", "〒 "]) + g.postcode_jp() if g.r.random() < .6
                    else g.postcode_jp(),
                    ["{v} 東京都千代田区", "郵便番号 {v}", "〒{v}"]),
    "address_jp": (lambda g: g.pick(PREFS) + g.pick(CITIES) + g.pick(TOWNS)
                   + f"{g.r.randint(1, 9)}-{g.r.randint(1, 30)}-{g.r.randint(1, 20)}",
                   ["住所は{v}です", "{v}に送ってください"]),
    "person": (lambda g: g.pick(SURNAMES) + g.pick(GIVEN) if g.r.random() < .6
               else g.pick(SURNAMES), ["{v}様", "{v}さんより", "氏名：{v}\n", "担当の{v}氏"]),
    "email": (lambda g: g.s(8, string.ascii_lowercase) + "." + g.s(5, string.ascii_lowercase)
              + "@" + g.pick(["example.co.jp", "example.com", "mail.example.org"]),
              ["mail: {v}", "{v}までご連絡ください"]),
    "payment_card": (Gen.luhn_card, ["card {v}", "カード番号 {v}"]),
    "iban": (Gen.iban, ["IBAN {v}", "pay to {v} today"]),
    "us_ssn": (Gen.ssn, ["SSN {v}", "social security number: {v}"]),
}


def recall(n: int, seed: int) -> dict[str, tuple[int, int]]:
    g = Gen(seed)
    out: dict[str, tuple[int, int]] = {}
    for kind, (make, templates) in CASES.items():
        hit = 0
        for i in range(n):
            v = make(g)
            text = templates[i % len(templates)].format(v=v)
            found = scan_secrets(text) if kind in SECRET_KINDS else scan_pii(text)
            at = text.index(v)
            if any(f.kind == kind and f.start <= at and f.end >= at + len(v) for f in found):
                hit += 1
        out[kind] = (hit, n)
    return out


# -- negatives ----------------------------------------------------------------------------------


def chunks(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text) - size // 4, size):
        yield text[i:i + size]


def code_corpus() -> list[str]:
    root = Path("/usr/lib/python3.11")
    out: list[str] = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).parts
        if rel[0] in ("test", "site-packages", "dist-packages") or "tests" in rel:
            continue
        out += chunks(p.read_text(errors="replace"), 2048)
    return sample(out)


def english_corpus() -> list[str]:
    out: list[str] = []
    for p in sorted(Path("/usr/share/doc").rglob("*")):
        if not p.is_file():
            continue
        try:
            raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        except (OSError, EOFError):
            continue
        if b"\x00" in raw[:4096]:
            continue
        out += chunks(raw.decode("utf-8", errors="replace"), 2048)
    return sample(out)


MAX_CHUNKS = 6000  # per corpus: /usr/share/doc alone is ~60,000 chunks on 2 shared cores


def sample(xs: list[str]) -> list[str]:
    """At most MAX_CHUNKS, evenly spaced (deterministic)."""
    if len(xs) <= MAX_CHUNKS:
        return xs
    step = len(xs) / MAX_CHUNKS
    return [xs[int(i * step)] for i in range(MAX_CHUNKS)]


def japanese_corpus() -> list[str]:
    texts: list[str] = []
    for mo in sorted(Path("/usr/share/locale/ja/LC_MESSAGES").glob("*.mo")):
        try:
            with mo.open("rb") as f:
                cat = gettext.GNUTranslations(f)
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        texts.append("\n".join(v for v in cat._catalog.values()  # type: ignore[attr-defined]
                               if isinstance(v, str)))
    tutor = Path("/usr/share/vim/vim90/tutor/tutor.ja.utf-8")
    if tutor.exists():
        texts.append(tutor.read_text(errors="replace"))
    out: list[str] = []
    for t in texts:
        out += chunks(t, 768)
    return out


def false_positives(corpus: list[str]) -> dict[str, object]:
    sec_chunks = pii_chunks = no_mail = 0
    by_kind: Counter[str] = Counter()
    for t in corpus:
        s = scan_secrets(t)
        p = scan_pii(t)
        sec_chunks += bool(s)
        pii_chunks += bool(p)
        no_mail += any(f.kind != "email" for f in p)
        by_kind.update(f.kind for f in s + p)
    return {"chunks": len(corpus), "secrets": sec_chunks, "pii": pii_chunks,
            "pii_no_mail": no_mail, "kinds": dict(by_kind.most_common())}


def latency(corpus: list[str]) -> tuple[float, float, float]:
    """p50 and p99 of one run per text, and p99 of the fastest of 3 runs per text (this
    machine's 2 cores are shared: a single run's tail is mostly preemption)."""
    once, best = [], []
    for t in corpus:
        runs = []
        for _ in range(3):
            t0 = time.perf_counter_ns()
            scan_text(t)
            runs.append((time.perf_counter_ns() - t0) / 1e6)
        once.append(runs[0])
        best.append(min(runs))
    once.sort()
    best.sort()
    return statistics.median(once), once[int(len(once) * .99)], best[int(len(best) * .99)]


def stage_latency(corpus: list[str], seed: int) -> tuple[float, float]:
    """DataGuardStage.before on a chat body holding one 512-token chunk with three values
    to pseudonymise (a phone, an e-mail, a My Number), a static keyring (no store)."""
    from kansa.capture.pipeline import Call
    from kansa.capture.shapes import CallInfo

    g = Gen(seed)
    stage = DataGuardStage(StaticKeyring(b"k" * 32))
    times = []
    for t in corpus:
        text = (f"{t[:len(t) // 2]} 電話 {g.phone_jp()} mail a.b@example.com "
                f"マイナンバー {g.my_number()} {t[len(t) // 2:]}")
        info = CallInfo(system="s", provider="openai", operation="chat", subject="alice",
                        request={"model": "m", "messages": [{"role": "user", "content": text}]})
        t0 = time.perf_counter_ns()
        stage.before(Call("gateway", info=info))
        times.append((time.perf_counter_ns() - t0) / 1e6)
    times.sort()
    return statistics.median(times), times[int(len(times) * .99)]


NAMES_RUNNING = ["{v}が担当します。", "昨日、{v}と打ち合わせをした。", "報告書は{v}が作成した。",
                 "{v}から連絡がありました。", "会議には{v}も出席する予定だ。"]


def ner_figures(seed: int, ja: list[str]) -> None:
    """The optional GiNZA NER (kansa[ner]): what it adds on names in running text (no
    honorific, no label), what it costs per 512-token Japanese text, and what it flags on
    the Japanese corpus."""
    from kansa.guard.ner import NerScanner

    g = Gen(seed)
    t0 = time.perf_counter()
    ner = NerScanner()
    ner.scan("山田太郎が担当します。")
    load = time.perf_counter() - t0
    rules = model = 0
    n = 300
    for i in range(n):
        v = g.pick(SURNAMES) + g.pick(GIVEN)
        text = NAMES_RUNNING[i % len(NAMES_RUNNING)].format(v=v)
        at = text.index(v)

        def hit(fs: list[Any], v: str = v, at: int = at) -> bool:
            return any(f.kind == "person" and f.start <= at and f.end >= at + len(v)
                       for f in fs)

        rules += hit(scan_pii(text))
        model += hit(scan_pii(text) + ner.scan(text))
    print(f"\nNER (GiNZA, kansa[ner]): load {load:.1f} s")
    print(f"  names in running text (no honorific or label), {n} generated: "
          f"rules {rules / n:.1%}, rules + NER {model / n:.1%}")
    times, flagged = [], 0
    for t in ja[:500]:
        t1 = time.perf_counter_ns()
        fs = ner.scan(t)
        times.append((time.perf_counter_ns() - t1) / 1e6)
        flagged += any(f.kind == "person" for f in fs)
    times.sort()
    print(f"  per 512-token Japanese text: p50 {statistics.median(times):.1f} ms, "
          f"p99 {times[int(len(times) * .99)]:.1f} ms; chunks of the ja corpus with a "
          f"person by NER: {flagged / min(len(ja), 500):.1%}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--ner", action="store_true", help="also the optional GiNZA NER")
    ap.add_argument("--ner-only", action="store_true", help="only the NER figures")
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    if a.ner_only:
        ner_figures(a.seed, japanese_corpus())
        return
    print(f"kansa guard data bench: {a.n} generated positives per kind, seed {a.seed}\n")
    print(f"{'kind':24} {'recall':>8}   target")
    rec = recall(a.n, a.seed)
    sec_hit = sum(h for k, (h, _) in rec.items() if k in SECRET_KINDS)
    sec_n = sum(n for k, (_, n) in rec.items() if k in SECRET_KINDS)
    for kind, (h, n) in rec.items():
        target = ("≥ 99%" if kind in SECRET_KINDS | {"my_number", "phone_jp", "postcode_jp"}
                  else "(none set)")
        print(f"{kind:24} {h / n:8.2%}   {target}")
    print(f"{'secrets (all formats)':24} {sec_hit / sec_n:8.2%}   ≥ 99%")
    assert set(rec) <= SECRET_KINDS | PII_KINDS

    print("\nfalse positives on real text (chunks of ~512 tokens with >= 1 finding)")
    corpora = {"code: python3.11 stdlib": code_corpus(),
               "English: /usr/share/doc": english_corpus(),
               "Japanese: ja .mo + vim tutor": japanese_corpus()}
    for name, corpus in corpora.items():
        fp = false_positives(corpus)
        c = int(fp["chunks"])  # type: ignore[call-overload]
        s, p = int(fp["secrets"]), int(fp["pii"])  # type: ignore[call-overload]
        nm = int(fp["pii_no_mail"])  # type: ignore[call-overload]
        print(f"  {name:30} {c:6} chunks  secrets {s / c:7.3%} (target ≤ 1%)  "
              f"personal data {p / c:7.3%} ({nm / c:.3%} without e-mail)  "
              f"by kind: {fp['kinds']}")

    print("\nlatency per 512-token text (ms, 1 thread)")
    for name, corpus in corpora.items():
        p50, p99, best99 = latency(corpus)
        print(f"  scan (secrets+pii) {name:30} p50 {p50:6.3f}  p99 {p99:6.3f}  "
              f"p99 of best-of-3 {best99:6.3f}")
    p50, p99 = stage_latency(corpora["English: /usr/share/doc"][:3000], a.seed)
    print(f"  stage before(), pseudonymising 3 values, English   p50 {p50:6.3f}  p99 {p99:6.3f}"
          "   (issue target for the whole guard: p50 ≤ 2 ms, p99 ≤ 10 ms)")
    p50, p99 = stage_latency(corpora["Japanese: ja .mo + vim tutor"][:3000], a.seed)
    print(f"  stage before(), pseudonymising 3 values, Japanese  p50 {p50:6.3f}  p99 {p99:6.3f}")
    if a.ner:
        ner_figures(a.seed, corpora["Japanese: ja .mo + vim tutor"])


if __name__ == "__main__":
    main()
