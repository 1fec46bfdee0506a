# SPDX-License-Identifier: MIT
"""Shared setup of the bindings' tests: put the package on sys.path and skip (with the reason)
when no libstrop can be loaded. Run: STROP_LIBRARY=build/libstrop.so /usr/bin/python3 -m pytest
bindings/python/tests"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(PKG_ROOT))
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)

FASHION = os.path.join(ROOT, "examples", "fashion")
FASHION_DATA = "/usr/share/datasets/fashion-mnist"


def load_strop():
    """Imports strop, or skips the calling module when libstrop is not available."""
    try:
        import strop
    except OSError as e:  # LibraryNotFound
        pytest.skip(f"libstrop not available: {e}", allow_module_level=True)
    return strop


def rss_pages():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1])


@pytest.fixture
def mlp():
    import strop
    m = strop.Model([8])
    m.add("fc1", "linear", "in_features=8 out_features=16")
    m.add("act", "relu")
    m.add("fc2", "linear", {"in_features": 16, "out_features": 3})
    m.finalize(seed=42)
    yield m
    m.close()


@pytest.fixture
def toy_data():
    import numpy as np
    i = np.arange(96)[:, None]
    j = np.arange(8)[None, :]
    x = (((i * 7 + j * 3) % 17).astype(np.float32) / np.float32(16.0) - np.float32(0.5))
    y = ((np.arange(96) * 5 + np.arange(96) // 7) % 3).astype(np.int64)
    return np.ascontiguousarray(x, dtype=np.float32), y
