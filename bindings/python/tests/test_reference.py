# SPDX-License-Identifier: MIT
"""End to end: the same fine-tune from numpy arrays through the bindings and from C
(c_reference.c, compiled here against the library under test) gives bit-identical weights."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import HERE, ROOT, load_strop

strop = load_strop()
from strop import _lib  # noqa: E402


@pytest.fixture(scope="module")
def c_output(tmp_path_factory):
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        pytest.skip("no C compiler")
    libpath = os.path.realpath(_lib.library_path)
    libdir = os.path.dirname(libpath)
    exe = str(tmp_path_factory.mktemp("cref") / "c_reference")
    # link the exact file the bindings loaded
    cmd = [cc, "-std=c11", "-O2", os.path.join(HERE, "c_reference.c"),
           "-I", os.path.join(ROOT, "include"), libpath, f"-Wl,-rpath,{libdir}", "-o", exe]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([exe], capture_output=True, text=True,
                       env=dict(os.environ, LD_LIBRARY_PATH=libdir))
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts[0] == "loss_a":
            out["loss_a"] = np.array([int(parts[1], 16)], np.uint32)
        else:
            out[(parts[0], parts[1])] = np.array([int(v, 16) for v in parts[2:]], np.uint32)
    return out


def build(strop):
    m = strop.Model([8])
    m.add("fc1", "linear", "in_features=8 out_features=16")
    m.add("act", "relu")
    m.add("fc2", "linear", "in_features=16 out_features=3")
    return m.finalize(seed=42)


def bits(a):
    return np.ascontiguousarray(a, np.float32).reshape(-1).view(np.uint32)


def test_manual_steps_equal_c(c_output, toy_data):
    x, y = toy_data  # float32 x (wrapped in place); int64 labels (converted)
    m = build(strop)
    tr = strop.Trainer(m, strop.Optimizer(m, "adam", lr=0.01))
    for s in range(30):
        off = (s * 32) % 96
        loss = tr.step(x[off:off + 32], y[off:off + 32])
    np.testing.assert_array_equal(bits([loss]), c_output["loss_a"])
    for name in m.tensor_names():
        np.testing.assert_array_equal(bits(m[name]), c_output[("a", name)], err_msg=name)


def test_fit_loop_equals_c(c_output, toy_data):
    x, y = toy_data
    m = build(strop)
    opt = strop.Optimizer(m, "sgd", lr=0.05, momentum=0.9)
    sch = strop.Scheduler(opt, "cosine", T_max=24)
    tr = strop.Trainer(m, opt, sch)
    ds = strop.Dataset.from_numpy(x, y, num_classes=3)
    seen = []
    tr.fit(ds.batches(16, seed=3, shuffle=True), epochs=4, progress=seen.append)
    assert seen and seen[-1].epoch == 3
    for name in m.tensor_names():
        np.testing.assert_array_equal(bits(m[name]), c_output[("b", name)], err_msg=name)


def test_training_changed_the_weights(c_output):
    m = build(strop)
    assert not np.array_equal(bits(m["fc2.bias"]), c_output[("a", "fc2.bias")])
