#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop bench: the PyTorch side of bench/run_vs_torch.sh.

Trains one of the issue-5 models on synthetic data with the same shapes, batch, optimizer and
timing protocol as bench/bench_train.c (warm-up, then the best of `repeats` windows of
`steps` steps) and prints one RESULT line. The thread count is torch.set_num_threads(threads);
OpenBLAS's count comes from OPENBLAS_NUM_THREADS in the environment (set by the driver).

    /usr/bin/python3 bench/torch_train.py MODEL [threads] [steps] [repeats]
"""
import gc
import gzip
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, SEQ, DMODEL, HEADS, FFN, CLASSES = 1000, 64, 128, 4, 512, 10


def peak_rss_kb():
    """VmHWM: the peak RSS since the last reset_peak_rss()."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def fashion_mnist(count):
    """The first `count` training images scaled to [0, 1] and their labels, or None."""
    d = os.environ.get("STROP_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")
    try:
        with gzip.open(os.path.join(d, "train-images-idx3-ubyte.gz")) as f:
            raw = f.read(16 + count * 784)
        with gzip.open(os.path.join(d, "train-labels-idx1-ubyte.gz")) as f:
            lab = f.read(8 + count)
    except OSError:
        return None
    x = torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).float().div_(255.0)
    y = torch.frombuffer(bytearray(lab[8:]), dtype=torch.uint8).long()
    return x.view(count, 1, 28, 28), y


def mlp():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, 10))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class Transformer(nn.Module):
    """Pre-norm encoder (norm_first), exact GELU, no dropout: strop's graph in bench_train.c."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, DMODEL)
        self.pos = nn.Parameter(torch.randn(SEQ, DMODEL) * 0.02)
        self.blocks = nn.ModuleList([
            nn.TransformerEncoderLayer(DMODEL, HEADS, FFN, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(2)])
        self.ln_f = nn.LayerNorm(DMODEL)
        self.head = nn.Linear(DMODEL, CLASSES)

    def forward(self, ids):
        x = self.tok(ids) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x).mean(dim=1))


def main():
    model_name = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batch = 64
    if model_name in ("mlp_sgd", "mlp_adam"):
        model = mlp()
        shape = (784,)
    elif model_name in ("cnn", "cnn_frozen"):
        model = CNN()
        shape = (1, 28, 28)
        if model_name == "cnn_frozen":
            for p in model.features.parameters():
                p.requires_grad_(False)
    elif model_name == "transformer":
        model = Transformer()
        batch = 32
    else:
        sys.exit("torch_train.py: unknown model " + model_name)
    params = [p for p in model.parameters() if p.requires_grad]
    if model_name == "mlp_sgd":
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    elif model_name == "transformer":
        opt = torch.optim.AdamW(params, lr=1e-3)
    else:
        opt = torch.optim.Adam(params, lr=1e-3)
    model.train()

    # the same pool as bench_train.c: 64 batches of Fashion-MNIST (or noise), or tokens
    pool_n = 64
    fm = fashion_mnist(pool_n * batch) if batch == 64 else None
    pool = []
    for b in range(pool_n):
        if model_name == "transformer":
            x = torch.randint(0, VOCAB, (batch, SEQ))
            y = torch.randint(0, CLASSES, (batch,))
        elif fm is not None:
            x = fm[0][b * batch:(b + 1) * batch].clone().view((batch,) + shape)
            y = fm[1][b * batch:(b + 1) * batch].clone()
        else:
            x = torch.rand((batch,) + shape)
            y = torch.randint(0, CLASSES, (batch,))
        pool.append((x, y))
    data = "fashion-mnist" if fm is not None else (
        "synthetic-tokens" if model_name == "transformer" else "synthetic")
    del fm
    gc.collect()
    reset_peak_rss()

    def step(i):
        x, y = pool[i % len(pool)]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return float(loss)

    loss = 0.0
    for s in range(5):
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
    print("RESULT impl=torch model=%s threads=%d blas_threads=%s batch=%d samples_per_s=%.1f "
          "step_ms=%.3f maxrss_kb=%d train_rss_kb=%d blas_core=%s loss=%.4f data=%s" % (
              model_name, threads, os.environ.get("OPENBLAS_NUM_THREADS", "?"), batch,
              batch / best, best * 1e3, rss_kb, train_rss_kb, blas_core(), loss, data))


def blas_core():
    """The kernel set of the OpenBLAS this process loaded (torch's BLAS), or '?'."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "libopenblas" in line}
        for path in sorted(libs):
            fn = ctypes.CDLL(path).openblas_get_corename
            fn.restype = ctypes.c_char_p
            return fn().decode()
    except (OSError, AttributeError):
        pass
    return "?"


if __name__ == "__main__":
    main()
