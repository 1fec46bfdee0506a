#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop bench — the overhead of the Python bindings on a training step of the small CNN
(conv 32, conv 64, each with ReLU and 2x2 max-pool, linear 3136->128->10, batch 64, Adam):
Trainer.step(numpy x, numpy y) against the same loop in C (bench/bench_c_step.c), both on the
same libstrop.so. Target: Python/C - 1 < 5%.

  STROP_LIBRARY=build/libstrop.so /usr/bin/python3 bench/bench_python_overhead.py [steps] [rounds]

The C program is compiled here against the same shared library the bindings load (so both
sides run identical code; the CMake-built bench_c_step links the static library). Rounds
alternate C and Python and the best round's median is compared, to damp machine noise.
Also reported: the bare cost of the Python layer per step (the same calls with the C step
itself replaced by a no-op), which is what the bindings add.
"""
import atexit
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import numpy as np  # noqa: E402

import strop  # noqa: E402
from strop import _lib  # noqa: E402
from strop._handle import guard  # noqa: E402


def build_model():
    m = strop.Model([1, 28, 28])
    m.add("c1", "conv2d", "in_channels=1 out_channels=32 kernel_size=3 padding=1")
    m.add("r1", "relu").add("p1", "maxpool2d", "kernel_size=2")
    m.add("c2", "conv2d", "in_channels=32 out_channels=64 kernel_size=3 padding=1")
    m.add("r2", "relu").add("p2", "maxpool2d", "kernel_size=2")
    m.add("flat", "flatten")
    m.add("fc1", "linear", "in_features=3136 out_features=128").add("r3", "relu")
    m.add("fc2", "linear", "in_features=128 out_features=10")
    return m.finalize(1)


def python_round(steps, warm):
    m = build_model()
    opt = strop.Optimizer(m, "adam", lr=1e-3)
    tr = strop.Trainer(m, opt)
    with strop.Rng(0) as r:
        x = r.uniform(64 * 784).reshape(64, 1, 28, 28)
    y = (np.arange(64) % 10).astype(np.float32)
    ts = []
    for s in range(warm + steps):
        t0 = time.perf_counter()
        tr.step(x, y)
        if s >= warm:
            ts.append(time.perf_counter() - t0)
    for o in (tr, opt, m):
        o.close()
    return float(np.median(ts))


def layer_cost(n=20000):
    """Seconds per Trainer.step spent in Python and ctypes alone: the step with the C call
    replaced by a no-op returning STROP_OK (argument conversion, two tensor wraps and frees,
    the status check)."""
    m = strop.Model([4])
    m.add("fc", "linear", "in_features=4 out_features=2").finalize()
    opt = strop.Optimizer(m, "sgd")
    tr = strop.Trainer(m, opt)
    x = np.zeros((64, 1, 28, 28), np.float32)
    y = np.zeros(64, np.float32)
    lib = _lib.lib
    # Trainer.step calls strop_trainer_step_ext; the no-op goes inside the bindings' guard
    # (strop._handle.guard: the objects' locks), which is part of the layer's cost
    real = lib.strop_trainer_step_ext

    class Noop:
        def __call__(self, *a):
            return 0
    lib.strop_trainer_step_ext = guard(Noop())
    try:
        for _ in range(1000):
            tr.step(x, y)
        t0 = time.perf_counter()
        for _ in range(n):
            tr.step(x, y)
        return (time.perf_counter() - t0) / n
    finally:
        lib.strop_trainer_step_ext = real


def build_c(libpath):
    prebuilt = None
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc:
        tmp = tempfile.mkdtemp(prefix="strop_bench_c_step_")
        atexit.register(shutil.rmtree, tmp, True)  # the program runs until main() returns
        exe = os.path.join(tmp, "bench_c_step")
        libdir = os.path.dirname(libpath)
        r = subprocess.run([cc, "-std=c11", "-O2", os.path.join(HERE, "bench_c_step.c"), "-I",
                            os.path.join(ROOT, "include"), libpath, f"-Wl,-rpath,{libdir}",
                            "-o", exe], capture_output=True, text=True)
        if r.returncode == 0:
            return exe, "compiled against " + libpath
        print(r.stderr, file=sys.stderr)
    for d in sorted(os.listdir(ROOT)):
        p = os.path.join(ROOT, d, "bench", "bench_c_step")
        if d.startswith("build") and os.access(p, os.X_OK):
            prebuilt = p
            break
    if prebuilt is None:
        sys.exit("bench_python_overhead: no C compiler and no built bench_c_step")
    return prebuilt, "prebuilt (static library) " + prebuilt


def c_round(exe, steps, warm):
    r = subprocess.run([exe, str(steps), str(warm)], capture_output=True, text=True, check=True)
    return float(re.search(r"median_ms ([0-9.]+)", r.stdout).group(1)) / 1e3


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    warm = 5
    libpath = os.path.realpath(_lib.library_path)
    exe, how = build_c(libpath)
    print(f"bench_python_overhead: small CNN, batch 64, Adam; {steps} steps x {rounds} rounds, "
          f"median per round; library {libpath} ({strop.version()}); "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}")
    print(f"C loop: {how}")
    cs, ps = [], []
    for _ in range(rounds):
        cs.append(c_round(exe, steps, warm))
        ps.append(python_round(steps, warm))
    c, p = min(cs), min(ps)
    layer = layer_cost()
    print(f"C      step: {c * 1e3:9.3f} ms   (rounds: {', '.join(f'{v * 1e3:.3f}' for v in cs)})")
    print(f"Python step: {p * 1e3:9.3f} ms   (rounds: {', '.join(f'{v * 1e3:.3f}' for v in ps)})")
    print(f"ratio Python/C: {p / c:.4f}  -> overhead {100 * (p / c - 1):+.2f}% (target < 5%)")
    print(f"Python layer alone: {layer * 1e6:.1f} us per step = {100 * layer / c:.3f}% of the "
          f"C step")
    return 0 if p / c < 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
