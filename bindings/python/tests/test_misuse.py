# SPDX-License-Identifier: MIT
"""What a careless caller gets: a clear exception, never a crash or a silent wrong answer —
values of another shape, objects in the wrong slot, NUL characters, views after a
restructuring, batch sizes below one."""
import os

import numpy as np
import pytest

from conftest import load_strop

strop = load_strop()


def test_values_of_another_shape_are_refused(mlp):
    w = mlp["fc1.weight"]  # (16, 8)
    with pytest.raises(strop.ShapeError, match=r"\(8, 16\).*\(16, 8\)"):
        mlp["fc1.weight"] = w.T.copy()  # the same count, transposed: torch refuses it too
    with pytest.raises(strop.ShapeError, match=r"fc1.weight"):
        mlp["fc1.weight"] = w.reshape(-1)
    with pytest.raises(strop.ShapeError):
        mlp.load_state_dict({"fc1.weight": w.T.copy()})
    np.testing.assert_array_equal(mlp["fc1.weight"], w)  # nothing was written
    with pytest.raises(strop.ShapeError):
        mlp.set_grad("fc1.weight", np.zeros((8, 16), np.float32))
    mlp["fc1.weight"] = w * 2  # the tensor's own shape, any dtype
    np.testing.assert_array_equal(mlp["fc1.weight"], w * 2)
    mlp.load_state_dict({"fc1.weight": (w * 3).astype(np.float64)})
    np.testing.assert_array_equal(mlp["fc1.weight"], (w * 3).astype(np.float32))


def test_an_int64_buffer_still_takes_its_value():
    """a torch state_dict's num_batches_tracked (a 0-d int64) loads as before the shape check"""
    m = strop.Model([2, 4, 4])
    m.add("bn", "batchnorm2d", "num_features=2")
    m.finalize(seed=0)
    m.load_state_dict({"bn.num_batches_tracked": np.array(5, dtype=np.int64),
                       "bn.weight": np.array([2.0, 3.0], np.float32)})
    np.testing.assert_array_equal(m["bn.weight"], [2.0, 3.0])
    with pytest.raises(strop.ShapeError):
        m["bn.weight"] = np.ones((1, 2), np.float32)
    m.close()


def test_objects_in_the_wrong_slot(mlp, toy_data):
    x, y = toy_data
    opt = strop.Optimizer(mlp, "sgd", lr=0.1)
    sched = strop.Scheduler(opt, "constant")
    with strop.Dataset.from_numpy(x, y) as ds:
        with pytest.raises(strop.InvalidArgument, match="scheduler must be a strop.Scheduler, "
                                                        "got Optimizer"):
            strop.Trainer(mlp, opt, scheduler=opt)
        with pytest.raises(strop.InvalidArgument, match="optimizer must be a strop.Optimizer"):
            strop.Trainer(mlp, sched, opt)
        with pytest.raises(strop.InvalidArgument, match="model must be a strop.Model"):
            strop.Optimizer(ds)
        with pytest.raises(strop.InvalidArgument, match="optimizer must be a strop.Optimizer"):
            strop.Scheduler(mlp)
        with pytest.raises(strop.InvalidArgument, match="dataset must be a strop.Dataset"):
            strop.BatchIterator(mlp)
        with pytest.raises(strop.InvalidArgument, match="model must be a strop.Model"):
            strop.Surgery(opt)
        with strop.Trainer(mlp, opt, scheduler=sched) as tr:
            with pytest.raises(strop.InvalidArgument, match="train must be a strop.BatchIterator"):
                tr.fit(None, epochs=1)
            with pytest.raises(strop.InvalidArgument, match="train must be a strop.BatchIterator"):
                tr.fit(ds, epochs=1)
    sched.close()
    opt.close()


def test_nul_characters_are_refused(mlp, tmp_path):
    good = tmp_path / "w.safetensors"
    mlp.save_weights(good)
    with pytest.raises(strop.InvalidArgument, match="NUL"):
        mlp.load_weights(str(good) + "\0.bak")
    with pytest.raises(strop.InvalidArgument, match="NUL"):
        mlp.save_weights(str(tmp_path / "x\0y.safetensors"))
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]
    with pytest.raises(strop.InvalidArgument, match="NUL"):
        mlp.meta["note"] = "first\0second"
    with pytest.raises(strop.InvalidArgument, match="NUL"):
        mlp["fc1.weight\0"]


def test_views_go_stale_when_storage_may_change(mlp):
    for change in (lambda m: m.freeze("fc1.*"), lambda m: m.unfreeze("*"),
                   lambda m: m.set_frozen_dtype("bf16"), lambda m: m.set_frozen_dtype("f32")):
        t = mlp.tensor("fc2.weight")
        change(mlp)
        with pytest.raises(strop.StateError, match="stale"):
            t.numpy()
        t.close()
    mlp.freeze("fc1.*")
    mlp.set_frozen_dtype("bf16")
    t = mlp.tensor("fc2.weight")  # trainable: still float32
    mlp.int8_group = 32
    with pytest.raises(strop.StateError, match="stale"):
        t.numpy()


def test_raw_arrays_block_restructuring(mlp, tmp_path):
    """numpy(copy=False) of a parameter: while it (or an array derived from it) lives, the
    calls that may replace the parameter's memory are refused, the model unchanged; once the
    arrays are gone they run"""
    import gc
    t = mlp.tensor("fc1.weight")
    raw = t.numpy(copy=False)
    row = raw[1]  # derived: it keeps the memory in use too
    del raw
    changes = {"freeze": lambda: mlp.freeze("fc1.*"), "unfreeze": lambda: mlp.unfreeze("*"),
               "frozen_dtype": lambda: mlp.set_frozen_dtype("bf16"),
               "int8_group": lambda: setattr(mlp, "int8_group", 32),
               "surgery": lambda: mlp.surgery().freeze("fc1.*").apply()}
    for what, change in changes.items():
        with pytest.raises(strop.StateError, match=f"^{what}: 1 numpy array"):
            change()
    assert mlp.is_trainable("fc1.weight") and mlp.frozen_dtype == "f32"
    before = row.copy()
    row[:] += 1  # still the parameter's memory
    assert np.array_equal(mlp["fc1.weight"][1], before + 1)
    cycle = [row]
    cycle.append(cycle)  # only the collector frees it
    del row, cycle
    mlp.freeze("fc1.*")
    mlp.set_frozen_dtype("bf16")
    assert not mlp.is_trainable("fc1.weight") and mlp.frozen_dtype == "bf16"
    copy = mlp.tensor("fc2.weight").numpy()  # copies do not count
    mlp.unfreeze("*")
    gc.collect()
    assert copy.shape == (3, 16)


def test_batch_sizes_below_one(mlp):
    x = np.zeros((3, 8), np.float32)
    for b in (0, -1):
        with pytest.raises(strop.InvalidArgument, match="batch_size must be at least 1"):
            mlp.predict(x, batch_size=b)
    assert mlp.predict(x, batch_size=2).shape == (3,)


def test_a_stale_callback_exception_is_not_raised_for_another_error():
    """An exception of a fill callback that a prefetch thread met, and that no call reported
    (the iterator was closed first), is not raised in place of a later, unrelated error."""
    import time

    def bad(i):
        if i == 1:
            raise KeyError("boom from dataset A")
        return np.zeros(8, np.float32), 0

    a = strop.Dataset.from_callback(4, bad, (8,), (), num_classes=3)
    it = a.batches(1, prefetch=True)  # the prefetch thread reads sample 1 ahead
    it.next_batch()
    for _ in range(200):  # until its exception is pending (else this test would test nothing)
        if strop._callbacks.dataset_pending.exc is not None:
            break
        time.sleep(0.01)
    assert isinstance(strop._callbacks.dataset_pending.exc, KeyError)
    it.close()
    a.close()
    b = strop.Dataset.from_callback(4, lambda i: (np.zeros(8, np.float32), 7), (8,), (),
                                    num_classes=3)
    with pytest.raises(strop.CallbackError, match="the label 7"):
        b[0]
    # and this call's own exception still comes back as itself
    c = strop.Dataset.from_callback(4, bad, (8,), (), num_classes=3)
    with pytest.raises(KeyError, match="boom from dataset A"):
        c[1]


def test_unknown_words_list_the_known_ones(mlp):
    for call, what in ((lambda: strop.Tuner("bayesian"), "strategy 'bayesian'; known: grid"),
                       (lambda: strop.Tuner("random", direction="down"), "direction 'down'"),
                       (lambda: strop.set_log_handler(print, "loud"), "log level 'loud'"),
                       (lambda: strop.Optimizer(mlp, "adamm"), "optimizer kind 'adamm'")):
        with pytest.raises(strop.InvalidArgument, match=what):
            call()
    with pytest.raises(strop.ShapeError, match="x is a scalar"):
        strop.Dataset.from_numpy(np.float32(1), np.int64(0))
