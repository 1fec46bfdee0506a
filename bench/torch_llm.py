#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop bench — PyTorch's side of bench_llm.c: the same causal-LM fine-tuning step (forward,
next-token cross-entropy, backward, AdamW) on the reference modules of
tests/pretrained/hf_reference.py (transformers 4.44's GPT-2 and Llama semantics) at the same
shapes, random ids.

    torch_llm.py gpt2|llama|example [threads] [steps] [repeats] [layers] [batch] [tokens]

example is the shape of examples/text/base (GPT-2, 4 layers, d 192, 4 heads, vocab 4096, 128
positions, tied output layer); `layers` defaults to 4 for it.

Prints one RESULT line like bench_llm's. As there, LORA=r in the environment fine-tunes LoRA
adapters of rank r (alpha 2r) on the attention projections with every other weight frozen;
AUTOCAST=1 runs forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)."""
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pretrained"))
import hf_reference as R  # noqa: E402


class LoRA(torch.nn.Module):
    """y = base(x) + (alpha / r) x A^T B^T, A Kaiming-uniform, B zero (PEFT's), base frozen."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        w = base.weight
        fan_in, fan_out = (w.shape[0], w.shape[1]) if type(base).__name__ == "Conv1D" else \
            (w.shape[1], w.shape[0])
        self.A = torch.nn.Parameter(torch.empty(r, fan_in))
        torch.nn.init.kaiming_uniform_(self.A, a=5 ** 0.5)
        self.B = torch.nn.Parameter(torch.zeros(fan_out, r))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.A.t() @ self.B.t()) * self.scale


def main():
    name = sys.argv[1]
    args = [int(a) for a in sys.argv[2:]]
    defaults = [1, 3, 5, 4 if name == "example" else 12, 4, 128]
    threads, steps, repeats, layers, batch, tokens = (args + defaults[len(args):])[:6]
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    if name == "example":
        cfg = dict(vocab_size=4096, n_positions=128, n_embd=192, n_layer=layers, n_head=4,
                   n_inner=None, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                   layer_norm_epsilon=1e-5)
        model = R.GPT2LMHeadModel(cfg)
    elif name == "gpt2":
        cfg = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=layers, n_head=12,
                   n_inner=None, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                   layer_norm_epsilon=1e-5)
        model = R.GPT2LMHeadModel(cfg)
    else:
        cfg = dict(model_type="llama", vocab_size=32000, hidden_size=768, intermediate_size=2048,
                   num_hidden_layers=layers, num_attention_heads=12, num_key_value_heads=4,
                   max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0)
        model = R.LlamaForCausalLM(cfg)
    model.train()
    vocab = cfg["vocab_size"]
    rank = int(os.environ.get("LORA", "0"))
    if rank > 0:
        for p in model.parameters():
            p.requires_grad_(False)
        targets = ("c_attn",) if name != "llama" else ("q_proj", "v_proj")
        for mod in list(model.modules()):
            for t in targets:
                if hasattr(mod, t):
                    setattr(mod, t, LoRA(getattr(mod, t), rank, 2.0 * rank))
    autocast = os.environ.get("AUTOCAST", "0") == "1"
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, vocab, (batch, tokens))
    mask = torch.ones(batch, tokens)

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(ids, mask)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(),
                                   ids[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        return float(loss)

    loss = step()
    best = 1e30
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        best = min(best, (time.perf_counter() - t0) / steps)
    params = sum(p.numel() for p in model.parameters())
    print(f"RESULT impl=torch model={name} threads={threads} layers={layers} batch={batch} "
          f"tokens={tokens} step_ms={best * 1e3:.1f} tokens_per_s={batch * tokens / best:.1f} "
          f"params={params} loss={loss:.4f} lora={rank} autocast={int(autocast)} "
          f"peak_rss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


if __name__ == "__main__":
    main()
