# SPDX-License-Identifier: MIT
"""No leaks over 10,000 create/free cycles of every class (RSS from /proc/self/statm)."""
import gc
import os

import numpy as np
import pytest

from conftest import FASHION, load_strop, rss_pages

strop = load_strop()

CYCLES = 10_000
PAGE = os.sysconf("SC_PAGE_SIZE")
MARGIN = 4 * 1024 * 1024  # bytes of RSS growth allowed (allocator noise)


def measure(cycle, n=CYCLES):
    for _ in range(200):  # warm up allocator pools and caches
        cycle()
    gc.collect()
    before = rss_pages()
    for _ in range(n):
        cycle()
    gc.collect()
    return (rss_pages() - before) * PAGE


X = np.random.default_rng(0).random((64, 8), dtype=np.float32)
Y = (np.arange(64) % 3).astype(np.int64)


def make_model():
    m = strop.Model([8])
    m.add("fc1", "linear", "in_features=8 out_features=16").add("a", "relu")
    m.add("fc2", "linear", "in_features=16 out_features=3")
    return m.finalize(1)


def cycle_tensor():
    t = strop.Tensor(X)
    t.reshape(-1).numpy(copy=False).sum()
    t.close()
    strop.Tensor.zeros([4, 4]).copy()  # freed by the finaliser


def cycle_model_optim_trainer():
    with make_model() as m:
        opt = strop.Optimizer(m, "adam")
        sch = strop.Scheduler(opt, "step", step_size=2)
        with strop.Trainer(m, opt, sch) as tr:
            tr.step(X[:8], Y[:8])
        m["fc2.bias"]
        with m.surgery() as s:
            s.freeze("fc1.*").apply()
        m.forward(X[:2])
        sch.close()
        opt.close()


def cycle_dataset():
    ds = strop.Dataset.from_numpy(X, Y)
    a, b, c = ds.split(0.5, 0.25)
    it = a.batches(8, shuffle=True)
    it.next_batch()
    for d in (ds, a, b, c, it):
        d.close()
    strop.Dataset.from_numpy(X, Y, copy=True).subset([1, 2]).close()


def cycle_callback_dataset():
    ds = strop.Dataset.from_callback(4, lambda i: (np.zeros(2), 0), (2,), (), num_classes=1)
    ds[1]
    ds.close()


def cycle_tuner():
    with strop.Tuner("random") as t:
        t.add_float("x", 0, 1)
        t.add_categorical("k", ["a", "b"])
        tr = t.ask()
        tr["k"]
        t.tell(tr, tr["x"])
        t.run(lambda trial: trial["x"], 2)


def cycle_errors():
    try:
        strop.Tensor.zeros([0])
    except strop.InvalidArgument:
        pass
    try:
        strop.Model.from_yaml("input: [1\n")
    except strop.FormatError:
        pass


def cycle_misc():
    strop.Rng(1).uniform(4)
    with strop.SafetensorsFile(os.path.join(FASHION, "base.safetensors")) as f:
        f.metadata


@pytest.mark.parametrize("cycle", [cycle_tensor, cycle_model_optim_trainer, cycle_dataset,
                                   cycle_callback_dataset, cycle_tuner, cycle_errors,
                                   cycle_misc], ids=lambda f: f.__name__)
def test_no_leak(cycle):
    n = CYCLES if cycle not in (cycle_model_optim_trainer, cycle_tuner) else CYCLES // 2
    grown = measure(cycle, n)
    assert grown < MARGIN, f"RSS grew by {grown / 1e6:.1f} MB over {n} cycles"


def test_nothing_left_lent():
    from strop import _callbacks
    gc.collect()
    assert _callbacks.lent_count() == 0
