# SPDX-License-Identifier: MIT
"""Round trips between the pure-Python safetensors module, PyTorch and the C library.

Run: /usr/bin/python3 -m pytest bindings/python/tests/test_safetensors.py
The C-library tests look for libstrop.so in $STROP_LIBRARY or the build directories and are
skipped when it is absent; the torch tests are skipped without torch.
"""
import ctypes
import glob
import importlib.util
import json
import os
import struct

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "io")

# The module is loaded from its file so this test needs neither the package's ctypes
# layer nor an installed library.
_spec = importlib.util.spec_from_file_location(
    "strop_safetensors", os.path.join(ROOT, "bindings", "python", "strop", "safetensors.py"))
st = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(st)

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _sanitized(path):
    """A library built with ASan/TSan aborts when loaded into an unsanitised python."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return True
    return b"libasan.so" in data or b"libtsan.so" in data


_NEEDED = ("strop_model_load_spec_string", "strop_model_load_weights", "strop_model_save_weights",
           "strop_model_free", "strop_model_forward", "strop_tensor_from_data")


def find_library():
    cands = [os.environ.get("STROP_LIBRARY", ""), os.path.join(ROOT, "build", "libstrop.so")]
    for pat in ("build*/libstrop.so", "build*/lib/libstrop.so"):
        cands += sorted(glob.glob(os.path.join(ROOT, pat)))
    for c in cands:
        if c and os.path.exists(c) and not _sanitized(c):
            try:
                lib = ctypes.CDLL(c)
            except OSError:
                continue
            if all(hasattr(lib, f) for f in _NEEDED):  # not a stale or partial build
                return lib
    return None


LIB = find_library()
needs_lib = pytest.mark.skipif(LIB is None, reason="libstrop.so not built")


# ---- numpy only ----

def test_roundtrip_dtypes(tmp_path):
    p = str(tmp_path / "a.safetensors")
    rng = np.random.default_rng(0)
    t = {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "h": rng.standard_normal(5).astype(np.float16),
        "d": rng.standard_normal((2, 2)).astype(np.float64),
        "n": np.array(7, dtype=np.int64),  # a scalar keeps shape []
        "b": rng.standard_normal(6).astype(np.float32),
        "u": np.arange(3, dtype=np.uint8),
        "e": np.zeros((0, 3), dtype=np.float32),
    }
    st.save(p, t, metadata={"format": "test", "step": 3}, bf16={"b"})
    out, meta = st.load(p)
    assert meta == {"format": "test", "step": "3"}
    for k in ("w", "h", "d", "n", "u", "e"):
        assert out[k].dtype == t[k].dtype and out[k].shape == t[k].shape
        np.testing.assert_array_equal(out[k], t[k])
    assert out["n"].shape == ()
    assert out["b"].dtype == np.float32
    np.testing.assert_allclose(out["b"], t["b"], rtol=8e-3)
    hdr, _ = st.load_header(p)
    assert hdr["b"]["dtype"] == "BF16" and hdr["h"]["dtype"] == "F16"
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    assert (8 + n) % 8 == 0
    assert not [f for f in os.listdir(tmp_path) if ".tmp." in f]


def test_bf16_rounding_is_nearest_even():
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf], dtype=np.float32)
    bits = st._to_bf16_bits(x)
    back = (bits.astype("<u4") << 16).view("<f4")
    np.testing.assert_array_equal(back, [1.0, 1.0, 1.015625, -2.5, np.inf])
    # NaNs stay NaNs with their sign, whatever their payload (0x7fffffff rounded to -0.0), as
    # torch's bfloat16 gives; the largest finite float rounds to infinity, as torch's does
    nans = np.array([0x7FFFFFFF, 0xFFFFFFFF, 0x7FC00000, 0x7F800001, 0x7F7FFFFF],
                    dtype="<u4").view("<f4")
    back = (st._to_bf16_bits(nans).astype("<u4") << 16).view("<f4")
    assert np.isnan(back[:4]).all() and list(np.signbit(back[:4])) == [False, True, False, False]
    assert back[4] == np.inf
    try:
        import torch
    except ImportError:
        return
    ref = torch.from_numpy(nans.copy()).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(np.isnan(ref), np.isnan(back))
    np.testing.assert_array_equal(ref[4:], back[4:])


def test_bf16_names(tmp_path):
    """bf16 as one name is that name, not its letters; a name with a NUL is refused (the
    reader refuses it)"""
    p = tmp_path / "n.safetensors"
    st.save(p, {"h": np.ones(2, np.float32), "head.weight": np.ones(2, np.float32)},
            bf16="head.weight")
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
    assert h["h"]["dtype"] == "F32" and h["head.weight"]["dtype"] == "BF16"
    with pytest.raises(st.SafetensorsError, match="invalid tensor name"):
        st.save(p, {"a\0b": np.ones(2, np.float32)})


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(FIXTURES, "broken"))))
def test_broken_files_are_refused(name):
    if name == "rank_too_large.safetensors":
        pytest.skip("rank > 8 is a limit of strop, not of the format")
    with pytest.raises(st.SafetensorsError):
        st.load(os.path.join(FIXTURES, "broken", name))


def _entry(shape=(2,), dtype="F32", offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def _raw(header):
    return json.dumps(header, separators=(",", ":")).encode()


# Malformed headers (issue 18): each one made the reader raise RecursionError, AttributeError,
# TypeError or numpy's ValueError, or let through what the C reader refuses.
_MALFORMED = {
    "deep_nesting_100k": b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}",
    "deep_nesting_17": b'{"a":' + b"[" * 16 + b"]" * 16 + b"}",
    "entry_not_object": _raw({"a": 5}),
    "entry_is_list": _raw({"a": [1, 2]}),
    "entry_is_null": _raw({"a": None}),
    "dtype_is_list": _raw({"a": dict(_entry(), dtype=["F32"])}),
    "dtype_is_object": _raw({"a": dict(_entry(), dtype={"x": 1})}),
    "dtype_is_number": _raw({"a": dict(_entry(), dtype=4)}),
    "shape_is_string": _raw({"a": dict(_entry(), shape="2")}),
    "shape_of_bools": _raw({"a": dict(_entry(), shape=[True, True])}),
    "shape_of_floats": _raw({"a": dict(_entry(), shape=[2.0])}),
    "shape_nested": _raw({"a": dict(_entry(), shape=[[2]])}),
    "offsets_of_bools": _raw({"a": dict(_entry(), data_offsets=[False, True])}),
    "offsets_beyond_int64": _raw({"a": _entry(offsets=(1 << 64, 1 << 64))}),
    "offsets_is_object": _raw({"a": dict(_entry(), data_offsets={"0": 8})}),
    "zero_then_huge_dim": _raw({"a": _entry(shape=(0, (1 << 63) - 1), offsets=(0, 0))}),
    "huge_dim_then_zero": _raw({"a": _entry(shape=(1 << 62, 3, 0), offsets=(0, 0))}),
    "zero_then_huge_product": _raw({"a": _entry(shape=(0, 1 << 40, 1 << 40), offsets=(0, 0))}),
    "rank_100_empty": _raw({"a": _entry(shape=[1] * 99 + [0], offsets=(0, 0))}),
    "metadata_is_list": _raw({"__metadata__": ["x"], "a": _entry()}),
    "metadata_value_object": _raw({"__metadata__": {"k": {"v": 1}}, "a": _entry()}),
    "metadata_value_null": _raw({"__metadata__": {"k": None}, "a": _entry()}),
    "nan_literal": b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,8]}}',
    "infinity_literal": b'{"__metadata__":{"k":Infinity},"a":' + _raw(_entry()) + b"}",
    "nul_in_key": b'{"a\\u0000b":' + _raw(_entry()) + b"}",
    "nul_in_metadata": b'{"__metadata__":{"k":"v\\u0000"},"a":' + _raw(_entry()) + b"}",
    "lone_surrogate_key": b'{"\\ud83d":' + _raw(_entry()) + b"}",
    "empty_name": _raw({"": _entry()}),
    "leading_space": b' {"a":' + _raw(_entry()) + b"}",
    "root_is_list": b"[1,2]",
    "root_is_string": b'"abc"',
    "missing_offsets": _raw({"a": {"dtype": "F32", "shape": [2]}}),
    "unterminated": b'{"a":' + _raw(_entry()),
    "too_many_values": b'{"__metadata__":{},"x":[' + b"0," * 2200000 + b"0]}",
}


def _malformed_cases():
    for name in sorted(os.listdir(os.path.join(FIXTURES, "broken"))):
        if name != "rank_too_large.safetensors":  # rank > 8 is strop's limit, not the format's
            with open(os.path.join(FIXTURES, "broken", name), "rb") as f:
                yield pytest.param(f.read(), id="c_corpus/" + name)
    for name, header in _MALFORMED.items():
        # the data area fits the entries, so the case fails for its own reason: empty
        # tensors have none, the others 8 bytes
        data = b"" if b"[0,0]" in header else b"\0" * 8
        yield pytest.param(struct.pack("<Q", len(header)) + header + data, id=name)


@pytest.mark.parametrize("blob", _malformed_cases())
def test_malformed_headers_raise_safetensors_error(tmp_path, request, blob):
    """Every malformed header raises SafetensorsError with a sentence, as the C reader
    refuses it, and never another exception type."""
    p = tmp_path / "bad.safetensors"
    p.write_bytes(blob)
    # a rank above numpy's is a valid header: only making the arrays fails
    readers = (st.load,) if "rank_100" in request.node.name else (st.load, st.load_header)
    for reader in readers:
        with pytest.raises(Exception) as e:
            reader(str(p))
        assert type(e.value) is st.SafetensorsError, repr(e.value)
        assert str(e.value), "an empty message"


def test_deep_but_allowed_nesting_and_zero_dims_load(tmp_path):
    """The bounds refuse only what they must: 15 levels of extra nesting, a zero beside a
    dimension of 2^40, and an empty tensor load."""
    head = (b'{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[0,1099511627776],'
            b'"data_offsets":[0,0],"x":' + b"[" * 13 + b"]" * 13 + b'},"b":' +
            _raw(_entry()) + b"}")
    p = tmp_path / "ok.safetensors"
    p.write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 8)
    t, meta = st.load(str(p))
    assert t["a"].shape == (0, 1 << 40) and meta == {"k": "v"}


def test_reads_committed_torch_fixture():
    t, meta = st.load(os.path.join(FIXTURES, "torch_f32.safetensors"))
    assert meta == {"format": "pt"}
    assert t["bn.num_batches_tracked"].dtype == np.int64
    assert t["bn.num_batches_tracked"].shape == ()
    assert t["conv.weight"].shape == (4, 1, 3, 3)
    f16, _ = st.load(os.path.join(FIXTURES, "torch_f16.safetensors"))
    np.testing.assert_allclose(f16["head.weight"].astype(np.float32), t["head.weight"],
                               rtol=1e-3, atol=1e-4)


# ---- PyTorch ----

if torch is not None:
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.head = torch.nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            x = torch.relu(self.bn(self.conv(x)))
            return self.head(torch.flatten(x, 1))


def to_torch(tensors):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}


@needs_torch
def test_torch_state_dict_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = Net()
    net.train()
    net(torch.randn(4, 1, 6, 6))
    net.eval()
    p = str(tmp_path / "net.safetensors")
    st.save(p, {k: v.numpy() for k, v in net.state_dict().items()})
    back, _ = st.load(p)
    net2 = Net()
    net2.load_state_dict(to_torch(back), strict=True)
    net2.eval()
    x = torch.randn(2, 1, 6, 6)
    assert torch.equal(net(x), net2(x))


# ---- the C library ----

SPEC = b"""input: [1, 6, 6]
layers:
  - {name: conv, type: conv2d, in_channels: 1, out_channels: 4, kernel_size: 3, padding: 1}
  - {name: bn, type: batchnorm2d, num_features: 4}
  - {name: act, type: relu}
  - {name: flat, type: flatten}
  - {name: head, type: linear, in_features: 144, out_features: 3}
"""


def bind(lib):
    P = ctypes.c_void_p
    lib.strop_model_load_spec_string.argtypes = [ctypes.c_char_p, ctypes.POINTER(P)]
    lib.strop_model_load_weights.argtypes = [P, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(P)]
    lib.strop_model_save_weights.argtypes = [P, ctypes.c_char_p]
    lib.strop_model_free.argtypes = [P]
    lib.strop_model_forward.argtypes = [P, P, ctypes.POINTER(P)]
    lib.strop_tensor_from_data.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                                           ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
                                           ctypes.POINTER(P)]
    lib.strop_tensor_copy_to.argtypes = [P, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]
    lib.strop_tensor_free.argtypes = [P]
    lib.strop_last_error.restype = ctypes.c_char_p
    return lib


def check(lib, status):
    assert status == 0, lib.strop_last_error().decode()


def strop_forward(lib, model, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    dims = (ctypes.c_int64 * x.ndim)(*x.shape)
    t, y = ctypes.c_void_p(), ctypes.c_void_p()
    check(lib, lib.strop_tensor_from_data(x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                          x.size, x.ndim, dims, ctypes.byref(t)))
    check(lib, lib.strop_model_forward(model, t, ctypes.byref(y)))
    out = np.zeros((x.shape[0], 3), dtype=np.float32)
    check(lib, lib.strop_tensor_copy_to(y, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                        out.size))
    lib.strop_tensor_free(t)
    lib.strop_tensor_free(y)
    return out


@needs_lib
@needs_torch
def test_torch_to_strop_to_torch(tmp_path):
    lib = bind(LIB)
    torch.manual_seed(1)
    net = Net()
    net.train()
    for _ in range(2):
        net(torch.randn(8, 1, 6, 6))
    net.eval()
    src = str(tmp_path / "torch.safetensors")
    st.save(src, {k: v.numpy() for k, v in net.state_dict().items()})
    model = ctypes.c_void_p()
    check(lib, lib.strop_model_load_spec_string(SPEC, ctypes.byref(model)))
    try:
        check(lib, lib.strop_model_load_weights(model, src.encode(), 0, None))
        x = torch.randn(3, 1, 6, 6)
        want = net(x).detach().numpy()
        got = strop_forward(lib, model, x.numpy())
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # strop saves; PyTorch loads it into the same module, strictly
        out = str(tmp_path / "strop.safetensors")
        check(lib, lib.strop_model_save_weights(model, out.encode()))
        tensors, meta = st.load(out)
        assert meta["format"] == "strop"
        assert tensors["bn.num_batches_tracked"].dtype == np.int64
        assert int(tensors["bn.num_batches_tracked"]) == 2
        net2 = Net()
        net2.load_state_dict(to_torch(tensors), strict=True)
        net2.eval()
        assert torch.equal(net2(x), net(x))
    finally:
        LIB.strop_model_free(model)
