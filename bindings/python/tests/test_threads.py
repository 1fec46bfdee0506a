# SPDX-License-Identifier: MIT
"""OpenBLAS's thread count is the host's: numpy (which uses the same OpenBLAS on Debian) keeps
the setting it had across strop calls, training steps and the tuner's Gaussian process alike
(issue 17). strop runs BLAS single-threaded only while one of its own calls runs."""
import ctypes
import ctypes.util

import numpy as np
import pytest

from conftest import load_strop

strop = load_strop()


class NumpyBlas:
    """Reads and sets the thread count of the OpenBLAS numpy runs on: through threadpoolctl
    when it is installed (what a numpy user would call), else through OpenBLAS itself."""

    def __init__(self):
        np.dot(np.ones((64, 64)), np.ones((64, 64)))  # numpy's BLAS is loaded
        try:
            import threadpoolctl
            self._ctl = threadpoolctl.ThreadpoolController().select(internal_api="openblas")
            if not self._ctl.lib_controllers:
                raise ImportError
        except ImportError:
            self._ctl = None
            self._lib = ctypes.CDLL("libopenblas.so.0")
            self._lib.openblas_get_num_threads.restype = ctypes.c_int

    def get(self):
        if self._ctl is not None:
            return self._ctl.info()[0]["num_threads"]
        return self._lib.openblas_get_num_threads()

    def set(self, n):
        if self._ctl is not None:
            self._ctl.lib_controllers[0].set_num_threads(n)
        else:
            self._lib.openblas_set_num_threads(n)


@pytest.fixture
def blas():
    b = NumpyBlas()
    was = b.get()
    yield b
    b.set(was)


@pytest.mark.parametrize("host", [3, 2, 1])
def test_numpy_blas_threads_survive_a_training_step(blas, host):
    blas.set(host)
    assert blas.get() == host
    m = strop.Model([64])
    m.add("fc1", "linear", "in_features=64 out_features=128")
    m.add("act", "relu")
    m.add("fc2", "linear", "in_features=128 out_features=4")
    m.finalize(seed=1)
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    y = (np.arange(32) % 4).astype(np.float32)
    with strop.Optimizer(m, "adam", lr=0.01) as opt, strop.Trainer(m, opt) as tr:
        tr.step(x, y)
        assert blas.get() == host, "a strop training step changed numpy's BLAS threads"
        m.forward(x)
        assert blas.get() == host
    m.close()
    np.dot(np.ones((256, 256)), np.ones((256, 256)))  # numpy still runs
    assert blas.get() == host


def test_numpy_blas_threads_survive_the_bayesian_tuner(blas):
    """The tuner's Gaussian process always goes through OpenBLAS's LAPACK (Cholesky)."""
    blas.set(2)
    t = strop.Tuner("bayes", seed=3, direction="minimize", n_initial=3)
    t.add_float("x", -2.0, 2.0)
    for _ in range(6):
        tr = t.ask()
        t.tell(tr, (tr.params["x"] - 0.5) ** 2)
        assert blas.get() == 2, "the tuner changed numpy's BLAS threads"
    t.close()
