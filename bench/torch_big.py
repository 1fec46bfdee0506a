#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop bench — issue 21's real-size rows, the PyTorch side of bench/run_big_vs_torch.sh
(bench/bench_big.c is strop's): random weights of the real shapes written as Hugging Face /
torchvision checkpoints for both sides to load, and PyTorch's fine-tuning step on the same shapes (its own random initialisation: reading
the file with the numpy reader would add its copies to the peak RSS measured).

    torch_big.py write FAMILY DIR [LAYERS]
        FAMILY resnet50 | bert | gpt2 | tinyllama: DIR/config.json (not for resnet50) and
        DIR/model.safetensors (tinyllama in BF16, the others FP32), random weights drawn by the
        modules' own initialisation. LAYERS (default: the real depth) shrinks a smoke run;
        resnet50 always has its 50 layers.
    torch_big.py train ROW DIR [threads] [steps] [repeats] [autocast 0|1]
        ROW resnet50_full | resnet50_frozen (224 x 224, batch 8; SIZE= in the environment
        shrinks the images) | bert_full (sequence classification, 8 x 128) | gpt2_full |
        gpt2_lora (4 x 128, LoRA r8 on c_attn) | tinyllama_lora (1 x 256, LoRA r8 on q_proj
        and v_proj; the FP32 weights, which autocast runs in BF16); TOKENS= / BATCH= in the
        environment override the shape. Prints one RESULT line: samples/s or tokens/s, the step
        time (best of `repeats` windows of `steps` steps after a warm-up) and the peak RSS.

The modules are tests/pretrained/hf_reference.py's (transformers' semantics; the package is not
installed here) and torchvision's resnet50. OPENBLAS_NUM_THREADS comes from the driver;
torch.set_num_threads(threads)."""
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pretrained"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
import hf_reference as R  # noqa: E402
import safetensors_np  # noqa: E402
from torch_llm import LoRA  # noqa: E402

COMMON = {"torch_dtype": "float32", "transformers_version": "4.44.2"}


def config(family, layers):
    if family == "bert":
        return dict(COMMON, architectures=["BertForSequenceClassification"], model_type="bert",
                    vocab_size=30522, hidden_size=768, num_hidden_layers=layers or 12,
                    num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                    max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02,
                    layer_norm_eps=1e-12, pad_token_id=0, position_embedding_type="absolute",
                    classifier_dropout=None, id2label={"0": "A", "1": "B"},
                    label2id={"A": 0, "B": 1})
    if family == "gpt2":
        return dict(COMMON, architectures=["GPT2LMHeadModel"], model_type="gpt2",
                    vocab_size=50257, n_positions=1024, n_embd=768, n_layer=layers or 12,
                    n_head=12, n_inner=None, activation_function="gelu_new", resid_pdrop=0.0,
                    embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                    scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
                    reorder_and_upcast_attn=False)
    if family == "tinyllama":  # TinyLlama-1.1B's config.json
        return dict(COMMON, architectures=["LlamaForCausalLM"], model_type="llama",
                    vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                    num_hidden_layers=layers or 22, num_attention_heads=32,
                    num_key_value_heads=4, hidden_act="silu", max_position_embeddings=2048,
                    rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                    attention_bias=False, mlp_bias=False, torch_dtype="bfloat16")
    raise SystemExit("torch_big.py: unknown family " + family)


def build(family, cfg):
    if family == "bert":
        return R.BertForSequenceClassification(dict(cfg, num_labels=2))
    if family == "gpt2":
        return R.GPT2LMHeadModel(cfg)
    return R.LlamaForCausalLM(cfg)


def write(family, out, layers):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1)
    path = os.path.join(out, "model.safetensors")
    if family == "resnet50":
        import torchvision
        sd = torchvision.models.resnet50(weights=None).state_dict()
        safetensors_np.save(path, {k: v.numpy() for k, v in sd.items()},
                            metadata={"format": "pt"})
        return
    cfg = config(family, layers)
    with torch.no_grad():
        model = build(family, cfg)
        sd = {k: v.numpy() for k, v in model.state_dict().items()
              if not (family == "gpt2" and (k == "lm_head.weight" or k.endswith(".attn.bias")
                                            or k.endswith(".attn.masked_bias")))}
    floats = [k for k, v in sd.items() if v.dtype == np.float32] if family == "tinyllama" else ()
    safetensors_np.save(path, sd, metadata={"format": "pt"}, bf16=floats)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def train(row, d, threads, steps, repeats, autocast):
    torch.set_num_threads(threads)
    torch.manual_seed(2)
    family = row.split("_")[0]
    lora = row.endswith("_lora")
    if family == "resnet50":
        import torchvision
        model = torchvision.models.resnet50(weights=None)
        size = int(os.environ.get("SIZE", "224"))
        batch = int(os.environ.get("BATCH", "8"))
        x = torch.rand(batch, 3, size, size) * 2 - 1
        y = torch.randint(0, 1000, (batch,))
        if row.endswith("_frozen"):
            for n, p in model.named_parameters():
                p.requires_grad_(n.startswith("fc."))
        model.train()
        if row.endswith("_frozen"):  # the trunk's BatchNorms on their running statistics
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        per, unit = batch, "samples_per_s"

        def loss_fn():
            return F.cross_entropy(model(x), y)
    else:
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        model = build(family, cfg)
        batch, tokens = {"bert": (8, 128), "gpt2": (4, 128), "tinyllama": (1, 256)}[family]
        batch = int(os.environ.get("BATCH", batch))
        tokens = int(os.environ.get("TOKENS", tokens))
        vocab = cfg["vocab_size"]
        if lora:
            for p in model.parameters():
                p.requires_grad_(False)
            targets = ("c_attn",) if family == "gpt2" else ("q_proj", "v_proj")
            for mod in list(model.modules()):
                for t in targets:
                    if hasattr(mod, t):
                        setattr(mod, t, LoRA(getattr(mod, t), 8, 16.0))
        model.train()
        ids = torch.randint(1, vocab, (batch, tokens))
        mask = torch.ones(batch, tokens)
        labels = torch.randint(0, 2, (batch,))
        per, unit = batch * tokens, "tokens_per_s"

        def loss_fn():
            out = model(ids, mask)
            if family == "bert":
                return F.cross_entropy(out.float(), labels)
            return F.cross_entropy(out[:, :-1].reshape(-1, vocab).float(),
                                   ids[:, 1:].reshape(-1))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn()
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
    print(f"RESULT impl=torch row={row} threads={threads} autocast={int(autocast)} "
          f"step_ms={best * 1e3:.1f} {unit}={per / best:.2f} loss={loss:.4f} "
          f"peak_rss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    elif len(sys.argv) >= 4 and sys.argv[1] == "train":
        a = [int(v) for v in sys.argv[4:]]
        threads, steps, repeats, autocast = (a + [1, 3, 3, 0][len(a):])[:4]
        train(sys.argv[2], sys.argv[3], threads, steps, repeats, bool(autocast))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
