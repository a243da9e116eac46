"""What is in scope for the records a thread or task makes: ``kansa.context`` metadata,
the enclosing step (``parent_id``) and the last record made (:func:`last_record_id`).

A :class:`contextvars.ContextVar` holds one immutable ``_Meta``; entering a context or a
step sets a new one, so threads and asyncio tasks each see their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from typing import Any

from kansa.records.model import UsageRecord


@dataclass(frozen=True, slots=True)
class _Meta:
    subject: str | None = None
    conversation_id: str | None = None
    actor: str | None = None
    app: str | None = None
    system: str | None = None
    agent: str | None = None
    parent_id: str | None = None  # record id of the enclosing step
    attributes: Mapping[str, Any] | None = None
    approval: str | None = None  # an approval id for the tool calls inside (single use)


_NO_META = _Meta()


_META: ContextVar[_Meta] = ContextVar("kansa_meta", default=_NO_META)


_LAST: ContextVar[Any] = ContextVar("kansa_last_record", default=None)  # id or _Call


def last_record_id() -> str | None:
    """The id of the last record this context (thread or task) produced: a model call
    through a wrapped client, a step or a tool call. ``ledger.prove(id)`` gives its
    receipt (with durable=False, once :func:`flush` has returned)."""
    last = _LAST.get()
    return last if last is None or isinstance(last, str) else str(last.id)


def _merged_attributes(outer: Mapping[str, Any] | None,
                       inner: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not inner:
        return outer
    if not outer:
        return dict(inner)
    return {**outer, **inner}


class context:  # noqa: N801 - used like a function: `with kansa.context(...)`
    """Metadata for every record made inside it (model calls, steps, tools), in this
    thread or task: ``with kansa.context(subject="user-7", conversation_id="c-1"):``.

    ``approval``: an approved approval id (``kansa approvals approve ID``) that lets a
    tool call a pipeline stage asked approval for through (single use; model calls take
    theirs in the ``x-kansa-approval`` header).

    Nested contexts inherit what they do not set. Also ``async with``. Metadata no
    ledger entry can hold (a lone surrogate, attributes past the 64 KiB entry bound)
    raises RecordError here, before anything inside runs."""

    __slots__ = ("_fields", "_tokens")

    def __init__(
        self,
        *,
        subject: str | None = None,
        conversation_id: str | None = None,
        actor: str | None = None,
        app: str | None = None,
        system: str | None = None,
        agent: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        approval: str | None = None,
    ) -> None:
        self._fields: dict[str, Any] = {k: v for k, v in (
            ("subject", subject), ("conversation_id", conversation_id), ("actor", actor),
            ("app", app), ("system", system), ("agent", agent), ("approval", approval),
        ) if v is not None}
        if attributes:
            self._fields["attributes"] = dict(attributes)
        # refuse now what no record could hold (a lone surrogate, an entry over 64 KiB),
        # rather than after the model call, step or tool inside has run
        UsageRecord(system=system or "-", subject=subject, conversation_id=conversation_id,
                    actor=actor, app=app, agent_name=agent,
                    attributes=dict(attributes) if attributes else {},
                    id=_PROBE_ID).check_encodable()
        self._tokens: list[Token[_Meta]] = []  # one per enter: a context may be re-entered

    def __enter__(self) -> context:
        outer = _META.get()
        fields = dict(self._fields)
        if "attributes" in fields:
            fields["attributes"] = _merged_attributes(outer.attributes, fields["attributes"])
        self._tokens.append(_META.set(replace(outer, **fields)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tokens:
            _META.reset(self._tokens.pop())

    async def __aenter__(self) -> context:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


def _default_system() -> str:
    return os.environ.get("KANSA_SYSTEM") or "default"


_PROBE_ID = "00000000-0000-7000-8000-000000000000"  # as long as a real record id
