"""Secrets detection (kansa.guard.secrets): every known format found, lookalikes not,
spans exact, the JWT validator, full-width evasion, and random Unicode never breaking it."""

from __future__ import annotations

import base64
import json
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kansa.errors import GuardError
from kansa.guard.secrets import SECRET_KINDS, scan_secrets

R = random.Random(11)
ALNUM = string.ascii_letters + string.digits


def rnd(n: int, alphabet: str = ALNUM) -> str:
    # a generated secret mixes cases and digits (as real ones do)
    while True:
        s = "".join(R.choice(alphabet) for _ in range(n))
        if alphabet != ALNUM or (any(c.isupper() for c in s) and any(c.islower() for c in s)
                                 and any(c.isdigit() for c in s)):
            return s


def b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


JWT = ".".join([b64url({"alg": "HS256", "typ": "JWT"}),
                b64url({"sub": "1234567890", "name": "x", "iat": 1516239022}),
                rnd(43, ALNUM + "-_")])

SAMPLES = {
    "openai_key": ["sk-proj-" + rnd(48, ALNUM + "-_") + rnd(20),
                   "sk-svcacct-" + rnd(60, ALNUM + "-_"),
                   "sk-" + rnd(20) + "T3BlbkFJ" + rnd(20),
                   "sk-" + rnd(48)],
    "anthropic_key": ["sk-ant-api03-" + rnd(93, ALNUM + "-_") + "AA",
                      "sk-ant-admin01-" + rnd(93, ALNUM + "-_") + "AA"],
    "google_api_key": ["AIza" + rnd(35, ALNUM + "-_")],
    "github_token": ["ghp_" + rnd(36), "gho_" + rnd(36), "ghs_" + rnd(36),
                     "github_pat_" + rnd(22) + "_" + rnd(59)],
    "aws_access_key_id": ["AKIA" + rnd(16, string.ascii_uppercase + "234567"),
                          "ASIA" + rnd(16, string.ascii_uppercase + "234567")],
    "slack_token": ["xoxb-" + "".join(R.choice(string.digits) for _ in range(12)) + "-"
                    + "".join(R.choice(string.digits) for _ in range(13)) + "-" + rnd(24)],
    "slack_webhook": ["https://hooks.slack.com/services/T0" + rnd(8, string.ascii_uppercase)
                      + "/B0" + rnd(8, string.ascii_uppercase) + "/" + rnd(24)],
    "stripe_key": ["sk_live_" + rnd(24), "rk_test_" + rnd(99)],
    "jwt": [JWT],
    "private_key": ["-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + rnd(64) + "\n"
                    "-----END RSA PRIVATE KEY-----",
                    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE" + rnd(40)
                    + "\n-----END OPENSSH PRIVATE KEY-----"],
}


@pytest.mark.parametrize(("kind", "secret"), [(k, s) for k, v in SAMPLES.items() for s in v])
@pytest.mark.parametrize("frame", ["{}", "key={}\n", "export X='{}'", "「{}」を使って",
                                   'config = {{"api_key": "{}"}}'])
def test_each_format_is_found_with_its_exact_span(kind: str, secret: str, frame: str) -> None:
    text = frame.format(secret)
    found = scan_secrets(text)
    assert [f.kind for f in found] == [kind]
    f = found[0]
    assert text[f.start:f.end] == secret
    assert f.detector == "secrets" and f.extra["validator"] and 0.5 < f.score <= 1.0
    assert secret not in json.dumps(f.to_dict())  # a finding never carries the secret


def test_every_kind_has_a_sample() -> None:
    assert set(SAMPLES) | {"aws_secret_access_key"} == SECRET_KINDS


def test_aws_secret_key_only_near_its_id_or_label() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    near_id = f"AKIAIOSFODNN7EXAMPLE\n{secret}"
    near_label = f"aws_secret_access_key = {secret}"
    alone = f"checksum {secret} in the manifest"
    assert {f.kind for f in scan_secrets(near_id)} == {"aws_access_key_id",
                                                       "aws_secret_access_key"}
    assert [f.kind for f in scan_secrets(near_label)] == ["aws_secret_access_key"]
    assert scan_secrets(alone) == []


@pytest.mark.parametrize("text", [
    "sk-proj-short", "task-proj-" + "a" * 50, "ghp_" + "a" * 35, "AKIA" + "A" * 15,
    "AIza" + "b" * 30, "xoxb-notatoken", "sk_live_short",
    "sha256: " + "ab" * 32, "uuid 123e4567-e89b-12d3-a456-426614174000",
    "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----", "The risk-free rate and the sk-ewed mean",
    "sk-" + "a" * 48,  # all lower case: a word or a slug, not a generated legacy key
])
def test_lookalikes_are_not_secrets(text: str) -> None:
    assert scan_secrets(text) == []


def test_jwt_must_decode_to_a_json_header_with_alg() -> None:
    no_alg = ".".join([b64url({"typ": "JWT"}), b64url({"sub": "1"}), "sig"])
    not_json = "eyJ" + rnd(20) + ".eyJ" + rnd(20) + ".sig"
    assert scan_secrets(no_alg) == []
    assert scan_secrets(not_json) == []
    assert [f.kind for f in scan_secrets(f"Bearer {JWT}")] == ["jwt"]


def test_full_width_and_dash_evasion_is_folded_with_spans_in_the_original() -> None:
    key = "sk-proj-" + rnd(48)
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in key)
    text = f"鍵は{wide}です"
    [f] = scan_secrets(text)
    assert f.kind == "openai_key" and text[f.start:f.end] == wide
    dashed = key.replace("-", "\u2010")
    [g] = scan_secrets(dashed)
    assert (g.start, g.end) == (0, len(dashed))


def test_bad_channel_is_a_clear_error() -> None:
    with pytest.raises(GuardError, match="unknown channel 'nope'"):
        scan_secrets("x", "nope")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_random_unicode_never_raises_and_spans_are_in_bounds(text: str) -> None:
    for f in scan_secrets(text):
        assert 0 <= f.start < f.end <= len(text)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=120),
       st.sampled_from([s for v in SAMPLES.values() for s in v]),
       st.text(alphabet=st.characters(codec="utf-8"), max_size=120))
def test_a_secret_in_random_unicode_is_found(pre: str, secret: str, post: str) -> None:
    # separated from the noise by spaces: the noise may not extend the key itself
    text = f"{pre} {secret} {post}"
    assert any(text[f.start:f.end] == secret for f in scan_secrets(text))
