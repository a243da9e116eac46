"""kansa._time: the one conversion between datetimes and stored microseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from kansa._time import EPOCH, from_us, to_us


def test_known_instants() -> None:
    assert to_us(EPOCH) == 0
    # `date -u -d "2026-11-18 09:00:00" +%s` prints 1794992400; plus a quarter second
    assert to_us(datetime(2026, 11, 18, 9, 0, 0, 250000, tzinfo=UTC)) == 1_794_992_400_250_000
    assert to_us(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1
    # the same instant in another zone
    jst = timezone(timedelta(hours=9))
    assert to_us(datetime(2026, 11, 18, 18, 0, tzinfo=jst)) == to_us(
        datetime(2026, 11, 18, 9, 0, tzinfo=UTC))


@given(st.datetimes(timezones=st.just(UTC)))
def test_round_trip_and_agrees_with_timedelta_division(dt: datetime) -> None:
    us = to_us(dt)
    assert us == (dt - EPOCH) // timedelta(microseconds=1)
    assert from_us(us) == dt
