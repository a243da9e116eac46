"""Streamed answers through the gateway: the usage-only chunk the gateway asked an OpenAI
stream for on the client's behalf is kept from the client.
"""

from __future__ import annotations

import json
import re

_USAGE_ONLY = re.compile(rb'"choices"\s*:\s*\[\s*\]')


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class _UsageStripper:
    """When the gateway asked an OpenAI stream for usage on the client's behalf, drop the
    usage-only chunk (``choices: []``) the client did not ask for. Works on whole events
    (an SSE client acts only on whole events anyway); other bytes pass at once."""

    def __init__(self) -> None:
        self._buf = b""

    def push(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk
        end = -1
        for m in _EVENT_END.finditer(buf):
            end = m.end()
        if end < 0:
            self._buf = buf
            return b""
        complete, self._buf = buf[:end], buf[end:]
        if not _USAGE_ONLY.search(complete):
            return complete
        out = []
        pos = 0
        for m in _EVENT_END.finditer(complete):
            event = complete[pos:m.end()]
            pos = m.end()
            if not (_USAGE_ONLY.search(event) and _is_usage_only(event)):
                out.append(event)
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest


def _is_usage_only(event: bytes) -> bool:
    data = b"\n".join(line[5:].lstrip() for line in event.replace(b"\r", b"\n").split(b"\n")
                      if line.startswith(b"data:"))
    try:
        obj = json.loads(data)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and isinstance(
        obj.get("usage"), dict)
