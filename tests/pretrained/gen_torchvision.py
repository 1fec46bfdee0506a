#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes torchvision checkpoints and PyTorch's answers on them, for tests/check_pretrained.c
(computed in float64 on the float32 values).
Run at test time (nothing here is committed): gen_torchvision.py OUTDIR.
STROP_PT_SEED (default 1) picks another input batch.

For each of resnet18 (BasicBlock) and resnet50 (Bottleneck), built by torchvision 0.14
(Debian's python3-torchvision) with weights=None and num_classes=10, BatchNorm statistics and
affine parameters randomised so eval and train mode differ (the last BatchNorm of each
residual branch with small weights, as trained ResNets have them):
  OUTDIR/<arch>.safetensors      the state_dict exactly as torchvision names and shapes it
                                 (num_batches_tracked I64 of shape [])
  OUTDIR/<arch>.ref.safetensors  x [4, 3, 64, 64], y [4] (class indices as floats),
                                 eval.output (logits in eval mode), train.output, loss
                                 (cross-entropy, mean), grad.<param> (train mode), and
                                 after.<tensor> for every state_dict entry after one AdamW step
                                 (lr 1e-3, weight_decay 0.01, PyTorch's defaults otherwise), and
                                 tol.<key>: PyTorch's own float32 error on each output (max
                                 |float32 - float64| / max |float64|)
resnet18 also in the forms people have it:
  OUTDIR/resnet18_bf16.safetensors  every float tensor BF16; its eval logits (weights rounded
                                    to BF16) in resnet18.ref as bf16.output
  OUTDIR/resnet18_scalar1.safetensors  num_batches_tracked of shape [1] (PyTorch accepts both)
  OUTDIR/resnet18_sharded/         model-0000{1,2}-of-00002.safetensors and
                                    model.safetensors.index.json, as a Hugging Face save writes
"""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import safetensors_np  # noqa: E402


def state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def rel_err(a, b):
    """max |a - b| / max |b| of a float32 torch tensor against a numpy reference, as [1]"""
    a = a.detach().numpy().astype(np.float64)
    return np.array([np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)], dtype=np.float32)


def bf16_round(a):
    u = a.astype("<f4").view("<u4").astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype("<u4").view("<f4")


def answers(model):
    """PyTorch's answers on model (float32, train mode on exit, moved to float64): the input
    batch, eval and train logits, loss, every gradient, the state after one AdamW step and
    PyTorch's own float32 error on each, as the reference files hold them."""
    g = torch.Generator().manual_seed(int(os.environ.get("STROP_PT_SEED", "1")) * 1000 + 7)
    x = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    y = torch.tensor([3, 7, 1, 0])
    ref = {"x": x.numpy(), "y": y.numpy().astype(np.float32)}
    # PyTorch's own float32 error on the same computation, per output, relative to the largest
    # entry: train-mode BatchNorm on a small batch is ill-conditioned (ResNet-50's first
    # gradients lose about 2% in float32), so the tests allow strop a few times PyTorch's error
    m32 = copy.deepcopy(model)
    m32.eval()
    with torch.no_grad():
        out32_eval = m32(x)
    m32.train()
    out32_train = m32(x)
    F.cross_entropy(out32_train, y).backward()
    # PyTorch's answers in float64 on the float32 values, so the reference is as exact as
    # torch gets and the tolerances measure strop's float32 arithmetic alone
    model.double()
    x = x.double()
    model.eval()
    with torch.no_grad():
        ref["eval.output"] = model(x).float().numpy()
    ref["tol.eval.output"] = rel_err(out32_eval, ref["eval.output"])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    opt.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    ref["train.output"] = logits.detach().float().numpy()
    ref["tol.train.output"] = rel_err(out32_train, ref["train.output"])
    ref["loss"] = np.array([loss.item()], dtype=np.float32)
    grads32 = dict(m32.named_parameters())
    for name, p in model.named_parameters():
        ref["grad." + name] = p.grad.float().numpy()
        ref["tol.grad." + name] = rel_err(grads32[name].grad, ref["grad." + name])
    opt.step()
    for k, v in state(model).items():
        ref["after." + k] = v.astype(np.float32) if v.dtype == np.float64 else v
    return ref


def make(arch, out):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=10)
    g = torch.Generator().manual_seed(1)
    # the last BatchNorm of each residual branch gets small weights, as in a trained ResNet
    # (torchvision's zero_init_residual goes further): without that, activations grow block
    # by block and train-mode gradients become too ill-conditioned to compare in float32
    last = {n for n, _ in model.named_modules() if n.endswith(".bn3") or
            (arch in ("resnet18", "resnet34") and n.endswith(".bn2"))}
    with torch.no_grad():
        for n, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                w = torch.rand(m.weight.shape, generator=g)
                m.weight.copy_(w * 0.2 + 0.1 if n in last else w + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
                m.num_batches_tracked.fill_(7)
    sd = state(model)
    safetensors_np.save(os.path.join(out, arch + ".safetensors"), sd)
    ref = answers(model)
    x = torch.from_numpy(ref["x"]).double()

    if arch == "resnet18":
        floats = [k for k, v in sd.items() if v.dtype == np.float32]
        safetensors_np.save(os.path.join(out, "resnet18_bf16.safetensors"), sd, bf16=floats)
        m2 = torchvision.models.resnet18(weights=None, num_classes=10)
        m2.load_state_dict({k: torch.from_numpy(bf16_round(v) if v.dtype == np.float32 else v)
                            for k, v in sd.items()}, strict=True)
        m2.double().eval()
        with torch.no_grad():
            ref["bf16.output"] = m2(x).float().numpy()
        sd1 = {k: (v.reshape(1) if k.endswith("num_batches_tracked") else v) for k, v in sd.items()}
        safetensors_np.save(os.path.join(out, "resnet18_scalar1.safetensors"), sd1)
        shard_dir = os.path.join(out, "resnet18_sharded")
        os.makedirs(shard_dir, exist_ok=True)
        names = sorted(sd)
        half = len(names) // 2
        weight_map = {}
        for i, part in enumerate((names[:half], names[half:])):
            fname = "model-%05d-of-00002.safetensors" % (i + 1)
            safetensors_np.save(os.path.join(shard_dir, fname), {k: sd[k] for k in part},
                                metadata={"format": "pt"})
            weight_map.update({k: fname for k in part})
        with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": int(sum(v.nbytes for v in sd.values()))},
                       "weight_map": weight_map}, f, indent=2)
    safetensors_np.save(os.path.join(out, arch + ".ref.safetensors"), ref)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    for arch in ("resnet18", "resnet50"):
        make(arch, out)


if __name__ == "__main__":
    main()
