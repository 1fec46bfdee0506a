#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop — torchvision MobileNet parity of strop_model_load_pretrained, end to end:
  1. gen_mobilenet.py writes torchvision's MobileNetV2 / V3-small / V3-large checkpoints and
     PyTorch's answers into a temporary folder;
  2. the mobilenet TCase of check_pretrained runs with STROP_PT_FIXTURES pointing there
     (eval and train logits, loss, every gradient, one AdamW step) and saves each stepped
     model;
  3. torchvision loads each saved file with strict=True and its eval logits equal those of
     PyTorch's own stepped model.
Under a sanitizer (STROP_SANITIZED=1) only mobilenet_v3_small runs (the smallest network that
has every part: hardswish, squeeze-excitation, depthwise 5x5, residuals).
Exits 77 (CTest: skipped) without torch or torchvision. Usage: run_mobilenet.py CHECK_PRETRAINED"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")


def main():
    try:
        import torch
        import torchvision
    except ImportError as e:
        print(f"skipped: {e} (bash .ci/deps --full installs python3-torchvision)")
        return 77
    sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
    import safetensors_np

    archs = ("mobilenet_v3_small",) if os.environ.get("STROP_SANITIZED") == "1" else ARCHS
    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="strop_mb_")
    try:
        subprocess.run([sys.executable, os.path.join(HERE, "gen_mobilenet.py"), tmp, *archs],
                       check=True)
        env = dict(os.environ, STROP_PT_FIXTURES=tmp, CK_RUN_CASE="mobilenet")
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


if __name__ == "__main__":
    sys.exit(main())
