"""Type-checked by tests/test_public_typing.py (mypy --strict), never run: the public
names of ``kansa`` as a caller uses them, including the lazily imported ones."""

from __future__ import annotations

import kansa
from kansa.errors import KansaError, PolicyError, ReportError, ReportLanguageError


def guarded(ledger: kansa.Ledger, record: dict[str, object]) -> str | None:
    try:
        appended: kansa.Appended = ledger.append(record)
    except kansa.PolicyBlocked as e:
        decision: str = e.decision
        failed: list[tuple[str, str]] = e.failed
        return f"{decision} {failed} {e.approval_id}"
    except (kansa.PolicyError, PolicyError) as e:
        return str(e)
    except kansa.RecordError as e:
        return e.reason
    except KansaError:
        return None
    return appended.id


def report_failed(e: Exception) -> bool:
    return isinstance(e, (kansa.ReportError, ReportError, ReportLanguageError))


def wrapped(client: object) -> object:
    with kansa.context(subject="user-7"):
        return kansa.wrap(client, system="support-bot")


usage: type[kansa.UsageRecord] = kansa.UsageRecord
