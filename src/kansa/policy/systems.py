"""System facts: what the operator declares about each AI system (CEL's ``system``).

A systems file maps each system name (the records' ``system``) to its facts, as listed in
docs/VOCABULARY.md::

    support-bot:
      roles: [provider, deployer]
      jurisdictions: [JP, EU]
      placed_on_market: 2026-03-01
      log_retention_days: 365
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from kansa import _bounds
from kansa.policy.pack import BoundedLoader, PolicyError

MAX_VALUES = 100_000


class SystemsError(PolicyError):
    """A systems file cannot be read or is not a mapping of names to facts."""


def load_systems(path: Path | str | None) -> dict[str, dict[str, Any]]:
    """Read a systems file (YAML or JSON); ``None`` means no facts (``{}``)."""
    if path is None:
        return {}
    p = Path(path)
    try:
        data = yaml.load(p.read_text("utf-8"), Loader=BoundedLoader)  # noqa: S506 (safe)
    except (OSError, UnicodeDecodeError) as e:
        raise SystemsError(f"{p}: cannot read system facts: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise SystemsError(f"{where}: system facts are not valid YAML: "
                           f"{getattr(e, 'problem', None) or e}") from None
    except ValueError as e:  # a YAML integer of more than 4,300 digits, a bad date
        raise SystemsError(f"{p}: system facts: {str(e)[:200]}") from None
    if data is None:
        return {}
    if _bounds.count_values(data, MAX_VALUES) > MAX_VALUES:
        raise SystemsError(f"{p}: system facts hold more than {MAX_VALUES:,} values "
                           "(counting each use of a YAML alias)")
    bad = _unusable(data)
    if bad is not None:
        raise SystemsError(f"{p}: system facts: {bad}")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SystemsError(f"{p}: system facts must map each system name to a mapping of "
                           "facts (see docs/VOCABULARY.md)")
    out: dict[str, dict[str, Any]] = {}
    for name, facts in data.items():
        facts = dict(facts)
        for key in DATE_FACTS & facts.keys():
            facts[key] = _as_date(facts[key], f"{p}: {name}.{key}")
        out[str(name)] = facts
    return out


# Facts that checks compare with timestamps: JSON has no dates, and a quoted YAML date
# is a string, which CEL would refuse to compare ("no such overload") at judging time.
DATE_FACTS = frozenset({"placed_on_market"})


def _as_date(value: Any, where: str) -> date | datetime:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            pass
        else:
            return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    raise SystemsError(f"{where}: {value!r} is not a date (YYYY-MM-DD or RFC 3339)")


def _unusable(data: Any) -> str | None:
    """What CEL could not take among the facts: integers beyond 64 bits, non-finite
    numbers, keys that are not strings, types YAML has that JSON lacks."""
    stack = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k in v:
                if not isinstance(k, str | int) or isinstance(k, bool):
                    return f"key {str(k)[:40]!r} is not a string"
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool) or v is None or isinstance(v, str | date):
            continue
        elif isinstance(v, int):
            if not -(2**63) <= v < 2**64:
                return f"{str(v)[:40]}… does not fit in 64 bits"
        elif isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                return f"{v} is not a finite number"
        else:
            return f"{type(v).__name__} values are not supported"
    return None
