"""Gateway keys: created once and shown once, stored only as SHA-256, listed by id,
revoked; their table is created idempotently on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from typer.testing import CliRunner

from gateway_harness import store_bytes
from kansa.api import Ledger
from kansa.capture.gateway_keys import GatewayKeys, key_id_of
from kansa.cli import app
from kansa.ledger.storage import open_store

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_keys_create_list_revoke(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    Ledger.init(home, url=store_url).close()
    where = ["--home", str(home), "--store", store_url]

    code, out, err = _run("gateway", "keys", "list", *where)
    assert code == 0 and "no gateway keys" in err

    code, out, err = _run("gateway", "keys", "create", "--app", "support-bot", "--team", "cx",
                          *where)
    assert code == 0, err
    key = out.strip()
    assert key.startswith("ksk_") and len(key) == 47 and "\n" not in key
    kid = key_id_of(hashlib.sha256(key.encode()).hexdigest())
    assert kid in err and "shown only now" in err
    code, out2, _ = _run("gateway", "keys", "create", "--app", "batch", *where)
    key2 = out2.strip()
    assert code == 0 and key2 != key

    code, out, _ = _run("gateway", "keys", "list", *where)
    assert code == 0
    assert kid in out and "support-bot" in out and "cx" in out and "batch" in out
    assert key not in out and key[4:20] not in out

    data = store_bytes(store_url)
    assert hashlib.sha256(key.encode()).hexdigest().encode() in data  # the hash is stored
    assert key.encode() not in data and key[4:].encode() not in data  # the key is not

    code, _, err = _run("gateway", "keys", "revoke", kid, *where)
    assert code == 0 and "revoked" in err
    code, _, err = _run("gateway", "keys", "revoke", kid, *where)
    assert code == 1 and "no active key" in err
    code, _, _ = _run("gateway", "keys", "revoke", key2, *where)  # by the key itself
    assert code == 0

    code, out, _ = _run("gateway", "keys", "list", *where)
    assert out.count("revoked") == 2
    store = open_store(store_url)
    try:
        active, ever = GatewayKeys(store).snapshot()
    finally:
        store.close()
    assert active == {} and ever  # revoking every key does not reopen the gateway


def test_keys_need_an_app(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Ledger.init(home).close()
    code, out, err = _run("gateway", "keys", "create", "--app", "", "--home", str(home))
    assert code == 1 and "app name" in err and out == ""


def test_key_table_creation_is_idempotent_and_concurrent(store_url: str) -> None:
    store = open_store(store_url)  # a fresh store: the table does not exist yet
    errors: list[BaseException] = []

    def create() -> None:
        try:
            GatewayKeys(store).ensure_table()
            GatewayKeys(store).create("app")
        except BaseException as e:
            errors.append(e)

    try:
        threads = [threading.Thread(target=create) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert len(GatewayKeys(store).list()) == 6
    finally:
        store.close()


def test_gateway_command_explains_what_is_missing(tmp_path: Path) -> None:
    code, _, err = _run("gateway", "--home", str(tmp_path / "h"))
    assert code == 1 and "no upstream" in err
    cfg = tmp_path / "g.toml"
    cfg.write_text('[[upstream]]\nbase_url = "http://127.0.0.1:1/v1"\n')
    code, _, err = _run("gateway", "--config", str(cfg), "--upstream", "http://x/v1",
                        "--home", str(tmp_path / "h"))
    assert code == 1 and "not both" in err
    assert not (tmp_path / "h").exists()  # nothing created on a failed start
    code, out, _ = _run("gateway", "--help")
    assert code == 0 and "--upstream" in out and "--workers" in out and "keys" in out
