# SPDX-License-Identifier: MIT
"""The bindings' overhead bench (bench/bench_python_overhead.py) still runs: its no-op must
replace the call Trainer.step makes, inside the guard (it broke silently once, when the step
moved to strop_trainer_step_ext). No time is asserted."""
import importlib.util
import os

from conftest import ROOT, load_strop

strop = load_strop()


def test_overhead_bench_layer_cost_runs():
    path = os.path.join(ROOT, "bench", "bench_python_overhead.py")
    spec = importlib.util.spec_from_file_location("bench_python_overhead", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    real = strop._lib.lib.strop_trainer_step_ext
    cost = bench.layer_cost(n=50)
    assert cost > 0.0
    assert strop._lib.lib.strop_trainer_step_ext is real  # put back
