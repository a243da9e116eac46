"""Fast replay: the memo gives the same results as judging every record afresh (property
test), what a check reads of a record, the digest, tallies, determinism on both stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import kansa
from kansa.errors import StorageError
from kansa.ledger.note import Signer


@pytest.fixture
def small_ledger(store_url: str) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/cache"),
                           master_key=b"c" * 32)
    try:
        yield lg
    finally:
        lg.close()


def test_store_scan_entries_matches_iter_entries(small_ledger: kansa.Ledger) -> None:
    lg = small_ledger
    lg.append_many([{"ts": f"2026-05-0{1 + i % 9}T00:00:00Z", "system": f"s{i}"}
                    for i in range(23)])
    st = lg.log.store
    slow = [(r.index, r.ts, r.data) for r in st.iter_entries()]
    assert list(st.scan_entries(batch=5)) == slow and len(slow) == 23
    assert list(st.scan_entries(7, 12, batch=2)) == slow[7:12]
    assert all(type(d) is bytes for _, _, d in st.scan_entries())
    st.execute("DELETE FROM entries WHERE idx = 9")
    with pytest.raises(StorageError, match="entry 9 is missing"):
        list(st.scan_entries(batch=4))
