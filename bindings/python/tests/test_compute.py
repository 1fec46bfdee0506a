# SPDX-License-Identifier: MIT
"""Mixed-precision training: linear products in BF16 (Model.compute_dtype)."""
import numpy as np
import pytest

from conftest import load_strop

strop = load_strop()


def text_model():
    m = strop.Model([12, 32])
    m.add("fc1", "linear", "out_features=64").add("act", "gelu")
    m.add("flat", "flatten").add("head", "linear", "out_features=4").finalize(seed=3)
    return m


def test_compute_dtype_bf16_close_to_f32():
    m = text_model()
    ref = m.clone()
    assert m.compute_dtype == "f32"
    m.compute_dtype = "bf16"
    assert m.compute_dtype == "bf16"
    assert ref.compute_dtype == "f32"
    assert m.clone().compute_dtype == "bf16"
    x = np.sin(np.arange(2 * 12 * 32, dtype=np.float32)).reshape(2, 12, 32)
    y, yr = np.asarray(m.forward(x)), np.asarray(ref.forward(x))
    # BF16 inputs and weights, FP32 sums: within 1% of the output's scale, and not FP32's bits
    assert np.max(np.abs(y - yr)) <= 0.01 * np.max(np.abs(yr))
    assert not np.array_equal(y, yr)
    # the master weights stay float32
    assert m["fc1.weight"].dtype == np.float32
    # back to f32: FP32's bits again
    m.set_compute_dtype("f32")
    assert np.array_equal(np.asarray(m.forward(x)), yr)


def test_compute_dtype_errors():
    m = text_model()
    for bad in ("int8", "fp16", 1):
        with pytest.raises(strop.InvalidArgument, match="bf16"):
            m.set_compute_dtype(bad)
    assert m.compute_dtype == "f32"


def trained_bf16(cache):
    m = text_model()
    m.compute_dtype = "bf16"
    assert m.weight_cache is True
    m.weight_cache = cache
    assert m.weight_cache is cache
    assert m.clone().weight_cache is cache
    tr = strop.Trainer(m, strop.Optimizer(m, "adamw", lr=0.01))
    x = np.sin(np.arange(6 * 12 * 32, dtype=np.float32)).reshape(6, 12, 32)
    y = np.arange(6, dtype=np.float32) % 4
    for _ in range(3):
        tr.step(x, y)
    return m


def test_weight_cache_off_same_bits():
    # the trained weights' BF16 products packed per call instead of through kept copies: the
    # same weights bit for bit after three AdamW steps
    on, off = trained_bf16(True), trained_bf16(False)
    for name in ("fc1.weight", "fc1.bias", "head.weight"):
        assert np.array_equal(np.asarray(on[name]), np.asarray(off[name])), name
    assert not np.array_equal(np.asarray(on["fc1.weight"]), np.asarray(text_model()["fc1.weight"]))


def test_weight_cache_errors():
    m = text_model()
    for bad in (0, 1, "false", None):
        with pytest.raises(strop.InvalidArgument, match="True or False"):
            m.weight_cache = bad
    assert m.weight_cache is True


def attention_model():
    m = strop.Model([12, 32])
    m.add("q", "linear", "out_features=32").add("k", "linear", "out_features=32", inputs="input")
    m.add("v", "linear", "out_features=32", inputs="input")
    m.add("att", "attention", "num_heads=4", inputs=["q", "k", "v"])
    m.add("flat", "flatten").add("head", "linear", "out_features=4").finalize(seed=3)
    return m


def trained_attention(mode):
    m = attention_model()
    assert m.attention == "auto"
    m.attention = mode
    assert m.attention == mode
    assert m.clone().attention == mode
    tr = strop.Trainer(m, strop.Optimizer(m, "adamw", lr=0.01))
    x = np.sin(np.arange(6 * 12 * 32, dtype=np.float32)).reshape(6, 12, 32)
    y = np.arange(6, dtype=np.float32) % 4
    return m, [tr.step(x, y) for _ in range(3)]


def test_attention_setting():
    # 12 positions, heads 8 wide: auto keeps the weights as materialized does, bit for bit;
    # tiled computes them again in the backward, the same losses within 1e-3
    (ma, la), (mm, lm), (mt, lt) = (trained_attention(k) for k in ("auto", "materialized", "tiled"))
    assert la == lm
    assert np.array_equal(np.asarray(ma["q.weight"]), np.asarray(mm["q.weight"]))
    assert max(abs(a - b) for a, b in zip(la, lt)) <= 1e-3
    m = attention_model()
    for bad in ("flash", 1, None):
        with pytest.raises(strop.InvalidArgument, match="auto, tiled, materialized"):
            m.attention = bad
    assert m.attention == "auto"
