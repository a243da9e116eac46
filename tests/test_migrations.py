"""The migrations registry (kansa_migrations): every component's tables numbered, fresh
stores and stores from before the registry (the last release, schema 2; today's main,
schema 4) upgraded in place, on both stores."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

import kansa
from kansa.capture.gateway_keys import _TABLE as KEYS_DDL
from kansa.capture.gateway_keys import GatewayKeys
from kansa.errors import StorageError
from kansa.ledger import migrations
from kansa.ledger.follower import Follower
from kansa.ledger.note import Signer
from kansa.ledger.storage import (
    _PG_MIGRATIONS,
    _SQLITE_MIGRATIONS,
    SCHEMA_VERSION,
    open_store,
)
from kansa.policy.approvals import _TABLE as APPROVALS_DDL
from kansa.policy.approvals import Approvals
from kansa.policy.findings_store import FindingStore, _tables
from kansa.policy.pack import parse_pack
from kansa.policy.replay import replay

PACK = """\
pack: t.example/mig
version: "1"
title: t
publisher: p
sources: [https://example.org]
jurisdiction: example
status: in_force
effective_from: 2025-01-01
obligations:
  - id: has-model
    citation: {article: "1"}
    role: deployer
    legal_force: binding
    text: {en: {kind: summary, text: t}}
    check:
      expr: '"gen_ai.request.model" in record'
"""


def _components(store: kansa.ledger.storage.Store) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for c, n, _name, _at in migrations.applied(store):
        out.setdefault(c, []).append(n)
    return out


def _use_every_component(store: kansa.ledger.storage.Store) -> None:
    FindingStore(store)
    GatewayKeys(store).ensure_table()
    Approvals(store).ensure_table()
    Follower.saved(store, "x")


def test_fresh_store_records_every_component(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert _components(store) == {"ledger": [1, 2, 3, 4]}
        assert all(at is not None for *_, at in migrations.applied(store))
        _use_every_component(store)
        assert _components(store) == {"approvals": [1, 2], "follower": [1],
                                      "gateway_keys": [1], "ledger": [1, 2, 3, 4],
                                      "policy": [1]}
    finally:
        store.close()
    again = open_store(store_url)  # nothing new to apply, nothing applied twice
    try:
        before = migrations.applied(again)
        _use_every_component(again)
        assert migrations.applied(again) == before
    finally:
        again.close()


def test_a_newer_component_schema_is_refused(store_url: str) -> None:
    store = open_store(store_url)
    try:
        FindingStore(store)
        store.execute("INSERT INTO kansa_migrations (component, number, name, applied_at)"
                      " VALUES ('policy', 2, 'from the future', 0)")
    finally:
        store.close()
    store = open_store(store_url)
    try:
        with pytest.raises(StorageError, match="policy migration 2; this kansa knows up to 1"):
            FindingStore(store)
    finally:
        store.close()
    store = open_store(store_url)
    try:
        store.execute("INSERT INTO kansa_migrations (component, number, name, applied_at)"
                      f" VALUES ('ledger', {SCHEMA_VERSION + 1}, 'from the future', 0)")
    finally:
        store.close()
    with pytest.raises(StorageError, match="upgrade kansa"):
        open_store(store_url)


def _old_store(url: str, version: int) -> None:
    """A store as the code before the registry left it: the ledger at schema ``version``
    (user_version / kansa_schema), the components' tables from their unversioned DDL,
    one row in each."""
    key = ("kh", "kid_old", "app", None, 1, None)
    # denied: the old name of rejected, which the lifecycle step renames
    approval = ("apr_old", 1, 2, "denied", "d", "r", "s", "sys", None, None, "[]",
                None, None, None, None, None)
    if url.startswith("sqlite"):
        import sqlite3

        c = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        for stmts in _SQLITE_MIGRATIONS[:version]:
            for s in stmts:
                c.execute(s)
        c.execute(f"PRAGMA user_version = {version}")
        for s in (*_tables(" WITHOUT ROWID"), KEYS_DDL, APPROVALS_DDL):
            c.execute(s)
        c.execute("INSERT INTO gateway_keys VALUES (?, ?, ?, ?, ?, ?)", key)
        c.execute(f"INSERT INTO policy_approvals VALUES ({', '.join('?' * 16)})", approval)
        c.execute("INSERT INTO policy_packs VALUES ('h', 'old-pack', '1', '{}')")
        c.close()
        return
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE kansa_schema (version INTEGER NOT NULL)")
        c.execute("INSERT INTO kansa_schema (version) VALUES (%s)", (version,))
        for stmts in _PG_MIGRATIONS[:version]:
            for s in stmts:
                c.execute(s)
        for s in (*_tables(""), KEYS_DDL, APPROVALS_DDL):
            c.execute(s)
        c.execute("INSERT INTO gateway_keys VALUES (%s, %s, %s, %s, %s, %s)", key)
        c.execute(f"INSERT INTO policy_approvals VALUES ({', '.join(['%s'] * 16)})", approval)
        c.execute("INSERT INTO policy_packs VALUES ('h', 'old-pack', '1', '{}')")


@pytest.mark.parametrize("version", [2, 4])
def test_store_from_before_the_registry_upgrades_in_place(store_url: str,
                                                          version: int) -> None:
    _old_store(store_url, version)
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/mig"),
                           master_key=b"m" * 32)
    try:
        store = lg.log.store
        applied = {(c, n): at for c, n, _, at in migrations.applied(store)}
        # the steps the old schema version held are recorded as applied before the
        # registry (NULL), the rest as applied now
        assert [n for c, n in applied if c == "ledger"] == [1, 2, 3, 4]
        assert all((applied["ledger", n] is None) == (n <= version) for n in range(1, 5))
        _use_every_component(store)
        assert _components(store)["policy"] == [1]
        # the old rows are all there, read by their owners
        assert [k.key_id for k in GatewayKeys(store).list()] == ["kid_old"]
        assert GatewayKeys(store).counts() == (1, 0)
        assert [a.id for a in Approvals(store).list()] == ["apr_old"]
        assert [a.status for a in Approvals(store).list("rejected")] == ["rejected"]
        assert store.query("SELECT status FROM policy_approvals") == [("rejected",)]
        assert FindingStore(store).judged_packs() == [("old-pack", "1", "h")]
        # and the upgraded store works: append, replay, verify
        lg.append_many([{"ts": "2026-05-01T00:00:00Z", "system": "s"},
                        {"ts": "2026-05-01T00:00:01Z", "system": "s",
                         "gen_ai.request.model": "m"}])
        res = replay(lg, [parse_pack(PACK, "mig.yaml")])
        assert res.records == 2 and res.stored == 1
        assert FindingStore(store).failing_by_pack() == [("t.example/mig", "1", 1)]
        lg.checkpoint()
        lg.verify()
        if store.dialect == "sqlite":
            assert int(store.query("PRAGMA user_version")[0][0]) == SCHEMA_VERSION
        else:
            assert int(store.query("SELECT version FROM kansa_schema")[0][0]) == SCHEMA_VERSION
    finally:
        lg.close()


# -- a store written by another checkout's code (KANSA_OLD_SRC=/path/to/old/src) ----------

_BUILD = textwrap.dedent("""
    import sys
    import kansa
    from kansa.capture.gateway_keys import GatewayKeys
    from kansa.ledger.note import Signer
    from kansa.policy.engine import replay  # the old release's path (runs its code)
    from kansa.policy.pack import parse_pack

    url, pack, skey = sys.argv[1:4]
    lg = kansa.Ledger.open(url, signer=Signer.parse(skey), master_key=b"o" * 32)
    lg.append_many([{"ts": "2026-05-01T00:00:00Z", "system": "s"},
                    {"ts": "2026-05-01T00:00:01Z", "system": "s",
                     "attributes": {"kansa.incident": "serious"}}])
    replay(lg, [parse_pack(pack, "mig.yaml")])
    GatewayKeys(lg.log.store).create("old-app")
    lg.checkpoint()
    lg.close()
""")


# The last release on main before the registry (ledger schema 2). Its code is taken from
# this repository's own history, so the test needs no network and no other checkout.
LAST_RELEASE = "a35fc78"


@pytest.fixture(scope="module")
def old_src(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``src/`` of the last release (or of KANSA_OLD_SRC, to try another checkout)."""
    if os.environ.get("KANSA_OLD_SRC"):
        return os.environ["KANSA_OLD_SRC"]
    out = tmp_path_factory.mktemp("last-release")
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", LAST_RELEASE, "src"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return str(out / "src")


def test_store_written_by_older_code_upgrades(store_url: str, tmp_path: Path,
                                              old_src: str) -> None:
    env = {**os.environ, "PYTHONPATH": old_src}
    script = tmp_path / "build.py"
    script.write_text(_BUILD)
    signer = Signer.generate("test.kansa/old")
    subprocess.run([sys.executable, str(script), store_url, PACK, signer.skey], env=env,
                   check=True, cwd=tmp_path)
    lg = kansa.Ledger.open(store_url, signer=signer, master_key=b"o" * 32)
    try:
        store = lg.log.store
        _use_every_component(store)
        assert set(_components(store)) == {"ledger", "policy", "gateway_keys", "approvals",
                                           "follower"}
        assert GatewayKeys(store).counts() == (1, 0)
        assert FindingStore(store).judged_packs()[0][0] == "t.example/mig"
        assert FindingStore(store).failing_by_pack() == [("t.example/mig", "1", 2)]
        from kansa.report.incidents import find_incidents

        assert [m.index for m in find_incidents(store)] == [1]
        lg.verify()
    finally:
        lg.close()
