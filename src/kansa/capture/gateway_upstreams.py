"""The upstream APIs the gateway forwards to: their origins, keys and which models each
serves.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kansa.capture.upstream import Origin
from kansa.errors import KansaError

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.capture.gateway_config import Upstream


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
