#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop bench — image folders against torchvision: writes N JPEGs of about 500x375 (PIL,
quality 90, 10 class folders) into a temporary folder, then measures images/s of torchvision's
ImageFolder + DataLoader (batch 32, the same number of workers) and of bench_images on the same
files, for the ImageNet eval pipeline (Resize 256, CenterCrop 224, ToTensor, Normalize) and the
train one (RandomResizedCrop 224, RandomHorizontalFlip, ToTensor, Normalize). With RESNET=1 it
also writes a torchvision ResNet-18 checkpoint (weights=None) and has bench_images report the
share of a fine-tuning step spent waiting for data.
Usage: images_vs_torch.py BUILD_DIR [images] [workers] [batches]"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.datasets import ImageFolder

HERE = os.path.dirname(os.path.abspath(__file__))


def write_jpegs(root, n):
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = int(rng.integers(460, 521)), int(rng.integers(340, 401))
        if i % 4 == 3:
            w, h = h, w  # some portrait
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([128 + 100 * np.sin(x / (9 + i % 7) + i), 128 + 90 * np.cos((x + y) / 17),
                         128 + 80 * np.sin(y / 13 - i)], -1)
        img = np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
        d = os.path.join(root, f"class_{i % 10}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img).save(os.path.join(d, f"{i:05d}.jpg"), quality=90)


def torch_rate(root, workers, batches, train):
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    tf = (T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm]) if train
          else T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm]))
    dl = torch.utils.data.DataLoader(ImageFolder(root, tf), batch_size=32, shuffle=True,
                                     num_workers=workers, persistent_workers=workers > 0)
    seen, t0, b = 0, None, -1
    while b < batches:
        for x, _ in dl:
            if b == -1:
                t0 = time.perf_counter()
            else:
                seen += x.shape[0]
            b += 1
            if b >= batches:
                break
    return seen / (time.perf_counter() - t0)


def main():
    build = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 640
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    batches = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="strop_bench_img_")
    try:
        root = os.path.join(tmp, "images")
        write_jpegs(root, n)
        print(f"{n} JPEGs of about 500x375 in 10 class folders; batch 32; {workers} worker(s); "
              f"{batches} batches after one warm-up")
        for train in (0, 1):
            r = torch_rate(root, workers, batches, train)
            print(f"torchvision {'train' if train else 'eval '}: {r:.1f} images/s")
        cmd = [os.path.join(build, "bench", "bench_images"), root, str(workers), str(batches)]
        if os.environ.get("RESNET"):
            import torchvision
            sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
            import safetensors_np
            sd = torchvision.models.resnet18(weights=None).state_dict()
            path = os.path.join(tmp, "resnet18.safetensors")
            safetensors_np.save(path, {k: v.numpy() for k, v in sd.items()})
            cmd += [path, os.environ.get("STEPS", "6"), os.environ.get("THREADS", "2")]
        subprocess.run(cmd, check=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
