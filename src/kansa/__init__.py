"""kansa (監査, "audit"): a verifiable ledger of AI usage records.

The public API is small: :class:`Ledger`, :class:`UsageRecord` and the errors in
:mod:`kansa.errors`. Everything under ``kansa.ledger`` speaks the C2SP formats and can be
used on its own.
"""

from kansa.api import Appended, Erasure, Ledger, StoredRecord
from kansa.capture.sdk import context, step, tool, wrap
from kansa.errors import (
    ErasedError,
    KansaError,
    ProofError,
    RecordError,
    SignatureError,
    StorageError,
    VerificationError,
)
from kansa.records.model import UsageRecord

__all__ = [
    "Appended",
    "ErasedError",
    "Erasure",
    "KansaError",
    "Ledger",
    "PolicyBlocked",
    "ProofError",
    "RecordError",
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


def __getattr__(name: str) -> object:
    # PolicyBlocked lives with inline enforcement, whose CEL engine is imported only on use
    if name == "PolicyBlocked":
        from kansa.policy.inline import PolicyBlocked

        return PolicyBlocked
    raise AttributeError(f"module 'kansa' has no attribute {name!r}")
