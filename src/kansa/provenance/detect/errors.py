"""The detector's errors (drawn in the tree of kansa/errors.py)."""

from __future__ import annotations

from kansa.errors import KansaError

__all__ = ["DetectError", "DetectInputError", "DetectUnavailableError"]


class DetectError(KansaError):
    """AI-text detection cannot score this text or cannot run."""


class DetectInputError(DetectError):
    """The input is not text kansa can score: empty, binary or too large."""


class DetectUnavailableError(DetectError):
    """The optional extra ``kansa[detect]`` (runtime and models) is not installed."""
