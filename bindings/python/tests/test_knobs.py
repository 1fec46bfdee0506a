# SPDX-License-Identifier: MIT
"""The knob dictionaries come from the C tables, values travel as doubles, and every object's
table answers the same queries."""
import math

import pytest

from conftest import load_strop

strop = load_strop()

from strop import optim, train, tune  # noqa: E402


@pytest.fixture
def mlp():
    m = strop.Model([4])
    m.add("fc", "linear", "in_features=4 out_features=3").finalize()
    return m


def c_names(fn):
    names, k = [], 0
    while True:
        n = fn(k)
        if n is None:
            return names
        names.append(n.decode())
        k += 1


def test_dicts_are_the_c_tables():
    lib = strop._lib.lib
    assert list(optim.OPTIMIZER_KNOBS) == c_names(lib.strop_optimizer_knob_name)
    assert list(optim.SCHEDULER_KNOBS) == c_names(lib.strop_scheduler_knob_name)
    assert list(train.TRAIN_KNOBS) == c_names(lib.strop_trainer_knob_name)
    assert list(tune.KNOBS) == c_names(lib.strop_tuner_knob_name)
    assert "maximize" in optim.OPTIMIZER_KNOBS  # the knob the recipe copies had lost
    assert train.TRAIN_KNOBS["clip_norm"] == (4, float)
    assert train.TRAIN_KNOBS["loss"] == (0, int)


def test_doubles_round_trip(mlp):
    lr = 0.000123456789012
    opt = strop.Optimizer(mlp, "adam", lr=lr, maximize=True)
    assert opt["lr"] == lr  # every bit: no float on the way
    assert opt["maximize"] == 1 and isinstance(opt["maximize"], int)
    s = strop.Scheduler(opt, "one_cycle", max_lr=0.0123456789, total_steps=10, anneal="linear")
    assert s["max_lr"] == 0.0123456789
    assert s["anneal_strategy"] == 1 and s["anneal"] == 1  # name and recipe spelling
    tr = strop.Trainer(mlp, opt, accumulate=2, clip_norm=0.5, loss="huber", delta=0.5)
    assert tr["accum_steps"] == 2 and tr["clip_norm"] == 0.5
    assert tr["loss"] == 4 and tr["huber_delta"] == 0.5
    assert tr["sync_batchnorm"] == 0  # SyncBatchNorm: a flag, off by default
    tr["sync_batchnorm"] = True
    assert tr["sync_batchnorm"] == 1 and isinstance(tr["sync_batchnorm"], int)
    t = strop.Tuner("random", pruner="median", workers=2, ei_xi=0.03)
    assert t["pruner"] == 1 and t["n_workers"] == 2 and t["ei_xi"] == 0.03


def test_queries_and_refusals(mlp):
    assert strop.Optimizer.knob_default("rmsprop", "lr") == 1e-2
    assert strop.Optimizer.knob_default("adamw", "weight_decay") == 1e-2
    assert "Nesterov" in strop.Optimizer.knob_doc("nesterov")
    assert strop.Scheduler.knob_default("plateau", "factor") == 0.1
    lo, hi, fl = strop.Trainer.knob_range("clip_norm")
    assert lo == 0 and hi == math.inf and not fl & 64  # no infinity
    lo, hi, fl = strop.Scheduler.knob_range("one_cycle", "final_div_factor")
    assert hi == math.inf and fl & 64  # STROP_KNOB_INF_OK: +inf ends the cycle at lr 0
    assert strop.Trainer.knob_name(6) == "accum_steps"
    assert strop.Tuner.knob_default("n_candidates") == 2000
    opt = strop.Optimizer(mlp, "sgd")
    with pytest.raises(strop.InvalidArgument, match="lr must be a finite number"):
        opt["lr"] = math.inf
    with pytest.raises(strop.InvalidArgument, match="lr"):
        opt["lr"] = math.nan
    assert opt["lr"] == 1e-3  # unchanged
    with pytest.raises(strop.InvalidArgument, match="unknown optimizer knob 'lrr'"):
        opt["lrr"] = 1
    s = strop.Scheduler(opt, "one_cycle")
    with pytest.raises(strop.InvalidArgument, match="one of cos, linear"):
        s["anneal"] = "sine"
    tr = strop.Trainer(mlp, opt)
    with pytest.raises(strop.InvalidArgument, match="one of cross_entropy"):
        tr["loss"] = "hinge"
    with pytest.raises(strop.InvalidArgument, match="accum_steps must be an integer"):
        tr["accum_steps"] = 2.5
