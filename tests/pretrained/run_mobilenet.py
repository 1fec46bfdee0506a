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
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run_torchvision import run  # noqa: E402  (the same steps, on MobileNets)

ARCHS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")


def main():
    archs = ("mobilenet_v3_small",) if os.environ.get("STROP_SANITIZED") == "1" else ARCHS
    return run(sys.argv[1], "gen_mobilenet.py", archs, case="mobilenet", prefix="strop_mb_")


if __name__ == "__main__":
    sys.exit(main())
