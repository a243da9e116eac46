"""Red-team: the gateway's x-kansa-* metadata headers as real clients send them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_harness import running_gateway
from kansa.api import Ledger
from kansa.capture.gateway import GatewayConfig
from standin import Standin

MSG = [{"role": "user", "content": "hi there"}]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.init(tmp_path / "home")
    yield led
    led.close()


def test_utf8_subject_header_can_be_found_and_erased(ledger: Ledger, standin: Standin) -> None:
    """curl -H 'x-kansa-subject: 山田' sends UTF-8 bytes. Read as Latin-1 they became
    'å±±ç\\x94°': the person's records were filed under a name nobody would type, and
    `kansa erase --subject 山田` found no key, so the person could not be erased."""
    with running_gateway(ledger, GatewayConfig.from_upstream(standin.url)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        r = c.post("/v1/chat/completions", json={"model": "gpt-test", "messages": MSG},
                   headers={"x-kansa-subject": "山田".encode(),
                            "x-kansa-actor": "エージェント".encode()})
        assert r.status_code == 200
        rid = r.headers["x-kansa-record"]
        rec = ledger.get(rid)
    assert rec.entry["actor"] == "エージェント"
    assert [x.id for x in ledger.find(subject="山田")] == [rid]
    erased = ledger.erase("山田")
    assert erased.contents_destroyed == 1
    assert ledger.get(rid).content_state == "erased"


def test_non_utf8_header_bytes_still_recorded_as_latin1(ledger: Ledger,
                                                        standin: Standin) -> None:
    with running_gateway(ledger, GatewayConfig.from_upstream(standin.url)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        r = c.post("/v1/chat/completions", json={"model": "gpt-test", "messages": MSG},
                   headers={"x-kansa-subject": b"M\xfcller", "x-kansa-app": b"\xed\xa0\x80"})
        assert r.status_code == 200
        rec = ledger.get(r.headers["x-kansa-record"])
    assert rec.entry["app"] == "\xed\xa0\x80"
    assert [x.id for x in ledger.find(subject="Müller")] == [rec.id]


def test_long_subject_is_kept_whole(ledger: Ledger, standin: Standin) -> None:
    """Subjects were cut to 1,024 characters: `kansa erase --subject <the full id>` found
    no key, and two ids sharing their first 1,024 characters shared one key."""
    long_a, long_b = "u" * 1100 + "-a", "u" * 1100 + "-b"
    with running_gateway(ledger, GatewayConfig.from_upstream(standin.url)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        ra = c.post("/v1/chat/completions", json={"model": "gpt-test", "messages": MSG},
                    headers={"x-kansa-subject": long_a})
        rb = c.post("/v1/chat/completions",
                    json={"model": "gpt-test", "messages": MSG, "user": long_b})
        assert ra.status_code == rb.status_code == 200
    assert [x.id for x in ledger.find(subject=long_a)] == [ra.headers["x-kansa-record"]]
    assert ledger.erase(long_b).contents_destroyed == 1
    assert ledger.get(ra.headers["x-kansa-record"]).content_state == "present"
