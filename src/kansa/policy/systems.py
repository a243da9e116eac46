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

from kansa.policy.pack import PolicyError


class SystemsError(PolicyError):
    """A systems file cannot be read or is not a mapping of names to facts."""


def load_systems(path: Path | str | None) -> dict[str, dict[str, Any]]:
    """Read a systems file (YAML or JSON); ``None`` means no facts (``{}``)."""
    if path is None:
        return {}
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SystemsError(f"{p}: cannot read system facts: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise SystemsError(f"{where}: system facts are not valid YAML: "
                           f"{getattr(e, 'problem', None) or e}") from None
    if data is None:
        return {}
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
