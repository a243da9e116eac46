"""kansa (監査, "audit"): a verifiable ledger of AI usage records.

The public API is small: :class:`Ledger`, :class:`UsageRecord`, :func:`wrap` (with
:func:`context`, :func:`step`, :func:`tool`) and the errors in :mod:`kansa.errors`.
Everything under ``kansa.ledger`` speaks the C2SP formats and can be used on its own:
importing this package loads only :mod:`kansa.errors`; the other names are imported on
first use (PEP 562), so ``import kansa.ledger.merkle`` loads no storage, API or SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kansa.errors import (
    ErasedError,
    KansaError,
    PolicyBlocked,
    PolicyError,
    ProofError,
    RecordError,
    ReportError,
    SignatureError,
    StorageError,
    VerificationError,
)

if TYPE_CHECKING:  # what mypy sees; at run time __getattr__ imports these on first use
    from kansa.api import Appended, Erasure, Ledger, StoredRecord
    from kansa.capture.sdk import context, step, tool, wrap
    from kansa.records.model import UsageRecord

__all__ = [
    "Appended",
    "ErasedError",
    "Erasure",
    "KansaError",
    "Ledger",
    "PolicyBlocked",
    "PolicyError",
    "ProofError",
    "RecordError",
    "ReportError",
    "SignatureError",
    "StorageError",
    "StoredRecord",
    "UsageRecord",
    "VerificationError",
    "context",
    "step",
    "tool",
    "wrap",
]
__version__ = "0.1.0"

# name -> the module that defines it
_LAZY = {
    "Appended": "kansa.api",
    "Erasure": "kansa.api",
    "Ledger": "kansa.api",
    "StoredRecord": "kansa.api",
    "UsageRecord": "kansa.records.model",
    "context": "kansa.capture.sdk",
    "step": "kansa.capture.sdk",
    "tool": "kansa.capture.sdk",
    "wrap": "kansa.capture.sdk",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kansa' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
