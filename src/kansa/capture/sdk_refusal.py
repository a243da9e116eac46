"""What a caller of the SDK surfaces (wrapped clients, tools) gets when the capture
pipeline refuses a call or holds its answer: :class:`kansa.PolicyBlocked` and the error
type its record carries; and the bytes an approval is bound to.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kansa.capture.pipeline import Refusal, Verdict
from kansa.capture.sdk_writer import _jsonable
from kansa.records.model import canonical

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.policy.inline import PolicyBlocked


def _body_bytes(body: Any) -> bytes:
    try:
        return canonical(body)
    except Exception:  # objects JSON cannot hold: bind to a stable rendering instead
        return json.dumps(_jsonable(body), sort_keys=True).encode()


def _held_error(record_id: str, v: Verdict) -> PolicyBlocked:
    from kansa.errors import PolicyBlocked

    return PolicyBlocked(f"kansa: the answer was held by the pipeline stage {v.stage}: "
                         f"{v.message}", decision=v.decision, snapshot=v.snapshot,
                         failed=[(o.label, o.citation) for o in v.obligations],
                         record_id=record_id)


def _refusal(r: Refusal, record_id: str, retry: str) -> tuple[PolicyBlocked, str]:
    """The exception a caller gets for a call the pipeline refused, and the record's
    error type. ``retry``: how to pass the approval id on a repeated call."""
    from kansa.errors import PolicyBlocked

    v = r.verdict
    message = v.message
    if r.kind == "approval_required":
        message += (f"; approval {v.approval} was requested: repeat the call with "
                    f"{retry.format(v.approval)} once it is approved")
    elif r.why:
        message += f"; {r.why}"
    error_type = ("pipeline_error" if r.kind == "stage_failed"
                  else "approval_required" if v.decision == "approval_required"
                  else "policy_blocked")
    return PolicyBlocked(message, decision=v.decision, snapshot=v.snapshot,
                         failed=[(o.label, o.citation) for o in v.obligations],
                         record_id=record_id, approval_id=v.approval), error_type
