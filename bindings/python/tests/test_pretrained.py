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
