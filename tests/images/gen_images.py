#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop — the image fixtures of check_data_images, written at test time into OUT_DIR (nothing
generated is committed): PNG and JPEG files of every colour type PIL writes, PIL's decodes of
them, torchvision's transforms of one image (Resize with antialias on float tensors, CenterCrop,
resized_crop at given boxes, Normalize, the ColorJitter adjustments at given factors, the
ImageNet eval pipeline), RandomResizedCrop.get_params' draws and answers, and broken files.
Follows torchvision 0.14 / PyTorch 1.13 (Debian's python3-torchvision). Usage: gen_images.py OUT"""
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image


def save_npy(path, a):
    np.save(path, np.ascontiguousarray(a))


def photo(w, h, seed):
    """A smooth picture with edges and noise: what a camera gives, at a small size."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 7.0 + seed) * np.cos(y / 11.0)
    g = 128 + 90 * np.cos((x + y) / 13.0)
    b = np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2, 220, 30).astype(float)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def adam7_png(im):
    """An interlaced (Adam7) RGB PNG of a PIL image: PIL reads these but does not write them."""
    w, h = im.size
    px = im.convert("RGB").load()
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                           (1, 0, 2, 2), (0, 1, 1, 2)):
        xs, ys = range(x0, w, dx), range(y0, h, dy)
        if not xs or not ys:
            continue
        for y in ys:
            raw += b"\0" + b"".join(bytes(px[x, y]) for x in xs)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) +
            png_chunk(b"IEND", b""))


def main():
    out = sys.argv[1]
    dec = os.path.join(out, "decode")
    os.makedirs(dec, exist_ok=True)
    cases = []  # (file, modes to compare)

    rgb = Image.fromarray(photo(61, 47, 1))
    rgba = Image.fromarray(np.dstack([photo(33, 29, 2), (np.arange(33 * 29) % 256).reshape(29, 33).astype(np.uint8)]), "RGBA")
    grey = rgb.convert("L")
    la = Image.merge("LA", (grey, grey.point(lambda v: 255 - v)))
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=37)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 5
    one_bit = grey.point(lambda v: 255 if v > 128 else 0).convert("1")
    files = {
        "rgb.png": (rgb, {}), "rgba.png": (rgba, {}), "grey.png": (grey, {}), "la.png": (la, {}),
        "palette.png": (pal, {}), "palette_trns.png": (pal_t, {"transparency": 5}),
        "onebit.png": (one_bit, {}),
        "rgb_q90.jpg": (rgb, {"quality": 90}), "rgb_444.jpg": (rgb, {"quality": 95, "subsampling": 0}),
        "grey.jpg": (grey, {"quality": 85}), "progressive.jpg": (rgb, {"quality": 80, "progressive": True}),
    }
    files["interlaced.png"] = (None, adam7_png(rgb))
    for name, (im, kw) in files.items():
        path = os.path.join(dec, name)
        if im is None:
            open(path, "wb").write(kw)
        else:
            im.save(path, **kw)
        for mode in ("L", "RGB", "RGBA"):
            a = np.asarray(Image.open(path).convert(mode))
            if a.ndim == 2:
                a = a[:, :, None]
            save_npy(os.path.join(dec, f"{name}.{mode}.npy"), a)
        cases.append(name)
    with open(os.path.join(dec, "cases.txt"), "w") as f:
        f.write("\n".join(cases) + "\n")

    # a folder as ImageFolder reads it: classes sorted, files in its sorted walk, other files
    # ignored
    import shutil
    root = os.path.join(out, "folder")
    layout = {"b_dog/x.png": "rgb.png", "b_dog/a.jpg": "grey.jpg", "a_cat/sub/z.png": "rgba.png",
              "a_cat/sub b/y.png": "la.png", "a_cat/m.PNG": "palette.png", "a_cat/sub/k.jpeg": "rgb_q90.jpg",
              "c_eel/only.png": "onebit.png"}
    for rel, name in layout.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        shutil.copy(os.path.join(dec, name), os.path.join(root, rel))
    open(os.path.join(root, "a_cat", "notes.txt"), "w").write("not an image\n")
    open(os.path.join(root, "README"), "w").write("ignored\n")
    from torchvision.datasets import ImageFolder
    ref = ImageFolder(root)
    with open(os.path.join(out, "folder.json"), "w") as f:
        json.dump({"classes": ref.classes,
                   "samples": [[os.path.relpath(p, root), c] for p, c in ref.samples]}, f)

    # broken and unsupported files, each on its own
    bad = os.path.join(out, "bad")
    os.makedirs(bad, exist_ok=True)
    jpg = open(os.path.join(dec, "rgb_q90.jpg"), "rb").read()
    png = open(os.path.join(dec, "rgb.png"), "rb").read()
    open(os.path.join(bad, "truncated.jpg"), "wb").write(jpg[: len(jpg) // 2])
    open(os.path.join(bad, "truncated.png"), "wb").write(png[: len(png) // 2])
    open(os.path.join(bad, "empty.png"), "wb").write(b"")
    open(os.path.join(bad, "text.jpg"), "wb").write(b"this is not a picture\n")
    Image.fromarray(photo(16, 12, 3)).convert("CMYK").save(os.path.join(bad, "cmyk.jpg"))
    Image.fromarray((np.arange(20 * 10, dtype=np.uint16) * 300).reshape(10, 20)).save(os.path.join(bad, "sixteen.png"))
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b"")
    open(os.path.join(bad, "bomb.png"), "wb").write(bomb)
    broken = bytearray(png)
    broken[40] ^= 0xFF  # inside IDAT or a CRC: libpng and PIL refuse it
    open(os.path.join(bad, "crc.png"), "wb").write(bytes(broken))

    # transforms on one picture, float tensors in [0, 1] (ToTensor first)
    import torch
    import torchvision.transforms as T
    import torchvision.transforms.functional as F
    torch.set_num_threads(1)
    tf = os.path.join(out, "transforms")
    os.makedirs(tf, exist_ok=True)
    src = Image.fromarray(photo(160, 120, 4))
    src.save(os.path.join(tf, "src.png"))
    x = F.to_tensor(src)  # [3, 120, 160] in [0, 1]
    save_npy(os.path.join(tf, "x.npy"), x.numpy())
    refs = {
        "resize_shorter_64": T.Resize(64, antialias=True)(x),
        "resize_shorter_200": T.Resize(200, antialias=True)(x),  # upsampling
        "resize_shorter_64_max80": T.Resize(64, max_size=80, antialias=True)(x),
        "resize_fixed_37x91": T.Resize((37, 91), antialias=True)(x),
        "resize_fixed_120x41": T.Resize((120, 41), antialias=True)(x),  # one axis unchanged
        "center_crop_57x91": T.CenterCrop((57, 91))(x),
        "center_crop_150x170": T.CenterCrop((150, 170))(x),  # larger: zero padding
        "resize64_crop56": T.CenterCrop(56)(T.Resize(64, antialias=True)(x)),
        "normalize": T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(x),
        "eval_preset": T.Compose([T.Resize(96, antialias=True), T.CenterCrop(80),
                                  T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])(x),
    }
    boxes = [(3, 7, 50, 90, 32, 32), (0, 0, 120, 160, 24, 40), (60, 100, 11, 9, 33, 33)]
    for k, (i, j, h, w, oh, ow) in enumerate(boxes):
        refs[f"rrc_{i}_{j}_{h}_{w}_{oh}_{ow}"] = F.resized_crop(x, i, j, h, w, [oh, ow], antialias=True)
    for name, (fn, f) in {"brightness_1.3": (F.adjust_brightness, 1.3), "brightness_0.6": (F.adjust_brightness, 0.6),
                          "contrast_1.4": (F.adjust_contrast, 1.4), "contrast_0.5": (F.adjust_contrast, 0.5),
                          "saturation_1.5": (F.adjust_saturation, 1.5), "saturation_0.3": (F.adjust_saturation, 0.3),
                          "hue_0.2": (F.adjust_hue, 0.2), "hue_-0.37": (F.adjust_hue, -0.37)}.items():
        refs["jitter_" + name] = fn(x, f)
    for name, t in refs.items():
        save_npy(os.path.join(tf, name + ".npy"), t.numpy())

    # RandomResizedCrop.get_params: record torch's draws and the boxes they give
    import torchvision.transforms.transforms as TT
    draws = []

    class Uni:
        def __init__(self, t):
            self.t = t

        def uniform_(self, a, b):
            v = self.t.uniform_(a, b)
            draws.append(["u", float(v.item())])
            return v

    class Rec:
        def __getattr__(self, k):
            return getattr(torch, k)

        def empty(self, *a, **k):
            return Uni(torch.empty(*a, **k))

        def exp(self, t):
            v = torch.exp(t)
            draws.append(["e", float(v.item())])
            return v

        def randint(self, lo, hi, size):
            v = torch.randint(lo, hi, size)
            draws.append(["i", int(v.item()), int(hi)])
            return v

    real = TT.torch
    TT.torch = Rec()
    rrc = []
    torch.manual_seed(7)
    try:
        for k in range(200):
            h, w = [(120, 160), (375, 500), (500, 375), (10, 300), (300, 10), (7, 7)][k % 6]
            scale, ratio = [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.5, 0.9), (0.2, 5.0)), ((0.9, 1.0), (2.0, 3.0))][k % 3]
            del draws[:]
            box = T.RandomResizedCrop.get_params(torch.zeros(1, h, w), list(scale), list(ratio))
            rrc.append({"h": h, "w": w, "scale": list(scale), "ratio": list(ratio), "draws": list(draws),
                        "box": [int(v) for v in box]})
    finally:
        TT.torch = real
    with open(os.path.join(tf, "rrc_params.json"), "w") as f:
        json.dump(rrc, f)


if __name__ == "__main__":
    main()
