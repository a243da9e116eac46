"""The C2SP tlog-witness server, client and cosignature collection, with real keys, real
logs (SQLite and PostgreSQL), real sockets (uvicorn on 127.0.0.1) and no mocks."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kansa.errors import KansaError, WitnessError
from kansa.ledger import merkle
from kansa.ledger.log import Append, Log
from kansa.ledger.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    cosign,
    parse_note,
    sign_checkpoint,
    sign_note,
    verify_cosignature,
)
from kansa.ledger.storage import open_store
from kansa.ledger.witness import (
    EMPTY_TREE,
    MAX_BODY_SIZE,
    SIZE_CONTENT_TYPE,
    TreeHead,
    WitnessRefusal,
    WitnessState,
    check_advance,
    format_add_checkpoint_request,
    parse_add_checkpoint_request,
)
from kansa.witness_http import add_checkpoint, collect_cosignatures, create_witness_app
from serving import serving

with warnings.catch_warnings():  # starlette 1.x deprecates TestClient over httpx (not httpx2)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings(
    "ignore:Using `httpx` with `starlette.testclient` is deprecated"
)

ORIGIN = "example.com/kansa-test-log"
WITNESS = "witness.example.com/w1"


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log_key() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture(scope="module")
def witness_key() -> Signer:
    return Signer.generate(WITNESS, ALG_COSIGNATURE_V1)




def dead_url() -> str:
    """A URL on which nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@contextlib.contextmanager
def open_log(url: str, key: Signer) -> Iterator[Log]:
    log = Log(open_store(url), key, checkpoint_interval=0.01)
    try:
        yield log
    finally:
        log.close()
        log.store.close()


def grow(log: Log, prefix: str, n: int) -> None:
    """Append n entries and sign a checkpoint over them."""
    log.append_many([Append(f"{prefix}-{i}".encode()) for i in range(n)])
    log.flush()


@dataclass(frozen=True)
class Answer:
    """A witness's answer, whichever HTTP client (httpx, or httpx2 under TestClient) got it."""

    status_code: int
    text: str
    headers: dict[str, str]  # lower-case names


def post(client: TestClient | httpx.Client, body: bytes) -> Answer:
    r = client.post("/add-checkpoint", content=body)
    return Answer(r.status_code, r.text, {k.lower(): v for k, v in r.headers.items()})


class Tree:
    """An in-memory tree with signed checkpoints, for protocol-level tests."""

    def __init__(self, key: Signer, leaves: int, tag: bytes = b"") -> None:
        self.key = key
        self.reader = merkle.ListHashReader(
            [merkle.leaf_hash(tag + i.to_bytes(4, "big")) for i in range(leaves)]
        )

    def root(self, size: int) -> bytes:
        return merkle.tree_root(self.reader, size)

    def checkpoint(self, size: int) -> str:
        cp = Checkpoint(self.key.name, size, self.root(size))
        return sign_checkpoint(cp, self.key).note.to_text()

    def body(self, old: int, size: int) -> bytes:
        proof = merkle.consistency_proof(self.reader, old, size)
        return format_add_checkpoint_request(old, proof, self.checkpoint(size))


@pytest.fixture
def tree(log_key: Signer) -> Tree:
    return Tree(log_key, 64)


@pytest.fixture
def app(tmp_path: Path, log_key: Signer, witness_key: Signer) -> Starlette:
    return create_witness_app(witness_key, tmp_path / "witness.db", {ORIGIN: log_key.verifier})


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def state_of(app: Starlette) -> WitnessState:
    state = app.state.witness_state
    assert isinstance(state, WitnessState)
    return state


def cosignature_from(response: Answer, checkpoint: str, witness: Verifier) -> int:
    """Check a 200 answer is exactly one valid cosignature line; return its timestamp."""
    assert response.status_code == 200, response.text
    assert response.text.startswith("\u2014 ") and response.text.endswith("\n")
    assert response.text.count("\n") == 1
    note = parse_note(parse_note(checkpoint).text + "\n" + response.text)
    return verify_cosignature(note, witness)


# --- end to end over real sockets, with a real Log on SQLite and PostgreSQL ---------------


def test_cosign_then_grow_with_consistency_proof(
    store_url: str, tmp_path: Path, log_key: Signer, witness_key: Signer
) -> None:
    stated = 1_800_000_000.7  # the witness's clock, passed in: what its cosignature states
    app = create_witness_app(witness_key, tmp_path / "w.db", {ORIGIN: log_key.verifier},
                             clock=lambda: stated)
    with serving(app) as url, open_log(store_url, log_key) as log:
        grow(log, "a", 5)
        first = collect_cosignatures(log, [(url, witness_key.verifier)])
        assert first.size == 5 and first.failures == []
        [sig] = first.accepted
        cp = log.latest_checkpoint()
        ts = verify_cosignature(Note(cp.note.text, (sig,)), witness_key.verifier)
        assert ts == 1_800_000_000
        assert log.store.cosignatures(5) == [sig.line()]
        assert state_of(app).latest(ORIGIN) == TreeHead(5, cp.checkpoint.root)

        # The log grows; without a size hint the witness answers 409 with 5, and the
        # collection retries once with a real consistency proof from 5 to 300.
        grow(log, "b", 295)
        second = collect_cosignatures(log, [(url, witness_key.verifier)])
        assert second.size == 300 and second.failures == []
        cp2 = log.latest_checkpoint()
        verify_cosignature(Note(cp2.note.text, tuple(second.accepted)), witness_key.verifier)
        assert log.store.cosignatures(300) == [second.accepted[0].line()]
        assert state_of(app).latest(ORIGIN) == TreeHead(300, cp2.checkpoint.root)

        # With a hint, the first request already carries the right proof.
        hints = {WITNESS: 300}
        grow(log, "c", 7)
        third = collect_cosignatures(log, [(url, witness_key.verifier)], size_hints=hints)
        assert [o.error for o in third.outcomes] == [None]
        assert hints == {WITNESS: 307}
        assert state_of(app).latest(ORIGIN) == TreeHead(307, log.root(307))


def test_client_add_checkpoint_over_http(
    tmp_path: Path, tree: Tree, log_key: Signer, witness_key: Signer
) -> None:
    app = create_witness_app(witness_key, tmp_path / "w.db", {ORIGIN: log_key.verifier})
    with serving(app) as url, httpx.Client() as http:
        sig = add_checkpoint(url, 0, [], tree.checkpoint(10), client=http)
        note = parse_note(tree.checkpoint(10))
        verify_cosignature(Note(note.text, (sig,)), witness_key.verifier)

        with pytest.raises(WitnessRefusal) as conflict:
            add_checkpoint(url, 4, [], tree.checkpoint(20), client=http)
        assert conflict.value.status == 409 and conflict.value.known_size == 10

        proof = merkle.consistency_proof(tree.reader, 10, 20)
        sig2 = add_checkpoint(
            url + "/add-checkpoint", 10, proof, tree.checkpoint(20), witness=witness_key.verifier
        )
        assert sig2.key_id == witness_key.verifier.key_id

        # A client told to expect another witness key refuses the answer.
        other = Signer.generate(WITNESS, ALG_COSIGNATURE_V1).verifier
        with pytest.raises(WitnessError, match="no cosignature by"):
            add_checkpoint(url, 20, [], tree.checkpoint(20), witness=other)

    with pytest.raises(WitnessError, match="unreachable"):
        add_checkpoint(dead_url(), 0, [], tree.checkpoint(1), timeout=2)


def test_forked_log_is_never_cosigned(
    store_url: str, tmp_path: Path, log_key: Signer, witness_key: Signer
) -> None:
    """A second log with the same key but other entries is a split view: refused."""
    app = create_witness_app(witness_key, tmp_path / "w.db", {ORIGIN: log_key.verifier})
    fork_url = f"sqlite:///{tmp_path / 'fork.db'}"
    with serving(app) as url, open_log(store_url, log_key) as real, open_log(
        fork_url, log_key
    ) as fork, httpx.Client(base_url=url) as http:
        grow(real, "real", 4)
        grow(fork, "fork", 4)
        assert real.root(4) != fork.root(4)
        assert collect_cosignatures(real, [(url, witness_key.verifier)]).failures == []

        # Same size, another root: 409, and not the size conflict (no text/x.tlog.size).
        same_size = format_add_checkpoint_request(4, [], fork.latest_checkpoint().note.to_text())
        r = post(http, same_size)
        assert r.status_code == 409
        assert r.headers["content-type"] != SIZE_CONTENT_TYPE
        assert "\u2014" not in r.text

        # The fork grows and brings a perfectly valid proof *of its own tree*: 422.
        grow(fork, "fork-more", 4)
        fork_cp = fork.latest_checkpoint().note.to_text()
        r = post(http, format_add_checkpoint_request(4, fork.consistency_proof(4, 8), fork_cp))
        assert r.status_code == 422 and "\u2014" not in r.text

        # The collection client gets the same refusal and stores nothing for the fork.
        result = collect_cosignatures(fork, [(url, witness_key.verifier)])
        assert result.accepted == []
        [failure] = result.failures
        assert isinstance(failure.error, WitnessRefusal) and failure.error.status == 422
        assert fork.store.cosignatures(8) == []

        # The witness still holds the real tree, kept both refusals as evidence, and
        # goes on cosigning the real log.
        state = state_of(app)
        assert state.latest(ORIGIN) == TreeHead(4, real.root(4))
        refusals = state.refusals(ORIGIN)
        assert [x.status for x in refusals] == [409, 422, 422]
        assert refusals[1].request.endswith(fork_cp.encode())
        grow(real, "real-more", 4)
        assert collect_cosignatures(real, [(url, witness_key.verifier)]).failures == []
        assert state.latest(ORIGIN) == TreeHead(8, real.root(8))


def test_dead_witness_is_a_per_witness_failure(
    store_url: str, tmp_path: Path, log_key: Signer, witness_key: Signer
) -> None:
    app = create_witness_app(witness_key, tmp_path / "w.db", {ORIGIN: log_key.verifier})
    dead_key = Signer.generate("witness.example.com/dead", ALG_COSIGNATURE_V1)
    with serving(app) as url, open_log(store_url, log_key) as log:
        grow(log, "x", 3)
        result = collect_cosignatures(
            log, [(dead_url(), dead_key.verifier), (url, witness_key.verifier)], timeout=2
        )
        dead, alive = result.outcomes
        assert dead.cosignature is None and isinstance(dead.error, WitnessError)
        assert "unreachable" in str(dead.error)
        assert alive.error is None and alive.cosignature is not None
        assert result.accepted == [alive.cosignature]
        assert log.store.cosignatures(3) == [alive.cosignature.line()]


def test_bad_cosignature_is_not_accepted(
    store_url: str, witness_key: Signer, log_key: Signer
) -> None:
    """A witness that answers a well-formed line with the right key ID but a signature
    over something else must not get its line stored."""

    async def lying(request: Request) -> Response:
        await request.body()
        wrong = cosign(f"{ORIGIN}\n1\n{base64.b64encode(bytes(32)).decode()}\n", witness_key, 1)
        return Response(wrong.line(), media_type="text/plain")

    liar = Starlette(routes=[Route("/add-checkpoint", lying, methods=["POST"])])
    with serving(liar) as url, open_log(store_url, log_key) as log:
        grow(log, "x", 2)
        result = collect_cosignatures(log, [(url, witness_key.verifier)])
        [failure] = result.failures
        assert "bad cosignature" in str(failure.error)
        assert result.accepted == [] and log.store.cosignatures(2) == []


def test_restart_keeps_state(tmp_path: Path, tree: Tree, log_key: Signer,
                             witness_key: Signer) -> None:
    path = tmp_path / "w.db"
    logs = {ORIGIN: log_key.verifier}
    with serving(create_witness_app(witness_key, path, logs)) as url, httpx.Client(
        base_url=url
    ) as http:
        assert post(http, tree.body(0, 12)).status_code == 200

    other = Tree(log_key, 64, tag=b"fork")
    with serving(create_witness_app(witness_key, path, logs)) as url, httpx.Client(
        base_url=url
    ) as http:
        r = post(http, tree.body(0, 30))
        assert (r.status_code, r.text) == (409, "12\n")
        assert post(http, other.body(12, 30)).status_code == 422
        assert post(http, tree.body(12, 30)).status_code == 200
    assert WitnessState(path).latest(ORIGIN) == TreeHead(30, tree.root(30))


def test_concurrent_requests_never_roll_back(
    tmp_path: Path, tree: Tree, log_key: Signer, witness_key: Signer
) -> None:
    """tlog-witness's race: many requests from the same old size, to different sizes,
    through two servers sharing one state file. Exactly one may win each round."""
    path = tmp_path / "w.db"
    logs = {ORIGIN: log_key.verifier}
    with serving(create_witness_app(witness_key, path, logs)) as u1, serving(
        create_witness_app(witness_key, path, logs)
    ) as u2, httpx.Client() as http, ThreadPoolExecutor(16) as pool:
        old = 0
        for _ in range(3):
            sizes = range(old + 1, old + 17)
            bodies = [(u1 if i % 2 else u2, tree.body(old, s)) for i, s in enumerate(sizes)]
            results = list(
                pool.map(lambda ub: http.post(ub[0] + "/add-checkpoint", content=ub[1]), bodies)
            )
            statuses = [r.status_code for r in results]
            assert statuses.count(200) == 1 and statuses.count(409) == 15, statuses
            won = sizes[statuses.index(200)]
            assert all(r.text == f"{won}\n" for r in results if r.status_code == 409)
            assert WitnessState(path).latest(ORIGIN) == TreeHead(won, tree.root(won))
            old = won


# --- protocol cases (in-process ASGI client) -----------------------------------------------


def test_happy_path_and_resubmission(client: TestClient, app: Starlette, tree: Tree,
                                     witness_key: Signer) -> None:
    cosignature_from(post(client, tree.body(0, 7)), tree.checkpoint(7), witness_key.verifier)
    # The same checkpoint again (old == size, same root, empty proof) is cosigned again.
    cosignature_from(post(client, tree.body(7, 7)), tree.checkpoint(7), witness_key.verifier)
    cosignature_from(post(client, tree.body(7, 64)), tree.checkpoint(64), witness_key.verifier)
    assert state_of(app).latest(ORIGIN) == TreeHead(64, tree.root(64))


def test_unknown_key_is_403(client: TestClient, app: Starlette, tree: Tree) -> None:
    impostor = Tree(Signer.generate(ORIGIN), 64)  # same origin, another key
    r = post(client, impostor.body(0, 5))
    assert r.status_code == 403 and "\u2014" not in r.text

    # The real key's signature over another body does not verify either.
    note = parse_note(tree.checkpoint(5))
    forged = Note(f"{ORIGIN}\n6\n{base64.b64encode(tree.root(6)).decode()}\n", note.signatures)
    assert post(client, format_add_checkpoint_request(0, [], forged.to_text())).status_code == 403
    assert state_of(app).latest(ORIGIN) is None


def test_signatures_of_unknown_keys_are_ignored(client: TestClient, tree: Tree,
                                                witness_key: Signer) -> None:
    extra = sign_note(parse_note(tree.checkpoint(3)).text, Signer.generate("someone.else"))
    both = Note(extra.text, extra.signatures + parse_note(tree.checkpoint(3)).signatures)
    cosignature_from(
        post(client, format_add_checkpoint_request(0, [], both.to_text())),
        both.to_text(),
        witness_key.verifier,
    )


def test_unknown_origin_is_404(client: TestClient) -> None:
    stranger = Tree(Signer.generate("example.org/other-log"), 8)
    r = post(client, stranger.body(0, 8))
    assert r.status_code == 404 and "example.org/other-log" in r.text


def test_wrong_old_size_is_409_with_known_size(client: TestClient, tree: Tree) -> None:
    r = post(client, tree.body(3, 10))  # the witness never cosigned: its size is 0
    assert (r.status_code, r.text) == (409, "0\n")
    assert r.headers["content-type"] == SIZE_CONTENT_TYPE
    assert post(client, tree.body(0, 10)).status_code == 200
    r = post(client, tree.body(5, 20))
    assert (r.status_code, r.text, r.headers["content-type"]) == (409, "10\n", SIZE_CONTENT_TYPE)


def test_rollback_is_refused(client: TestClient, app: Starlette, tree: Tree) -> None:
    assert post(client, tree.body(0, 20)).status_code == 200
    # "The old size MUST be equal to or lower than the checkpoint size. Otherwise ... 400"
    rollback = format_add_checkpoint_request(20, [], tree.checkpoint(10))
    assert post(client, rollback).status_code == 400
    # Claiming the smaller size as old size: the witness tells its real size.
    r = post(client, tree.body(10, 10))
    assert (r.status_code, r.text) == (409, "20\n")
    assert state_of(app).latest(ORIGIN) == TreeHead(20, tree.root(20))


def test_bad_consistency_proof_is_422(client: TestClient, app: Starlette, tree: Tree) -> None:
    assert post(client, tree.body(0, 9)).status_code == 200
    proof = merkle.consistency_proof(tree.reader, 9, 33)
    tampered = [proof[0][:-1] + bytes([proof[0][-1] ^ 1])] + proof[1:]
    cp33 = tree.checkpoint(33)
    assert post(client, format_add_checkpoint_request(9, tampered, cp33)).status_code == 422
    assert post(client, format_add_checkpoint_request(9, proof[:-1], cp33)).status_code == 422
    assert post(client, format_add_checkpoint_request(9, [], cp33)).status_code == 422
    assert state_of(app).latest(ORIGIN) == TreeHead(9, tree.root(9))


def test_empty_tree(client: TestClient, app: Starlette, tree: Tree, log_key: Signer,
                    witness_key: Signer) -> None:
    # A size-0 checkpoint must carry SHA-256(""), the root of the empty tree.
    bogus = sign_checkpoint(Checkpoint(ORIGIN, 0, hashlib.sha256(b"x").digest()), log_key)
    r = post(client, format_add_checkpoint_request(0, [], bogus.note.to_text()))
    assert r.status_code == 409 and r.headers["content-type"] != SIZE_CONTENT_TYPE
    empty = sign_checkpoint(Checkpoint(ORIGIN, 0, hashlib.sha256(b"").digest()), log_key)
    cosignature_from(
        post(client, format_add_checkpoint_request(0, [], empty.note.to_text())),
        empty.note.to_text(),
        witness_key.verifier,
    )
    assert state_of(app).latest(ORIGIN) == EMPTY_TREE
    # "The proof MUST be empty if the old size is zero."
    proof = [tree.root(1)]
    assert post(client, format_add_checkpoint_request(0, proof, tree.checkpoint(5))).status_code \
        == 422
    assert post(client, tree.body(0, 5)).status_code == 200


def _body(old: bytes, proof: list[bytes], checkpoint: str) -> bytes:
    return old + b"".join(p + b"\n" for p in proof) + b"\n" + checkpoint.encode()


def test_malformed_bodies_are_400(client: TestClient, app: Starlette, tree: Tree,
                                  log_key: Signer) -> None:
    cp = tree.checkpoint(5)
    h = base64.b64encode(bytes(32))
    huge = sign_note(f"{ORIGIN}\n{'9' * 5000}\n{base64.b64encode(bytes(32)).decode()}\n", log_key)
    over = sign_checkpoint(Checkpoint(ORIGIN, 1 << 63, bytes(32)), log_key)
    root5 = base64.b64encode(tree.root(5)).decode()
    blank_text = f"{ORIGIN}\n5\n{root5}\n\next\n"  # sign_note refuses it; sign it raw
    raw_sig = NoteSignature(ORIGIN, log_key.verifier.key_id, log_key.sign_raw(blank_text.encode()))
    blank_ext = Note(blank_text, (raw_sig,)).to_text()
    bad = [
        b"",
        b"old 0\n",
        cp.encode(),
        _body(b"old 01\n", [], cp),
        _body(b"old -1\n", [], cp),
        _body(b"old 0 \n", [], cp),
        _body(b"Old 0\n", [], cp),
        _body(b"old  0\n", [], cp),
        _body(b"old 0x10\n", [], cp),
        _body(b"old 99999999999999999999\n", [], cp),
        _body(b"old 0\n", [b"not base64!"], cp),
        _body(b"old 0\n", [base64.b64encode(bytes(31))], cp),
        _body(b"old 0\n", [h + b" "], cp),
        _body(b"old 0\n", [h] * 64, cp),
        b"old 0\n\n",
        _body(b"old 0\n", [], parse_note(cp).text),  # no signatures
        _body(b"old 0\n", [], cp.replace("\n", "\r\n")),
        _body(b"old 0\n", [], cp + "trailing"),
        _body(b"old 0\n", [], huge.to_text()),  # validly signed, 5000-digit size
        _body(b"old 0\n", [], over.note.to_text()),  # validly signed, size 2**63
        _body(b"old 0\n", [], blank_ext),  # an empty extension line
        _body(b"old 6\n", [], cp),  # old size beyond the checkpoint size
        b"\xff\xfe" + _body(b"old 0\n", [], cp),
    ]
    for body in bad:
        r = post(client, body)
        assert r.status_code == 400, (body[:80], r.status_code, r.text)
    assert state_of(app).latest(ORIGIN) is None
    # 63 proof lines are allowed by the framing (the proof itself then fails: 422).
    assert post(client, _body(b"old 0\n", [h] * 63, cp)).status_code == 422


def test_extension_lines_are_cosigned(client: TestClient, tree: Tree, log_key: Signer,
                                      witness_key: Signer) -> None:
    root5 = base64.b64encode(tree.root(5)).decode()
    ext = sign_note(f"{ORIGIN}\n5\n{root5}\nsome extension\n", log_key).to_text()
    cosignature_from(
        post(client, format_add_checkpoint_request(0, [], ext)), ext, witness_key.verifier
    )
    # The cosigned message included the extension line: it does not verify without it.
    r = post(client, format_add_checkpoint_request(5, [], ext))
    line = parse_note(parse_note(ext).text + "\n" + r.text).signatures
    with pytest.raises(KansaError):
        verify_cosignature(Note(parse_note(tree.checkpoint(5)).text, line), witness_key.verifier)


def test_oversized_body_and_wrong_method(client: TestClient) -> None:
    assert post(client, b"old 0\n" + b"A" * MAX_BODY_SIZE).status_code == 413
    assert client.get("/add-checkpoint").status_code == 405
    assert client.post("/other", content=b"old 0\n\n").status_code == 404


def test_configuration_is_checked(tmp_path: Path, log_key: Signer, witness_key: Signer) -> None:
    with pytest.raises(KansaError, match="0x04"):  # a 0x01 key cannot cosign
        create_witness_app(log_key, tmp_path / "w.db", {ORIGIN: log_key.verifier})
    with pytest.raises(KansaError, match="0x01"):  # a 0x04 key cannot sign a log
        create_witness_app(witness_key, tmp_path / "w.db", {WITNESS: witness_key.verifier})


# --- pure functions and fuzzing ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_check_advance_accepts_exactly_consistent_trees(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 200))
    reader = merkle.ListHashReader([merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(n)])
    old = data.draw(st.integers(0, n))
    new = data.draw(st.integers(old, n))
    recorded = TreeHead(old, merkle.tree_root(reader, old))
    proof = merkle.consistency_proof(reader, old, new)
    check_advance(recorded, old, TreeHead(new, merkle.tree_root(reader, new)), proof)
    wrong = TreeHead(new, hashlib.sha256(b"wrong").digest())
    if old == 0 and new > 0:
        # Nothing cosigned yet: the first checkpoint is trusted on first use.
        check_advance(recorded, old, wrong, proof)
        return
    # Otherwise any other root for the new size is refused, whatever the proof.
    with pytest.raises(WitnessRefusal) as refused:
        check_advance(recorded, old, wrong, proof)
    assert refused.value.status == (409 if old == new else 422)


proof_hashes = st.lists(st.binary(min_size=32, max_size=32), max_size=63)


@given(old=st.integers(0, (1 << 63) - 1), proof=proof_hashes)
def test_request_format_round_trips(old: int, proof: list[bytes]) -> None:
    cp = f"{ORIGIN}\n1\n{base64.b64encode(bytes(32)).decode()}\n\n\u2014 {ORIGIN} AAAAAAA=\n"
    parsed = parse_add_checkpoint_request(format_add_checkpoint_request(old, proof, cp))
    assert (parsed.old_size, list(parsed.proof), parsed.checkpoint) == (old, proof, cp.encode())


def _flip(text: str, at: int) -> str:
    """Change one base64 character of the last signature line."""
    head, _, last = text.rstrip("\n").rpartition(" ")
    at %= len(last.rstrip("="))
    flipped = last[:at] + ("A" if last[at] != "A" else "B") + last[at + 1 :]
    return f"{head} {flipped}\n"


def test_fuzzed_bodies_never_cause_a_server_error(
    client: TestClient, app: Starlette, log_key: Signer
) -> None:
    """Random and protocol-shaped bodies: every answer is a 2xx or a 4xx, and between
    them the fuzzer reaches every status the protocol defines."""
    tree, fork = Tree(log_key, 1024), Tree(log_key, 1024, tag=b"fork")
    sizes = st.integers(0, 64)
    hashes = st.one_of(
        st.binary(min_size=32, max_size=32), st.sampled_from([tree.root(n) for n in range(9)])
    )
    proof_line = st.one_of(
        hashes.map(base64.b64encode), st.binary(max_size=40).map(base64.b64encode),
        st.binary(max_size=50),
    )
    old_line = st.one_of(
        sizes.map(lambda n: f"old {n}".encode()),
        st.sampled_from([b"old 0", b"old 00", b"old -0", b"old", b"", b"old 1 ", b"new 0"]),
        st.binary(max_size=30),
    )
    # no lone surrogates: a note is UTF-8, so such text could not even be signed
    extension_text = st.text(st.characters(blacklist_categories=("Cs",),
                                           blacklist_characters="\n\r"),
                             min_size=1, max_size=20)
    checkpoint = st.one_of(
        sizes.map(tree.checkpoint),  # genuine
        st.tuples(sizes, st.integers(0, 200)).map(lambda a: _flip(tree.checkpoint(a[0]), a[1])),
        st.builds(  # validly signed by the log key, arbitrary size, root and extensions
            lambda size, root, ext: sign_note(
                f"{ORIGIN}\n{size}\n{base64.b64encode(root).decode()}\n"
                + "".join(e + "\n" for e in ext), log_key
            ).to_text(),
            st.one_of(sizes, st.integers(0, 1 << 70)), hashes, st.lists(extension_text,
                                                                         max_size=2),
        ),
        st.builds(  # another log
            lambda t: Tree(Signer.generate("example.org/x"), 2).checkpoint(1) if t else "x\n",
            st.booleans(),
        ),
        st.text(max_size=200),
    )
    genuine = st.tuples(sizes, sizes).map(lambda a: tree.body(min(a), max(a)))
    assembled = st.builds(
        lambda old, proof, cp, junk: old + b"\n" + b"".join(p + b"\n" for p in proof)
        + b"\n" + cp.encode() + junk,
        old_line,
        st.lists(proof_line, max_size=65),
        checkpoint,
        st.one_of(st.just(b""), st.just(b""), st.binary(max_size=20)),
    )
    seen: set[int] = set()

    def from_recorded(args: tuple[bool, int, int]) -> bytes:
        """A proof from the witness's current size, from the real tree or a fork."""
        real, delta, old_delta = args
        recorded = state_of(app).latest(ORIGIN) or EMPTY_TREE
        new = min(1024, recorded.size + delta)
        old = max(0, min(new, recorded.size + old_delta))
        return (tree if real else fork).body(old, new)

    relative = st.tuples(st.booleans(), st.integers(0, 6), st.integers(-1, 1)).map(from_recorded)

    # derandomized: the same 600 examples every run, so the coverage check below is stable
    @settings(max_examples=600, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(body=st.one_of(genuine, relative, assembled, st.binary(max_size=400)))
    def run(body: bytes) -> None:
        r = post(client, body)
        seen.add(r.status_code)
        assert r.status_code in (200, 400, 403, 404, 409, 422), (body, r.text)

    run()
    assert seen == {200, 400, 403, 404, 409, 422}, seen
