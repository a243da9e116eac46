"""Make the golden log-probabilities the detector's runtime is checked against.

An independent reference: a plain numpy forward pass of a llama-architecture GGUF
(SmolLM2-135M), weights dequantised by the ``gguf`` package (llama.cpp's own Python
reader), no llama.cpp code on the compute path. It is slow (seconds for a short text)
and right, which is what an oracle needs. Run once; the output is committed and
tests/test_detect_golden.py compares the runtime's log-probabilities with it, so a silent
numeric fault in the runtime (ik_llama.cpp with micro-batches of 32 tokens or more on
Q4_1 weights) fails CI.

Tokens come from the runtime's tokenizer and are stored in the file: the test checks the
runtime still tokenises the text the same way, and the reference needs no tokenizer.

    python bench/detect_golden.py --out tests/data/detect_golden_smollm2.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

TEXT = (
    "The committee met on Thursday to review the annual budget. After a long discussion, "
    "members agreed to increase funding for public libraries and to postpone the decision "
    "on the new bridge until the engineers deliver their report in the spring. Several "
    "residents spoke in favour of the plan, while others worried about rising taxes."
)


def _field(reader: Any, key: str) -> Any:
    f = reader.fields[key]
    return f.parts[f.data[0]].tolist()[0]


def forward_llama(path: str, tokens: list[int]) -> np.ndarray:
    """log p(tokens[t] | tokens[:t]) for t >= 1, float64."""
    import gguf

    r = gguf.GGUFReader(path)
    W = {t.name: t for t in r.tensors}

    def w(name: str) -> np.ndarray:
        t = W[name]
        return np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64)

    n_layer = _field(r, "llama.block_count")
    n_head = _field(r, "llama.attention.head_count")
    n_kv = _field(r, "llama.attention.head_count_kv")
    d = _field(r, "llama.embedding_length")
    eps = _field(r, "llama.attention.layer_norm_rms_epsilon")
    base = _field(r, "llama.rope.freq_base")
    hd = d // n_head
    T = len(tokens)
    emb = w("token_embd.weight")  # (vocab, d)
    x = emb[tokens]

    def rms(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * g

    # llama.cpp's "normal" RoPE rotates adjacent pairs (the GGUF converter permuted the
    # q/k rows of the Hugging Face weights to match)
    inv = base ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(v: np.ndarray) -> np.ndarray:  # (T, heads, hd)
        a, b = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2] = a * cos[:, None, :] - b * sin[:, None, :]
        out[..., 1::2] = a * sin[:, None, :] + b * cos[:, None, :]
        return out

    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(n_layer):
        p = f"blk.{i}."
        h = rms(x, w(p + "attn_norm.weight"))
        q = rope((h @ w(p + "attn_q.weight").T).reshape(T, n_head, hd))
        k = rope((h @ w(p + "attn_k.weight").T).reshape(T, n_kv, hd))
        v = (h @ w(p + "attn_v.weight").T).reshape(T, n_kv, hd)
        rep = n_head // n_kv
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, d)
        x = x + o @ w(p + "attn_output.weight").T
        h = rms(x, w(p + "ffn_norm.weight"))
        g = h @ w(p + "ffn_gate.weight").T
        u = h @ w(p + "ffn_up.weight").T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w(p + "ffn_down.weight").T
    x = rms(x, w("output_norm.weight"))
    out = w("output.weight") if "output.weight" in W else emb  # tied embeddings
    logits = x[:-1] @ out.T
    lz = np.logaddexp.reduce(logits, axis=1)
    return logits[np.arange(T - 1), tokens[1:]] - lz


def main() -> None:
    from kansa.provenance.detect.runtime import Model, model_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    name = "smollm2-135m"
    path = str(model_path(name))
    m = Model(name)
    tokens = m.tokenize(TEXT)
    ref = forward_llama(path, tokens)
    run = m.logprobs(tokens)
    print(f"{len(tokens)} tokens; runtime vs reference: max |diff| "
          f"{np.abs(run - ref).max():.4f}, corr {np.corrcoef(run, ref)[0, 1]:.6f}")
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump({"model": name, "gguf": path.rsplit("/", 1)[-1], "text": TEXT,
                   "tokens": tokens, "reference": "bench/detect_golden.py (numpy over gguf)",
                   "logprobs": [round(float(v), 5) for v in ref]}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
