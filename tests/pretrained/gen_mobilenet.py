#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes torchvision's MobileNet checkpoints and PyTorch's answers on them, for the mobilenet
TCase of tests/check_pretrained.c (computed in float64 on the float32 values).
Run at test time (nothing here is committed): gen_mobilenet.py OUTDIR [ARCH ...]
(default: mobilenet_v2 mobilenet_v3_small mobilenet_v3_large). STROP_PT_SEED (default 1)
picks another input batch.

Each network is built by torchvision 0.14 (Debian's python3-torchvision) with weights=None,
num_classes=10 and dropout=0.0 (the classifier's Dropout is then the identity in train mode
too, so train-mode logits and gradients are deterministic: the C test replaces strop's
classifier dropout, p=0.2 as torchvision's default builds it, by p=0 through a surgery plan;
the state_dict is the same either way). BatchNorm statistics and affine parameters are
randomised so eval and train mode differ (the last BatchNorm of each residual branch with
small weights, as trained networks have them, which keeps train-mode gradients
well-conditioned in float32).
  OUTDIR/<arch>.safetensors      the state_dict exactly as torchvision names and shapes it
  OUTDIR/<arch>.ref.safetensors  x [4, 3, 64, 64], y [4], eval.output, train.output, loss,
                                 grad.<param>, after.<tensor> (one AdamW step, lr 1e-3,
                                 weight_decay 0.01) and tol.<key> (PyTorch's own float32
                                 error), as gen_torchvision.py writes them
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import gen_torchvision  # noqa: E402
import safetensors_np  # noqa: E402

ARCHS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")


def make_model(arch):
    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=10, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    last = set()
    for n, m in model.named_modules():
        if getattr(m, "use_res_connect", False):
            bns = [k for k, b in m.named_modules() if isinstance(b, torch.nn.BatchNorm2d)]
            last.add(n + "." + bns[-1])
    with torch.no_grad():
        for n, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                w = torch.rand(m.weight.shape, generator=g)
                m.weight.copy_(w * 0.2 + 0.1 if n in last else w + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
                m.num_batches_tracked.fill_(7)
    return model


def main():
    out = sys.argv[1]
    archs = sys.argv[2:] or ARCHS
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    for arch in archs:
        model = make_model(arch)
        safetensors_np.save(os.path.join(out, arch + ".safetensors"), gen_torchvision.state(model))
        ref = gen_torchvision.answers(model)
        safetensors_np.save(os.path.join(out, arch + ".ref.safetensors"), ref)


if __name__ == "__main__":
    main()
