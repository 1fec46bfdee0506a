# SPDX-License-Identifier: MIT
"""Model.from_pretrained: torchvision's ResNet-18 and MobileNets as safetensors state_dicts,
loaded with their own names; the same logits as torchvision's modules when
python3-torchvision is installed."""
import json
import os
import struct

import numpy as np
import pytest

from conftest import load_strop

strop = load_strop()


def write_safetensors(path, tensors):
    """A minimal safetensors writer (F32 and I64) for the tests."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[a.dtype]
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_archs_are_listed():
    archs = strop.Model.pretrained_archs()
    assert "resnet18" in archs and "resnet50" in archs
    assert "torchvision" in archs["resnet18"]
    for name in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"):
        assert "torchvision" in archs[name]


def test_partial_then_strict_round_trip(tmp_path):
    empty = tmp_path / "empty.safetensors"
    write_safetensors(empty, {})
    m = strop.Model.from_pretrained(empty, arch="resnet18", strict=False, image_size=32, seed=3)
    assert len(m.load_report.missing) == 122 and not m.load_report.loaded
    m.save_weights(tmp_path / "r18.safetensors")
    m2 = strop.Model.from_pretrained(tmp_path / "r18.safetensors", arch="resnet18", image_size=32)
    assert len(m2.load_report.loaded) == 122
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(m.forward(x), m2.forward(x))
    m.close()
    m2.close()


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(strop.StropError, match="resnet9000"):
        strop.Model.from_pretrained(tmp_path, arch="resnet9000")
    with pytest.raises(strop.StropError, match="model.safetensors"):
        strop.Model.from_pretrained(tmp_path, arch="resnet18")
    (tmp_path / "config.json").write_text('{"architectures": ["NoSuchModel"]}')
    write_safetensors(tmp_path / "model.safetensors", {})
    with pytest.raises(strop.StropError, match="NoSuchModel"):
        strop.Model.from_pretrained(tmp_path)


def test_torchvision_logits(tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    write_safetensors(tmp_path / "r18.safetensors",
                      {k: v.numpy() for k, v in tv.state_dict().items()})
    m = strop.Model.from_pretrained(tmp_path / "r18.safetensors", arch="resnet18")
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 48, 48)).astype(np.float32)
    with torch.no_grad():
        want = tv(torch.from_numpy(x)).numpy()
    got = m.forward(x)
    assert got.shape == (2, 7)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    m.close()


@pytest.mark.parametrize("arch", ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"])
def test_torchvision_mobilenet_logits(tmp_path, arch):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tv = getattr(torchvision.models, arch)(weights=None, num_classes=7).eval()
    with torch.no_grad():  # logits of a useful size: torchvision's init gives ~1e-10
        for mod in tv.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.normal_(0, 0.1)
    write_safetensors(tmp_path / "mn.safetensors",
                      {k: v.numpy() for k, v in tv.state_dict().items()})
    m = strop.Model.from_pretrained(tmp_path / "mn.safetensors", arch=arch, image_size=64)
    assert len(m.load_report.loaded) == len(tv.state_dict())
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 80, 72)).astype(np.float32)
    with torch.no_grad():
        want = tv(torch.from_numpy(x)).numpy()
    got = m.forward(x)
    assert got.shape == (2, 7)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    m.close()


# ---- Hugging Face folders: padding masks, variable lengths, save_pretrained ----
LLAMA_CLS = {"architectures": ["LlamaForSequenceClassification"], "model_type": "llama",
             "vocab_size": 20, "hidden_size": 16, "intermediate_size": 24,
             "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 32, "pad_token_id": 0,
             "id2label": {"0": "neg", "1": "pos"}}


def llama_folder(tmp_path, name="src"):
    """A Llama classifier folder written by strop: a partial load of an empty file, saved."""
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(LLAMA_CLS))
    write_safetensors(d / "model.safetensors", {})
    m = strop.Model.from_pretrained(d, strict=False, seed=4)
    m.save_weights(d / "model.safetensors")
    m.close()
    return d


def padded(lengths, width, left=False):
    rng = np.random.default_rng(2)
    ids = np.zeros((len(lengths), width), np.float32)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        s = width - n if left else 0
        ids[i, s:s + n] = rng.integers(1, 20, n)
        mask[i, s:s + n] = 1
    return ids, mask


def test_masked_forward_equals_each_sample_alone(tmp_path):
    m = strop.Model.from_pretrained(llama_folder(tmp_path))
    for left in (False, True):
        ids, mask = padded([5, 9, 3], 12, left)
        batch = m.forward(ids, mask)
        for i in range(3):
            tok = ids[i][mask[i] > 0][None, :]
            np.testing.assert_allclose(batch[i], m(tok)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(strop.StropError, match="0 or 1|must be 1"):
        m.forward(ids, mask * 0.5)
    with pytest.raises(strop.StropError, match="padding mask"):
        m.forward(ids, mask[:, :5])
    m.close()


def test_masked_steps_of_any_length(tmp_path):
    m = strop.Model.from_pretrained(llama_folder(tmp_path))
    opt = strop.Optimizer(m, "adamw", lr=1e-3)
    tr = strop.Trainer(m, opt)
    for width in (12, 7, 12):
        ids, mask = padded([5, 7, 3], width)
        loss = tr.step(ids, np.array([0, 1, 1]), mask=mask)
        assert np.isfinite(loss)
    out = tr.forward(*padded([4, 2], 6))
    assert out.shape == (2, 2)
    tr.backward(np.full((2, 2), 0.1, np.float32))
    tr.apply()
    # a dataset that carries masks gives them to its batches and to evaluation
    ids, mask = padded([5, 9, 3, 6], 12)
    ds = strop.Dataset.from_numpy(ids, np.array([0, 1, 1, 0]), num_classes=2, copy=True)
    assert not ds.has_mask
    ds.set_mask(mask)
    assert ds.has_mask
    it = ds.batches(2)
    xb, _ = it.next_batch()
    np.testing.assert_array_equal(it.mask, mask[:2])
    metrics = tr.evaluate(ds, batch_size=3)
    want = np.mean([-np.log(np.exp(z[c]) / np.exp(z).sum()) for z, c in
                    ((m(ids[i][mask[i] > 0][None, :])[0], c) for i, c in enumerate([0, 1, 1, 0]))])
    assert metrics.loss == pytest.approx(want, rel=1e-4)
    ds.set_mask(None)
    assert not ds.has_mask
    m.close()


def test_save_pretrained_round_trip(tmp_path):
    m = strop.Model.from_pretrained(llama_folder(tmp_path))
    tr = strop.Trainer(m, strop.Optimizer(m, "sgd", lr=0.1))
    ids, mask = padded([5, 9, 3], 12)
    tr.step(ids, np.array([0, 1, 0]), mask=mask)
    out = tmp_path / "fine-tuned" / "model"
    m.save_pretrained(out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForSequenceClassification"]
    assert cfg["torch_dtype"] == "float32" and cfg["id2label"] == {"0": "neg", "1": "pos"}
    header = (out / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", header[:8])[0]
    assert json.loads(header[8:8 + n])["__metadata__"]["format"] == "pt"
    m2 = strop.Model.from_pretrained(out)
    np.testing.assert_array_equal(m.forward(ids, mask), m2.forward(ids, mask))
    plain = strop.Model([4]).add("fc", "linear", "out_features=2").finalize()
    with pytest.raises(strop.StropError, match="pretrained.config"):
        plain.save_pretrained(tmp_path / "x")
    for h in (m, m2, plain):
        h.close()


def test_classifier_head_on_a_loaded_model(tmp_path):
    m = strop.Model.from_pretrained(llama_folder(tmp_path))
    before = m.summary()
    with pytest.raises(strop.StropError, match="'first' is not one of"):
        m.add_classifier_head(3, pool="first")
    with pytest.raises(strop.StropError, match="classes 0"):
        m.add_classifier_head(0)
    assert m.summary() == before
    for pool in ("last", "mean", "cls"):
        m.add_classifier_head(4, pool=pool, seed=3)
        for left in (False, True):
            ids, mask = padded([5, 9, 3], 12, left)
            batch = m.forward(ids, mask)
            assert batch.shape == (3, 4)
            for i in range(3):
                tok = ids[i][mask[i] > 0][None, :]
                np.testing.assert_allclose(batch[i], m(tok)[0], rtol=1e-5, atol=1e-5)
    m.add_classifier_head(2, pool="last")
    m.save_pretrained(tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForSequenceClassification"]
    m.close()


def test_mapped_frozen_base_same_losses(tmp_path):
    """from_pretrained(mmap=True, frozen=True): the frozen base straight from the mapped file
    gives the losses of a copying load bit for bit; LoRA on it trains; a bad frozen_dtype is
    refused."""
    empty = tmp_path / "empty.safetensors"
    write_safetensors(empty, {})
    base = strop.Model.from_pretrained(empty, arch="resnet18", strict=False, image_size=32, seed=3)
    base.save_weights(tmp_path / "r18.safetensors")
    base.close()
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    y = np.array([1, 7, 3, 900], np.float32)

    def losses(**kw):
        m = strop.Model.from_pretrained(tmp_path / "r18.safetensors", arch="resnet18",
                                        image_size=32, **kw)
        if not kw.get("frozen"):
            m.freeze("*")
        m.unfreeze("fc")
        opt = strop.Optimizer(m, "adam", lr=1e-3)
        tr = strop.Trainer(m, opt)
        out = [tr.step(x, y) for _ in range(3)]
        tr.close()
        opt.close()
        m.close()
        return out

    copied = losses()
    mapped = losses(mmap=True, frozen=True)
    assert copied == mapped and len(set(copied)) > 1
    # LoRA on the mapped frozen base trains (the head stays frozen and borrowed)
    m = strop.Model.from_pretrained(tmp_path / "r18.safetensors", arch="resnet18", image_size=32,
                                    mmap=True, frozen=True)
    s = strop.Surgery(m)
    s.lora("fc", rank=4, alpha=8.0)
    s.apply()
    s.close()
    opt = strop.Optimizer(m, "adam", lr=1e-2)
    tr = strop.Trainer(m, opt)
    lora = [tr.step(x, y) for _ in range(4)]
    assert lora[-1] < lora[0], lora
    tr.close()
    opt.close()
    m.close()
    with pytest.raises(ValueError, match="frozen_dtype"):
        strop.Model.from_pretrained(tmp_path / "r18.safetensors", arch="resnet18",
                                    frozen_dtype="fp8")


def test_fresh_weights_from_config(tmp_path):
    """weights=None: no weights file, every parameter drawn as GPT2PreTrainedModel draws a
    fresh model (initializer_range), the same bits from the same seed."""
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 256,
           "n_positions": 32, "n_embd": 32, "n_layer": 2, "n_head": 2,
           "initializer_range": 0.04}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(strop.StropError, match="STROP_LOAD_FRESH"):
        strop.Model.from_pretrained(tmp_path)  # no weights file and no weights=None
    m = strop.Model.from_pretrained(tmp_path, weights=None, seed=4)
    assert m.load_report is None
    sd = m.state_dict()
    wte = sd["transformer.wte.weight"]
    assert abs(wte.std() / 0.04 - 1) < 0.05 and abs(wte.mean()) < 0.002
    proj = sd["transformer.h.1.attn.c_proj.weight"]
    assert abs(proj.std() / (0.04 / 2) - 1) < 0.1  # 0.04 / sqrt(2 * n_layer)
    assert (sd["transformer.h.0.attn.c_attn.bias"] == 0).all()
    assert (sd["transformer.ln_f.weight"] == 1).all()
    again = strop.Model.from_pretrained(tmp_path, weights=None, seed=4).state_dict()
    for k, v in sd.items():
        np.testing.assert_array_equal(v, again[k])
    m.save_pretrained(tmp_path / "saved")
    back = strop.Model.from_pretrained(tmp_path / "saved").state_dict()
    np.testing.assert_array_equal(back["transformer.wte.weight"], wte)
    with pytest.raises(strop.StropError, match="weights"):
        strop.Model.from_pretrained(tmp_path, weights="none")
    with pytest.raises(strop.StropError, match="strict"):
        strop.Model.from_pretrained(tmp_path, weights=None, strict=False)
    m.close()
