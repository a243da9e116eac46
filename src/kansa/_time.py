"""Instants as kansa stores them: integer microseconds since the Unix epoch, in UTC.

Entries, checkpoints, findings and tallies all keep times this way (SQLite and
PostgreSQL compare integers fast and exactly); this module is the one place that converts,
so no layer carries its own epoch constant. Imports nothing of kansa (layer 0).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact: no float on the way)."""
    d = dt - EPOCH
    # the integer arithmetic of timedelta // timedelta, without its division (hot in
    # replay and inline judging)
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def from_us(us: int) -> datetime:
    """The aware UTC datetime of ``us`` microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=us)
