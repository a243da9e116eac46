"""$KANSA_HOME (default ./.kansa): the log's keys, the master key and the embedded store.

    log.key     the log's Ed25519 signer key (C2SP note format), mode 0600
    log.vkey    the verifier key an auditor needs, safe to publish
    master.key  32 random bytes (base64) that wrap every data subject's key, mode 0600
    config.json store URL, origin, witnesses
    ledger.db   the SQLite store (the default)
    latest-checkpoint.json
                the latest checkpoint the log signed, kept outside the store (written
                atomically, never moved back): a store restored from an old backup or
                with rows deleted is caught against it, and the log refuses to sign a
                second history over it
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kansa.errors import FormatError, KansaError
from kansa.ledger.files import read_bounded
from kansa.ledger.note import Signer, Verifier
from kansa.ledger.storage import StoredCheckpoint

KEPT_CHECKPOINT = "latest-checkpoint.json"
_KEPT_MAX_BYTES = 1 << 17


def default_home() -> Path:
    return Path(os.environ.get("KANSA_HOME", ".kansa"))


def default_origin() -> str:
    host = "".join(c for c in socket.gethostname().lower() if c.isalnum() or c in "-.") or "host"
    return f"kansa.local/{host}/{secrets.token_hex(3)}"


@dataclass
class Home:
    path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        url = self.config.get("store")
        return str(url) if url else f"sqlite:///{(self.path / 'ledger.db').resolve()}"

    @property
    def witnesses(self) -> list[dict[str, str]]:
        return list(self.config.get("witnesses", []))

    def signer(self) -> Signer:
        return Signer.parse(self._read("log.key"))

    def verifier(self) -> Verifier:
        return Verifier.parse(self._read("log.vkey"))

    def master_key(self) -> bytes:
        try:
            key = base64.b64decode(self._read("master.key"), validate=True)
        except ValueError:
            raise KansaError(f"{self.path / 'master.key'} is not base64") from None
        if len(key) != 32:
            raise KansaError(f"{self.path / 'master.key'} does not hold a 32-byte key")
        return key

    def _read(self, name: str) -> str:
        p = self.path / name
        try:
            return p.read_text().strip()
        except FileNotFoundError:
            raise KansaError(
                f"{p} does not exist: run 'kansa init' (or set KANSA_HOME to your ledger's home)"
            ) from None

    def kept_checkpoint(self) -> KeptCheckpoint:
        return KeptCheckpoint(self.path / KEPT_CHECKPOINT)

    def save_config(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | str | None = None) -> Home:
        p = Path(path) if path is not None else default_home()
        if not (p / "log.key").exists():
            raise KansaError(
                f"no kansa ledger at {p}: run 'kansa init' first (or set KANSA_HOME)"
            )
        cfg_path = p / "config.json"
        config: dict[str, Any] = {}
        if cfg_path.exists():
            try:
                config = json.loads(cfg_path.read_text())
            except json.JSONDecodeError as e:
                raise KansaError(f"{cfg_path}: not valid JSON ({e})") from None
        return cls(p, config)

    @classmethod
    def create(
        cls, path: Path | str | None = None, *, origin: str | None = None,
        store_url: str | None = None
    ) -> Home:
        p = Path(path) if path is not None else default_home()
        if (p / "log.key").exists():
            raise KansaError(f"{p} already holds a kansa ledger; not overwriting its keys")
        p.mkdir(parents=True, exist_ok=True)
        signer = Signer.generate(origin or default_origin())
        _write_secret(p / "log.key", signer.skey + "\n")
        (p / "log.vkey").write_text(signer.verifier.vkey + "\n")
        _write_secret(p / "master.key", base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        home = cls(p, {"origin": signer.name})
        if store_url:
            home.config["store"] = store_url
        home.save_config()
        return home


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class KeptCheckpoint:
    """$KANSA_HOME/latest-checkpoint.json: the latest checkpoint the log signed, with its
    number in signing order, outside the store. A :class:`~kansa.ledger.log.Log`
    checkpoint keeper.

    Written to a temporary file, fsynced and renamed over the old one (a reader sees the
    old or the new file, never half of one), under an exclusive lock so that processes
    sharing the home never move it back to a smaller size.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def where(self) -> str:
        return str(self.path)

    def load(self) -> StoredCheckpoint | None:
        try:
            raw = read_bounded(self.path, _KEPT_MAX_BYTES)
        except FileNotFoundError:
            return None
        except (OSError, FormatError) as e:
            raise KansaError(f"{self.path}: cannot read the kept checkpoint ({e})") from None
        try:
            obj = json.loads(raw)
            cp = StoredCheckpoint(int(obj["size"]), int(obj["created"]), str(obj["note"]),
                                  None if obj.get("seq") is None else int(obj["seq"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KansaError(
                f"{self.path}: not a kept checkpoint (expected JSON with size, created, "
                f"note, seq); restore it from a backup of $KANSA_HOME"
            ) from None
        return cp

    def keep(self, cp: StoredCheckpoint) -> None:
        with self._locked():
            kept = self.load()
            if kept is not None and kept.size >= cp.size:
                return
            data = json.dumps({"size": cp.size, "seq": cp.seq, "created": cp.created,
                               "note": cp.note}, indent=2) + "\n"
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            _fsync_dir(self.path.parent)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX: one process per home
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
