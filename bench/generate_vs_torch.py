#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop bench — generation tokens/s, side by side in one process with the same thread count
(issue 20's target: with its key/value cache strop is at least 2x a PyTorch loop that re-runs
the growing prefix, and at least equal to a PyTorch loop with a cache):

  strop        Model.generate (strop_generate: one position per new token), greedy;
  torch_prefix the reference GPT-2 of tests/pretrained/hf_reference.py (transformers 4.44's
               semantics) re-run over the whole prefix for each token, argmax;
  torch_cache  the same module's weights driven position by position with per-layer key/value
               tensors (what transformers' past_key_values does), argmax.

The model is GPT-2-small-shaped (768 wide, 12 heads, vocab 50257, 1024 positions) with random
weights written as a Hugging Face folder and loaded by strop_model_load_pretrained; all three
produce the same ids (checked and printed).

    bench/generate_vs_torch.py [--build build] [--threads 1] [--layers 12] [--prompt 32]
                               [--tokens 64] [--repeats 3]

Prints one line per contender (best of the repeats: tokens/s, seconds) and the ratios."""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "pretrained"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
import hf_reference as R  # noqa: E402
import safetensors_np  # noqa: E402


def torch_prefix(model, prompt, n):
    seq = torch.tensor([prompt], dtype=torch.long)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(seq, None)[0, -1]
            nxt = int(torch.argmax(logits))
            out.append(nxt)
            seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
    return out


def torch_cache(model, prompt, n):
    """GPT-2 with past keys and values: each step feeds only the new positions"""
    tr = model.transformer
    past = [None] * len(tr.h)
    ids = torch.tensor([prompt], dtype=torch.long)
    pos0, out = 0, []
    with torch.no_grad():
        for _ in range(n):
            t = ids.size(1)
            x = tr.wte(ids) + tr.wpe(torch.arange(pos0, pos0 + t)[None, :])
            for i, blk in enumerate(tr.h):
                a = blk.attn
                q, k, v = a.c_attn(blk.ln_1(x)).split(a.embed_dim, dim=2)
                q, k, v = a.split(q), a.split(k), a.split(v)
                if past[i] is not None:
                    k = torch.cat([past[i][0], k], dim=2)
                    v = torch.cat([past[i][1], v], dim=2)
                past[i] = (k, v)
                w = torch.matmul(q, k.transpose(-1, -2)) / (a.head_dim ** 0.5)
                if t > 1:  # the new rows see the cached keys and those up to themselves
                    big = k.size(2)
                    keep = torch.ones(t, big, dtype=torch.bool).tril(big - t)
                    w = w.masked_fill(~keep, torch.finfo(w.dtype).min)
                y = torch.matmul(F.softmax(w, dim=-1), v)
                y = y.permute(0, 2, 1, 3).reshape(1, t, a.embed_dim)
                x = x + a.c_proj(y)
                x = x + blk.mlp(blk.ln_2(x))
            logits = model.lm_head(tr.ln_f(x[:, -1]))[0]
            nxt = int(torch.argmax(logits))
            out.append(nxt)
            pos0 += t
            ids = torch.tensor([[nxt]])
    return out


def best_of(repeats, fn):
    best, ids = None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        ids = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    os.environ.setdefault("STROP_LIBRARY", os.path.join(a.build, "libstrop.so"))
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import strop

    torch.set_num_threads(a.threads)
    strop.set_num_threads(a.threads)
    torch.manual_seed(1)
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257,
           "n_positions": 1024, "n_embd": 768, "n_layer": a.layers, "n_head": 12,
           "n_inner": None, "activation_function": "gelu_new", "resid_pdrop": 0.0,
           "embd_pdrop": 0.0, "attn_pdrop": 0.0, "layer_norm_epsilon": 1e-5}
    model = R.GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    model.eval()
    prompt = torch.randint(0, cfg["vocab_size"], (a.prompt,)).tolist()
    with tempfile.TemporaryDirectory(prefix="strop_gen_bench_") as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()
              if k != "lm_head.weight"}
        safetensors_np.save(os.path.join(d, "model.safetensors"), sd, metadata={"format": "pt"})
        m = strop.Model.from_pretrained(d)
    s_t, s_ids = best_of(a.repeats, lambda: m.generate(prompt, a.tokens))
    p_t, p_ids = best_of(a.repeats, lambda: torch_prefix(model, prompt, a.tokens))
    c_t, c_ids = best_of(a.repeats, lambda: torch_cache(model, prompt, a.tokens))
    print(f"GPT-2 shape: {a.layers} layers, prompt {a.prompt}, {a.tokens} new tokens, "
          f"{a.threads} thread(s), best of {a.repeats}")
    for name, t in (("strop (cache)", s_t), ("torch (prefix)", p_t), ("torch (cache)", c_t)):
        print(f"  {name:16s} {a.tokens / t:8.1f} tokens/s  {t:7.3f} s")
    print(f"  strop / torch prefix: {p_t / s_t:.2f}x   strop / torch cache: {c_t / s_t:.2f}x")
    same = s_ids == p_ids == c_ids
    print(f"  same ids: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
