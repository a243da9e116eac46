"""The log follower: incremental, resumable reads with a pre-filter on entry bytes, on
both stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import kansa
from kansa.errors import StorageError
from kansa.ledger.follower import Follower
from kansa.ledger.note import Signer
from kansa.ledger.storage import open_store


@pytest.fixture
def ledger(store_url: str) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/follow"),
                           master_key=b"f" * 32)
    try:
        yield lg
    finally:
        lg.close()


def _append(lg: kansa.Ledger, n: int, *, marked_every: int = 3, day: int = 1) -> None:
    lg.append_many([{"ts": f"2026-05-{day:02d}T00:00:{i % 60:02d}Z", "system": "s",
                     "attributes": {"kansa.incident": "serious"} if i % marked_every == 0
                     else {"x": i}} for i in range(n)])


def test_follower_reads_incrementally_and_filters(ledger: kansa.Ledger) -> None:
    st = ledger.log.store
    _append(ledger, 10)
    every = Follower(st, batch=4)
    marked = Follower(st, match=b'"kansa.incident"', batch=4)
    assert [i for i, _, _ in every.read()] == list(range(10)) and every.position == 10
    assert [i for i, _, _ in marked.read()] == [0, 3, 6, 9] and marked.position == 10
    assert list(every.read()) == [] and list(marked.read()) == []  # nothing new
    _append(ledger, 5, marked_every=2)  # indices 10..14, marked: 10, 12, 14
    assert [i for i, _, _ in every.read()] == [10, 11, 12, 13, 14]
    assert [i for i, _, _ in marked.read()] == [10, 12, 14]
    # several needles: an entry with any of them
    both = Follower(st, match=(b'"x":4', b'"x":3'))
    assert [i for i, _, _ in both.read()] == [4, 13]


def test_follower_position_moves_past_what_it_handed_out(ledger: kansa.Ledger) -> None:
    _append(ledger, 9)
    f = Follower(ledger.log.store, batch=4)
    for index, _, _ in f.read():
        if index == 5:
            break
    assert f.position == 6
    assert [i for i, _, _ in f.read()] == [6, 7, 8]
    g = Follower(ledger.log.store, match=b'"kansa.incident"', batch=4)
    assert next(iter(g.read()))[0] == 0
    assert g.position == 1
    assert [i for i, _, _ in g.read(7)] == [3, 6] and g.position == 7


def test_named_follower_resumes_from_its_saved_position(store_url: str,
                                                       ledger: kansa.Ledger) -> None:
    _append(ledger, 7)
    det = Follower(ledger.log.store, "detector.a", match=b'"kansa.incident"')
    assert det.position == 0 and [i for i, _, _ in det.read()] == [0, 3, 6]
    det.save()
    assert Follower.saved(ledger.log.store, "detector.a") == 7
    assert Follower.saved(ledger.log.store, "detector.b") is None
    _append(ledger, 4)
    # another process, another store object: resumes where the first saved
    other = open_store(store_url)
    try:
        again = Follower(other, "detector.a", match=b'"kansa.incident"')
        assert again.position == 7 and [i for i, _, _ in again.read()] == [7, 10]
        again.save()
        assert Follower(other, "detector.a").position == 11
        assert Follower(other, "detector.b").position == 0
    finally:
        other.close()
    with pytest.raises(StorageError, match="named"):
        Follower(ledger.log.store).save()


def test_follower_time_window(ledger: kansa.Ledger) -> None:
    from kansa.report.drafting import to_us

    for day in (1, 2, 3):
        _append(ledger, 4, day=day)
    f = Follower(ledger.log.store, since_us=to_us("2026-05-02"), until_us=to_us("2026-05-03"))
    assert [i for i, _, _ in f.read()] == [4, 5, 6, 7] and f.position == 12
    f = Follower(ledger.log.store, match=b'"kansa.incident"', since_us=to_us("2026-05-02"))
    assert [i for i, _, _ in f.read()] == [4, 7, 8, 11]
