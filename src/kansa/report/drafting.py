"""What the generated drafts (the security design document, the OECD HAIP draft and the
incident drafts) share: their error, the mark for what only the organisation can
answer, and how they read and write instants (UTC, plus Japan time in Japanese).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from kansa._time import from_us
from kansa._time import to_us as _to_us
from kansa.errors import ReportError

JST = timezone(timedelta(hours=9), "JST")

# the two labels every draft uses for what only a person can answer
TBC = {"en": "TO BE COMPLETED BY THE ORGANISATION", "ja": "組織による記入が必要"}


class ReportDraftError(ReportError):
    """A design document or draft cannot be built (bad language, unreadable store...)."""


def to_us(value: datetime | str | None) -> int | None:
    """Microseconds since the epoch of an aware datetime or an RFC 3339 / ISO date string
    (a naive one is taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ReportDraftError(f"{value!r} is not an RFC 3339 time or YYYY-MM-DD date") \
                from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return _to_us(value)


def fmt_time(us: int | None, lang: str = "en") -> str:
    """A UTC instant to the second; Japanese documents add Japan time."""
    if us is None:
        return "—"
    t = from_us(us)
    s = t.strftime("%Y-%m-%d %H:%M:%S UTC")
    if lang == "ja":
        s += " (" + t.astimezone(JST).strftime("%Y-%m-%d %H:%M JST") + ")"
    return s
