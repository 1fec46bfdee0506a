# SPDX-License-Identifier: MIT
"""Threads: the bindings keep the library's one-thread-at-a-time rule for the host
(strop._handle.guard). A close() on another thread during a call frees the C object after
the call; a second thread's call into an object in use, or into one borrowing from it, waits;
a fill callback on the prefetch thread that calls into an object in use gets StateError
instead of waiting forever. Each scenario runs in a child process, so that a crash (the
behaviour before the guard) fails its test instead of ending the run.

Run: STROP_LIBRARY=build/libstrop.so /usr/bin/python3 -m pytest bindings/python/tests/test_concurrency.py
"""
import os
import subprocess
import sys
import textwrap

from conftest import PKG_ROOT, load_strop

load_strop()

PRELUDE = """
import threading
import numpy as np
import strop

def mlp():
    m = strop.Model([8])
    m.add("fc1", "linear", "out_features=64")
    m.add("act", "relu")
    m.add("fc2", "linear", "out_features=3")
    m.finalize(seed=1)
    return m

rng = np.random.default_rng(0)
x = rng.standard_normal((256, 8)).astype(np.float32)
y = rng.integers(0, 3, 256)
"""


def run(body, timeout=120):
    env = dict(os.environ, PYTHONPATH=PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = PRELUDE + textwrap.dedent(body)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_close_during_a_call_frees_after_it():
    """the main thread closes the model, optimizer, trainer and data while another thread is
    inside fit (held in its progress callback); fit's training runs to its end on the live
    objects; reading the history afterwards finds the trainer closed"""
    out = run("""
        m = mlp()
        opt = strop.Optimizer(m, "adam", lr=0.01)
        tr = strop.Trainer(m, opt)
        ds = strop.Dataset.from_numpy(x, y)
        inside, closed = threading.Event(), threading.Event()
        result = {}
        reports = []

        def progress(p):
            reports.append(p)
            if not inside.is_set():
                inside.set()
                assert closed.wait(30)

        def train():
            try:
                result["hist"] = tr.fit(ds.batches(16), epochs=3, progress=progress)
            except BaseException as e:
                result["err"] = e

        t = threading.Thread(target=train)
        t.start()
        assert inside.wait(30)
        for o in (tr, opt, m, ds):
            o.close()
        closed.set()
        t.join(60)
        assert not t.is_alive()
        assert isinstance(result.get("err"), strop.StateError), result
        assert str(result["err"]) == "Trainer is closed"
        last = reports[-1]
        assert (last.phase, last.epoch, last.global_step) == ("epoch_end", 2, 3 * 256 // 16)
        assert np.isfinite(last.loss)
        assert m.closed and tr.closed
        try:
            m.forward(x[:2])
        except strop.StateError as e:
            print("closed:", e)
        """)
    assert "closed: Model is closed" in out


def test_second_thread_waits_for_the_first():
    """while one thread is inside fit, another thread's forward of the same model, and its
    step of the same trainer, wait until fit's call returns, then run"""
    run("""
        m = mlp()
        opt = strop.Optimizer(m, "adam", lr=0.01)
        tr = strop.Trainer(m, opt)
        ds = strop.Dataset.from_numpy(x, y)
        inside, go = threading.Event(), threading.Event()
        reports, done = [], []

        def progress(p):
            reports.append(p.phase)
            if not inside.is_set():
                inside.set()
                assert go.wait(30)

        def other():
            m.forward(x[:4])
            done.append(("forward", len(reports)))
            tr.step(x[:16], y[:16])
            done.append(("step", len(reports)))

        t1 = threading.Thread(target=tr.fit, args=(ds.batches(16),),
                              kwargs={"epochs": 1, "progress": progress})
        t1.start()
        assert inside.wait(30)
        t2 = threading.Thread(target=other)
        t2.start()
        t2.join(0.5)
        assert t2.is_alive() and done == [], done  # waiting for fit, not racing it
        go.set()
        t1.join(60)
        t2.join(60)
        n = 256 // 16
        assert len(reports) == n + 1 and reports[-1] == "epoch_end", reports
        assert done == [("forward", n + 1), ("step", n + 1)], done  # after all of fit
        assert tr.global_step == n + 1
        """)


def test_two_threads_stepping_one_trainer():
    """two threads each make 40 steps on one trainer: 80 steps, finite weights"""
    run("""
        m = mlp()
        tr = strop.Trainer(m, strop.Optimizer(m, "sgd", lr=0.01))
        errs = []

        def steps(seed):
            r = np.random.default_rng(seed)
            try:
                for _ in range(40):
                    i = r.integers(0, 256 - 16)
                    tr.step(x[i:i + 16], y[i:i + 16])
            except BaseException as e:
                errs.append(e)

        ts = [threading.Thread(target=steps, args=(s,)) for s in (1, 2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert not errs, errs
        assert tr.global_step == 80
        assert np.isfinite(m["fc1.weight"]).all()
        """)


def test_fill_callback_calling_in_use_object_fails_cleanly():
    """a fill function that runs on the prefetch thread and calls the model that fit is
    using gets StateError (it would otherwise wait for fit, which waits for it); fit
    reports it"""
    out = run("""
        m = mlp()
        tr = strop.Trainer(m, strop.Optimizer(m, "sgd", lr=0.01))

        def fill(i):
            m.forward(x[:1])  # the model fit holds
            return x[i], y[i]

        ds = strop.Dataset.from_callback(256, fill, (8,), num_classes=3)
        try:
            tr.fit(ds.batches(16, prefetch=True), epochs=1)
        except strop.StateError as e:
            print("refused:", e)
        """)
    assert "refused:" in out and "fill function" in out
