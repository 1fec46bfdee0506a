# SPDX-License-Identifier: MIT
"""Every class of the package: its normal use and its error path."""
import gc
import json
import math
import os
import weakref

import numpy as np
import pytest

from conftest import FASHION, FASHION_DATA, ROOT, load_strop

strop = load_strop()

BASE_YAML = os.path.join(FASHION, "base.yaml")
BASE_ST = os.path.join(FASHION, "base.safetensors")


# ---- Tensor ----
def test_tensor_zero_copy_wrap():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = strop.Tensor(a)
    assert t.shape == (3, 4) and t.rank == 2 and t.size == 12 and t.dim(-1) == 4
    assert t.shares_memory_with_input
    t.fill(2.0)
    assert (a == 2).all()  # same memory
    np.testing.assert_array_equal(t.numpy(), a)
    t.close()
    t.close()  # idempotent
    assert t.closed
    with pytest.raises(strop.StateError):
        t.shape


def test_tensor_conversions_and_refusals():
    f64 = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = strop.Tensor(f64)  # converted copy
    t.fill(1)
    assert (f64 == np.arange(6).reshape(2, 3)).all()
    assert strop.Tensor(np.asfortranarray(np.ones((3, 2), np.float32))).shape == (3, 2)
    assert strop.Tensor(np.arange(10, dtype=np.float32)[::2]).numpy().tolist() == [0, 2, 4, 6, 8]
    ro = np.ones(4, np.float32)
    ro.flags.writeable = False
    strop.Tensor(ro).fill(3)
    assert (ro == 1).all()  # a read-only array is copied, never written
    assert strop.Tensor([1, 2, 3]).numpy().dtype == np.float32
    with pytest.raises(strop.InvalidArgument, match="complex"):
        strop.Tensor(np.ones(3, np.complex64))
    with pytest.raises(strop.InvalidArgument):
        strop.Tensor(np.array(["a"]))
    with pytest.raises(strop.InvalidArgument):
        strop.Tensor(np.float32(1.0))  # rank 0
    with pytest.raises(strop.InvalidArgument):
        strop.Tensor(np.ones([1] * 9, np.float32))  # rank 9 > STROP_MAX_RANK


def test_tensor_keeps_array_alive():
    a = np.ones(1000, np.float32)
    ref = weakref.ref(a)
    t = strop.Tensor(a)
    del a
    gc.collect()
    assert ref() is not None  # the tensor holds it
    t.close()
    gc.collect()
    assert ref() is None


def test_tensor_numpy_view_outlives_close():
    t = strop.Tensor.zeros([2, 3])
    v = t.numpy(copy=False)
    t.close()
    v[:] = 5  # the C storage is alive while the view is
    assert v.sum() == 30
    w = v[1]
    del v
    gc.collect()
    assert w.sum() == 15


def test_tensor_copy_reshape_copy_from():
    t = strop.Tensor.from_numpy(np.arange(6, dtype=np.float32))
    r = t.reshape(2, -1)
    assert r.shape == (2, 3)
    c = t.copy()
    r.copy_from(np.zeros(6))
    assert t.numpy().sum() == 0 and c.numpy().sum() == 15
    with pytest.raises(strop.ShapeError):
        t.reshape(4, 2)
    with pytest.raises(strop.ShapeError):
        t.copy_from(np.zeros(5))
    with pytest.raises(strop.InvalidArgument):
        t.dim(5)
    assert np.asarray(c).tolist() == [0, 1, 2, 3, 4, 5]
    with strop.Tensor.zeros([2]) as z:
        assert z.numpy().tolist() == [0, 0]
    assert z.closed


# ---- Model ----
def test_model_build_forward_and_params(mlp):
    assert mlp.input_shape == (8,) and mlp.output_shape == (3,)
    assert [n for n, _ in mlp.nodes] == ["fc1", "act", "fc2"]
    assert mlp.tensor_names() == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert mlp.param_count() == 8 * 16 + 16 + 16 * 3 + 3
    x = np.random.default_rng(0).random((5, 8), dtype=np.float32)
    y = mlp.forward(x)
    w1, b1, w2, b2 = (mlp[n] for n in mlp.tensor_names())
    ref = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mlp(x.astype(np.float64)), y)
    mlp["fc2.bias"] = [1, 2, 3]
    assert mlp["fc2.bias"].tolist() == [1, 2, 3]
    view = mlp.tensor("fc2.bias")
    view.fill(0)
    assert mlp["fc2.bias"].tolist() == [0, 0, 0]
    assert not mlp.training
    mlp.train()
    assert mlp.training
    mlp.eval()
    assert "fc1" in mlp.summary()
    assert mlp.memory_estimate(32)["weights"] > 0
    assert "fc2" in mlp.spec()
    assert set(mlp.state_dict()) == set(mlp.tensor_names())


def test_checkpointing_and_step_memory():
    m = strop.Model([8])
    for b in range(3):
        m.add(f"blocks.{b}.fc", "linear", "out_features=16")
        m.add(f"blocks.{b}.act", "gelu")
    m.add("head", "linear", "out_features=3")
    m.finalize(seed=1)
    assert m.checkpointing is None and m.checkpoint_blocks == 0
    plain = m.step_memory(32)
    assert plain["peak"] > plain["step"] > 0
    m.checkpointing = "auto"
    assert m.checkpointing == "auto" and m.checkpoint_blocks == 3
    m.checkpointing = "blocks.*"
    assert m.checkpoint_blocks == 3
    with pytest.raises(strop.NotFound, match="names no block"):
        m.checkpointing = "layers.*"
    assert m.checkpointing == "blocks.*"
    assert m.step_memory(32, sample_shape=[8])["peak"] > 0
    with pytest.raises(strop.OutOfMemory, match="a batch of|no batch fits"):
        m.step_memory(32, limit=1000)
    m.checkpointing = None
    assert m.checkpointing is None
    # the machine's limit: this small step fits; a bad limit is refused before the library
    assert m.step_memory(32, limit="auto")["peak"] > 0
    with pytest.raises(ValueError, match="'auto'"):
        m.step_memory(32, limit=0)
    m.close()


def test_trainer_step_memory():
    """The trainer plans its own step: Adam's two values per weight without being told, the
    whole output and its gradient for a loss that does not run fused with the last linear layer
    (MSE), and the check names the trainer's function."""
    m = strop.Model([16])
    m.add("fc", "linear", "out_features=64")
    m.add("act", "gelu")
    m.add("head", "linear", "out_features=4096")
    m.finalize(seed=1)
    ce = strop.Trainer(m, strop.Optimizer(m, "adam"))
    plan = ce.step_memory(64)
    assert plan == m.step_memory(64, optimizer_slots=2)
    mse = strop.Trainer(m, strop.Optimizer(m, "sgd"), loss="mse")
    held = mse.step_memory(64, sample_shape=[16])
    out_bytes = 64 * 4096 * 4  # the loss's gradient, beside the output the fused loss holds too
    assert held["step"] > m.step_memory(64, optimizer_slots=0)["step"] + out_bytes * 0.9
    with pytest.raises(strop.OutOfMemory, match="strop_trainer_check_memory: a training step"):
        mse.step_memory(64, limit=1000)
    mse.forward(np.zeros((4, 16), np.float32))
    with pytest.raises(strop.StateError, match="awaits its backward"):
        mse.step_memory(64)
    mse.discard_forward()
    assert mse.step_memory(64, limit="auto") == held
    m.close()


def test_memory_available():
    room, source = strop.memory_available()
    assert room > 0
    assert source.split()[0] in ("cgroup", "RLIMIT_AS", "RLIMIT_DATA", "MemAvailable")
    assert source.endswith(("GB", "MB"))


def test_memory_limit_from_rlimit_in_a_child(tmp_path):
    """Under an RLIMIT_AS that leaves 64 MB, memory_available names it and a step of 100 MB
    of weights' gradients and Adam's state is refused with the sentence naming RLIMIT_AS."""
    code = """
import resource, strop
vm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")][0]
m = strop.Model([6])
m.add("fc1", "linear", "out_features=2048")
m.add("fc2", "linear", "out_features=4096")
m.finalize(seed=1)
lim = vm * 1024 + 64 * 2**20 + 34 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
room, source = strop.memory_available()
assert source.startswith("RLIMIT_AS "), source
try:
    m.step_memory(16, limit="auto")
except strop.OutOfMemory as e:
    print("REFUSED", e)
"""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr
    assert "REFUSED" in r.stdout and "(RLIMIT_AS " in r.stdout, r.stdout


def test_model_errors(mlp, tmp_path):
    with pytest.raises(strop.ShapeError, match="strop_model_forward"):
        mlp.forward(np.zeros((2, 7), np.float32))
    with pytest.raises(strop.NotFound):
        mlp["nope.weight"]
    with pytest.raises(strop.ShapeError):
        mlp["fc2.bias"] = [1, 2]
    with pytest.raises(strop.StateError):
        mlp.add("x", "relu")  # already finalized
    with pytest.raises(strop.InvalidArgument):
        strop.Model([0])
    m = strop.Model([4])
    with pytest.raises(strop.NotFound):
        m.add("a", "no_such_layer")
    with pytest.raises(strop.StateError):
        m.forward(np.zeros((1, 4), np.float32))
    m.close()
    with pytest.raises(strop.StropIOError):
        strop.Model.from_spec(tmp_path / "missing.yaml")
    with pytest.raises(strop.FormatError):
        strop.Model.from_yaml("input: [1\n")
    with pytest.raises(strop.StropIOError):
        mlp.load_weights(tmp_path / "missing.safetensors")
    with pytest.raises(strop.NotFound):
        mlp.is_trainable("nope")


def test_model_files_roundtrip(mlp, tmp_path):
    mlp.save(tmp_path / "m.yaml", tmp_path / "m.safetensors")
    m2 = strop.Model.load(tmp_path / "m.yaml", tmp_path / "m.safetensors")
    for n in mlp.tensor_names():
        np.testing.assert_array_equal(m2[n], mlp[n])
    c = mlp.clone()
    np.testing.assert_array_equal(c["fc1.weight"], mlp["fc1.weight"])
    with strop.SafetensorsFile(tmp_path / "m.safetensors") as f:
        assert sorted(f.names()) == sorted(mlp.tensor_names())
        assert f.dtype("fc1.weight") == "F32" and f.shape("fc1.weight") == (16, 8)
        np.testing.assert_array_equal(f["fc1.weight"], mlp["fc1.weight"])
        assert f.metadata.get("format") == "strop"
        assert "fc1.bias" in f and len(f) == 4
        with pytest.raises(strop.NotFound):
            f["nope"]
    with pytest.raises(strop.FormatError):
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"\x05\0\0\0\0\0\0\0{bad}")
        strop.SafetensorsFile(bad)


def test_model_meta_mapping(mlp):
    meta = mlp.meta
    assert len(meta) == 0 and dict(meta) == {} and "classes" not in meta
    meta["zeta"] = "1"
    meta["classes"] = '[{"label": 5, "name": "Sandal"}]'
    assert list(meta) == ["classes", "zeta"] and len(mlp.meta) == 2
    assert json.loads(meta["classes"])[0]["name"] == "Sandal"
    meta["zeta"] = "\u00e9t\u00e9"
    assert mlp.meta["zeta"] == "\u00e9t\u00e9"
    c = mlp.clone()
    del meta["zeta"]
    assert "zeta" not in meta and c.meta["zeta"] == "\u00e9t\u00e9"  # the clone's own copy
    c.close()
    with pytest.raises(KeyError):
        meta["zeta"]
    with pytest.raises(KeyError):
        del meta["zeta"]
    with pytest.raises(strop.InvalidArgument, match="printable ASCII"):
        meta["has space"] = "v"
    with pytest.raises(TypeError):
        meta["n"] = 3
    assert dict(meta) == {"classes": '[{"label": 5, "name": "Sandal"}]'}


def test_weights_from_bytes_and_metadata(mlp, tmp_path):
    mlp.meta["classes"] = '[{"label": 5, "name": "Sandal"}]'
    mlp.save_weights(tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    with strop.SafetensorsFile(tmp_path / "m.safetensors") as f:
        assert f.metadata["strop.meta.classes"] == mlp.meta["classes"]
    for buf in (data, bytearray(data), memoryview(data)):
        m2 = mlp.clone()
        m2.meta.clear()
        for n in m2.tensor_names():
            m2[n] = np.zeros_like(m2[n])
        rep = m2.load_weights(buf)
        assert sorted(rep.loaded) == sorted(mlp.tensor_names())
        for n in mlp.tensor_names():
            np.testing.assert_array_equal(m2[n], mlp[n])
        assert dict(m2.meta) == dict(mlp.meta)
        m2.close()
    with pytest.raises(strop.FormatError, match="<memory>: .*too short"):
        mlp.load_weights(b"")
    with pytest.raises(strop.FormatError, match="<memory>"):
        mlp.load_weights(data[:-1])
    with pytest.raises(strop.InvalidArgument, match="remap"):
        mlp.load_weights(data, remap=("a.", "b."))
    assert dict(mlp.meta) == {"classes": '[{"label": 5, "name": "Sandal"}]'}


def test_model_predict_applies_saved_preprocessing():
    m = strop.Model([1, 4, 4])
    m.add("flat", "flatten").add("head", "linear", "in_features=16 out_features=3").finalize(5)
    w = np.full((3, 16), -0.5, np.float32)
    for c in range(3):  # class c looks at quarter c of the image
        for p in range(16):
            if (p // 8) * 2 + (p % 4) // 2 == c:
                w[c, p] = 3.0
    m["head.weight"] = w
    m["head.bias"] = [0.1, 0.0, -0.2]
    m.meta["input.shape"] = "[1, 2, 2]"
    m.meta["input.scale"] = json.dumps(1 / 255)
    m.meta["input.resize"] = '{"size": [4, 4], "mode": "nearest"}'
    m.meta["input.normalize"] = '{"mean": [0.25], "std": [0.5]}'
    m.meta["classes"] = '[{"label": 7, "name": "seven"}, {"label": 3}, {"label": 9, "name": "nine"}]'
    raw = np.array([[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0]], np.uint8).reshape(3, 2, 2)
    # the reference: the same preprocessing by hand, then the plain forward
    x = (np.repeat(np.repeat(raw.astype(np.float32), 2, 1), 2, 2) * np.float32(1 / 255) - 0.25) / 0.5
    logits = m.forward(x.reshape(3, 1, 4, 4)).astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    m.train()
    assert m.predict(raw).tolist() == [7, 3, 9]
    assert m.training  # its mode is kept
    top = m.predict(raw, k=2, batch_size=2)  # in two C calls
    assert top.labels.shape == (3, 2) and len(top) == 3
    assert top.classes[:, 0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(top.probs[:, 0], probs.max(1), rtol=1e-6)
    assert top.names[0][0] == "seven" and top.names[1][0] is None and top.names[2][0] == "nine"
    assert (top.probs[:, 0] >= top.probs[:, 1]).all()
    assert m.predict(raw.reshape(-1), k=5).probs.shape == (3, 3)  # flat input; k capped at C
    with pytest.raises(strop.InvalidArgument, match="row 1 of the input holds NaN"):
        m.predict(np.array([[0, 0, 0, 0], [0, np.nan, 0, 0]], np.float32))
    with pytest.raises(strop.ShapeError, match="not a whole number of samples"):
        m.predict(np.zeros(5, np.uint8))
    m.meta["input.scale"] = '"x"'
    with pytest.raises(strop.FormatError, match="input.scale"):
        m.predict(raw)
    m.close()


def test_partial_load_report(tmp_path):
    base = strop.Model.from_spec(BASE_YAML)
    with base.surgery() as s:
        s.replace("head", "linear", {"out_features": 3}).apply()
    with pytest.raises(strop.ShapeError):
        base.load_weights(BASE_ST)
    rep = base.load_weights(BASE_ST, strict=False)
    assert rep.mismatched == ["head.weight", "head.bias"] or set(rep.mismatched) == {
        "head.weight", "head.bias"}
    assert "head.weight" in rep.details and "fc.weight" in rep.loaded
    rep = base.load_weights(BASE_ST, strict=False, remap=("fc.", "zz."))
    assert "zz.weight" in rep.unexpected
    base.close()


# ---- Surgery ----
def test_surgery_plan_and_views():
    m = strop.Model.load(BASE_YAML, BASE_ST)
    fc = m["fc.weight"]
    view = m.tensor("fc.weight")
    s = m.surgery(seed=3)
    s.replace("head", "linear", "out_features=5", seed=1).freeze("features.*").freeze("fc.*")
    s.param_group("head.*", lr_mult=2.0)
    assert len(s) == 4
    s.validate()
    assert "edit 1" in s.describe()
    s.apply()
    assert m.output_shape == (5,)
    assert not m.is_trainable("fc.weight") and m.is_trainable("head.weight")
    np.testing.assert_array_equal(m["fc.weight"], fc)  # untouched bit for bit
    with pytest.raises(strop.StateError, match="stale"):
        view.numpy()
    s.close()
    m.unfreeze("*")
    assert m.param_count(trainable_only=True) == m.param_count()
    m.freeze("features.*")
    with m.surgery() as s2:
        s2.insert_after("fc_act", "drop", "dropout", "p=0.1").append("out", "softmax")
        s2.remove("drop").truncate("fc").apply()
    assert m.output_shape == (32,)
    m.close()


def test_surgery_errors_leave_model_untouched():
    m = strop.Model.load(BASE_YAML, BASE_ST)
    before = m["head.weight"]
    s = strop.Surgery(m)
    s.replace("head", "linear", {"out_features": 7})
    s.freeze("no_such_node*")
    with pytest.raises(strop.NotFound, match="edit 2"):
        s.apply()
    np.testing.assert_array_equal(m["head.weight"], before)
    assert m.output_shape == (5,)
    with pytest.raises(strop.InvalidArgument):
        s.lora("fc", rank=0)
    with pytest.raises(strop.NotFound):
        s.replace("head", "no_such_type")
    s.close()
    m.close()


def test_surgery_keeps_model_alive():
    m = strop.Model.load(BASE_YAML, BASE_ST)
    s = m.surgery()
    m.close()  # the plan still borrows the C model
    s.freeze("features.*").apply()
    s.close()


def test_lora(tmp_path):
    m = strop.Model.load(BASE_YAML, BASE_ST)
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    y0 = m(x)
    with m.surgery() as s:
        s.lora("fc", rank=4, alpha=8).apply()
    np.testing.assert_array_equal(m(x), y0)  # B is zero
    m["fc.lora_B.weight"] = np.full((32, 4), 0.01, np.float32)
    m.lora_save(tmp_path)
    m.lora_merge()
    m.lora_unmerge()
    m2 = strop.Model.load(BASE_YAML, BASE_ST)
    m2.lora_load(tmp_path)
    np.testing.assert_allclose(m2(x), m(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(strop.NotFound):
        strop.Model.load(BASE_YAML, BASE_ST).lora_merge()


def test_lora_saves_the_replaced_head(tmp_path):
    """PEFT's modules_to_save: base + adapter folder is the fine-tuned model, new head and all."""
    m = strop.Model.load(BASE_YAML, BASE_ST)
    with m.surgery(seed=3) as s:
        s.freeze("*").replace("head", "linear", {"out_features": 7}).lora("fc", rank=4, alpha=8)
        s.apply()
    assert json.loads(m.meta["lora.modules_to_save"]) == ["head"]
    m["fc.lora_B.weight"] = np.full((32, 4), 0.01, np.float32)
    m["head.bias"] = np.arange(7, dtype=np.float32)
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    m.lora_save(tmp_path / "new" / "adapters")  # made when missing
    cfg = json.loads((tmp_path / "new" / "adapters" / "adapter_config.json").read_text())
    assert cfg["modules_to_save"] == ["head"] and cfg["target_modules"] == ["fc"]
    m2 = strop.Model.load(BASE_YAML, BASE_ST)
    m2.lora_load(tmp_path / "new" / "adapters")
    assert m2.output_shape == (7,)
    np.testing.assert_array_equal(m2(x), m(x))


def test_lora_saves_trained_biases(tmp_path):
    """PEFT's bias "lora_only": an adapted module's bias that trains travels in the folder."""
    m = strop.Model.load(BASE_YAML, BASE_ST)
    with m.surgery() as s:
        s.freeze("*").lora("fc", rank=4, alpha=8).unfreeze("fc.bias").apply()
    m["fc.lora_B.weight"] = np.full((32, 4), 0.01, np.float32)
    m["fc.bias"] = np.linspace(-1, 1, 32, dtype=np.float32)
    x = np.random.default_rng(2).random((2, 1, 28, 28), dtype=np.float32)
    m.lora_save(tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["bias"] == "lora_only" and cfg["modules_to_save"] is None
    m2 = strop.Model.load(BASE_YAML, BASE_ST)
    m2.lora_load(tmp_path)
    np.testing.assert_array_equal(m2["fc.bias"], m["fc.bias"])
    np.testing.assert_array_equal(m2(x), m(x))


# ---- Dataset / BatchIterator / Vocab ----
def test_dataset_from_numpy_classification(toy_data):
    x, y = toy_data
    ds = strop.Dataset.from_numpy(x, y)
    assert len(ds) == 96 and ds.input_shape == (8,) and ds.target_shape == ()
    assert ds.num_classes == 3
    xi, yi = ds[5]
    np.testing.assert_array_equal(xi, x[5])
    assert yi == y[5]
    assert ds.class_counts().sum() == 96
    tr, va, te = ds.split(0.5, 0.25, seed=1, stratified=True)
    assert len(tr) + len(va) + len(te) == 96
    few = ds.few_shot(4, seed=2)
    assert len(few) == 12
    sub = ds.subset([3, 1, 3])
    assert sub[0][1] == y[3]
    f = ds.filter_classes([2, 0])
    assert f.num_classes == 2
    oh = ds.one_hot()
    assert oh.target_shape == (3,)
    rs = ds.reshape(2, 4)
    assert rs.input_shape == (2, 4)
    mean, std = ds.channel_stats()
    assert mean.shape == (1,)
    n_train = len(tr)
    xx, yy = ds.numpy()
    np.testing.assert_array_equal(xx, x)
    np.testing.assert_array_equal(yy, y.astype(np.float32))
    ds.close()
    assert len(tr) == n_train and tr[0][0].shape == (8,)  # views outlive their source


def test_dataset_wrap_keeps_arrays_until_release(toy_data):
    from strop import _callbacks
    x, y = toy_data
    x = x.copy()
    before = _callbacks.lent_count()
    ds = strop.Dataset.from_numpy(x, y)  # x lent without a copy; y converted
    view = ds.subset([0, 1])
    it = view.batches(2)
    assert _callbacks.lent_count() == before + 1
    ds.close()
    view.close()
    assert _callbacks.lent_count() == before + 1  # the iterator still shares the storage
    x[0, 0] = 42.0  # same memory: visible through the iterator
    bx, by = it.next_batch()
    assert bx[0, 0] == 42.0
    it.close()
    assert _callbacks.lent_count() == before


def test_dataset_regression_copy_and_errors(toy_data):
    x, _ = toy_data
    yr = x[:, :2] * 2
    ds = strop.Dataset.from_numpy(x, yr, copy=True)
    assert ds.num_classes == 0 and ds.target_shape == (2,)
    ds1 = strop.Dataset.from_numpy(x, x[:, 0])
    assert ds1.target_shape == (1,)
    with pytest.raises(strop.InvalidArgument, match="samples"):
        strop.Dataset.from_numpy(x, np.zeros(5, np.int64))
    with pytest.raises(strop.InvalidArgument):
        strop.Dataset.from_numpy(x, np.full(96, 7), num_classes=3)  # label out of range
    with pytest.raises(strop.InvalidArgument):
        ds.subset([1000])
    with pytest.raises(strop.Unsupported):
        ds.one_hot()
    with pytest.raises(strop.ShapeError):
        ds.reshape(3, 3)
    with pytest.raises(strop.StropIOError):
        strop.Dataset.load_idx("/nonexistent", "/nonexistent")
    with pytest.raises(TypeError):
        strop.Dataset()


def test_dataset_callback_and_exception():
    def sample(i):
        if i == 7:
            raise KeyError("sample seven is broken")
        return np.full(4, i, np.float32), i % 2
    ds = strop.Dataset.from_callback(10, sample, (4,), (), num_classes=2)
    x, y = ds[3]
    assert x.tolist() == [3, 3, 3, 3] and y == 1
    with pytest.raises(KeyError, match="seven") as ei:
        ds[7]
    assert isinstance(ei.value.__cause__, strop.CallbackError)
    view = ds.subset([1, 2])
    ds.close()
    assert view[1][0][0] == 2  # the view keeps the callable alive
    it = view.batches(2, prefetch=True)
    bx, by = it.next_batch()
    assert bx.shape == (2, 4)
    it.close()


def test_batch_iterator(toy_data):
    x, y = toy_data
    ds = strop.Dataset.from_numpy(x, y)
    it = ds.batches(40, seed=5, shuffle=True)
    assert it.num_batches == 3 and len(it) == 3 and it.input_shape == (8,)
    batches = list(it)
    assert [b[0].shape[0] for b in batches] == [40, 40, 16]
    state = it.state
    second = list(it)
    it.state = state
    again = list(it)
    for (a, _), (b, _) in zip(second, again):
        np.testing.assert_array_equal(a, b)
    it2 = ds.batches(32, drop_last=True).scale(2.0).normalize([0.0], [2.0])
    bx, _ = it2.next_batch()
    np.testing.assert_allclose(bx, x[:32], rtol=1e-6)
    with pytest.raises(strop.InvalidArgument):
        ds.batches(0)
    with pytest.raises(strop.StateError):
        it2.scale(1.0)  # after the first batch
    with pytest.raises(strop.ShapeError):
        ds.batches(4).hflip()
    with pytest.raises(strop.InvalidArgument):
        it2.state = (-1, 0, 0)


def test_image_iterator_transforms():
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 8, 8), dtype=np.float32)
    ds = strop.Dataset.from_numpy(x, np.arange(6) % 2)
    it = ds.batches(3).hflip(1.0).random_crop(8, 8, 1).resize(4, 4, "nearest").normalize()
    bx, _ = it.next_batch()
    assert bx.shape == (3, 1, 4, 4)


def test_vocab_and_text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("hello world, hello strop\n" * 4)
    v = strop.Vocab.build([p], "chars")
    ids = v.encode("hello")
    assert ids.dtype == np.int64 and v.decode(ids) == "hello"
    v.save(tmp_path / "v.txt")
    v2 = strop.Vocab.load(tmp_path / "v.txt")
    assert len(v2) == len(v)
    ds = strop.Dataset.load_text(p, v, seq_len=8)
    assert ds.input_shape == (8,)
    dc = strop.Dataset.load_text_classes([p, p], [0, 1], v, 8)
    assert dc.num_classes == 2
    with pytest.raises(strop.InvalidArgument):
        v.decode([10 ** 6])
    with pytest.raises(strop.StropIOError):
        strop.Vocab.load(tmp_path / "none")


def test_csv_and_npy(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
    ds = strop.Dataset.load_csv(tmp_path / "d.csv", header=True, label_mode="names")
    assert len(ds) == 3 and ds.num_classes == 2 and ds.class_name(1) == "y"
    with pytest.raises(strop.NotFound):
        strop.Dataset.load_csv(tmp_path / "d.csv", header=True, label_name="nope")
    np.save(tmp_path / "x.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1]))
    dn = strop.Dataset.load_npy(tmp_path / "x.npy", tmp_path / "y.npy")
    assert len(dn) == 4 and dn.input_shape == (3,)
    np.save(tmp_path / "c.npy", np.ones((4, 3), np.complex64))
    with pytest.raises(strop.Unsupported):
        strop.Dataset.load_npy(tmp_path / "c.npy", tmp_path / "y.npy")


# ---- Optimizer / Scheduler ----
def test_optimizer(mlp):
    opt = strop.Optimizer(mlp, "sgd", lr=0.1, momentum=0.9, nesterov=True)
    assert opt.kind == "sgd" and opt["nesterov"] == 1
    assert math.isclose(opt.lr, 0.1, rel_tol=1e-6)
    opt.lr = 0.2
    assert math.isclose(opt["lr"], 0.2, rel_tol=1e-6)
    opt.zero_grad()
    opt.step()
    opt.sync()
    assert opt.step_count == 1
    lo, hi, fl = strop.Optimizer.knob_range("adam", "beta1")
    assert lo == 0 and hi == 1 and fl & 4
    assert strop.Optimizer.knob_name(0) == "lr"
    with pytest.raises(strop.InvalidArgument, match="lr"):
        opt.lr = -1
    with pytest.raises(strop.InvalidArgument):
        opt["beta1"]  # not an SGD knob
    with pytest.raises(strop.InvalidArgument, match="unknown optimizer knob"):
        opt["nope"] = 1
    with pytest.raises(strop.InvalidArgument):
        strop.Optimizer(mlp, 17)


def test_scheduler(mlp):
    opt = strop.Optimizer(mlp, "adam", lr=0.1)
    s = strop.Scheduler(opt, "multistep", milestones=[2, 4], gamma=0.5)
    assert s["milestones"] == [2, 4] and s.kind == "multistep"
    for _ in range(4):
        s.step()
    assert math.isclose(s.lr, 0.025, rel_tol=1e-6) and s.last_step == 4
    p = strop.Scheduler(opt, "plateau", mode="max", patience=0)
    p.step_metric(1.0)
    assert strop.Scheduler.knob_name(3) == "T_max"
    assert strop.Scheduler.knob_range("cosine", "T_max")[2] & 1
    c = strop.Scheduler(opt, "cosine")
    with pytest.raises(strop.StateError):
        c.step()  # T_max unset
    with pytest.raises(strop.InvalidArgument):
        s["milestones"] = [3, 1]
    with pytest.raises(strop.InvalidArgument):
        s.step_metric(1.0)  # not a plateau scheduler


def test_optimizer_keeps_model_alive():
    m = strop.Model([4])
    m.add("fc", "linear", "in_features=4 out_features=2").finalize()
    opt = strop.Optimizer(m, "adam")
    sch = strop.Scheduler(opt, "step", step_size=1)
    mref = weakref.ref(m)
    del m
    gc.collect()
    assert mref() is not None  # opt.model
    opt.close()  # the scheduler still borrows the C optimizer (and model)
    sch.step()
    sch.close()


# ---- Trainer ----
def test_trainer_step_eval_fit(mlp, toy_data, tmp_path):
    x, y = toy_data
    opt = strop.Optimizer(mlp, "adam", lr=0.01)
    sch = strop.Scheduler(opt, "step", step_size=10, gamma=0.5)
    tr = strop.Trainer(mlp, opt, sch, clip_norm=5.0, label_smoothing=0.0)
    assert tr["clip_norm"] == 5.0 and tr["loss"] == 1
    l0 = tr.step(x[:32], y[:32])
    assert l0 > 0 and tr.global_step == 1
    ds = strop.Dataset.from_numpy(x, y)
    m = tr.evaluate(ds)
    assert m.samples == 96 and 0 <= m.accuracy <= 1 and m.confusion.shape == (3, 3)
    assert m.confusion.sum() == 96 and m.support.sum() == 96
    m2 = tr.evaluate(ds.batches(50))
    assert m2.samples == 96
    reports = []
    hist = tr.fit(ds.batches(16, shuffle=True, seed=1), ds.batches(32), epochs=3,
                  progress=reports.append, checkpoint_path=tmp_path / "ck.st")
    assert len(hist) == 3 and not math.isnan(hist[-1]["val_loss"])
    assert reports[-1].phase == "epoch_end" and reports[0].phase == "batch"
    assert os.path.exists(tmp_path / "ck.st")
    tr.save_checkpoint(tmp_path / "c2.st")
    tr.load_checkpoint(tmp_path / "c2.st")
    assert tr.best_epoch >= 0 and tr.skipped_steps == 0
    tr.set_class_weights([1, 2, 1])
    tr.set_class_weights(None)
    tr.set_scheduler(None)
    tr["loss"] = "mse"
    assert tr["loss"] == 2


def test_trainer_errors(mlp, toy_data, tmp_path):
    x, y = toy_data
    opt = strop.Optimizer(mlp, "adam")
    tr = strop.Trainer(mlp, opt)
    with pytest.raises(strop.ShapeError):
        tr.step(x[:, :4], y)
    with pytest.raises(strop.InvalidArgument, match="class|target|index"):
        tr.step(x[:4], np.array([0, 1, 2, 9]))
    with pytest.raises(strop.NumericError):
        tr.step(np.full((4, 8), np.inf, np.float32), y[:4])
    assert tr.skipped_steps == 1
    with pytest.raises(strop.InvalidArgument):
        tr["accum_steps"] = 0
    with pytest.raises(strop.InvalidArgument):
        tr["nope"] = 1
    with pytest.raises(strop.StropIOError):
        tr.load_checkpoint(tmp_path / "missing")
    with pytest.raises(strop.InvalidArgument):
        tr.set_class_weights([-1, 1, 1])
    with pytest.raises(strop.InvalidArgument):
        tr.evaluate([1, 2])


def _twin_mlps():
    ms = []
    for _ in range(2):
        m = strop.Model([8])
        m.add("fc1", "linear", "out_features=16").add("act", "tanh")
        m.add("fc2", "linear", "out_features=3").finalize(seed=7)
        ms.append(m)
    return ms


def test_trainer_host_loss_equals_builtin_mse(toy_data):
    """forward / backward / apply with an MSE computed in numpy = the built-in MSE, bit for bit:
    losses, gradients and weights after several Adam steps with accumulation."""
    x, y = toy_data
    target = np.eye(3, dtype=np.float32)[y]
    ma, mb = _twin_mlps()
    ta = strop.Trainer(ma, strop.Optimizer(ma, "adam", lr=0.01), loss="mse", accum_steps=2)
    tb = strop.Trainer(mb, strop.Optimizer(mb, "adam", lr=0.01), accum_steps=2)
    names = [n for n in ma.tensor_names()]
    for step in range(6):
        xs, ts = x[16 * step:16 * step + 16], target[16 * step:16 * step + 16]
        builtin = ta.step(xs, ts)
        out = tb.forward(xs)
        d = out.astype(np.float64) - ts.astype(np.float64)
        total = 0.0
        for e in d.ravel():  # in order, as the library sums
            total += e * e
        scale = 1.0 / d.size
        assert np.float32(total * scale) == np.float32(builtin)
        tb.backward((2.0 * d * scale).astype(np.float32))
        if step % 2 == 0:  # mid-window: compare the gradients
            for n in names:
                assert np.array_equal(ma.grad(n), mb.grad(n)), n
        tb.apply()
    for n in names:
        assert np.array_equal(ma[n], mb[n]), n
    assert ta.global_step == tb.global_step == 3


def test_trainer_host_gradients_and_errors(mlp, toy_data):
    x, y = toy_data
    opt = strop.Optimizer(mlp, "sgd", lr=0.5)
    tr = strop.Trainer(mlp, opt)
    with pytest.raises(strop.StateError, match="strop_trainer_forward first"):
        tr.backward(np.zeros((4, 3), np.float32))
    out = tr.forward(x[:4])
    assert out.shape == (4, 3) and out.dtype == np.float32
    with pytest.raises(strop.ShapeError, match=r"\[4, 3\]"):
        tr.backward(np.zeros((4, 2), np.float32))
    with pytest.raises(strop.StateError, match="pending"):
        tr.apply()
    bad = np.zeros((4, 3), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(strop.NumericError):
        tr.backward(bad)
    assert tr.skipped_steps == 1
    tr.forward(x[:4])
    tr.backward(np.full((4, 3), 0.25, np.float32))
    assert np.array_equal(mlp.grad("fc2.bias"), np.ones(3, np.float32))  # 4 rows of 0.25
    mine = np.array([2.0, -2.0, 4.0], np.float32)
    mlp.set_grad("fc2.bias", mine)
    b0 = mlp["fc2.bias"]
    tr.apply()
    assert np.array_equal(mlp["fc2.bias"], b0 - np.float32(0.5) * mine)
    assert not mlp.grad("fc2.bias").any()  # cleared by the update
    tr.forward(x[:4])
    tr.discard_forward()
    # gradients made in Python, applied by the optimizer alone
    g = np.full((3, 16), 0.5, np.float32)
    mlp.set_grad("fc2.weight", g)
    w0 = mlp["fc2.weight"]
    opt.step()
    assert np.array_equal(mlp["fc2.weight"], w0 - np.float32(0.5) * g)
    with pytest.raises(strop.NotFound):
        mlp.grad("nope")
    with pytest.raises(strop.ShapeError):
        mlp.set_grad("fc2.bias", np.zeros(4, np.float32))
    mlp.freeze("fc1.*")
    with pytest.raises(strop.StateError, match="frozen"):
        mlp.grad("fc1.weight")


def test_trainer_keeps_everything_alive(toy_data):
    x, y = toy_data
    m = strop.Model([8])
    m.add("fc", "linear", "in_features=8 out_features=3").finalize(1)
    opt = strop.Optimizer(m, "sgd", lr=0.1)
    sch = strop.Scheduler(opt, "exponential", gamma=0.9)
    tr = strop.Trainer(m, opt, sch)
    m.close()
    opt.close()
    sch.close()
    tr.step(x[:8], y[:8])  # the C objects live until the trainer goes
    tr.close()


def test_progress_callback_stop_and_exception(mlp, toy_data):
    x, y = toy_data
    ds = strop.Dataset.from_numpy(x, y)
    tr = strop.Trainer(mlp, strop.Optimizer(mlp, "adam"))

    class Boom(Exception):
        pass

    calls = []

    def progress(p):
        calls.append(p.global_step)
        if p.global_step == 3:
            raise Boom("stop here")

    with pytest.raises(Boom, match="stop here") as ei:
        tr.fit(ds.batches(8), epochs=5, progress=progress)
    assert isinstance(ei.value.__cause__, strop.Cancelled)
    assert calls == [1, 2, 3] and tr.global_step == 3  # stopped cleanly
    hist = tr.fit(ds.batches(8), epochs=5, progress=lambda p: p.global_step >= 5)
    assert tr.global_step == 5 and isinstance(hist, list)
    tr.step(x[:8], y[:8])  # still usable


# ---- Recipe / Run ----
RECIPE = """
seed: 3
model: {spec: %s, weights: %s}
surgery:
  - replace: {node: head, type: linear, options: {out_features: 2}}
data:
  source: idx
  train_images: %s/t10k-images-idx3-ubyte.gz
  train_labels: %s/t10k-labels-idx1-ubyte.gz
  num_classes: 10
  classes: [5, 6]
  few_shot: 4
  scale: 0.00392156862745098
  batch_size: 4
  test_fraction: 0.5
loss: {kind: cross_entropy}
optimizer: {kind: adam, lr: 0.003}
stages:
  - {name: head, epochs: 2, surgery: [{freeze: "features.*"}]}
"""


def _recipe():
    if not os.path.isdir(FASHION_DATA):
        pytest.skip("Fashion-MNIST not installed")
    text = RECIPE % (BASE_YAML, BASE_ST, FASHION_DATA, FASHION_DATA)
    return strop.Recipe.from_string(text, FASHION)


def test_recipe_and_run(tmp_path):
    r = _recipe()
    r["optimizer.lr"] = 0.001
    assert float(r["optimizer.lr"]) == 0.001
    assert r.get("no.such.key") is None
    r2 = r.clone()
    r2.save(tmp_path / "r.yaml")
    assert "optimizer" in r2.to_string()
    events = []
    run = r.run(write_outputs=False, baselines=False, on_event=events.append)
    assert {e.kind for e in events} >= {"stage_start", "stage_end"}
    assert run.info("classes") == 2 and run.seconds > 0
    assert run.stages[0]["name"] == "head" and len(run.history()) == 2
    model = run.model
    run.close()  # the borrowed model keeps the run alive
    assert model.output_shape == (2,)
    m = r.evaluate(model, "test")
    assert m.samples > 0
    with pytest.raises(strop.NotFound):
        r.evaluate(model, "val")
    with pytest.raises(strop.FormatError):
        r["optimizer.lr"] = "[not a number"
    with pytest.raises(strop.FormatError):
        strop.Recipe.from_string("bogus_key: 1\n")
    with pytest.raises(strop.StropIOError):
        strop.Recipe.load(tmp_path / "missing.yaml")


def test_recipe_resume(tmp_path):
    """Recipe.run(resume=True) continues a stopped run from output.checkpoint and ends with
    the uninterrupted run's weights."""
    def run(out, resume=False, stop_after=0):
        r = _recipe()
        r["train.checkpoint_every"] = 1
        r["output.dir"] = str(tmp_path / out)
        r["output.checkpoint"] = "ck.safetensors"
        r["output.weights"] = "w.safetensors"
        ends = []

        def on_event(e):
            ends.append(e.kind == "progress" and e.progress.phase == "epoch_end")
            return stop_after and sum(ends) >= stop_after
        result = r.run(baselines=False, on_event=on_event, resume=resume)
        result.close()
        return tmp_path / out / "w.safetensors"

    whole = run("whole")
    run("stopped", stop_after=1)
    assert not (tmp_path / "stopped" / "w.safetensors").exists()
    resumed = run("stopped", resume=True)
    assert whole.read_bytes() == resumed.read_bytes()


def test_recipe_event_exception():
    r = _recipe()

    def on_event(e):
        if e.kind == "progress":
            raise ZeroDivisionError("from the event callback")
    with pytest.raises(ZeroDivisionError, match="event callback"):
        r.run(write_outputs=False, baselines=False, on_event=on_event)
    run = r.run(write_outputs=False, baselines=False, on_event=lambda e: e.kind == "progress")
    assert run is not None
    run.close()


def test_recipe_tune_interrupt_resume_budget(tmp_path):
    """Recipe.tune: a stop asked during a trial records it as interrupted; the next search
    says what it resumed and runs that trial first; time_budget reaches the tuner."""
    r = _recipe()
    r["tune"] = ("{strategy: random, trials: 3, metric: train_loss, trials_file: %s, "
                 "params: [{key: optimizer.lr, type: float, low: 1.0e-4, high: 1.0e-2, "
                 "log: true}]}" % (tmp_path / "trials.jsonl"))
    events = []

    def stop_in_second(e):
        events.append(e)
        return e["kind"] == "epoch" and e["trial_id"] == 1
    with pytest.raises(strop.Cancelled):
        r.tune(on_event=stop_in_second)
    ends = [e for e in events if e["kind"] == "trial_end"]
    assert [e["status"] for e in ends] == ["ok", "interrupted"]
    events.clear()
    t = r.tune(on_event=events.append)
    resumed = [e for e in events if e["kind"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["count"] == 1
    assert resumed[0]["path"].endswith("trials.jsonl")
    assert [e["trial_id"] for e in events if e["kind"] == "trial_start"] == [1, 2]
    assert [e["key"] for e in events if e["kind"] == "output"] == ["tune.trials_file"]
    assert len(t) == 3 and t["time_budget"] == 0
    t.close()
    r["tune.trials_file"] = str(tmp_path / "timed.jsonl")
    t = r.tune(time_budget=1e-9)
    assert t["time_budget"] == 1e-9 and len(t) <= 1
    t.close()


# ---- Tuner ----
def test_tuner_ask_tell():
    t = strop.Tuner("grid", seed=1, direction="minimize", grid_points=3)
    t.add_float("optimizer.lr", 1e-3, 1e-1, log=True)
    t.add_int("data.batch_size", 8, 32)
    t.add_categorical("optimizer.kind", ["adam", "sgd"])
    assert t.params == ["optimizer.lr", "data.batch_size", "optimizer.kind"]
    assert t.param_kind(2) == "categorical" and t.grid_size == 18
    assert t["grid_points"] == 3
    tr = t.ask()
    p = tr.params
    assert p["optimizer.kind"] in ("adam", "sgd") and isinstance(p["data.batch_size"], int)
    assert tr.report(1, 0.5) is False
    t.tell(tr, 0.4)
    assert t.best() == (tr.id, 0.4)
    res = tr.result()
    assert res["status"] == "ok" and res["reports"] == [(1, 0.5)]
    assert len(t) == 1 and t.trials[0].id == tr.id
    assert strop.Tuner.knob_name(0) == "n_initial"
    with pytest.raises(strop.StateError):
        t.add_float("x", 0, 1)  # the space is frozen
    with pytest.raises(strop.StateError):
        t.tell(tr, 0.1)  # already told
    with pytest.raises(strop.NotFound):
        t.tell(999, 0.1)
    with pytest.raises(strop.StateError):
        strop.Tuner().best()
    with pytest.raises(strop.InvalidArgument):
        strop.Tuner().add_float("a", 1, 0)


def test_tuner_run_and_exceptions(tmp_path):
    t = strop.Tuner("random", seed=2, direction="maximize")
    t.add_float("x", -1, 1)
    t.set_log(tmp_path / "trials.jsonl")

    def fn(trial):
        if trial.id == 1:
            raise strop.TrialFailed()
        if trial.id == 2:
            raise strop.TrialPruned(0.0)
        return -trial["x"] ** 2
    t.run(fn, 5)
    st = [tr.result()["status"] for tr in t.trials]
    assert st == ["ok", "failed", "pruned", "ok", "ok"]
    t.set_log(None)
    t2 = strop.Tuner("random", seed=2, direction="maximize")
    t2.add_float("x", -1, 1)
    t2.resume(tmp_path / "trials.jsonl")
    assert len(t2) == 5

    def bad(trial):
        raise LookupError("trial function bug")
    with pytest.raises(LookupError, match="bug") as ei:
        t2.run(bad, 3)
    assert isinstance(ei.value.__cause__, strop.Cancelled)
    assert len(t2) == 6  # stopped after the first
    with pytest.raises(strop.InvalidArgument):
        t2.run(fn, -1)


# ---- Rng ----
def test_rng():
    a = strop.Rng(7)
    b = strop.Rng(7)
    np.testing.assert_array_equal(a.uniform(10), b.uniform(10))
    assert sorted(a.permutation(5).tolist()) == [0, 1, 2, 3, 4]
    assert a.normal(3).shape == (3,) and isinstance(a.next_u32(), int)
    with pytest.raises(strop.InvalidArgument):
        a.uniform(3, 1.0, 0.0)
    with pytest.raises(strop.InvalidArgument):
        a.normal(3, 0, -1)


def test_closed_objects_raise_state_error(mlp):
    opt = strop.Optimizer(mlp, "adam")
    opt.close()
    with pytest.raises(strop.StateError, match="closed"):
        opt.step()
    with pytest.raises(strop.StateError):
        strop.Trainer(mlp, opt)
    assert "closed" in repr(opt)
