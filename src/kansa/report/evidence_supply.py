"""Evidence supplied by people, for obligations no record can show (``evidence:`` in a pack).

``kansa evidence add --pack ID --obligation OID FILE`` appends one ledger record:

    kind: kansa.event, system: kansa, operation: evidence.supplied
    attributes:
      kansa.event: evidence.supplied
      kansa.evidence.pack: <pack id>          kansa.evidence.obligation: <obligation id>
      kansa.evidence.sha256: <hex of the file> kansa.evidence.title: <title>
      kansa.evidence.filename: <base name>    kansa.evidence.bytes: <size>

The file itself stays where it is (it may be confidential); the ledger holds its SHA-256,
so anyone given the file later can prove it is the one that was supplied, and when. The
evidence report lists each such record with a receipt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kansa.errors import ReportError
from kansa.ledger.follower import Follower
from kansa.records.attributes import (
    KANSA_EVENT,
    KANSA_EVIDENCE_BYTES,
    KANSA_EVIDENCE_FILENAME,
    KANSA_EVIDENCE_OBLIGATION,
    KANSA_EVIDENCE_PACK,
    KANSA_EVIDENCE_SHA256,
    KANSA_EVIDENCE_TITLE,
)
from kansa.records.model import UsageRecord, parse_ts

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.policy.pack import Pack

EVENT = "evidence.supplied"
_MARK = f'"{EVENT}"'  # how the event name appears in an entry's canonical JSON


class EvidenceError(ReportError):
    """Evidence cannot be supplied as asked (unknown obligation, unreadable file)."""


@dataclass(frozen=True)
class SuppliedEvidence:
    index: int  # the record's entry index in the log
    record_id: str
    ts: datetime
    pack: str
    obligation: str
    sha256: str
    title: str
    filename: str
    size: int


def _sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise EvidenceError(f"cannot read evidence file {path}: {e.strerror or e}") from None
    return h.hexdigest(), size


def check_obligation(packs: list[Pack], pack_id: str, obligation: str) -> None:
    """Refuse evidence for an obligation none of ``packs`` has (typos would otherwise
    be recorded for ever)."""
    versions = [p for p in packs if p.id == pack_id]
    if not versions:
        known = ", ".join(sorted({p.id for p in packs})) or "none"
        raise EvidenceError(f"no pack {pack_id!r} among the packs given (known: {known})")
    if not any(o.id == obligation for p in versions for o in p.obligations):
        ids = sorted({o.id for p in versions for o in p.obligations})
        raise EvidenceError(f"pack {pack_id!r} has no obligation {obligation!r} "
                            f"(it has: {', '.join(ids)})")


def evidence_record(pack: str, obligation: str, sha256: str, title: str, filename: str,
                    size: int, *, at: datetime | None = None) -> UsageRecord:
    attrs: dict[str, Any] = {
        KANSA_EVENT: EVENT,
        KANSA_EVIDENCE_PACK: pack,
        KANSA_EVIDENCE_OBLIGATION: obligation,
        KANSA_EVIDENCE_SHA256: sha256,
        KANSA_EVIDENCE_TITLE: title,
        KANSA_EVIDENCE_FILENAME: filename,
        KANSA_EVIDENCE_BYTES: size,
    }
    return UsageRecord(system="kansa", kind="kansa.event", operation=EVENT,
                       ts=at or datetime.now(UTC), attributes=attrs)


def supply_evidence(ledger: Ledger, *, pack: str, obligation: str, file: str | Path,
                    title: str | None = None, at: datetime | None = None) -> SuppliedEvidence:
    """Record that ``file`` was supplied as evidence for ``pack``'s ``obligation``."""
    path = Path(file)
    if not path.is_file():
        raise EvidenceError(f"evidence file {path} does not exist or is not a file")
    if not pack.strip() or not obligation.strip():
        raise EvidenceError("evidence needs a pack id and an obligation id")
    digest, size = _sha256_file(path)
    rec = evidence_record(pack, obligation, digest, title or path.name, path.name, size, at=at)
    done = ledger.append(rec)
    return SuppliedEvidence(done.index, done.id, rec.ts.astimezone(UTC), pack, obligation,
                            digest, title or path.name, path.name, size)


def _candidate_rows(ledger: Ledger) -> Iterator[tuple[int, bytes]]:
    """Entries whose bytes mention the event, found by the store (a follower: no JSON
    parsed in Python for the other entries)."""
    for idx, _ts, data in Follower(ledger.log.store, match=_MARK.encode()).read():
        yield idx, data


def supplied_evidence(ledger: Ledger, *, pack: str | None = None,
                      obligation: str | None = None) -> list[SuppliedEvidence]:
    """Every evidence.supplied record (of ``pack`` / ``obligation`` if given), in log order."""
    out = []
    for index, data in _candidate_rows(ledger):
        e = json.loads(data)
        a = e.get("attributes") or {}
        if e.get("kind") != "kansa.event" or a.get(KANSA_EVENT) != EVENT:
            continue
        if pack is not None and a.get(KANSA_EVIDENCE_PACK) != pack:
            continue
        if obligation is not None and a.get(KANSA_EVIDENCE_OBLIGATION) != obligation:
            continue
        out.append(SuppliedEvidence(
            index, str(e.get("id", "")), parse_ts(str(e.get("ts"))),
            str(a.get(KANSA_EVIDENCE_PACK, "")), str(a.get(KANSA_EVIDENCE_OBLIGATION, "")),
            str(a.get(KANSA_EVIDENCE_SHA256, "")), str(a.get(KANSA_EVIDENCE_TITLE, "")),
            str(a.get(KANSA_EVIDENCE_FILENAME, "")), int(a.get(KANSA_EVIDENCE_BYTES, 0))))
    return out
