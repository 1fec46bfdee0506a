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


def test_int8_group():
    m = text_model()
    assert m.int8_group == 0
    m.freeze("fc1.*")
    ref = m.clone()
    m.int8_group = 16
    m.frozen_dtype = "int8"
    assert m.int8_group == 16
    # fc1 [64, 32]: two scales per output channel instead of one
    per_channel = ref.clone()
    per_channel.frozen_dtype = "int8"
    assert (m.memory_estimate(1)["weights"] - per_channel.memory_estimate(1)["weights"]
            == 64 * 4)
    # the values held are the weight quantised per run of 16 inputs (absmax / 127)
    w = ref["fc1.weight"].reshape(64, 2, 16)
    s = np.abs(w).max(axis=2, keepdims=True) / np.float32(127)
    q = (np.clip(np.rint(w / s), -127, 127) * s).astype(np.float32).reshape(64, 32)
    m.unfreeze("fc1.*")
    assert np.allclose(m["fc1.weight"], q, rtol=0, atol=1e-6)
    with pytest.raises(strop.InvalidArgument, match="got 5"):
        m.int8_group = 5
    assert m.int8_group == 16
