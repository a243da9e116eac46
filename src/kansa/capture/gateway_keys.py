"""Gateway keys: how applications authenticate to ``kansa gateway``.

A key is ``ksk_`` followed by 43 URL-safe characters (256 random bits). It is shown once,
when created; the store keeps only its SHA-256, beside the app and team it maps to, in a
table of its own (``gateway_keys``) in the ledger's store, SQLite or PostgreSQL. A key's
*id* (``kid_`` + the first 12 hex digits of the hash) names it in listings, in records and
when revoking; it reveals nothing usable about the key.

A gateway requires a key once any key was ever created in its store (revoking the last
key does not reopen it), or always with ``require_key``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from kansa.errors import KansaError
from kansa.ledger import migrations
from kansa.ledger.migrations import Migration
from kansa.ledger.storage import Store, now_us

KEY_PREFIX = "ksk_"
_TABLE = (
    "CREATE TABLE IF NOT EXISTS gateway_keys ("
    " key_hash TEXT PRIMARY KEY,"
    " key_id TEXT NOT NULL UNIQUE,"
    " app TEXT NOT NULL,"
    " team TEXT,"
    " created BIGINT NOT NULL,"
    " revoked BIGINT)"
)
COMPONENT = "gateway_keys"
# step 1 is the table as created before the registry (IF NOT EXISTS: it adopts it)
migrations.register(COMPONENT, [Migration(1, "gateway keys", (_TABLE,))])


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    app: str
    team: str | None
    created: int = 0  # microseconds since the epoch
    revoked: int | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id_of(key_hash: str) -> str:
    return "kid_" + key_hash[:12]


class GatewayKeys:
    """The ``gateway_keys`` table of one store. Creating it is idempotent and race-free
    enough for several processes starting at once."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def ensure_table(self) -> None:
        """Bring the table up to date (the migrations registry; idempotent, and safe for
        several processes starting at once)."""
        migrations.ensure(self.store, COMPONENT)

    def create(self, app: str, team: str | None = None) -> tuple[str, KeyInfo]:
        """A new key for ``app``: returns (the key, shown only now; its info)."""
        if not app or len(app) > 1024:
            raise KansaError("a gateway key needs an app name of 1-1024 characters")
        if team is not None and (not team or len(team) > 1024):
            raise KansaError("a team name has 1-1024 characters")
        self.ensure_table()
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        h = hash_key(key)
        info = KeyInfo(key_id_of(h), app, team, now_us())
        self.store.execute(
            "INSERT INTO gateway_keys (key_hash, key_id, app, team, created)"
            " VALUES (?, ?, ?, ?, ?)",
            (h, info.key_id, app, team, info.created),
        )
        return key, info

    def list(self) -> list[KeyInfo]:
        self.ensure_table()
        rows = self.store.query(
            "SELECT key_id, app, team, created, revoked FROM gateway_keys ORDER BY created, key_id"
        )
        return [KeyInfo(str(r[0]), str(r[1]), r[2], int(r[3]),
                        None if r[4] is None else int(r[4])) for r in rows]

    def revoke(self, key_id: str) -> int:
        """Revoke by key id (``kid_...``) or by the key itself; returns how many were revoked."""
        self.ensure_table()
        if key_id.startswith(KEY_PREFIX):
            key_id = key_id_of(hash_key(key_id))
        return self.store.execute(
            "UPDATE gateway_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL",
            (now_us(), key_id),
        )

    def snapshot(self) -> tuple[dict[str, KeyInfo], bool]:
        """(active keys by hash, whether any key was ever created)."""
        self.ensure_table()
        rows = self.store.query("SELECT key_hash, key_id, app, team, revoked FROM gateway_keys")
        active = {str(r[0]): KeyInfo(str(r[1]), str(r[2]), r[3]) for r in rows if r[4] is None}
        return active, bool(rows)

    def counts(self) -> tuple[int, int]:
        """(active keys, revoked keys)."""
        self.ensure_table()
        rows = self.store.query("SELECT COUNT(*) FILTER (WHERE revoked IS NULL),"
                                " COUNT(*) FILTER (WHERE revoked IS NOT NULL) FROM gateway_keys")
        return int(rows[0][0] or 0), int(rows[0][1] or 0)
