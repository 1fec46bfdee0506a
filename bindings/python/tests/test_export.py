# SPDX-License-Identifier: MIT
"""Inference export read by PyTorch: a conv-bn-relu-pool-flatten-linear-bn1d-dropout-linear model
built through the bindings, with moved BatchNorm statistics and a trained LoRA adapter, exported
with BatchNorm folded, loaded into the equivalent torch.nn.Sequential (conv with bias, no
BatchNorm, no dropout) with load_state_dict(strict=True), and compared to strop's eval outputs.

Run: STROP_LIBRARY=build/libstrop.so /usr/bin/python3 -m pytest bindings/python/tests/test_export.py
Skipped without libstrop (or one predating strop_model_export) or without torch.
"""
import numpy as np
import pytest

from conftest import load_strop

strop = load_strop()
from strop import _lib, safetensors  # noqa: E402

torch = pytest.importorskip("torch")

if not hasattr(_lib.lib.strop_model_export, "__wrapped__"):  # a stub
    pytest.skip("the loaded libstrop predates strop_model_export", allow_module_level=True)


def _model():
    m = strop.Model([2, 8, 8])
    m.add("features.0", "conv2d", "out_channels=4 kernel_size=3 padding=1 bias=false")
    m.add("features.1", "batchnorm2d")
    m.add("features.2", "relu")
    m.add("features.3", "maxpool2d", "kernel_size=2")
    m.add("flatten", "flatten")
    m.add("fc", "linear", "out_features=16")
    m.add("fc_bn", "batchnorm1d")
    m.add("drop", "dropout", "p=0.3")
    m.add("head", "linear", "out_features=5")
    m.finalize(seed=3)
    rng = np.random.default_rng(0)
    for bn, c in (("features.1", 4), ("fc_bn", 16)):
        m[bn + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        m[bn + ".bias"] = rng.uniform(-0.5, 0.5, c).astype(np.float32)
    m.train()
    for _ in range(4):  # running statistics away from (0, 1)
        m.forward(rng.uniform(-1, 3, (8, 2, 8, 8)).astype(np.float32))
    m.eval()
    s = m.surgery(seed=1)
    s.lora("head", rank=2, alpha=4.0)
    s.apply()
    m["head.lora_B.weight"] = rng.uniform(-0.5, 0.5, (5, 2)).astype(np.float32)
    return m


class _Net(torch.nn.Module):
    """The exported architecture with PyTorch's module names = strop's node names."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.features = nn.ModuleDict({"0": nn.Conv2d(2, 4, 3, padding=1, bias=True)})
        self.fc = nn.Linear(64, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.features["0"](x)), 2)
        return self.head(self.fc(torch.flatten(x, 1)))


def test_pytorch_loads_export(tmp_path):
    m = _model()
    x = np.random.default_rng(1).uniform(-1, 3, (6, 2, 8, 8)).astype(np.float32)
    want = m.forward(x)
    spec, weights = tmp_path / "model.yaml", tmp_path / "model.safetensors"
    m.export(spec, weights)
    assert "head.lora_B.weight" in m  # the caller's model keeps its adapters

    tensors, meta = safetensors.load(str(weights))
    assert sorted(tensors) == ["fc.bias", "fc.weight", "features.0.bias", "features.0.weight",
                               "head.bias", "head.weight"]
    net = _Net().eval()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()},
                        strict=True)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 1e-4 * scale

    # and strop reloads it without the trainer
    r = strop.Model.load(str(spec), str(weights))
    assert [t for _, t in r.nodes] == ["conv2d", "relu", "maxpool2d", "flatten", "linear",
                                         "linear"]
    assert np.abs(r.forward(x) - want).max() <= 1e-5 * scale
    r.close()

    # without folding the BatchNorm nodes stay; dropout can be kept
    m.export(spec, weights, fold_bn=False, keep_dropout=True)
    r = strop.Model.load(str(spec), str(weights))
    types = [t for _, t in r.nodes]
    assert types.count("batchnorm2d") == 1 and types.count("dropout") == 1
    assert "lora_linear" not in types
    assert np.abs(r.forward(x) - want).max() <= 1e-5 * scale
    r.close()
    m.close()


def test_export_errors(tmp_path):
    m = strop.Model([4])
    m.add("fc", "linear", "out_features=2")
    with pytest.raises(strop.errors.StateError):
        m.export(tmp_path / "a.yaml", tmp_path / "a.safetensors")
    m.finalize()
    with pytest.raises(strop.errors.StropIOError, match="missing"):
        m.export(tmp_path / "missing" / "a.yaml", tmp_path / "a.safetensors")
    assert list(tmp_path.iterdir()) == []
    m.close()
