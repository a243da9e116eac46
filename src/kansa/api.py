"""kansa's public Python API: :class:`Ledger` ties records, the vault and the log together.

    import kansa
    with kansa.Ledger.open() as ledger:                 # $KANSA_HOME, SQLite by default
        r = ledger.append({"system": "support-bot", "subject": "user-7",
                           "gen_ai.request.model": "gpt-4o-mini", "input": "...", "output": "..."})
        receipt = ledger.prove(r.id)                    # C2SP tlog-proof bytes
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kansa._time import to_us as _micros
from kansa.errors import ErasedError, KansaError, RecordError, StorageError, VerificationError
from kansa.home import Home
from kansa.ledger.follower import Follower
from kansa.ledger.log import Append, Log
from kansa.ledger.note import SignedCheckpoint, Signer, Verifier
from kansa.ledger.storage import EntryRow, open_store
from kansa.records.attributes import (
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    KANSA_ERASURE_COMPLETED,
    KANSA_ERASURE_CONTENTS_DESTROYED,
    KANSA_ERASURE_LATE_CONTENTS,
    KANSA_ERASURE_REASON,
    KANSA_ERASURE_SUBJECT,
)
from kansa.records.model import UsageRecord, canonical, parse_ts
from kansa.vault import Vault

RecordLike = UsageRecord | Mapping[str, Any]


def _unrecorded(erased: set[str], recorded: set[str]) -> list[str]:
    """An erasure is recorded in the log; a group marked erased in the store without a
    kansa.erasure record is content deleted behind the log's back."""
    return [
        f"erasure group {g}: marked erased in the store, but the log holds no kansa.erasure "
        f"record for it (an erase stopped before recording itself: run the same erase "
        f"again to append its record; else content deleted behind the log's back)"
        for g in sorted(erased - recorded)
    ]


@dataclass(frozen=True)
class Appended:
    """An acknowledged append: the record is durable at ``index``."""

    index: int
    id: str


@dataclass(frozen=True)
class StoredRecord:
    index: int
    entry: dict[str, Any]
    entry_bytes: bytes
    content: dict[str, Any] | None  # None when the record carries no content
    content_state: str  # "present", "erased", "none", "missing" (gone or damaged)
    content_problem: str | None = None  # why the content is "missing"

    @property
    def id(self) -> str:
        return str(self.entry.get("id", ""))


@dataclass(frozen=True)
class Erasure:
    pseudonym: str | None  # None: the subject had no live key; late content was swept
    contents_destroyed: int
    record: Appended
    scrubbed: bool = True  # False: old page images remain until the next erase (see docs)
    # pseudonyms erased earlier by an erase that stopped before appending its record
    # (killed, store outage): their kansa.erasure records, appended now
    completed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Page:
    """One page of :meth:`Ledger.browse`: the records, newest first; ``next_before``, the
    cursor of the next (older) page, None at the start of the log; ``scanned``, how many
    entries of the log this page read past."""

    records: list[StoredRecord]
    next_before: int | None
    scanned: int


class Ledger:
    """A verifiable ledger of usage records. Thread-safe; use one per process."""

    def __init__(self, log: Log, vault: Vault, home: Home | None = None) -> None:
        self.log = log
        self.vault = vault
        self.home = home

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        home: str | Path | None = None,
        signer: Signer | None = None,
        master_key: bytes | None = None,
        checkpoint_interval: float = 0.25,
    ) -> Ledger:
        """Open a ledger. Keys come from ``signer``/``master_key`` if given, else from
        ``home`` ($KANSA_HOME, default ./.kansa); the store is ``url`` if given, else the
        home's configured store (SQLite ``ledger.db`` in the home by default)."""
        h: Home | None = None
        if signer is None or master_key is None or url is None:
            h = Home.load(home)
            signer = signer or h.signer()
            master_key = master_key or h.master_key()
            url = url or h.store_url
        store = open_store(url)
        try:
            log = Log(store, signer, checkpoint_interval=checkpoint_interval,
                      keeper=h.kept_checkpoint() if h is not None else None)
        except BaseException:
            store.close()
            raise
        return cls(log, Vault(store, master_key), h)

    @classmethod
    def init(cls, home: str | Path | None = None, *, origin: str | None = None,
             url: str | None = None) -> Ledger:
        """Create keys in ``home`` and open its (new) store."""
        h = Home.create(home, origin=origin, store_url=url)
        return cls.open(home=h.path)

    def close(self) -> None:
        self.log.close()
        self.log.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def verifier(self) -> Verifier:
        return self.log.verifier

    # -- appending ------------------------------------------------------------------------

    def _prepare(self, record: RecordLike) -> Append:
        rec = record if isinstance(record, UsageRecord) else UsageRecord.from_flat(record)
        rec.validate()
        try:
            return self._seal(rec)
        except (RecordError, ValueError, TypeError, UnicodeError, RecursionError) as e:
            # Not on the hot path: only a record that cannot be encoded gets here, and the
            # full check then says which field is wrong (as 'kansa log append' does).
            rec.check_encodable()
            raise RecordError(f"record {rec.id} cannot be encoded: {e}") from e

    def _seal(self, rec: UsageRecord) -> Append:
        if rec.content:
            sk, commit, attachment = self.vault.seal(rec.subject, rec.id, canonical(rec.content))
        else:
            key = self.vault.subject_key(rec.subject)
            assert key is not None
            sk, commit, attachment = key, None, None
        subject_ref = sk.pseudonym if rec.subject is not None else None
        entry = canonical(rec.entry_object(subject_ref=subject_ref, commitment=commit))
        return Append(entry, ts=_micros(rec.ts), group=sk.pseudonym, ext_id=rec.id,
                      attachment=attachment)

    def append(self, record: RecordLike) -> Appended:
        """Append one record; returns once it is durable."""
        item = self._prepare(record)
        assert item.ext_id is not None
        return Appended(self.log.submit(item).result(), item.ext_id)

    async def aappend(self, record: RecordLike) -> Appended:
        """Async :meth:`append`: awaits durability without blocking the event loop."""
        item = self._prepare(record)
        assert item.ext_id is not None
        return Appended(await self.log.append_async(item), item.ext_id)

    def append_many(
        self, records: Iterable[RecordLike], *, progress: Callable[[int], None] | None = None
    ) -> list[Appended]:
        """Append many records as one stream of group commits."""
        pending = []
        for rec in records:
            item = self._prepare(rec)
            pending.append((self.log.submit(item), item.ext_id))
        out = []
        for fut, rid in pending:
            out.append(Appended(fut.result(), str(rid)))
            if progress:
                progress(1)
        return out

    def checkpoint(self) -> SignedCheckpoint:
        """Sign a checkpoint now if the log grew; return the latest signed checkpoint."""
        self.log.flush()
        return self.log.latest_checkpoint()

    # -- reading ----------------------------------------------------------------------------

    def resolve(self, ref: str | int) -> int:
        """An entry index from an index (an int) or a record id (a str, always: a record
        id may be all digits, so "7" is the record with id "7", never entry 7)."""
        if isinstance(ref, int):
            index = ref
        else:
            found = self.log.store.index_of(ref)
            if found is None:
                hint = (f"; to name entry {int(ref)} by its index, pass the int {int(ref)} "
                        f"('kansa prove --index {int(ref)}')"
                        if ref.isascii() and ref.isdigit() else "")
                raise KansaError(f"no record with id {ref!r}{hint}")
            return found
        if not 0 <= index < self.log.size():
            raise KansaError(f"no entry {index}: the log holds {self.log.size()} entries")
        return index

    def get(self, ref: str | int, *, with_content: bool = True) -> StoredRecord:
        """One record; ``with_content=False`` leaves its content sealed (metadata only:
        nothing is decrypted)."""
        index = self.resolve(ref)
        row = self.log.store.entry(index)
        if row is None:
            raise KansaError(f"entry {index} is missing from the store")
        return self._view(row, with_content=with_content)

    def _view(self, row: EntryRow, *, with_content: bool = True,
              listing: bool = False) -> StoredRecord:
        entry = json.loads(row.data)
        commitment = (entry.get("content") or {}).get("commitment")
        if commitment is None or not with_content:
            return StoredRecord(row.index, entry, row.data, None,
                                "none" if commitment is None else "present")
        att = self.log.store.attachment(row.index)
        try:
            raw = self.vault.open(row.group or "", entry.get("id", ""),
                                  att[1] if att else None, commitment)
        except ErasedError:
            return StoredRecord(row.index, entry, row.data, None, "erased")
        except KansaError as e:
            # One record's lost or damaged content must not hide the others in a listing;
            # it is reported on that record (and 'kansa verify' fails on it). Asked for
            # alone, the record's problem is the answer.
            if not listing:
                raise
            return StoredRecord(row.index, entry, row.data, None, "missing", str(e))
        return StoredRecord(row.index, entry, row.data, json.loads(raw), "present")

    def find(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        system: str | None = None,
        model: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        with_content: bool = False,
    ) -> Iterator[StoredRecord]:
        """Records matching every filter given, in log order."""
        group = None
        if subject is not None:
            sk = self.vault.subject_key(subject, create=False)
            if sk is None:
                return
            group = sk.pseudonym
        since_us = _micros(parse_ts(since) if isinstance(since, str) else since) if since else None
        until_us = _micros(parse_ts(until) if isinstance(until, str) else until) if until else None
        count = 0
        offset = 0
        while True:
            rows = self.log.store.find_entries(
                since_us=since_us, until_us=until_us, group=group, limit=2048, offset=offset
            )
            if not rows:
                return
            offset += len(rows)
            for row in rows:
                view = self._view(row, with_content=with_content, listing=True)
                e = view.entry
                if system is not None and e.get("system") != system:
                    continue
                if model is not None and model not in (
                    e.get(GEN_AI_REQUEST_MODEL), e.get(GEN_AI_RESPONSE_MODEL)
                ):
                    continue
                yield view
                count += 1
                if limit is not None and count >= limit:
                    return

    def browse(
        self,
        *,
        before: int | None = None,
        limit: int = 50,
        scan: int = 20_000,
        since_us: int | None = None,
        until_us: int | None = None,
        system: str | None = None,
        model: str | None = None,
        subject: str | None = None,
        outcome: str | None = None,
    ) -> Page:
        """One page of records, newest first, below entry ``before`` (default: the top).

        Keyset pagination on the entry index: a page reads at most ``scan`` entries of
        the log below ``before`` (a subject filter uses its index and reads only that
        subject's), so a page costs the same at any depth and size. A page with fewer
        than ``limit`` records and a ``next_before`` means the scan window ended first:
        asking from ``next_before`` continues. With both ``since_us`` and ``until_us``,
        pages run only between the first and last entry of that time window. Content is
        never read here."""
        top = self.log.size() if before is None else max(0, min(before, self.log.size()))
        group = None
        if subject is not None:
            sk = self.vault.subject_key(subject, create=False)
            if sk is None:
                return Page([], None, 0)
            group = sk.pseudonym
        match: list[list[bytes]] = []
        # entries are RFC 8785 JSON: a field's exact bytes are a pre-filter the store
        # applies; the decoded entry is still checked (the bytes could sit in an attribute)
        if system is not None:
            match.append([canonical({"system": system})[1:-1]])
        if outcome is not None:
            match.append([canonical({"outcome": outcome})[1:-1]])
        if model is not None:
            match.append([canonical({k: model})[1:-1] for k in
                          (GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL)])
        floor = 0
        if since_us is not None and until_us is not None and group is None:
            # a window of time picked: start at its newest entry and stop at its oldest,
            # wherever in the log they are (exact: the time index knows both ends)
            ends = self.log.store.index_range(since_us, until_us)
            if ends is None:
                return Page([], None, 0)
            top, floor = min(top, ends[1] + 1), ends[0]
        lowest = floor  # nothing below it can match: no further page
        if group is None:
            floor = max(floor, top - scan)
        out: list[StoredRecord] = []
        before_i = top
        while len(out) < limit and before_i > floor:
            rows = self.log.store.entries_before(
                before_i, limit - len(out), floor=floor, since_us=since_us,
                until_us=until_us, group=group, match=match)
            if not rows:
                before_i = floor
                break
            # fewer rows than asked: nothing else matches down to the floor
            before_i = rows[-1].index if len(rows) == limit - len(out) else floor
            for row in rows:
                try:
                    e = json.loads(row.data)
                except ValueError:
                    continue  # not a record: 'kansa verify' reports it
                if not isinstance(e, dict):
                    continue
                if system is not None and e.get("system") != system:
                    continue
                if outcome is not None and e.get("outcome") != outcome:
                    continue
                if model is not None and model not in (
                    e.get(GEN_AI_REQUEST_MODEL), e.get(GEN_AI_RESPONSE_MODEL)
                ):
                    continue
                commitment = (e.get("content") or {}).get("commitment")
                out.append(StoredRecord(row.index, e, row.data, None,
                                        "none" if commitment is None else "present"))
        return Page(out, before_i if before_i > lowest else None, top - before_i)

    # -- proofs, verification, export ----------------------------------------------------

    def prove(self, ref: str | int) -> bytes:
        """A C2SP tlog-proof receipt for one record (signs a checkpoint first if needed)."""
        from kansa.ledger.receipt import make_receipt

        index = self.resolve(ref)
        if self.log.store.checkpoint_covering(index) is None:
            self.checkpoint()
        row = self.log.store.entry(index)
        if row is None:
            raise KansaError(f"entry {index} is missing from the store")
        if isinstance(ref, str):
            # the id lookup is a store column outside the tree: prove only an entry that
            # itself carries the id asked for, or the receipt proves another record
            try:
                carried = json.loads(row.data).get("id")
            except (ValueError, AttributeError):
                carried = None
            if carried != ref:
                raise StorageError(
                    f"the store maps record id {ref!r} to entry {index}, but that entry is "
                    f"record {carried!r}: the store's id column was altered; run 'kansa verify'"
                )
        # the entry itself rides in the receipt's extra data, so the receipt is self-contained:
        # verify_receipt proves those exact bytes, an auditor needs nothing else
        return make_receipt(self.log, index, extra=row.data)

    def verify(
        self,
        progress: Callable[[int, int], None] | None = None,
        *,
        known_checkpoints: Sequence[bytes | str] = (),
        witnesses: Sequence[Verifier] = (),
    ) -> Any:
        """Check the whole live store: entries, tiles, every checkpoint and their
        consistency, against the checkpoint kept in $KANSA_HOME and ``known_checkpoints``
        (an auditor's copies); and each row's time, id, erasure group and content
        against its entry. Cosignatures are verified with ``witnesses``, by default the
        witnesses configured in the home."""
        from kansa.ledger.verify import verify_store

        kept = self.home.kept_checkpoint().load() if self.home is not None else None
        if not witnesses and self.home is not None:  # those 'kansa witness add' configured
            witnesses = [Verifier.parse(w["vkey"]) for w in self.home.witnesses if "vkey" in w]
        recorded: set[str] = set()
        store = self.log.store
        erased = {str(r[0]) for r in store.query("SELECT grp FROM erased_groups")}
        try:
            report = verify_store(store, self.verifier, progress=progress,
                                  known_checkpoints=known_checkpoints, kept=kept,
                                  witnesses=witnesses,
                                  row_check=lambda rows: self._row_problems(rows, recorded))
        except VerificationError as e:
            raise VerificationError(e.problems + _unrecorded(erased, recorded)) from None
        if _unrecorded(erased, recorded):
            raise VerificationError(_unrecorded(erased, recorded))
        return report

    def _row_problems(self, rows: Sequence[EntryRow], erasures: set[str]) -> Iterator[str]:
        """What an entry row says beside its bytes, checked against the entry: the time
        (``find(since=...)`` selects by it), the record id (lookups, ``prove``), the
        erasure group (the subject's pseudonym) and the stored content (present unless
        erased, and decrypting to the entry's commitment)."""
        store = self.log.store
        if not rows:
            return
        attachments = store.attachments_between(rows[0].index, rows[-1].index + 1)
        anon = self.vault.subject_key(None, create=False)
        erased_groups = {str(r[0]) for r in store.query("SELECT grp FROM erased_groups")}
        for row in rows:
            where = f"entry {row.index}"
            try:
                entry = json.loads(row.data)
                if not isinstance(entry, dict):
                    raise ValueError
            except ValueError:
                if row.ext_id is not None or row.group is not None:
                    yield f"{where}: not a kansa record, yet its row carries an id or group"
                continue
            rid = entry.get("id")
            if entry.get("kind") == "kansa.erasure":
                erasures.add(str((entry.get("attributes") or {}).get(KANSA_ERASURE_SUBJECT)))
            if row.ext_id != rid:
                if row.ext_id is None and isinstance(rid, str):
                    first = store.index_of(rid)
                    if first is not None and first < row.index:
                        pass  # a duplicate id from before ids were unique: the first keeps it
                    else:
                        yield f"{where}: the row's record id is missing (entry is {rid!r})"
                else:
                    yield (f"{where}: the row's record id {row.ext_id!r} differs from the "
                           f"entry's {rid!r} (id column altered: lookups and 'prove' would "
                           f"find the wrong record)")
            try:
                ts = _micros(parse_ts(entry.get("ts")))
            except KansaError:
                ts = None
            if ts != row.ts:
                yield (f"{where}: the row's time {row.ts} differs from the entry's ts "
                       f"{entry.get('ts')!r} (time column altered: --since/--until would "
                       f"select the wrong records)")
            subject = entry.get("subject")
            group = subject if subject is not None else (anon.pseudonym if anon else None)
            if group is not None and row.group != group:
                yield (f"{where}: the row's erasure group {row.group!r} differs from the "
                       f"entry's subject pseudonym {group!r} (group column altered: erasure "
                       f"would miss this record's content)")
            commitment = (entry.get("content") or {}).get("commitment")
            if commitment is None:
                continue
            att = attachments.get(row.index)
            erased = (row.group or "") in erased_groups
            if att is None:
                if not erased:
                    yield (f"{where}: its content is missing from the store (attachment "
                           f"deleted?), and its subject was not erased")
                continue
            if att[0] != row.group:
                yield f"{where}: its content is filed under another erasure group"
            if erased:
                yield f"{where}: content is stored although its subject was erased"
                continue
            try:
                self.vault.open(row.group or "", str(rid), att[1], commitment)
            except KansaError as e:
                yield f"{where}: {e}"

    def missing_content(self, indices: Iterable[int]) -> dict[int, str]:
        """For a listing: {index: "erased" | "missing"} of the given records whose content
        cannot be shown, without failing the listing (see :meth:`find`)."""
        store = self.log.store
        gone = store.missing_attachments(list(indices))
        out: dict[int, str] = {}
        for i in sorted(gone):
            row = store.entry(i)
            if row is None:
                continue
            try:
                commitment = (json.loads(row.data).get("content") or {}).get("commitment")
            except (ValueError, AttributeError):
                continue
            if commitment is None:
                continue
            erased = store.group_erased_at(row.group or "") is not None
            out[i] = "erased" if erased else "missing"
        return out

    def export(self, directory: str | Path,
               progress: Callable[[int, int], None] | None = None) -> Any:
        """Write a C2SP tlog-tiles directory that verifies offline with the verifier key."""
        from kansa.ledger.export import export_log

        self.checkpoint()
        return export_log(self.log, Path(directory), progress=progress)

    # -- erasure ------------------------------------------------------------------------------

    def erase(self, subject: str, *, reason: str | None = None) -> Erasure:
        """Destroy a data subject's key, salts and content; record the erasure in the log.

        Entries and proofs are untouched; the subject's content becomes unrecoverable and
        their pseudonym unlinkable to them."""
        result = self.vault.erase(subject)
        groups: tuple[str, ...] = ()
        if result.pseudonym is None:
            # an earlier erase of this (or another) subject destroyed the key but stopped
            # before its record was appended (killed, store outage): `verify` fails until
            # that record exists, and only an erase can append it now that the key is gone
            groups = tuple(self._unrecorded_erasures())
            last: Appended | None = None
            for group in groups:
                last = self.append(UsageRecord(
                    system="kansa", kind="kansa.erasure", operation="erase",
                    attributes={KANSA_ERASURE_SUBJECT: group,
                                KANSA_ERASURE_CONTENTS_DESTROYED: 0,
                                KANSA_ERASURE_COMPLETED: True}))
            if last is not None and result.contents_destroyed == 0:
                return Erasure(None, 0, last, result.scrubbed, groups)
        if result.pseudonym is None and result.contents_destroyed == 0:
            # the sweep and the scrub ran anyway: a second erase finishes what a first one
            # could not (content that arrived late, a WAL a reader held)
            raise KansaError(
                f"no key for subject {subject!r}: never recorded, or already erased "
                f"(no late content found{'' if result.scrubbed else '; scrub incomplete'})"
            )
        attrs: dict[str, Any] = {KANSA_ERASURE_CONTENTS_DESTROYED: result.contents_destroyed}
        if result.pseudonym is not None:
            attrs[KANSA_ERASURE_SUBJECT] = result.pseudonym
        else:  # the subject's pseudonym is unknowable now: record only what was swept
            attrs[KANSA_ERASURE_LATE_CONTENTS] = True
        if reason:
            attrs[KANSA_ERASURE_REASON] = reason
        rec = UsageRecord(system="kansa", kind="kansa.erasure", operation="erase",
                          attributes=attrs)
        return Erasure(result.pseudonym, result.contents_destroyed, self.append(rec),
                       result.scrubbed, groups)

    def _unrecorded_erasures(self) -> list[str]:
        """Pseudonyms the store marks erased with no kansa.erasure record in the log. An
        erasure's record is appended after its transaction, so it is dated after the
        group's mark: only entries since the oldest mark are read."""
        store = self.log.store
        marks = store.query("SELECT grp, erased FROM erased_groups")
        if not marks:
            return []
        since = min(int(m[1]) for m in marks)
        recorded: set[str] = set()
        for _index, _ts, data in Follower(store, match=b'"kansa.erasure"',
                                          since_us=since).read():
            try:
                entry = json.loads(data)
            except ValueError:
                continue  # damaged: verify says so
            if isinstance(entry, dict) and entry.get("kind") == "kansa.erasure":
                attrs = entry.get("attributes")
                if isinstance(attrs, dict):
                    recorded.add(str(attrs.get(KANSA_ERASURE_SUBJECT)))
        return sorted({str(m[0]) for m in marks} - recorded)
