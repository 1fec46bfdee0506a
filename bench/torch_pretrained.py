#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop bench: the PyTorch side of bench/run_pretrained.sh (issue 19's speed targets).

    torch_pretrained.py write OUT ARCH [CLASSES]   torchvision ARCH (weights=None) state_dict
                                                    as safetensors, for both sides to load
    torch_pretrained.py train CHECKPOINT full|frozen [threads] [steps] [repeats]

train: torchvision's resnet18 with the checkpoint's weights (load_state_dict, strict),
fine-tuned at 224x224, batch 16, AdamW lr 1e-3, with the protocol of bench_pretrained.c
(a warm-up, then the best of `repeats` windows of `steps` steps; then one window timing
forward, backward and the optimizer step apart). frozen: every parameter but fc's has
requires_grad False and the trunk is in eval mode (BatchNorm on its running statistics, as
strop_model_freeze does). OpenBLAS's thread count comes from OPENBLAS_NUM_THREADS (set by the
driver); torch.set_num_threads(threads).
"""
import gc
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
sys.path.insert(0, HERE)
import safetensors_np  # noqa: E402
from torch_train import peak_rss_kb, reset_peak_rss  # noqa: E402

BATCH, SIZE, CLASSES, POOL = 16, 224, 1000, 2


def write(out, arch, classes):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
    safetensors_np.save(out, {k: v.detach().numpy() for k, v in model.state_dict().items()})
    print(f"wrote {out}: {arch}, {classes} classes, {os.path.getsize(out) / 1e6:.1f} MB")


def train(ckpt, mode, threads, steps, repeats):
    torch.set_num_threads(threads)
    frozen = mode == "frozen"
    t0 = time.perf_counter()
    model = torchvision.models.resnet18(weights=None, num_classes=CLASSES)
    sd = safetensors_np.load(ckpt)[0]
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    load_s = time.perf_counter() - t0
    del sd
    model.train()
    if frozen:
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith("fc."))
        model.eval()
        model.fc.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    g = torch.Generator().manual_seed(1)
    pool = [(torch.rand(BATCH, 3, SIZE, SIZE, generator=g) * 2 - 1,
             torch.randint(0, CLASSES, (BATCH,), generator=g)) for _ in range(POOL)]
    gc.collect()
    reset_peak_rss()

    def step(i):
        x, y = pool[i % POOL]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return float(loss)

    loss = 0.0
    for s in range(3):
        loss = step(s)
    best, k = 1e30, 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step(k)
            k += 1
        best = min(best, (time.perf_counter() - t0) / steps)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    train_rss_kb = peak_rss_kb()
    tf = tb = to = 0.0
    for _ in range(steps):
        x, y = pool[k % POOL]
        k += 1
        opt.zero_grad(set_to_none=True)
        a = time.perf_counter()
        loss_t = F.cross_entropy(model(x), y)
        b = time.perf_counter()
        loss_t.backward()
        c = time.perf_counter()
        opt.step()
        d = time.perf_counter()
        tf, tb, to = tf + b - a, tb + c - b, to + d - c
    print("RESULT impl=torch model=resnet18%s threads=%d blas_threads=%s batch=%d "
          "samples_per_s=%.2f step_ms=%.1f fwd_ms=%.1f bwd_ms=%.1f opt_ms=%.1f maxrss_kb=%d "
          "train_rss_kb=%d load_s=%.3f loss=%.4f" % (
              "_frozen" if frozen else "", threads, os.environ.get("OPENBLAS_NUM_THREADS", "?"),
              BATCH, BATCH / best, best * 1e3, tf / steps * 1e3, tb / steps * 1e3,
              to / steps * 1e3, rss_kb, train_rss_kb, load_s, loss))


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 1000)
    elif len(sys.argv) >= 4 and sys.argv[1] == "train":
        a = [int(v) for v in sys.argv[4:7]]
        a += [1, 5, 5][len(a):]
        train(sys.argv[2], sys.argv[3], *a)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
