#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of the image fuzz targets (tests/fuzz/corpus/jpeg, corpus/png):
small JPEG and PNG files of every layout the wrappers handle (grey, RGB, 4:2:0 and 4:4:4,
progressive, restart markers; grey, grey + alpha, RGB, RGBA, palette with transparency, 1-bit,
interlaced) and hostile ones (truncated, a bomb header, 16-bit, CMYK, a broken CRC, a chunk
longer than the file). Needs PIL (python3-pil): python3 tests/fuzz/gen_image_corpus.py.
The outputs are committed."""
import io
import os
import struct
import zlib

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def enc(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def chunk(kind, data):
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
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) +
            chunk(b"IEND", b""))


def main():
    rgb = Image.new("RGB", (13, 9))
    rgb.putdata([((x * 19) % 256, (y * 27) % 256, (x * y * 7) % 256) for y in range(9) for x in range(13)])
    grey = rgb.convert("L")
    put("jpeg", "rgb_420.jpg", enc(rgb, "JPEG", quality=75))
    put("jpeg", "rgb_444.jpg", enc(rgb, "JPEG", quality=90, subsampling=0))
    put("jpeg", "grey.jpg", enc(grey, "JPEG", quality=80))
    put("jpeg", "progressive.jpg", enc(rgb, "JPEG", quality=60, progressive=True))
    put("jpeg", "restart.jpg", enc(rgb.resize((40, 24)), "JPEG", quality=70, restart_marker_blocks=1))
    whole = enc(rgb, "JPEG", quality=75)
    put("jpeg", "hostile_truncated.jpg", whole[: len(whole) * 2 // 3])
    put("jpeg", "hostile_cmyk.jpg", enc(rgb.convert("CMYK"), "JPEG"))
    put("png", "grey.png", enc(grey, "PNG"))
    put("png", "grey_alpha.png", enc(Image.merge("LA", (grey, grey)), "PNG"))
    put("png", "rgb.png", enc(rgb, "PNG"))
    put("png", "rgba.png", enc(rgb.convert("RGBA"), "PNG"))
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=7)
    put("png", "palette_trns.png", enc(pal, "PNG", transparency=2))
    put("png", "onebit.png", enc(grey.convert("1"), "PNG"))
    put("png", "interlaced.png", adam7_png(rgb))
    whole = enc(rgb, "PNG")
    put("png", "hostile_truncated.png", whole[: len(whole) // 2])
    bad = bytearray(whole)
    bad[-5] ^= 0x55
    put("png", "hostile_crc.png", bytes(bad))
    put("png", "hostile_16bit.png", enc(Image.new("I;16", (5, 3)), "PNG"))
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    put("png", "hostile_bomb.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
        chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    # found by fuzz_png: a chunk whose length claims 1.9 GB in a 43-byte file (libpng allocated it)
    put("png", "hostile_chunk_claims.png", b"\x89PNG\r\n\x1a\n" + bytes.fromhex(
        "0000000d49484452 00000d00 00000009 0803000000 de000300 73000300") + b"sPLT\xff\x02")


if __name__ == "__main__":
    main()
