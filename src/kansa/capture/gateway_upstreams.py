"""The upstream APIs the gateway forwards to: their origins, keys and which models each
serves.
"""

from __future__ import annotations

import fnmatch
import json
import os
from typing import TYPE_CHECKING, Any, NamedTuple

from kansa.capture.upstream import Origin
from kansa.errors import KansaError

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.capture.gateway_config import GatewayConfig, Upstream
    from kansa.capture.gateway_request import _Incoming, _Route
    from kansa.capture.gateway_wire import Scope


class _Up:
    __slots__ = ("cfg", "origin", "key", "provider")

    def __init__(self, cfg: Upstream) -> None:
        self.cfg = cfg
        try:
            self.origin = Origin(cfg.base_url, ca_file=cfg.ca_file, tls_verify=cfg.tls_verify)
        except (ValueError, OSError) as e:
            raise KansaError(f"upstream {cfg.name!r}: {e}") from None
        self.provider = cfg.provider
        self.key: bytes | None = None
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env, "").strip()
            if not key:
                raise KansaError(
                    f"upstream {cfg.name!r}: environment variable {cfg.api_key_env} is not set"
                )
            if not key.isprintable() or not key.isascii():
                raise KansaError(f"upstream {cfg.name!r}: the key in {cfg.api_key_env} holds "
                                 "characters an HTTP header cannot carry")
            self.key = key.encode()


class Upstreams:
    """The configured upstreams and which serves a model (the first whose patterns match,
    else the default: the one named, or the first with a ``*`` pattern)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.all = [_Up(u) for u in config.upstreams]
        self.default: _Up | None = None
        for up in self.all:
            if (config.default_upstream is not None and up.cfg.name == config.default_upstream) \
                    or (config.default_upstream is None and "*" in up.cfg.models):
                self.default = up
                break
        self._by_model: dict[str, _Up | None] = {}

    def for_model(self, model: str | None) -> _Up | None:
        if model is None:
            return self.default
        try:
            return self._by_model[model]
        except KeyError:
            pass
        found = self.default
        for up in self.all:
            if any(fnmatch.fnmatchcase(model, p) for p in up.cfg.models):
                found = up
                break
        if len(self._by_model) > 4096:
            self._by_model.clear()
        self._by_model[model] = found
        return found


class _Outgoing(NamedTuple):
    """The request as it goes upstream."""

    method: bytes
    target: bytes  # path (below the upstream's base URL) and query
    headers: list[tuple[bytes, bytes]]
    body: bytes
    strip_usage: bool  # the gateway asked a stream for usage: keep that chunk from the client


def _outgoing(scope: Scope, route: _Route, up: _Up, inc: _Incoming, req: Any, body: bytes, *,
              inject_usage: bool, caller_auth: bool) -> _Outgoing:
    """What goes upstream: an OpenAI stream asked for its usage (``inject_usage``), the
    upstream's key (or, with ``caller_auth`` and no key of its own, the caller's) and the
    path as the client encoded it."""
    strip_usage = False
    if (inject_usage and isinstance(req, dict) and req.get("stream") is True
            and route.shape == "openai" and route.operation in ("chat", "text_completion")
            and route.suffix != "/responses"):
        so = req.get("stream_options")
        if so is None or (isinstance(so, dict) and "include_usage" not in so):
            body = json.dumps({**req, "stream_options": dict(so or {}, include_usage=True)}
                              ).encode()
            strip_usage = True
    headers = inc.forward
    if route.method == "POST" and not inc.has_content_type:
        headers.append((b"content-type", b"application/json"))
    if up.key is not None:
        how = up.cfg.auth
        if how == "auto":
            how = "x-api-key" if route.shape == "anthropic" else "bearer"
        headers.append((b"x-api-key", up.key) if how == "x-api-key"
                       else (b"authorization", b"Bearer " + up.key))
    elif caller_auth:
        headers.extend(inc.caller_auth)  # open gateway, no upstream key: the caller's own
    if route.suffix.startswith("/models/"):  # the id as the client encoded it
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        target = raw[3:]
    else:
        target = route.suffix.encode()
    qs = scope.get("query_string")
    if qs:
        target += b"?" + qs
    return _Outgoing(scope["method"].encode(), target, headers, body, strip_usage)
