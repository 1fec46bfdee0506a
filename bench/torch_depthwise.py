#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop bench — PyTorch's depthwise conv2d (groups = channels) forward+backward on the shapes
of bench_depthwise.c (MobileNetV2's depthwise layers, batch 16, 224x224 input).
Usage: torch_depthwise.py [iters] [threads]."""
import sys
import time

import torch

CASES = [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (384, 14, 1),
         (576, 14, 1), (576, 14, 2), (960, 7, 1)]


def main():
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    torch.set_num_threads(threads)
    total = 0.0
    print(f"torch depthwise conv2d 3x3 pad 1, batch 16, forward+backward, {threads} thread(s)")
    for c, hw, s in CASES:
        conv = torch.nn.Conv2d(c, c, 3, s, 1, groups=c)
        x = torch.rand(16, c, hw, hw, requires_grad=True)
        best = 1e30
        for _ in range(iters):
            t0 = time.perf_counter()
            y = conv(x)
            y.backward(torch.ones_like(y))
            best = min(best, time.perf_counter() - t0)
        total += best
        print(f"{hw}x{hw} s{s} c{c}".ljust(22), f"{best * 1e3:12.2f}")
    print("total".ljust(22), f"{total * 1e3:12.2f}")


if __name__ == "__main__":
    main()
