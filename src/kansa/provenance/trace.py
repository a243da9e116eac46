"""Traceback: "did our system produce this?" From a text or a file to the record(s)
behind it, with their proof.

In order (the first that answers wins; later ones still run for text, so an edited copy
that kept a stale mark is also found by its content):

1. embedded marks: a C2PA manifest's ``org.kansa.record`` assertion (images), the GB
   45438 AIGC label (XMP, front matter, HTML meta; its ReservedCode1 is checked against
   the organisation's label key), kansa's invisible text wrapper;
2. the exact normalised hash (keyed) in the fingerprint index;
3. the keyed MinHash/LSH fingerprint index (copy-edited, truncated, reordered copies).

The index is filled by a **log follower** (:meth:`Tracer.index_new`, named
``provenance-index``), not at the after moment: fingerprinting costs milliseconds
(n-gram hashing, 128 permutations), far over the per-request budget; the follower also
covers every surface (SDK, OTLP, ``log append``), resumes where it stopped, and meets a
subject's ``kansa.erasure`` record in log order, at which point it deletes the
subject's fingerprints (:meth:`FingerprintIndex.erase_group`). The cost: an answer is
traceable by its content only once the follower has passed it (``kansa provenance
index``, or ``serve`` which follows every ``--follow-every`` seconds); embedded marks
work at once.

What an answer shows (:func:`public_summary`) is provenance data only: record id, time,
system, kind, model, provider, outcome, the label attributes, the entry's leaf hash and
a tlog-proof receipt of it **without** the entry in its extra data (the entry holds
pseudonyms of the actor and subject: personal data). Never content, never pseudonyms.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kansa.api import Ledger
from kansa.errors import ErasedError, FormatError, KansaError
from kansa.ledger.follower import Follower
from kansa.ledger.merkle import leaf_hash
from kansa.provenance.fingerprint import Fingerprint, FingerprintIndex
from kansa.provenance.keys import ProvenanceKeys
from kansa.provenance.labels import LABEL_PREFIX, check_aigc, find_aigc, find_wrappers
from kansa.records.attributes import (
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    KANSA_ERASURE_SUBJECT,
)

FOLLOWER = "provenance-index"
MAX_INPUT_BYTES = 16 << 20
_SUMMARY_KEYS = ("id", "ts", "kind", "system", "outcome", GEN_AI_PROVIDER_NAME,
                 GEN_AI_OPERATION_NAME, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL)


def output_texts(content: Any) -> Iterator[str]:
    """The text an answer delivered, from a record's content (every shape kansa records:
    OpenAI chat / Responses, Anthropic, completions)."""
    if not isinstance(content, dict):
        return
    msgs = content.get(GEN_AI_OUTPUT_MESSAGES)
    if isinstance(msgs, list):
        for m in msgs:
            yield from _texts(m)
    out = content.get("output")
    if isinstance(out, str):
        yield out


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k in ("content", "text"):
            if k in node:
                yield from _texts(node[k])
    elif isinstance(node, list):
        for x in node:
            yield from _texts(x)


@dataclass
class Found:
    record_id: str
    index: int | None
    method: str  # c2pa, gb45438-metadata, text-wrapper, exact, fingerprint
    binding: bool | None = None  # the mark's signature / HMAC checked out (None: n/a)
    jaccard: float | None = None
    containment: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Tracer:
    """Traceback over one ledger (see the module's description). Thread-safe for
    lookups; :meth:`index_new` runs in one thread at a time."""

    def __init__(self, ledger: Ledger, keys: ProvenanceKeys) -> None:
        self.ledger = ledger
        self.keys = keys
        self.index = FingerprintIndex(ledger.log.store, keys.fingerprint_key)
        self._lock = threading.Lock()

    # -- filling the index -------------------------------------------------------------------

    def index_new(self, *, limit: int | None = None) -> int:
        """Index the outputs appended since the last call (and drop erased subjects'
        fingerprints); returns how many outputs were indexed."""
        with self._lock:
            store = self.ledger.log.store
            f = Follower(store, FOLLOWER, match=(b'"gen_ai.call"', b'"kansa.erasure"'))
            n = 0
            batch: list[tuple[int, str, Fingerprint]] = []
            for index, _ts, data in f.read():
                try:
                    entry = json.loads(data)
                except ValueError:
                    continue
                if entry.get("kind") == "kansa.erasure":
                    if batch:
                        self.index.add_many(batch)
                        batch = []
                    g = (entry.get("attributes") or {}).get(KANSA_ERASURE_SUBJECT)
                    if isinstance(g, str):
                        self.index.erase_group(g)
                    continue
                if entry.get("kind") != "gen_ai.call" or not entry.get("content"):
                    continue
                row = store.entry(index)
                try:
                    rec = self.ledger.get(index)
                except (ErasedError, KansaError):
                    continue  # erased or damaged content: nothing to fingerprint
                text = "\n\n".join(output_texts(rec.content))
                if not text.strip() or row is None:
                    continue
                batch.append((index, row.group or "", self.index.fp.fingerprint(text)))
                n += 1
                if len(batch) >= 256:
                    self.index.add_many(batch)
                    batch = []
                if limit is not None and n >= limit:
                    break
            self.index.add_many(batch)
            f.save()
            return n

    # -- lookups -----------------------------------------------------------------------------

    def trace(self, data: bytes) -> list[Found]:
        """The records behind ``data`` (a text or an image), best first."""
        if len(data) > MAX_INPUT_BYTES:
            raise FormatError(f"input of {len(data)} bytes is over the "
                              f"{MAX_INPUT_BYTES}-byte limit")
        from kansa.provenance.media import sniff

        mime = sniff(data)
        if mime is not None:
            return self._trace_image(data, mime)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("not UTF-8 text, nor a PNG or JPEG image") from None
        return self.trace_text(text)

    def trace_text(self, text: str) -> list[Found]:
        found: list[Found] = []
        key = self.keys.label_key
        for fields in find_aigc(text):
            found.append(Found(str(fields.get("ProduceID")), None, "gb45438-metadata",
                               check_aigc(key, fields)))
        for rid, ok in find_wrappers(key, text):
            found.append(Found(rid, None, "text-wrapper", ok))
        for m in self.index.lookup(text):
            at = self._id_at(m.index)
            if at is not None:
                found.append(Found(at, m.index, m.method, None, m.jaccard, m.containment))
        return self._resolve(found)

    def _trace_image(self, data: bytes, mime: str) -> list[Found]:
        from kansa.provenance.media import find_xmp_aigc, read_c2pa

        found: list[Found] = []
        got = None
        with contextlib.suppress(KansaError):  # without c2pa-python the XMP still answers
            got = read_c2pa(data, mime)
        if got is not None and got.record_id:
            found.append(Found(got.record_id, None, "c2pa", got.validation_state != "Invalid",
                               detail={"validation_state": got.validation_state,
                                       "digital_source_type": got.digital_source_type,
                                       "signer": got.signer}))
        for fields in find_xmp_aigc(data):
            found.append(Found(str(fields.get("ProduceID")), None, "gb45438-metadata",
                               check_aigc(self.keys.label_key, fields)))
        return self._resolve(found)

    def _id_at(self, index: int) -> str | None:
        row = self.ledger.log.store.entry(index)
        if row is None:
            return None
        try:
            return str(json.loads(row.data).get("id"))
        except ValueError:
            return None

    def _resolve(self, found: list[Found]) -> list[Found]:
        """Fill in log indices; drop marks naming no record of this log or failing their
        binding (a forged or foreign label is not our record); one row per record."""
        out: list[Found] = []
        seen: set[str] = set()
        for f in found:
            if f.binding is False or f.record_id in seen:
                continue
            if f.index is None:
                try:
                    f.index = self.ledger.resolve(f.record_id)
                except KansaError:
                    continue
            seen.add(f.record_id)
            out.append(f)
        return out

    # -- what an answer shows -----------------------------------------------------------------

    def public_summary(self, f: Found) -> dict[str, Any]:
        """Provenance data for one match (see the module's description)."""
        from kansa.ledger.receipt import make_receipt

        assert f.index is not None
        row = self.ledger.log.store.entry(f.index)
        if row is None:
            raise KansaError(f"entry {f.index} is missing from the store")
        entry = json.loads(row.data)
        summary = {k: entry[k] for k in _SUMMARY_KEYS if k in entry}
        attrs = entry.get("attributes") or {}
        summary["labels"] = {k: v for k, v in attrs.items()
                             if k.startswith(LABEL_PREFIX)}
        if self.ledger.log.store.checkpoint_covering(f.index) is None:
            self.ledger.checkpoint()
        receipt = make_receipt(self.ledger.log, f.index)
        match: dict[str, Any] = {"method": f.method}
        if f.binding is not None:
            match["binding_valid"] = f.binding
        if f.jaccard is not None:
            match["jaccard"] = f.jaccard
            match["containment"] = f.containment
        match.update({k: v for k, v in f.detail.items() if v is not None})
        return {"record": summary, "match": match, "log_index": f.index,
                "leaf_hash": leaf_hash(row.data).hex(),
                "entry_sha256": hashlib.sha256(row.data).hexdigest(),
                "receipt": receipt.decode()}
