"""Who is asking, and what their role lets them do.

Roles are ordered: each holds the rights of the ones before it. There is no delete
right: nothing in ``kansa web`` removes a record (erasure stays ``kansa erase``, itself
recorded).

- ``viewer``: metadata (overview, records, record pages; never content)
- ``auditor``: + verification material (receipts) and exports
- ``officer``: + approvals, content on an explicit (recorded) click
- ``admin``: + everything else the dashboard will grow (keys, packs)

Login is by a local token (``kansa web token add`` writes its SHA-256 to
``$KANSA_HOME/web_tokens.json``; ``--token-file`` names a file of ``ROLE NAME TOKEN``
lines) or by a header a trusted reverse proxy sets (``--trusted-header``) mapped to a
role. A login yields a session cookie: HMAC-signed, expiring, bound to this process's
secret, and CSRF tokens are derived from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kansa.errors import KansaError

ROLES = ("viewer", "auditor", "officer", "admin")
SESSION_SECONDS = 8 * 3600


class AuthError(KansaError):
    """A bad token file, role map or role name; the message says which."""


def rank(role: str) -> int:
    return ROLES.index(role)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    via: str  # "token" or "header"

    def can(self, role: str) -> bool:
        """Whether this principal holds at least ``role``'s rights."""
        return rank(self.role) >= rank(role)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(path: Path, *, role: str, name: str) -> str:
    """Create a token for ``name`` with ``role``; store only its digest; return it (shown
    once)."""
    check_role(role)
    if not name or any(c.isspace() for c in name):
        raise AuthError("a token's name is one word (no spaces)")
    tokens = load_token_digests(path) if path.exists() else {}
    token = "kw_" + secrets.token_urlsafe(24)
    tokens[token_digest(token)] = (name, role)
    data = {d: {"name": n, "role": r} for d, (n, r) in tokens.items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.chmod(0o600)
    tmp.replace(path)
    return token


def load_token_digests(path: Path) -> dict[str, tuple[str, str]]:
    """{sha256(token): (name, role)} from the home's web_tokens.json."""
    try:
        raw = json.loads(path.read_text())
        return {str(d): (str(v["name"]), check_role(str(v["role"]))) for d, v in raw.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise AuthError(f"{path}: not a kansa web token file ({e})") from None


def load_token_file(path: Path) -> dict[str, tuple[str, str]]:
    """A --token-file: ``ROLE NAME TOKEN`` per line (# comments); digests, as above."""
    out: dict[str, tuple[str, str]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise AuthError(f"cannot read token file {path}: {e}") from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise AuthError(f"{path}:{n}: expected 'ROLE NAME TOKEN'")
        role, name, token = parts
        check_role(role)
        if len(token) < 16:
            raise AuthError(f"{path}:{n}: a token has at least 16 characters")
        out[token_digest(token)] = (name, role)
    return out


def parse_role_map(text: str) -> dict[str, str]:
    """``alice=officer,bob=viewer,*=viewer`` (``*``: anyone else the proxy lets in)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        user, sep, role = part.partition("=")
        if not sep or not user.strip():
            raise AuthError(f"role map entry {part!r}: expected USER=ROLE")
        out[user.strip()] = check_role(role.strip())
    return out


@dataclass
class Access:
    """How a request proves who it is: tokens and/or a trusted proxy header."""

    tokens: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    trusted_header: str | None = None
    role_map: Mapping[str, str] = field(default_factory=dict)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def by_token(self, token: str) -> Principal | None:
        found = self.tokens.get(token_digest(token))
        return Principal(found[0], found[1], "token") if found else None

    def by_header(self, value: str | None) -> Principal | None:
        if self.trusted_header is None or not value:
            return None
        role = self.role_map.get(value, self.role_map.get("*"))
        return Principal(value, role, "header") if role else None

    # -- sessions: base64(json) + "." + HMAC ---------------------------------------------

    def _mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()

    def session_cookie(self, p: Principal, now: float) -> str:
        body = base64.urlsafe_b64encode(json.dumps(
            {"n": p.name, "r": p.role, "e": int(now) + SESSION_SECONDS,
             "s": secrets.token_hex(8)}).encode()).decode()
        return body + "." + self._mac(body.encode())

    def from_session(self, cookie: str | None, now: float) -> Principal | None:
        if not cookie or "." not in cookie:
            return None
        body, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            d = json.loads(base64.urlsafe_b64decode(body))
            if int(d["e"]) < now or d["r"] not in ROLES:
                return None
            return Principal(str(d["n"]), str(d["r"]), "token")
        except (ValueError, KeyError, TypeError):
            return None

    def csrf_token(self, binding: str) -> str:
        """The CSRF token for a session (or the pre-login cookie): forged cross-site forms
        cannot know it, as they cannot read the cookie it is derived from."""
        return self._mac(b"csrf\x00" + binding.encode())

    def csrf_ok(self, binding: str | None, given: str | None) -> bool:
        return bool(binding) and bool(given) and hmac.compare_digest(
            self.csrf_token(binding or ""), given or "")
