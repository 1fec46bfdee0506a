#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop — torchvision parity of strop_model_load_pretrained, end to end:
  1. gen_torchvision.py writes torchvision's ResNet-18/50 checkpoints and PyTorch's answers
     into a temporary folder;
  2. the check_pretrained suite runs with STROP_PT_FIXTURES pointing there (logits, loss,
     gradients, one AdamW step; BF16, [1]-scalar and sharded forms) and saves each stepped
     model;
  3. torchvision loads each saved file with strict=True and its eval logits equal the logits of
     PyTorch's own stepped model (the after.* tensors of the reference).
Exits 77 (CTest: skipped) when torch or torchvision is missing: `bash .ci/deps --full` installs
them. Usage: run_torchvision.py CHECK_PRETRAINED_BINARY"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(binary, generator, archs, case=None, prefix="strop_tv_"):
    """Writes the checkpoints and PyTorch's answers with GENERATOR (given archs), runs the
    check_pretrained BINARY on them (only TCase CASE when given), then loads each file strop
    saved into torchvision (strict=True) and compares its eval logits with PyTorch's own stepped
    model. 0 when all agree, 1 when not, 77 without torch or torchvision."""
    try:
        import torch
        import torchvision
    except ImportError as e:
        print(f"skipped: {e} (bash .ci/deps --full installs python3-torchvision)")
        return 77
    sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
    import safetensors_np

    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        subprocess.run([sys.executable, os.path.join(HERE, generator), tmp, *archs], check=True)
        env = dict(os.environ, STROP_PT_FIXTURES=tmp)
        if case:
            env["CK_RUN_CASE"] = case
        if subprocess.run([binary], env=env).returncode != 0:
            return 1
        torch.set_num_threads(1)
        for arch in archs:
            saved = safetensors_np.load(os.path.join(tmp, arch + ".stepped.safetensors"))[0]
            ref = safetensors_np.load(os.path.join(tmp, arch + ".ref.safetensors"))[0]
            mine = getattr(torchvision.models, arch)(weights=None, num_classes=10)
            mine.load_state_dict({k: torch.from_numpy(v) for k, v in saved.items()}, strict=True)
            theirs = getattr(torchvision.models, arch)(weights=None, num_classes=10)
            theirs.load_state_dict({k[6:]: torch.from_numpy(v) for k, v in ref.items()
                                    if k.startswith("after.")}, strict=True)
            x = torch.from_numpy(ref["x"])
            mine.eval()
            theirs.eval()
            with torch.no_grad():
                a, b = mine(x), theirs(x)
            err = float((a - b).abs().max() / b.abs().max())
            print(f"{arch}: strop's stepped file loads in torchvision (strict=True); eval logits "
                  f"differ from PyTorch's stepped model by {err:.2e} of the largest")
            if not err < 1e-2:
                return 1
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    # a sanitized build (STROP_SANITIZED, tests/run-all) runs ResNet-18 only
    archs = ("resnet18",) if os.environ.get("STROP_SANITIZED") else ("resnet18", "resnet50")
    return run(sys.argv[1], "gen_torchvision.py", archs)


if __name__ == "__main__":
    sys.exit(main())
