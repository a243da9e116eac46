"""Pack feeds (directory and HTTP), installs, find_pack, and activation as ledger records."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import kansa
from kansa.cli import app
from kansa.ledger.note import Signer
from kansa.ledger.receipt import verify_receipt
from kansa.policy.bundled import example_pack_files
from kansa.policy.feed import (
    ActivationError,
    ActivationHistory,
    ConflictError,
    DowngradeError,
    FeedError,
    InstallError,
    activate,
    activations,
    active_at,
    active_packs,
    add_from,
    deactivate,
    find_pack,
    installed_packs,
    installed_path,
    parse_index,
    publish,
    resolve_pack,
    update_from,
    version_key,
)
from kansa.policy.pack import PolicyError, load_pack, parse_pack
from kansa.policy.signing import (
    PackAlteredError,
    UnsignedPackError,
    UntrustedSignerError,
    sign_pack,
    trust_add,
    trust_remove,
)

V1_PATH, V2_PATH = example_pack_files()
V1_TEXT, V2_TEXT = V1_PATH.read_text(), V2_PATH.read_text()
PACK_ID = "kansa.example/ai-logging"
PUB = Signer.generate("publisher.example/packs")


def _variant(text: str, version: str, effective_from: str, note: str = "") -> str:
    """Another version of the example pack (a revision the publisher might ship)."""
    out = text.replace('version: "2"', f'version: "{version}"', 1)
    out = out.replace("effective_from: 2026-07-01\ntimezone", f"effective_from: {effective_from}"
                      "\ntimezone", 1)
    out = out.replace("title: \"EXAMPLE ONLY (not law): fictional AI usage logging rules, "
                      "version 2\"", f"title: \"EXAMPLE ONLY (not law): version {version}{note}\"")
    assert out != text and parse_pack(out).version == version
    return out


V3_TEXT = _variant(V2_TEXT, "3", "2027-01-01")


def _put(feed: Path, name: str, text: str | bytes, *, signer: Signer | None = PUB) -> None:
    raw = text.encode() if isinstance(text, str) else text
    (feed / name).parent.mkdir(parents=True, exist_ok=True)
    (feed / name).write_bytes(raw)
    if signer is not None:
        (feed / f"{name}.sig").write_bytes(sign_pack(raw, signer))


def _index(feed: Path, entries: list[tuple[str, str, str]]) -> None:
    doc = {"kansa_pack_feed": 1, "packs": [
        {"pack": PACK_ID, "version": v, "path": p, "sig": p + ".sig"} for _, v, p in entries]}
    (feed / "index.json").write_text(json.dumps(doc))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    trust_add(h, PUB.verifier.vkey)
    return h


@pytest.fixture
def feed(tmp_path: Path) -> Path:
    """A directory feed with v1 and v2 of the example pack, signed, index by publish()."""
    d = tmp_path / "feed"
    _put(d, "ex/v1.yaml", V1_TEXT)
    _put(d, "ex/v2.yaml", V2_TEXT)
    publish(d)
    return d


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Any]:
    """Serve directories over HTTP on loopback (a real server in a thread)."""
    servers: list[ThreadingHTTPServer] = []

    def start(directory: Path) -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(directory)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/feed"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- feeds and installs ----------------------------------------------------------------------


def test_add_from_directory_installs_and_find_pack_resolves(home: Path, feed: Path) -> None:
    res = add_from(home, feed)
    assert [r.pack.ref for r in res.installed] == [f"{PACK_ID}@1", f"{PACK_ID}@2"]
    p1 = installed_path(home, PACK_ID, "1")
    assert p1 == home / "packs" / "kansa.example" / "ai-logging" / "1.yaml"
    assert p1.read_text() == V1_TEXT and (p1.parent / "1.yaml.sig").exists()
    assert find_pack(f"{PACK_ID}@1", home).hash == load_pack(V1_PATH).hash
    assert find_pack(PACK_ID, home).hash == load_pack(V2_PATH).hash  # the newest
    assert resolve_pack(PACK_ID, home).signer == PUB.verifier
    assert find_pack(str(V1_PATH), home).hash == load_pack(V1_PATH).hash  # a file path
    # adding again changes nothing
    again = add_from(home, feed)
    assert again.installed == [] and sorted(again.unchanged) == [f"{PACK_ID}@1", f"{PACK_ID}@2"]
    with pytest.raises(PolicyError, match="no pack kansa.example/ai-logging@9"):
        find_pack(f"{PACK_ID}@9", home)


def test_url_feed_end_to_end(home: Path, tmp_path: Path, serve: Any) -> None:
    root = tmp_path / "www"
    _put(root / "feed", "packs/v1.yaml", V1_TEXT)
    publish(root / "feed")
    url = serve(root)
    res = add_from(home, url, f"{PACK_ID}@1")
    assert [r.pack.ref for r in res.installed] == [f"{PACK_ID}@1"]
    # the publisher ships v2 and v3; update fetches both over HTTP
    _put(root / "feed", "packs/v2.yaml", V2_TEXT)
    _put(root / "feed", "packs/v3.yaml", V3_TEXT)
    publish(root / "feed")
    res = update_from(home, url)
    assert [r.pack.ref for r in res.installed] == [f"{PACK_ID}@2", f"{PACK_ID}@3"]
    assert res.unchanged == [f"{PACK_ID}@1"]
    assert find_pack(PACK_ID, home).version == "3"
    assert installed_path(home, PACK_ID, "3").read_text() == V3_TEXT
    assert update_from(home, url).installed == []


def test_url_feed_failures_are_clear(home: Path, tmp_path: Path, serve: Any) -> None:
    root = tmp_path / "www"
    (root / "feed").mkdir(parents=True)
    url = serve(root)
    with pytest.raises(FeedError, match=r"index.json: not found \(HTTP 404\)"):
        add_from(home, url)
    (root / "feed" / "index.json").write_text("{not json")
    with pytest.raises(FeedError, match="index.json: not valid JSON"):
        add_from(home, url)
    port = _dead_port()
    with pytest.raises(FeedError, match="cannot connect"):
        add_from(home, f"http://127.0.0.1:{port}/feed", timeout=2)
    # listed but missing pack file: 404 names the file
    _index(root / "feed", [("", "1", "gone/v1.yaml")])
    with pytest.raises(FeedError, match=r"gone/v1.yaml: not found \(HTTP 404\)"):
        add_from(home, url)
    assert installed_packs(home) == []


def test_feed_that_never_answers_times_out(home: Path) -> None:
    # a listening socket nobody accepts on: the TCP handshake completes, no answer comes
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/feed"
        with pytest.raises(FeedError, match="timed out"):
            add_from(home, url, timeout=0.3)


def test_tampered_and_unsigned_packs_in_a_url_feed_are_refused(
        home: Path, tmp_path: Path, serve: Any) -> None:
    root = tmp_path / "www"
    feed = root / "feed"
    _put(feed, "v1.yaml", V1_TEXT)
    _put(feed, "v2.yaml", V2_TEXT)
    publish(feed)
    # the mirror alters v2 after it was signed
    (feed / "v2.yaml").write_text(V2_TEXT.replace("2026-07-01", "2026-08-01"))
    url = serve(root)
    with pytest.raises(PackAlteredError, match="changed after signing"):
        add_from(home, url)
    assert installed_packs(home) == []  # all verified before anything is written
    # the signature is missing (404 on the .sig): unsigned
    (feed / "v2.yaml").write_text(V2_TEXT)
    (feed / "v2.yaml.sig").unlink()
    with pytest.raises(UnsignedPackError):
        add_from(home, url, f"{PACK_ID}@2")
    # signed by a key nobody trusts
    _put(feed, "v2.yaml", V2_TEXT, signer=Signer.generate("mallory.example/packs"))
    with pytest.raises(UntrustedSignerError, match="mallory.example/packs"):
        add_from(home, url, f"{PACK_ID}@2")
    assert installed_packs(home) == []
    assert [r.pack.ref for r in add_from(home, url, f"{PACK_ID}@1").installed] == \
        [f"{PACK_ID}@1"]


def test_index_that_lies_or_escapes_is_refused(home: Path, feed: Path) -> None:
    _index(feed, [("", "1", "ex/v2.yaml")])
    with pytest.raises(FeedError, match="lists kansa.example/ai-logging@1 at ex/v2.yaml, but "
                                        "that file is kansa.example/ai-logging@2"):
        add_from(home, feed)
    for bad in ("../secret.yaml", "/etc/passwd", "http://evil.example/x.yaml", "a/../../b"):
        doc = {"kansa_pack_feed": 1, "packs": [
            {"pack": PACK_ID, "version": "1", "path": bad, "sig": "x.sig"}]}
        with pytest.raises(FeedError, match="relative path inside the feed"):
            parse_index(json.dumps(doc).encode(), "index.json")
    with pytest.raises(FeedError, match="feed format 2 is not supported"):
        parse_index(b'{"kansa_pack_feed": 2, "packs": []}', "index.json")
    with pytest.raises(FeedError, match="listed twice"):
        parse_index(json.dumps({"kansa_pack_feed": 1, "packs": [
            {"pack": PACK_ID, "version": "1", "path": "a.yaml", "sig": "a.yaml.sig"}] * 2})
            .encode(), "index.json")


def test_update_refuses_a_downgrade(home: Path, tmp_path: Path) -> None:
    newer = tmp_path / "newer"
    _put(newer, "v2.yaml", V2_TEXT)
    publish(newer)
    add_from(home, newer)
    old = tmp_path / "old"
    _put(old, "v1.yaml", V1_TEXT)
    publish(old)
    # a feed rolled back to v1 only: update refuses
    with pytest.raises(DowngradeError, match="offers kansa.example/ai-logging@1 at most, older "
                                             "than the installed kansa.example/ai-logging@2"):
        update_from(home, old)
    # adding an older version is refused unless asked for explicitly
    with pytest.raises(DowngradeError, match="older than the installed"):
        add_from(home, old)
    assert [p.pack.ref for p in installed_packs(home)] == [f"{PACK_ID}@2"]
    assert [r.pack.ref for r in add_from(home, old, allow_older=True).installed] == \
        [f"{PACK_ID}@1"]


def test_same_version_with_another_hash_is_refused(home: Path, tmp_path: Path,
                                                   feed: Path) -> None:
    add_from(home, feed)
    before = installed_path(home, PACK_ID, "2").read_bytes()
    other = tmp_path / "other"
    # validly signed, same id@version, different rules
    _put(other, "v2.yaml", V2_TEXT.replace("2026-07-01\ntimezone", "2026-09-01\ntimezone"))
    publish(other)
    with pytest.raises(ConflictError, match="already installed with hash sha256:"):
        update_from(home, other)
    with pytest.raises(ConflictError):
        add_from(home, other)
    assert installed_path(home, PACK_ID, "2").read_bytes() == before


def test_failed_update_keeps_the_old_install(home: Path, tmp_path: Path, feed: Path) -> None:
    add_from(home, feed, f"{PACK_ID}@1")
    v1_bytes = installed_path(home, PACK_ID, "1").read_bytes()
    _put(feed, "ex/v3.yaml", V3_TEXT)
    publish(feed)
    # v3 cannot be written: a directory stands where its signature would go
    blocker = installed_path(home, PACK_ID, "3").with_name("3.yaml.sig")
    (blocker / "x").mkdir(parents=True)
    with pytest.raises(InstallError, match="cannot install kansa.example/ai-logging@3"):
        update_from(home, feed)
    assert installed_path(home, PACK_ID, "1").read_bytes() == v1_bytes
    assert find_pack(f"{PACK_ID}@1", home).hash == load_pack(V1_PATH).hash
    assert not installed_path(home, PACK_ID, "3").exists()
    assert find_pack(PACK_ID, home).version == "2"  # written, complete, before v3 failed
    leftovers = [p.name for p in blocker.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    # a tampered v4 in another feed: nothing of it is installed, the rest stays usable
    (blocker / "x").rmdir()
    blocker.rmdir()
    bad = tmp_path / "bad"
    v4 = _variant(V2_TEXT, "4", "2027-06-01")
    _put(bad, "v4.yaml", v4)
    publish(bad)
    (bad / "v4.yaml").write_text(v4 + "# appended\n")
    with pytest.raises(PackAlteredError):
        update_from(home, bad)
    assert not installed_path(home, PACK_ID, "4").exists()
    assert [r.pack.version for r in installed_packs(home)] == ["1", "2"]
    assert [r.pack.ref for r in update_from(home, feed).installed] == [f"{PACK_ID}@3"]


def test_installed_packs_are_reverified(home: Path, feed: Path) -> None:
    add_from(home, feed)
    p2 = installed_path(home, PACK_ID, "2")
    p2.write_text(V2_TEXT.replace("2026-07-01\ntimezone", "2026-06-01\ntimezone"))
    with pytest.raises(PackAlteredError):
        find_pack(PACK_ID, home)
    p2.write_text(V2_TEXT)
    assert find_pack(PACK_ID, home).version == "2"
    # v1, validly signed, copied over v2's files does not pass for v2
    p1 = installed_path(home, PACK_ID, "1")
    p2.write_bytes(p1.read_bytes())
    p2.with_name("2.yaml.sig").write_bytes(p1.with_name("1.yaml.sig").read_bytes())
    with pytest.raises(InstallError, match="holds kansa.example/ai-logging@1"):
        find_pack(f"{PACK_ID}@2", home)
    p2.write_text(V2_TEXT)
    p2.with_name("2.yaml.sig").write_bytes(sign_pack(V2_TEXT.encode(), PUB))
    assert find_pack(f"{PACK_ID}@2", home).version == "2"
    # a broken install is refused loudly and never overwritten by add
    p2.write_text(V2_TEXT + "# edited\n")
    with pytest.raises(InstallError, match="exists but does not verify"):
        add_from(home, feed, f"{PACK_ID}@2")
    assert p2.read_text() == V2_TEXT + "# edited\n"
    assert find_pack(f"{PACK_ID}@1", home).version == "1"  # other versions still resolve
    trust_remove(home, PUB.name)
    with pytest.raises(UntrustedSignerError):
        find_pack(f"{PACK_ID}@1", home)


def test_version_order() -> None:
    assert version_key("2") < version_key("10") < version_key("10a")
    assert version_key("2025-12") < version_key("2026-06") < version_key("2026-06-draft2")


def test_unsafe_ids_are_not_installed(home: Path) -> None:
    for pid, version in (("a/../b", "1"), ("a//b", "1"), ("a", "1/2"), ("a/.hidden", "1")):
        with pytest.raises(InstallError, match="path|contains '/'"):
            installed_path(home, pid, version)


# -- activation ---------------------------------------------------------------------------------


@pytest.fixture
def ledger(store_url: str) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/packs"),
                           master_key=b"k" * 32)
    try:
        yield lg
    finally:
        lg.close()


def _at(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def test_activations_reconstruct_the_active_set_with_receipts(
        ledger: kansa.Ledger, home: Path, feed: Path) -> None:
    add_from(home, feed)
    r1, r2 = resolve_pack(f"{PACK_ID}@1", home), resolve_pack(f"{PACK_ID}@2", home)
    ledger.append({"system": "bot", "ts": "2026-01-01T00:00:00Z"})
    a1 = activate(ledger, r1, at=_at("2026-01-10T00:00:00"))
    ledger.append({"system": "bot", "ts": "2026-02-01T00:00:00Z"})
    history = ActivationHistory()
    assert [a.ref for a in history.refresh(ledger)] == [f"{PACK_ID}@1"]
    a2 = activate(ledger, r2, at=_at("2026-06-01T00:00:00"))
    with pytest.raises(ActivationError, match="already active"):
        activate(ledger, r2)
    (d1,) = deactivate(ledger, f"{PACK_ID}@1", at=_at("2026-09-01T00:00:00"))
    ledger.append({"system": "bot", "ts": "2026-09-02T00:00:00Z"})
    with pytest.raises(ActivationError, match="is not active"):
        deactivate(ledger, f"{PACK_ID}@1")

    acts = activations(ledger)
    # a long-lived reader that refreshes sees the same history as a fresh read
    assert history.refresh(ledger) == acts and history.scanned == ledger.log.size()
    assert [(a.ref, a.index, a.until_index) for a in acts] == [
        (f"{PACK_ID}@1", a1.index, d1.index), (f"{PACK_ID}@2", a2.index, None)]
    assert acts[0].hash == r1.pack.hash and acts[1].hash == r2.pack.hash
    assert acts[0].signer == f"{PUB.name}+{PUB.verifier.key_id.hex()}"
    assert acts[0].signer_key is not None and acts[0].signer_key.startswith("sha256:")
    expect = {"2026-01-09T23:59:59Z": [], "2026-01-10T00:00:00Z": ["1"],
              "2026-05-31T12:00:00Z": ["1"], "2026-06-01T00:00:00Z": ["1", "2"],
              "2026-08-31T23:59:59Z": ["1", "2"], "2026-09-01T00:00:00Z": ["2"],
              "2030-01-01T00:00:00Z": ["2"]}
    for when, versions in expect.items():
        assert [a.version for a in active_at(ledger, when)] == versions, when

    # each end of each interval is proven by a receipt against the log's signed checkpoint
    for index in (a1.index, a2.index, d1.index):
        receipt = verify_receipt(ledger.prove(index), ledger.verifier, None)
        assert receipt.index == index and receipt.extra is not None
        entry = json.loads(receipt.extra)
        assert entry["kind"] == "kansa.event" and entry["system"] == "kansa"
        assert entry["attributes"]["kansa.pack.id"] == PACK_ID
        assert entry["attributes"]["kansa.event"] == (
            "pack.deactivated" if index == d1.index else "pack.activated")

    assert [p.ref for p in active_packs(home, ledger)] == [f"{PACK_ID}@2"]
    # the installed bytes of an active pack change: an error, never silently used
    installed_path(home, PACK_ID, "2").write_text(V2_TEXT + "# edited\n")
    with pytest.raises(ActivationError, match="cannot be used"):
        active_packs(home, ledger)


def test_activation_history_survives_reopening(store_url: str, home: Path, feed: Path) -> None:
    add_from(home, feed)
    signer = Signer.generate("test.kansa/reopen")
    with kansa.Ledger.open(store_url, signer=signer, master_key=b"k" * 32) as lg:
        activate(lg, resolve_pack(f"{PACK_ID}@1", home), at=_at("2026-03-01T00:00:00"))
    with kansa.Ledger.open(store_url, signer=signer, master_key=b"k" * 32) as lg:
        assert [a.ref for a in active_at(lg, "2026-03-02T00:00:00Z")] == [f"{PACK_ID}@1"]
        assert [p.hash for p in active_packs(home, lg)] == [load_pack(V1_PATH).hash]


def test_pack_event_times_follow_log_order_and_records_are_complete(
        ledger: kansa.Ledger, home: Path, feed: Path) -> None:
    add_from(home, feed)
    activate(ledger, resolve_pack(f"{PACK_ID}@2", home), at=_at("2026-06-01T00:00:00"))
    with pytest.raises(ActivationError, match="before the last pack activation event"):
        activate(ledger, resolve_pack(f"{PACK_ID}@1", home), at=_at("2026-05-01T00:00:00"))
    with pytest.raises(ActivationError, match="before the last pack activation event"):
        deactivate(ledger, PACK_ID, at=_at("2026-05-31T00:00:00"))
    # a hand-made event lacking the pack hash makes the history unreadable, loudly
    ledger.append({"system": "kansa", "kind": "kansa.event", "ts": "2026-07-01T00:00:00Z",
                   "attributes": {"kansa.event": "pack.activated", "kansa.pack.id": PACK_ID,
                                  "kansa.pack.version": "1", "kansa.pack.signer": "x"}})
    with pytest.raises(ActivationError, match=r"ledger entry 1 .* without kansa.pack.hash"):
        activations(ledger)


def test_unsigned_file_cannot_be_activated(ledger: kansa.Ledger, home: Path,
                                           tmp_path: Path) -> None:
    f = tmp_path / "draft.yaml"
    f.write_text(V1_TEXT)
    with pytest.raises(ActivationError, match="unsigned"):
        activate(ledger, resolve_pack(str(f), home))
    assert activations(ledger) == []


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_add_update_list_activate(tmp_path: Path, serve: Any) -> None:
    runner = CliRunner()
    home = tmp_path / "home"
    env = {"KANSA_HOME": str(home), "COLUMNS": "250"}
    assert runner.invoke(app, ["init"], env=env).exit_code == 0
    vkey = tmp_path / "pub.vkey"
    vkey.write_text(PUB.verifier.vkey + "\n")
    root = tmp_path / "www"
    _put(root / "feed", "v1.yaml", V1_TEXT)
    r = runner.invoke(app, ["packs", "publish", str(root / "feed")], env=env)
    assert r.exit_code == 0 and "1 packs" in r.output
    url = serve(root)

    r = runner.invoke(app, ["packs", "add", "--from", url], env=env)
    assert r.exit_code == 1 and "no publisher key is trusted" in r.output
    assert runner.invoke(app, ["packs", "trust", "add", str(vkey)], env=env).exit_code == 0
    r = runner.invoke(app, ["packs", "add", "--from", url], env=env)
    assert r.exit_code == 0 and f"installed {PACK_ID}@1" in r.output
    _put(root / "feed", "v2.yaml", V2_TEXT)
    publish(root / "feed")
    r = runner.invoke(app, ["packs", "update", "--from", url], env=env)
    assert r.exit_code == 0 and f"installed {PACK_ID}@2" in r.output

    r = runner.invoke(app, ["packs", "activate", f"{PACK_ID}@2"], env=env)
    assert r.exit_code == 0, r.output
    assert "ledger entry 0" in r.output
    receipt = home / "receipts" / "entry-0.tlog-proof"
    with kansa.Ledger.open(home=home) as lg:
        assert verify_receipt(receipt.read_bytes(), lg.verifier, None).index == 0

    r = runner.invoke(app, ["packs", "list", "--json"], env=env)
    assert r.exit_code == 0, r.output
    rows = {row["pack"]: row for row in json.loads(r.output)}
    assert rows[f"{PACK_ID}@2"]["active"] == "yes"
    assert rows[f"{PACK_ID}@2"]["activation_index"] == 0
    assert rows[f"{PACK_ID}@1"]["active"] == "no"
    assert rows[f"{PACK_ID}@1"]["signer"].startswith(PUB.name + "+")
    assert rows[f"{PACK_ID}@1"]["hash"] == load_pack(V1_PATH).hash

    r = runner.invoke(app, ["packs", "deactivate", PACK_ID], env=env)
    assert r.exit_code == 0 and "ledger entry 1" in r.output
    # an installed file edited in place is listed as unusable, with the reason
    installed_path(home, PACK_ID, "1").write_text(V1_TEXT + "# edited\n")
    r = runner.invoke(app, ["packs", "list", "--json"], env=env)
    (bad,) = [row for row in json.loads(r.output) if row["pack"] is None]
    assert bad["path"].endswith("1.yaml") and "changed after signing" in bad["problem"]
    r = runner.invoke(app, ["packs", "update", "--from", f"http://127.0.0.1:{_dead_port()}/",
                            "--timeout", "2"], env=env)
    assert r.exit_code == 1 and "cannot connect" in r.output
