"""kansa's exception hierarchy: every error a caller may want to catch derives from KansaError."""

from __future__ import annotations


class KansaError(Exception):
    """Base class of every error kansa raises on purpose."""


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
