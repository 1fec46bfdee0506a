#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of tests/fuzz/fuzz_tokenizer_json.c and fuzz_spm_model.c: small valid
tokenizer.json files (one per model type, with normalizers, pre-tokenizers, templates and
decoders), broken ones, and small SentencePiece ModelProto files written field by field (unigram,
BPE with byte fallback, user-defined symbols, a truncated one). With spm_train installed it also
trains a tiny model whose precompiled character map holds two custom rules.
Usage: make_text_seeds.py [OUT_DIR]   (default: tests/fuzz/corpus next to this script)"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SP = "\u2581"


def write(sub, name, data):
    d = os.path.join(OUT, sub)
    os.makedirs(d, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(d, name), mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
        f.write(data)


def bytechars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tokenizer_jsons():
    bc = bytechars()
    vocab = {bc[b]: i for i, b in enumerate(range(256))}
    for extra in ["\u0120t", "he", "\u0120the", "in", "\u0120a"]:
        vocab[extra] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    yield "bytelevel_bpe.json", {
        "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>",
                          "special": True, "normalized": False}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "trim_offsets": True},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab,
                  "merges": ["\u0120 t", "h e", "\u0120t he", "i n", "\u0120 a"]}}
    yield "wordpiece_bert.json", {
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "added_tokens": [{"id": i, "content": t, "special": True}
                         for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])],
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "max_input_chars_per_word": 100,
                  "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4,
                            "hello": 5, "world": 6, "##s": 7, ",": 8, "it": 9}}}
    yield "unigram_metaspace.json", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Replace", "pattern": {"Regex": " {2,}"},
                               "content": " "}, {"type": "Strip"}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": SP, "prepend_scheme": "first",
                          "split": True},
        "decoder": {"type": "Metaspace", "replacement": SP, "prepend_scheme": "first"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}},
                                    {"SpecialToken": {"id": "</s>", "type_id": 1}}],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [1],
                                                       "tokens": ["</s>"]}}},
        "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": True, "vocab": [
            ["<unk>", 0.0], ["</s>", 0.0], [SP, -1.0], ["h", -3.0], ["e", -3.0],
            ["l", -3.0], ["o", -3.0], [SP + "he", -2.0], ["llo", -2.5], ["<0x21>", -9.0]]}}
    yield "llama_bpe.json", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SP},
            {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
        "pre_tokenizer": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SP}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": {"<unk>": 0, "<s>": 1, SP: 2, "a": 3, SP + "a": 4, "<0x41>": 5},
                  "merges": [[SP, "a"]]}}
    yield "split_digits.json", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{L}+|\\p{N}{1,3}"},
             "behavior": "Isolated", "invert": False},
            {"type": "Digits", "individual_digits": True},
            {"type": "Punctuation", "behavior": "MergedWithPrevious"},
            {"type": "Whitespace"}]},
        "model": {"type": "WordLevel", "unk_token": "?", "vocab": {"?": 0, "a": 1, "1": 2}}}


def spm_piece(piece, score, typ):
    b = piece.encode("utf-8")
    inner = b"\x0a" + varint(len(b)) + b + b"\x15" + struct.pack("<f", score) + b"\x18" + varint(typ)
    return b"\x0a" + varint(len(inner)) + inner


def varint(v):
    out = b""
    while True:
        byte = v & 0x7F
        v >>= 7
        out += bytes([byte | (0x80 if v else 0)])
        if not v:
            return out


def spm_model(model_type, byte_fallback, user=False):
    pieces = [("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3)]
    if user:
        pieces.append(("<sep>", 0, 4))
    pieces += [(SP, -1, 1), ("a", -2, 1), ("b", -3, 1), ("ab", -1.5, 1), (SP + "ab", -1, 1),
               ("c", -4, 1)]
    if byte_fallback:
        pieces += [("<0x%02X>" % b, 0, 6) for b in range(256)]
    body = b"".join(spm_piece(*p) for p in pieces)
    ts = b"\x18" + varint(model_type) + (b"\x98\x02\x01" if byte_fallback else b"")
    body += b"\x12" + varint(len(ts)) + ts
    ns = b"\x18\x01\x20\x01\x28\x01"
    body += b"\x1a" + varint(len(ns)) + ns
    return body


def main():
    for name, tj in tokenizer_jsons():
        write("tokenizer_json", name, json.dumps(tj, ensure_ascii=False, indent=1))
    write("tokenizer_json", "broken_truncated.json", '{"model": {"type": "BPE", "vocab": {"a"')
    write("tokenizer_json", "broken_type.json", '{"normalizer": {"type": "Nope"}, "model": '
          '{"type": "BPE", "vocab": {}, "merges": []}}')
    write("tokenizer_json", "broken_merge.json", '{"model": {"type": "BPE", "vocab": {"a": 0},'
          ' "merges": ["a a"]}}')
    write("spm_model", "unigram.model", spm_model(1, False, user=True))
    write("spm_model", "bpe_bytes.model", spm_model(2, True))
    write("spm_model", "truncated.model", spm_model(1, False)[:37])
    if shutil.which("spm_train"):
        with tempfile.TemporaryDirectory() as d:
            txt = os.path.join(d, "t.txt")
            with open(txt, "w", encoding="utf-8") as f:
                f.write("Ｈｅｌｌｏ world\u3000and more words here\n" * 40)
            rules = os.path.join(d, "rules.tsv")
            with open(rules, "w") as f:
                f.write("FF28\t48\n3000\t20\n")
            subprocess.run(["spm_train", f"--input={txt}", f"--model_prefix={d}/m",
                            "--vocab_size=20", "--model_type=unigram", f"--normalization_rule_tsv={rules}",
                            "--minloglevel=2"], check=True, capture_output=True)
            with open(os.path.join(d, "m.model"), "rb") as f:
                write("spm_model", "charsmap.model", f.read())


if __name__ == "__main__":
    main()
