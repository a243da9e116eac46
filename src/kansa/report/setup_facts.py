"""What configuration and the store's side tables say about an installation (a
:class:`Setup`, not per record): system facts, the ledger and its witnesses, gateway
keys, packs judged under, pack activations and the inline enforcement policy. Read once
per draft; the design document and the HAIP draft share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kansa.errors import KansaError

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.home import Home
    from kansa.ledger.storage import Store
    from kansa.policy.feed import Activation
    from kansa.policy.inline import PolicySnapshot
    from kansa.report.usage_scan import Usage


def merge_facts(*sources: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """System facts by name; a later source wins per fact over an earlier one."""
    out: dict[str, dict[str, Any]] = {}
    for source in sources:
        if isinstance(source, Mapping):
            for name, facts in source.items():
                if isinstance(facts, Mapping):
                    out[str(name)] = {**out.get(str(name), {}), **facts}
    return out


def fact_list(v: Any) -> list[str]:
    """A list-valued system fact (roles, models, ...) as strings; [] when it is not a list."""
    return [str(x) for x in v] if isinstance(v, list) else []


def describe_store(url: str) -> str:
    """The store's kind and location without credentials."""
    if url.startswith("sqlite:///"):
        return f"SQLite {url[len('sqlite:///'):]}"
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL {host}{port}{parts.path}"


@dataclass(frozen=True)
class LedgerFacts:
    origin: str
    key_id: str
    store: str
    size: int
    checkpoints: int
    latest_size: int | None
    latest_us: int | None
    latest_cosignatures: int
    checkpoint_interval: float
    witnesses: tuple[tuple[str, str], ...]  # (name, url)
    erased_subjects: int


def ledger_facts(ledger: Ledger, home: Home | None) -> LedgerFacts:
    from kansa.ledger.note import Verifier

    store = ledger.log.store
    latest = store.latest_checkpoint()
    count = store.count_checkpoints()
    witnesses: list[tuple[str, str]] = []
    for w in home.witnesses if home is not None else []:
        try:
            name = Verifier.parse(str(w.get("vkey", ""))).name
        except KansaError:
            name = str(w.get("vkey", "?"))
        witnesses.append((name, str(w.get("url", ""))))
    url = home.store_url if home is not None else ""
    return LedgerFacts(
        origin=str(ledger.log.origin), key_id=ledger.verifier.key_id.hex(),
        store=describe_store(url) if url else store.dialect, size=store.size(),
        checkpoints=count, latest_size=latest.size if latest else None,
        latest_us=latest.created if latest else None,
        latest_cosignatures=len(store.cosignatures(latest.size)) if latest else 0,
        checkpoint_interval=ledger.log.checkpoint_interval, witnesses=tuple(witnesses),
        erased_subjects=store.count_erased_groups(),
    )


@dataclass(frozen=True)
class KeyFacts:
    active: int
    revoked: int

    @property
    def required(self) -> bool:
        # gateway_keys.py: keys are required once any key was ever created in the store
        return self.active + self.revoked > 0


def gateway_key_facts(store: Store) -> KeyFacts | None:
    """None when no gateway key was ever created in the store."""
    from kansa.capture.gateway_keys import GatewayKeys

    active, revoked = GatewayKeys(store).counts()
    return KeyFacts(active, revoked) if active + revoked else None


def judged_packs(store: Store) -> list[tuple[str, str, str]]:
    """(pack, version, hash) of every pack version history was judged under (replay)."""
    from kansa.policy.findings_store import FindingStore

    return FindingStore(store).judged_packs()


def load_enforcement(policy: str | Path | None, home: Home | None) -> PolicySnapshot | None:
    """The inline enforcement policy file the gateway runs with (``--policy``), loaded as
    the gateway loads it, so its hash can be compared with the records' snapshots."""
    if policy is None:
        return None
    from kansa.policy.inline import load_policy

    return load_policy(policy, home=home.path if home is not None else None)


@dataclass(frozen=True)
class Setup:
    """What configuration and the store say about the installation (not per record)."""

    ledger: LedgerFacts
    facts: dict[str, dict[str, Any]]
    keys: KeyFacts | None
    judged: list[tuple[str, str, str]]
    activations: list[Activation]
    policy: PolicySnapshot | None
    policy_path: str | None


def gather_setup(ledger: Ledger, home: Home | None, *, systems: Mapping[str, Any] | None = None,
                 policy: str | Path | None = None, usage: Usage | None = None,
                 whole_log: bool = False) -> Setup:
    """Read configuration, the store's side tables and the pack activation history.

    System facts come from the home's config, then the policy file's ``systems``, then
    ``systems`` (each wins over the one before). When ``usage`` was scanned over the
    whole log and saw no pack event, the history is empty and is not read again (that
    read is a second pass over the log)."""
    from kansa.policy.feed import activations

    snap = load_enforcement(policy, home)
    merged = merge_facts(home.config.get("systems") if home is not None else None,
                         snap.systems if snap is not None else None, systems)
    store = ledger.log.store
    no_events = whole_log and usage is not None and not any(
        e.startswith("pack.") for e in usage.events)
    return Setup(ledger_facts(ledger, home), merged, gateway_key_facts(store),
                 judged_packs(store), [] if no_events else activations(ledger), snap,
                 str(policy) if policy is not None else None)
