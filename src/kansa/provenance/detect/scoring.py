"""Score one text with one model: tokenise, cap at ``max_tokens``, accumulate features."""

from __future__ import annotations

import numpy as np

from kansa.provenance.detect.errors import DetectInputError
from kansa.provenance.detect.features import Accumulator, Features
from kansa.provenance.detect.runtime import Model

__all__ = ["MAX_TOKENS", "MIN_TOKENS", "text_features"]

MAX_TOKENS = 200  # tokens scored per text (the first ones); longer texts are truncated
MIN_TOKENS = 16  # below this a text is scored but its verdict says it is too short


def text_features(model: Model, text: str, max_tokens: int = MAX_TOKENS
                  ) -> tuple[Features, bool]:
    """The features of ``text`` under ``model`` and whether it was truncated."""
    tokens = model.tokenize(text)
    truncated = len(tokens) > max_tokens + 1
    tokens = tokens[:max_tokens + 1]
    if len(tokens) < 2:
        raise DetectInputError("the text has fewer than two tokens: nothing to score")
    acc = Accumulator()
    pos = 1
    for block in model.rows(tokens):
        acc.add(block, np.asarray(tokens[pos:pos + block.shape[0]], dtype=np.int64))
        pos += block.shape[0]
    return acc.features(), truncated
