#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the hostile seeds of tests/fuzz/corpus/ that issue 18's attack found (the other
seeds are copies of test fixtures). Pure Python, no numpy:  python3 tests/fuzz/gen_corpus.py
Each seed is named hostile_<what>; the outputs are committed."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hostile_" + name), "wb") as f:
        f.write(data)


def idx(type_byte, dims, payload):
    return bytes([0, 0, type_byte, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def npy(header, data=b""):
    h = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data


def safetensors(header, data=b""):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def main():
    # IDX: NaN and infinite float images, labels that overflow a float's exact range, a header
    # that declares more than it holds
    put("idx", "nan_f32.idx", idx(0x0D, [2, 2], struct.pack(">4f", 1, float("nan"), 3, 4)))
    put("idx", "inf_f64.idx", idx(0x0E, [2], struct.pack(">2d", float("inf"), 1e300)))
    put("idx", "label_2147483646.idx", idx(0x0C, [3], struct.pack(">3i", 0, 2147483646, 1)))
    put("idx", "label_16777217.idx", idx(0x0C, [2], struct.pack(">2i", 16777217, 0)))
    put("idx", "declares_more.idx", idx(0x08, [60000, 28, 28], b"\0" * 16))
    # NPY: negative and overflowing shape entries, NaN data, rank 0, a zero dimension
    f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }"
    put("npy", "negative_dim.npy", npy(f4 % "(-3, 4)"))
    put("npy", "huge_dim.npy", npy(f4 % "(18446744073709550832, 4)"))
    put("npy", "nan.npy", npy(f4 % "(1, 4)", struct.pack("<4f", 1, float("nan"), 3, 4)))
    put("npy", "rank0.npy", npy(f4 % "()", struct.pack("<f", 2)))
    put("npy", "zero_dim.npy", npy(f4 % "(0, 4)"))
    # safetensors: a zero beside a huge dimension in either order, a product past 2^63, a deep
    # and a wide header
    e = {"dtype": "F32", "data_offsets": [0, 0]}
    put("safetensors", "zero_then_huge_dim.safetensors",
        safetensors({"a": dict(e, shape=[0, (1 << 63) - 1, 3])}))
    put("safetensors", "huge_dim_then_zero.safetensors",
        safetensors({"a": dict(e, shape=[1 << 62, 3, 0])}))
    put("safetensors", "zero_then_huge_product.safetensors",
        safetensors({"a": dict(e, shape=[0, 1 << 40, 1 << 40])}))
    put("safetensors", "rank8_long_shape.safetensors",
        safetensors({"a": dict(e, shape=[0, 1 << 40, 1099, 1, 1, 1, 1, 8])}))
    put("safetensors", "many_values.safetensors",
        safetensors(b'{"__metadata__":{},"x":[' + b"0," * 20000 + b"0]}"))
    put("safetensors", "nul_escape.safetensors",
        safetensors(b'{"a\\u0000":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'))
    # safetensors with model metadata (issue 17) for the fuzz model (fc: linear 4 -> 2): entries
    # a strict load takes, one whose key is only the prefix, one with a space in its key
    w = struct.pack("<10f", *range(10))
    tensors = {"fc.weight": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 32]},
               "fc.bias": {"dtype": "F32", "shape": [2], "data_offsets": [32, 40]}}
    good = {"format": "strop", "strop.meta.classes": '[{"label": 5, "name": "Sandal"}]',
            "strop.meta.input.scale": "0.00392156862745098"}
    put("safetensors", "model_meta.safetensors", safetensors(dict(tensors, __metadata__=good), w))
    put("safetensors", "model_meta_empty_key.safetensors",
        safetensors(dict(tensors, __metadata__={"strop.meta.": "x"}), w))
    put("safetensors", "model_meta_bad_key.safetensors",
        safetensors(dict(tensors, __metadata__={"strop.meta.a key": "x"}), w))
    # CSV (first byte: the options): a label past 2^24, NaN, one row
    put("csv", "big_label.csv", b"\x00" + b"1,2,0\n3,4,16777216\n")
    put("csv", "nan_cell.csv", b"\x00" + b"1,nan,0\n")
    put("csv", "one_row.csv", b"\x00" + b"1,2,3,4,0\n")
    # text data (first byte: the options, 0 = JSON Lines classification, max_length 1): bad
    # JSON, invalid UTF-8, an unclosed CSV quote, a huge label, a prompt/response pair
    put("textdata", "bad_json.jsonl", b"\x40" + b'{"text": "the cat", "label": 0}\n{"text": \n')
    put("textdata", "bad_utf8.jsonl", b"\x40" + b'{"text": "c\xc3\x28t", "label": 0}\n')
    put("textdata", "open_quote.csv", b"\x41" + b'text,label\n"the cat,0\n')
    put("textdata", "big_label.jsonl", b"\x80" + b'{"text": "a", "label": 99999999999}\n')
    put("textdata", "pair.jsonl", b"\xd0" + b'{"text": "the cats", "pair": "a dog.", "label": "x"}\n')
    put("textdata", "prompt.jsonl", b"\xe8" + b'{"prompt": "the", "response": "cat"}\n')
    put("textdata", "packed.txt", b"\x66" + b"the cat. the dog. a cat. " * 8)
    # spec: a NUL byte in a name, by escape
    put("spec", "nul_name.yaml", b'input: [4]\nlayers:\n  - {name: "a\\0b", type: relu}\n')


if __name__ == "__main__":
    main()
    print("wrote", os.path.join(HERE, "corpus"))
