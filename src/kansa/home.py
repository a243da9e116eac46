"""$KANSA_HOME (default ./.kansa): the log's keys, the master key and the embedded store.

    log.key     the log's Ed25519 signer key (C2SP note format), mode 0600
    log.vkey    the verifier key an auditor needs, safe to publish
    master.key  32 random bytes (base64) that wrap every data subject's key, mode 0600
    config.json store URL, origin, witnesses
    ledger.db   the SQLite store (the default)
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kansa.errors import KansaError
from kansa.ledger.note import Signer, Verifier


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
