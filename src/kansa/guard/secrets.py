"""Secrets in text: API keys, tokens and private keys, by their published formats.

Pure Python (regular expressions and validators), offline, no entropy guessing: a
detector that fires on any random-looking string flags every hash and UUID in code, so
each pattern here is a *format* a provider documents or issues, with a validator where
the format carries one:

=====================  ==========================================  ===================
kind                   format                                       validator
=====================  ==========================================  ===================
openai_key             ``sk-proj-``, ``sk-svcacct-``, ``sk-admin-``  ``format``
                       (2024+), legacy ``sk-`` 48 chars / with the
                       ``T3BlbkFJ`` marker
anthropic_key          ``sk-ant-api03-...``, ``sk-ant-admin01-...``   ``format``
google_api_key         ``AIza`` + 35                                  ``format``
github_token           ``ghp_ gho_ ghu_ ghs_ ghr_`` + 36,             ``format``
                       ``github_pat_`` + 22 + ``_`` + 59
aws_access_key_id      ``AKIA``/``ASIA``/... + 16 base32              ``format``
aws_secret_access_key  40 base64 chars near an access key id or a     ``context``
                       ``aws_secret_access_key`` label
slack_token            ``xoxb- xoxp- xoxa- xoxr- xoxs- xoxe-``        ``format``
slack_webhook          ``https://hooks.slack.com/services/T../B../..``  ``format``
stripe_key             ``sk_live_ sk_test_ rk_live_ rk_test_``        ``format``
jwt                    three base64url parts                          ``base64url_json``
                                                                      (header and claims
                                                                      decode to JSON
                                                                      objects, ``alg``)
private_key            ``-----BEGIN ... PRIVATE KEY-----``            ``format``
=====================  ==========================================  ===================

Each :class:`~kansa.guard.findings.Finding` has detector ``secrets``, the kind, the
span in the text as given, a confidence (``score``) and ``extra["validator"]``; never
the secret itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable

from kansa.guard.findings import CHANNEL_USER, Finding, Technique, check_channel
from kansa.guard.fold import fold

__all__ = ["SECRET_KINDS", "scan_secrets"]

DETECTOR = "secrets"
_TECH = (Technique.DATA_LEAKAGE, Technique.OWASP_SENSITIVE_DISCLOSURE)

# (kind, pattern, confidence, validator name, extra check or None). Boundaries: a key
# is not part of a longer run of key characters (so a 41-char string is not an AWS id).
_B = r"(?<![A-Za-z0-9_\-])"
_E = r"(?![A-Za-z0-9_\-])"


def _jwt_ok(s: str) -> bool:
    """A JWT's header and claims are base64url-encoded JSON objects, the header with
    ``alg``: random ``eyJ...`` strings (or base64 of other JSON) do not pass."""
    parts = s.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header and isinstance(claims, dict)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _mixed(s: str) -> bool:
    """A generated secret mixes upper case, lower case and digits; a word, a path or a
    hex digest does not."""
    return (any(c.isupper() for c in s) and any(c.islower() for c in s)
            and any(c.isdigit() for c in s))


_Rule = tuple[str, "re.Pattern[str]", float, str, Callable[[str], bool] | None]

_RULES: tuple[_Rule, ...] = (
    ("openai_key", re.compile(_B + r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}" + _E),
     0.99, "format", None),
    ("openai_key", re.compile(_B + r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}" + _E),
     0.99, "format", None),
    ("openai_key", re.compile(_B + r"sk-[A-Za-z0-9]{48}" + _E), 0.9, "format", _mixed),
    ("anthropic_key", re.compile(_B + r"sk-ant-(?:api|admin|oat|sid)\d{2}-[A-Za-z0-9_\-]{80,}"
                                 + _E), 0.99, "format", None),
    ("google_api_key", re.compile(_B + r"AIza[0-9A-Za-z_\-]{35}" + _E), 0.97, "format", None),
    ("github_token", re.compile(_B + r"gh[pousr]_[A-Za-z0-9]{36}" + _E), 0.98, "format", None),
    ("github_token", re.compile(_B + r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}" + _E),
     0.99, "format", None),
    ("aws_access_key_id", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])"
                                     r"[A-Z2-7]{16}(?![A-Z0-9])"), 0.95, "format", None),
    ("slack_token", re.compile(_B + r"xox[abeoprs]-(?:[0-9]+-){1,3}[A-Za-z0-9\-]{8,}" + _E),
     0.97, "format", None),
    ("slack_webhook", re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/"
                                 r"B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}"), 0.99, "format", None),
    ("stripe_key", re.compile(_B + r"[sr]k_(?:live|test)_[0-9A-Za-z]{24,}" + _E),
     0.98, "format", None),
    ("jwt", re.compile(_B + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"
                       + _E), 0.95, "base64url_json", _jwt_ok),
    ("private_key", re.compile(
        r"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]{0,16384}?-----END (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?"
        r"PRIVATE KEY(?: BLOCK)?-----)?"), 0.99, "format", None),
)

# Cheap substrings one of which every rule's match contains: a text with none of them
# (most prose) costs one pass per marker instead of a dozen regex scans.
_MARKERS = ("sk-", "AIza", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "AKIA",
            "ASIA", "ABIA", "ACCA", "A3T", "xox", "hooks.slack.com", "k_live_", "k_test_",
            "eyJ", "PRIVATE KEY")

_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_LABEL = re.compile(r"aws_?secret|secret_?access_?key|SecretAccessKey|aws.{0,20}secret",
                        re.IGNORECASE)
_AWS_NEAR = 200  # characters between a secret key and its id or label

SECRET_KINDS = frozenset(r[0] for r in _RULES) | {"aws_secret_access_key"}


def _aws_secrets(text: str, channel: str, anchors: Iterable[tuple[int, int]],
                 ) -> list[Finding]:
    """40-character AWS secret access keys, only near an access key id or a label: alone,
    40 base64 characters are as likely a hash or a path."""
    spans = list(anchors) + [(m.start(), m.end()) for m in _AWS_LABEL.finditer(text)]
    if not spans:
        return []
    out = []
    for m in _AWS_SECRET.finditer(text):
        g = m.group()
        # a key mixes cases (a hash does not) and is not a path (many slashes)
        if not (any(c.isupper() for c in g) and any(c.islower() for c in g)
                and any(c.isdigit() or c in "/+" for c in g)) or g.count("/") > 4:
            continue
        if any(m.start() - _AWS_NEAR <= e and s <= m.end() + _AWS_NEAR for s, e in spans):
            out.append(m)
    return [Finding(DETECTOR, channel, "aws_secret_access_key", 0.9, m.start(), m.end(), _TECH,
                    "an AWS secret access key", {"validator": "context"}) for m in out]


def scan_secrets(text: str, channel: str = CHANNEL_USER) -> list[Finding]:
    """The secrets in ``text`` (spans in ``text`` as given), sorted by position."""
    check_channel(channel)
    t = fold(text)
    aws_label = ("ecret" in t or "ECRET" in t) and _AWS_LABEL.search(t) is not None
    if not aws_label and not any(k in t for k in _MARKERS):
        return []
    found: list[Finding] = []
    aws_ids: list[tuple[int, int]] = []
    for kind, rx, score, validator, ok in _RULES:
        for m in rx.finditer(t):
            if ok is not None and not ok(m.group()):
                continue
            if kind == "aws_access_key_id":
                aws_ids.append((m.start(), m.end()))
            found.append(Finding(DETECTOR, channel, kind, score, m.start(), m.end(), _TECH,
                                 f"a secret ({kind.replace('_', ' ')})",
                                 {"validator": validator}))
    if aws_ids or aws_label:
        found += _aws_secrets(t, channel, aws_ids)
    return resolve_overlaps(found)


def resolve_overlaps(found: list[Finding]) -> list[Finding]:
    """One finding per stretch of text: where two overlap, the more confident one (then
    the longer) wins; sorted by start."""
    best = sorted(found, key=lambda f: (-f.score, -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for f in best:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)
