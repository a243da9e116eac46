"""kansa's exception hierarchy: every error kansa raises on purpose derives from KansaError.

Catch :class:`KansaError` for all of them, or a branch below it::

    KansaError
     ├── ProofError                   a Merkle inclusion or consistency proof fails
     ├── SignatureError               a signed note, checkpoint or cosignature
     ├── KeyFormatError               a signer or verifier key string
     ├── FormatError                  a checkpoint, tile, bundle or proof file
     │    └── capture.otel.OTLPError
     ├── VerificationError            offline or live verification (``problems``)
     ├── StorageError                 store unreachable, corrupt, unknown schema
     ├── InconsistentCheckpointError  refusing to sign a forking checkpoint
     ├── EntryTooLargeError           an entry over 65,535 bytes
     ├── RecordError                  an invalid usage record (``line``, ``field``)
     ├── ErasedError                  content of an erased data subject
     ├── WitnessError                 a witness refused or answered oddly
     │    └── ledger.witness.WitnessRefusal
     ├── RollbackError                the store holds less than the log signed
     ├── DuplicateIdError             a record id already in the log
     ├── PolicyError                  rule packs, checks, feeds, inline policy
     │    ├── PolicyBlocked           inline enforcement refused a call
     │    ├── policy.pack.PackError   a malformed pack (``file:line: reason``)
     │    ├── policy.cel.CheckError   a CEL check: compile, cost, run time
     │    ├── policy.systems.SystemsError, policy.crosswalk.CrosswalkError,
     │    │   policy.oscal.OscalError, policy.signing.TrustStoreError
     │    ├── policy.approvals.ApprovalError
     │    │    └── ApprovalPending
     │    ├── policy.feed.FeedError, policy.feed.ActivationError
     │    ├── policy.feed.InstallError
     │    │    └── DowngradeError, ConflictError
     │    └── policy.signing.PackSignatureError   (also a SignatureError)
     │         └── UnsignedPackError, UntrustedSignerError, PackAlteredError,
     │             WrongPackError, MalformedSignatureError
     ├── web.auth.AuthError           a web token file, role map or role name
     ├── web.app.WebError             a request the dashboard refuses (``status``)
     ├── GuardError                   guard configuration, scan input, a guard model file
     ├── provenance.detect.DetectError  AI-text detection cannot score or cannot run
     │    └── DetectInputError (empty, binary, too large), DetectUnavailableError
     │        (the extra kansa[detect] is not installed)
     └── ReportError                  a report or draft cannot be built
          ├── ReportLanguageError     a language kansa does not write (``--lang``)
          └── report.evidence.NoReplayError, report.drafting.ReportDraftError,
              report.render_pdf.ReportFontError,
              report.evidence_supply.EvidenceError

The classes named with a module live there (they matter only to callers of that
module); everything else is defined here and importable as ``kansa.errors.X``.
``KansaError``, ``PolicyBlocked`` and the errors of the public API are also
``kansa.X``. The same bad input raises the same class wherever it enters (a bad
report language is always :class:`ReportLanguageError`).
"""

from __future__ import annotations

from collections.abc import Sequence


class KansaError(Exception):
    """Base class of every error kansa raises on purpose."""


class GuardError(KansaError):
    """The guard layer cannot run as configured: a bad configuration, scan input or
    shipped model file (the message names what and where)."""


class ProofError(KansaError):
    """A Merkle inclusion or consistency proof does not verify."""


class SignatureError(KansaError):
    """A signed note, checkpoint or cosignature does not verify, or is malformed."""


class KeyFormatError(KansaError):
    """A signer or verifier key string is malformed."""


class FormatError(KansaError):
    """A checkpoint, tile, entry bundle or proof file is malformed."""


class VerificationError(KansaError):
    """Offline or live verification found a problem; ``problems`` lists every finding."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        head = problems[0] if problems else "verification failed"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(head + more)


class StorageError(KansaError):
    """The store is unreachable, corrupt or of an unknown schema version."""


class InconsistentCheckpointError(KansaError):
    """The log refused to sign a checkpoint inconsistent with the last one it signed."""


class EntryTooLargeError(KansaError):
    """An entry exceeds the 65,535-byte limit of the tlog-tiles entry bundle format."""


class RecordError(KansaError):
    """A usage record is invalid; ``where`` names the line and field when known.

    ``reason`` is the bare message without the location, so that code adding a location
    later (``err.at(line=3)``) never repeats it: ``str(err)`` is always built once, from
    ``reason``, ``line`` and ``field``."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None):
        self.reason = message
        self.line = line
        self.field = field
        where = []
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)

    def at(self, *, line: int | None = None, field: str | None = None) -> RecordError:
        """The same error with a line and/or field filled in where it had none."""
        return RecordError(self.reason, line=self.line if self.line is not None else line,
                           field=self.field if self.field is not None else field)


class ErasedError(KansaError):
    """The content asked for belonged to a data subject whose key was erased."""


class WitnessError(KansaError):
    """A witness refused a checkpoint or answered something unexpected."""


class RollbackError(KansaError):
    """The store holds less than the log already signed (restored from an old backup, or
    rows deleted): appending or signing now would fork the log."""


class DuplicateIdError(KansaError):
    """A record id is already in the log (record ids are unique)."""


class PolicyError(KansaError):
    """Base class of rule-pack, check, feed and inline-policy errors."""


class PolicyBlocked(PolicyError):  # noqa: N818 - named for what happened, like the outcome
    """A call was refused by inline enforcement (``block`` or ``require_approval``).

    ``decision`` is ``block`` or ``approval_required``; ``failed`` lists the obligations
    that failed (``pack@version#obligation``, citation); ``approval_id`` is set when an
    approval was requested (retry with it once approved)."""

    def __init__(self, message: str, *, decision: str, failed: Sequence[tuple[str, str]],
                 snapshot: str, record_id: str | None = None,
                 approval_id: str | None = None) -> None:
        super().__init__(message)
        self.decision = decision
        self.failed = list(failed)
        self.snapshot = snapshot
        self.record_id = record_id
        self.approval_id = approval_id


class ReportError(KansaError):
    """A report, document or draft cannot be built (unknown pack or run, empty period,
    unreadable store, missing font)."""


class ReportLanguageError(ReportError):
    """A report was asked for in a language kansa does not write."""
