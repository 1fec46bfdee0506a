#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop bench — peak RSS of a GPT-2-small-shaped full fine-tune step (AdamW, batch x tokens,
random weights of the real shapes, a Hugging Face folder written on the fly) with and without
activation checkpointing, beside PyTorch's reference GPT-2 module (tests/pretrained/
hf_reference.py) with and without torch.utils.checkpoint on each block; and strop's prediction
(Model.step_memory) next to its measured peak. Each configuration runs in its own process so
its peak RSS is its own. Nothing here is a test: no thresholds.

    bench/ckpt_memory.py [build-dir] [layers] [batch] [tokens] [steps]   (build 12 4 128 3)
    bench/ckpt_memory.py build 2 2 64 1                                   a smoke run
    STROP_ONLY=1 bench/ckpt_memory.py ...                                 strop's rows only
    bench/ckpt_memory.py --resnet50 DIR [build-dir] [batch] [steps]       ResNet-50 224², strop only

DIR holds bench_big's ResNet-50 checkpoint (model.safetensors of random weights: bench/
torch_big.py writes it).

Prints one line per configuration: peak RSS (MB), strop's predicted peak of the library's own
memory, seconds per step."""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def gpt2_config(layers, tokens):
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257,
            "n_positions": max(1024, tokens), "n_embd": 768, "n_layer": layers, "n_head": 12,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
            "layer_norm_epsilon": 1e-5}


def run_strop(build, layers, batch, tokens, steps, ckpt):
    os.environ.setdefault("STROP_LIBRARY", os.path.join(build, "libstrop.so"))
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import numpy as np
    import strop
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(gpt2_config(layers, tokens), f)
        with open(os.path.join(d, "model.safetensors"), "wb") as f:  # empty: initialised
            f.write(bytes([8, 0, 0, 0, 0, 0, 0, 0]) + b"{}      ")
        m = strop.Model.from_pretrained(d, strict=False, max_length=tokens, seed=1)
    if ckpt:
        m.checkpointing = "auto"
    plan = m.step_memory(batch, sample_shape=[tokens], optimizer_slots=2)
    est = m.memory_estimate(batch, optimizer_slots=2)  # at max_length = tokens
    opt = strop.Optimizer(m, "adamw", lr=1e-4)
    tr = strop.Trainer(m, opt)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50257, size=(batch, tokens)).astype(np.float32)
    tr.step(ids, ids)
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.step(ids, ids)
    dt = (time.perf_counter() - t0) / steps
    return plan["peak"], sum(est.values()), dt


def run_strop_resnet(build, folder, batch, steps, ckpt):
    """A full fine-tune of ResNet-50 at 224² with AdamW: the predicted peak
    (Model.step_memory), the estimate's parts (Model.memory_estimate) and the seconds a step."""
    os.environ.setdefault("STROP_LIBRARY", os.path.join(build, "libstrop.so"))
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import numpy as np
    import strop
    m = strop.Model.from_pretrained(os.path.join(folder, "model.safetensors"), arch="resnet50",
                                    image_size=224)
    if ckpt:
        m.checkpointing = "auto"
    plan = m.step_memory(batch, optimizer_slots=2)
    est = m.memory_estimate(batch, optimizer_slots=2)
    opt = strop.Optimizer(m, "adamw", lr=1e-4)
    tr = strop.Trainer(m, opt)
    rng = np.random.default_rng(7)
    x = (rng.random((batch, 3, 224, 224)) * 2 - 1).astype(np.float32)
    y = rng.integers(0, 1000, size=(batch,)).astype(np.float32)
    tr.step(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.step(x, y)
    return plan["peak"], sum(est.values()), (time.perf_counter() - t0) / steps


def resnet_main(a):
    folder = a[0]
    build = os.path.abspath(a[1] if len(a) > 1 else "build")
    batch, steps = ([int(x) for x in a[2:]] + [8, 1][len(a[2:]):])[:2]
    print(f"# ResNet-50 224², batch {batch}, AdamW, strop's library in {build}; "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'run':28s} {'peak RSS':>10s} {'predicted':>10s} {'estimate':>10s} {'s/step':>8s}")
    for ckpt in (0, 1):
        r = subprocess.run([sys.executable, __file__, "--resnet-child", folder, build,
                            str(batch), str(steps), str(ckpt)], capture_output=True, text=True)
        line = [x for x in r.stdout.splitlines() if x.startswith("RESULT")]
        name = f"strop {'checkpointed' if ckpt else 'plain'}"
        if r.returncode or not line:
            print(f"{name:28s} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        f = dict(kv.split("=") for kv in line[0].split()[1:])
        print(f"{name:28s} {int(f['rss_kb']) / 1024:8.1f}MB {int(f['predicted']) / 2**20:8.1f}MB "
              f"{int(f['estimate']) / 2**20:8.1f}MB {float(f['s_per_step']):8.3f}")


def run_torch(layers, batch, tokens, steps, ckpt):
    import torch
    import torch.nn.functional as F
    import torch.utils.checkpoint as C
    sys.path.insert(0, os.path.join(ROOT, "tests", "pretrained"))
    import hf_reference as R
    torch.manual_seed(1)
    cfg = gpt2_config(layers, tokens)
    cfg["n_inner"] = None
    model = R.GPT2LMHeadModel(cfg)
    if ckpt:  # every block through torch.utils.checkpoint (non-reentrant)
        for mod in model.modules():
            if isinstance(mod, torch.nn.ModuleList):
                for i, blk in enumerate(mod):
                    fwd = blk.forward
                    blk.forward = (lambda f: lambda *a, **k: C.checkpoint(
                        f, *a, use_reentrant=False, **k))(fwd)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, cfg["vocab_size"], (batch, tokens))
    mask = torch.ones(batch, tokens)

    def step():
        opt.zero_grad()
        logits = model(ids, mask)
        F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), ids.reshape(-1)).backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return 0, 0, (time.perf_counter() - t0) / steps


def child(argv):
    which, build, layers, batch, tokens, steps, ckpt = argv
    layers, batch, tokens, steps, ckpt = map(int, (layers, batch, tokens, steps, ckpt))
    if which == "strop":
        plan, est, dt = run_strop(build, layers, batch, tokens, steps, ckpt)
    else:
        plan, est, dt = run_torch(layers, batch, tokens, steps, ckpt)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    print(f"RESULT rss_kb={rss} predicted={plan} estimate={est} s_per_step={dt:.3f}", flush=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "--resnet-child":
        folder, build, batch, steps, ckpt = sys.argv[2:]
        pred, est, dt = run_strop_resnet(build, folder, int(batch), int(steps), int(ckpt))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"RESULT rss_kb={rss} predicted={pred} estimate={est} s_per_step={dt:.3f}",
              flush=True)
        return None
    if len(sys.argv) > 1 and sys.argv[1] == "--resnet50":
        return resnet_main(sys.argv[2:])
    a = sys.argv[1:]
    build = os.path.abspath(a[0] if a else "build")
    layers, batch, tokens, steps = ([int(x) for x in a[1:]] + [12, 4, 128, 3][len(a[1:]):])[:4]
    print(f"# GPT-2 small shape, {layers} layers, batch {batch} x {tokens} tokens, AdamW; "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}")
    print(f"{'run':28s} {'peak RSS':>10s} {'predicted':>10s} {'estimate':>10s} {'s/step':>8s}")
    which_runs = ("strop",) if os.environ.get("STROP_ONLY") else ("strop", "torch")
    for which in which_runs:
        for ckpt in (0, 1):
            r = subprocess.run([sys.executable, __file__, "--child", which, build, str(layers),
                                str(batch), str(tokens), str(steps), str(ckpt)],
                               capture_output=True, text=True)
            line = [x for x in r.stdout.splitlines() if x.startswith("RESULT")]
            name = f"{which} {'checkpointed' if ckpt else 'plain'}"
            if r.returncode or not line:
                print(f"{name:28s} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
                continue
            f = dict(kv.split("=") for kv in line[0].split()[1:])
            pred, est = int(f["predicted"]), int(f["estimate"])
            print(f"{name:28s} {int(f['rss_kb']) / 1024:8.0f}MB "
                  f"{(f'{pred / 2**20:8.0f}MB' if pred else '       -'):>10s} "
                  f"{(f'{est / 2**20:8.0f}MB' if est else '       -'):>10s} "
                  f"{float(f['s_per_step']):8.3f}")


if __name__ == "__main__":
    main()
