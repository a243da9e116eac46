"""The log's public read API (kansa serve-log, kansa web --public-log): every file a
'kansa export' writes is served with the same bytes, over a real socket, and a tlog-tiles
directory fetched back over HTTP verifies offline; bad or unsigned paths are 404s."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.serving import serving

import kansa
from kansa.ledger.receipt import verify_receipt
from kansa.ledger.verify import verify_directory
from kansa.web.app import create_app, create_log_app
from kansa.web.auth import Access


@pytest.fixture
def ledger(store_url: str, tmp_path: Path) -> kansa.Ledger:
    led = kansa.Ledger.init(tmp_path / "home", url=store_url)
    # 256*3 + 5 entries: full and partial level-0 tiles and bundles, a partial level-1
    led.append_many({"system": "s", "ts": "2025-11-01T00:00:00Z", "input": str(i)}
                    for i in range(773))
    led.checkpoint()
    return led


def test_every_exported_file_is_served_with_the_same_bytes(ledger: kansa.Ledger,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "export"
    ledger.export(out)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "kansa-export.json")
    assert any(".p/" in str(p) for p in files) and len(files) > 8
    fetched = tmp_path / "fetched"
    with serving(create_log_app(ledger)) as url:
        for p in files:
            rel = p.relative_to(out).as_posix()
            r = httpx.get(f"{url}/{rel}")
            assert r.status_code == 200, (rel, r.text)
            assert r.content == p.read_bytes(), rel
            cache = r.headers["cache-control"]
            assert cache == ("no-cache" if rel == "checkpoint" else
                             "public, max-age=31536000, immutable"), rel
            (fetched / rel).parent.mkdir(parents=True, exist_ok=True)
            (fetched / rel).write_bytes(r.content)
        rid = ledger.browse(limit=1).records[0].id
        receipt = httpx.get(f"{url}/receipt/{rid}")
        assert receipt.status_code == 200
        got = verify_receipt(receipt.content, ledger.verifier, None)
        assert got.index == 772
    # kansa's own metadata file is not part of tlog-tiles: copied, not served
    (fetched / "kansa-export.json").write_bytes((out / "kansa-export.json").read_bytes())
    verify_directory(fetched, ledger.verifier)  # raises on any problem


@pytest.mark.parametrize("path,says", [
    ("tile/0/003", "not in the signed tree"),       # tile 3 is partial (width 5)
    ("tile/0/003.p/6", "not in the signed tree"),   # wider than the signed tree
    ("tile/0/003.p/05", "bad partial width"),
    ("tile/0/003.p/0", "bad partial width"),
    ("tile/0/3", "bad tile index path"),
    ("tile/0/x000/003", "not canonical"),
    ("tile/1/000", "not in the signed tree"),       # level 1 holds 3 hashes
    ("tile/9x/000", "bad tile level"),
    ("tile/entries/004", "not in the signed tree"),
    ("tile/entries/003.p/7", "not in the signed tree"),
    ("receipt/no-such-record", "no record with id"),
])
def test_bad_or_unsigned_paths_are_404(ledger: kansa.Ledger, path: str, says: str) -> None:
    with serving(create_log_app(ledger)) as url:
        r = httpx.get(f"{url}/{path}")
    assert r.status_code == 404 and says in r.text, (path, r.text)


def test_partial_of_a_full_tile_and_a_growing_tree(ledger: kansa.Ledger) -> None:
    with serving(create_log_app(ledger)) as url:
        full = httpx.get(f"{url}/tile/0/000").content
        assert len(full) == 8192
        # the first W hashes of a tile never change: a partial of a full tile is its prefix
        assert httpx.get(f"{url}/tile/0/000.p/7").content == full[:7 * 32]
        before = httpx.get(f"{url}/checkpoint").content
        # the tree grows: the new checkpoint's width is served, one more is not (signed
        # state only; the checkpoint is taken first, so no signing races the reads)
        ledger.append({"system": "s", "ts": "2025-11-01T00:00:00Z"})
        ledger.checkpoint()
        size = int(httpx.get(f"{url}/checkpoint").text.splitlines()[1])
        assert size == 774
        assert httpx.get(f"{url}/tile/entries/003.p/{size - 768}").status_code == 200
        assert httpx.get(f"{url}/tile/entries/003.p/{size - 767}").status_code == 404
        assert httpx.get(f"{url}/checkpoint").content != before


def test_dashboard_serves_the_log_only_when_asked(ledger: kansa.Ledger) -> None:
    with serving(create_app(ledger, Access())) as url:
        assert httpx.get(f"{url}/checkpoint").status_code == 404
    with serving(create_app(ledger, Access(), public_log=True)) as url:
        r = httpx.get(f"{url}/checkpoint")
        assert r.status_code == 200 and r.text.splitlines()[1] == "773"
