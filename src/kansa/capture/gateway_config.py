"""The gateway's configuration: its upstreams (which models each serves, how its key is
sent) and its settings, from a TOML file, a dict or one upstream URL; validated whole.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kansa.errors import KansaError


@dataclass(frozen=True)
class Upstream:
    """One upstream API. ``models`` are fnmatch patterns; the first upstream whose patterns
    match a request's model serves it."""

    base_url: str  # e.g. https://api.openai.com/v1 (the gateway appends /chat/completions...)
    name: str = ""
    models: tuple[str, ...] = ("*",)
    api_key_env: str | None = None  # environment variable holding this upstream's key
    auth: str = "auto"  # how to send that key: auto, bearer, x-api-key
    provider: str | None = None  # gen_ai.provider.name to record (default: by route)
    ca_file: str | None = None  # CA bundle for an https upstream (default: the system's)
    tls_verify: bool = True


@dataclass
class GatewayConfig:
    upstreams: list[Upstream] = field(default_factory=list)
    default_upstream: str | None = None  # name; default: the first with a "*" pattern
    system: str = "kansa-gateway"  # the records' "system"
    require_key: bool = False  # else keys are required once any key exists in the store
    async_records: bool = False  # append after responding (x-kansa-durability: async)
    connect_timeout: float = 10.0
    read_timeout: float = 600.0  # seconds without a byte from the upstream
    max_body_bytes: int = 16 * 1024 * 1024
    # the most an upstream answer may hold once decompressed (JSON or a whole stream);
    # past it the call is cut and recorded as upstream_response_too_large
    max_response_bytes: int = 32 * 1024 * 1024
    inject_stream_usage: bool = True  # ask OpenAI streams for usage, strip it if unasked
    key_refresh_seconds: float = 2.0
    store_retry_seconds: float = 1.0  # after a store failure, refuse at once this long
    max_upstream_connections: int = 1024  # per upstream
    policy: str | None = None  # policy file (kansa.policy.inline): packs and modes enforced
    policy_watch_seconds: float = 0.0  # > 0: reload the policy when its file changes
    admin_token_env: str | None = None  # env variable holding the admin endpoints' token

    @classmethod
    def from_upstream(cls, base_url: str, *, api_key_env: str | None = None,
                      **kw: Any) -> GatewayConfig:
        """One upstream for every model (the zero-config start)."""
        return cls(upstreams=[Upstream(base_url, name="default", api_key_env=api_key_env)], **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GatewayConfig:
        d = dict(d)
        raw = d.pop("upstream", None) or d.pop("upstreams", None) or []
        if not isinstance(raw, list):
            raise KansaError("'upstream' must be a list of tables ([[upstream]] in TOML)")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise KansaError(f"unknown gateway setting(s): {', '.join(sorted(unknown))}")
        ups = []
        for i, u in enumerate(raw):
            if not isinstance(u, dict) or not isinstance(u.get("base_url"), str):
                raise KansaError(f"upstream #{i + 1} needs a base_url")
            u = dict(u)
            bad = set(u) - set(Upstream.__dataclass_fields__)
            if bad:
                raise KansaError(f"upstream #{i + 1}: unknown key(s) {', '.join(sorted(bad))}")
            models = u.pop("models", ["*"])
            if isinstance(models, str):
                models = [models]
            if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
                raise KansaError(f"upstream #{i + 1}: models is a list of patterns")
            u.setdefault("name", u.get("name") or f"upstream{i + 1}")
            ups.append(Upstream(models=tuple(models), **u))
        cfg = cls(upstreams=ups, **d)
        cfg.validate()
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path) -> GatewayConfig:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise KansaError(f"cannot read gateway config {path}: {e}") from None
        data.pop("gateway", None)  # tolerate a [gateway] table holding the settings
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["upstream"] = [dict(u, models=list(u["models"])) for u in d.pop("upstreams")]
        return d

    def validate(self) -> None:
        if not self.upstreams:
            raise KansaError("the gateway needs at least one upstream (--upstream URL or a "
                             "config file with [[upstream]] tables)")
        names = [u.name for u in self.upstreams]
        if len(set(names)) != len(names):
            raise KansaError("upstream names must be unique")
        for u in self.upstreams:
            if not u.base_url.startswith(("http://", "https://")):
                raise KansaError(f"upstream {u.name!r}: base_url must be http(s)://...")
            if u.auth not in ("auto", "bearer", "x-api-key"):
                raise KansaError(f"upstream {u.name!r}: auth is auto, bearer or x-api-key")
        if self.default_upstream is not None and self.default_upstream not in names:
            raise KansaError(f"default_upstream {self.default_upstream!r} is not an upstream")
        if self.max_body_bytes <= 0 or self.read_timeout <= 0 or self.connect_timeout <= 0:
            raise KansaError("timeouts and max_body_bytes must be positive")
        if not isinstance(self.max_response_bytes, int) or self.max_response_bytes <= 0:
            raise KansaError("max_response_bytes must be a positive number of bytes")
        if self.policy_watch_seconds < 0:
            raise KansaError("policy_watch_seconds must not be negative")
