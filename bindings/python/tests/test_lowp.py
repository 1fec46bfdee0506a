# SPDX-License-Identifier: MIT
"""Frozen weights held in BF16 or int8 (Model.frozen_dtype)."""
import numpy as np
import pytest

from conftest import load_strop

strop = load_strop()


def text_model():
    m = strop.Model([12, 32])
    m.add("fc1", "linear", "out_features=64").add("act", "gelu")
    m.add("flat", "flatten").add("head", "linear", "out_features=4").finalize(seed=3)
    return m


def bf16(a):
    """Round-to-nearest-even float32 -> bfloat16 -> float32, in numpy."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


def test_bf16_halves_frozen_weights_and_matches_rounded_fp32():
    m = text_model()
    m.freeze("fc1.*")
    ref = m.clone()
    ref["fc1.weight"] = bf16(ref["fc1.weight"])
    before = m.memory_estimate(1)["weights"]
    assert m.frozen_dtype == "f32"
    m.frozen_dtype = "bf16"
    assert m.frozen_dtype == "bf16"
    assert before - m.memory_estimate(1)["weights"] == 64 * 32 * 2
    with pytest.raises(strop.Unsupported, match="held in bf16"):
        m["fc1.weight"]
    x = np.sin(np.arange(2 * 12 * 32, dtype=np.float32)).reshape(2, 12, 32)
    # the vdpbf16ps path also rounds x: within 1% of the output's scale
    y, yr = np.asarray(m.forward(x)), np.asarray(ref.forward(x))
    assert np.max(np.abs(y - yr)) <= 0.01 * np.max(np.abs(yr))
    # unfreezing widens back to the values held
    m.unfreeze("fc1.*")
    assert np.array_equal(m["fc1.weight"], ref["fc1.weight"])


def test_int8_and_errors():
    m = text_model()
    m.freeze("fc1.*").set_frozen_dtype("int8")
    assert m.frozen_dtype == "int8"
    assert m.memory_estimate(1)["weights"] < text_model().memory_estimate(1)["weights"]
    with pytest.raises(strop.InvalidArgument, match="bf16"):
        m.set_frozen_dtype("fp8")
    assert m.frozen_dtype == "int8"
    m.frozen_dtype = "f32"
    assert m["fc1.weight"].dtype == np.float32
