#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop tests — WordPiece against tests/fixtures/bert_wordpiece.py, a reference written from
BERT's published tokenization (see its docstring for the release it follows).

A vocabulary is made from fortunes lines (English, German, Spanish, Italian); on held-out lines,
plus lines with accents, CJK characters, control characters and odd whitespace, strop must give
the reference's ids ([CLS] ... [SEP]) from
  1. vocab.txt (uncased: lower-casing and accent stripping),
  2. a tokenizer.json with BertNormalizer + BertPreTokenizer + WordPiece + BertProcessing,
  3. the cased variant: a folder whose tokenizer_config.json says do_lower_case false.
Skips (77) without the fortunes."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import textref  # noqa: E402

EXTRA = [
    "東京は日本の首都です。 Hello 世界!",
    "Café ÉLAN naïve coöperate Ångström Øresund",
    "\x01control\u0085chars\ttab\u00a0nbsp\u3000ideographic space",
    "ﬁnal ligature ½ Ⅻ ①",
    "a" * 120 + " long word",
    "don't stop-believing... (really)!",
]


def bert_json(vocab_path, lower, path):
    toks = open(vocab_path, encoding="utf-8").read().split("\n")[:-1]
    vocab = {t: i for i, t in enumerate(toks)}
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for s in specials],
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None, "lowercase": lower},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", vocab["[SEP]"]],
                           "cls": ["[CLS]", vocab["[CLS]"]]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }
    json.dump(tj, open(path, "w", encoding="utf-8"), ensure_ascii=False)
    return path


def main():
    a = textref.args()
    ref_py = os.path.join(a.src, "tests", "fixtures", "bert_wordpiece.py")
    lines = textref.fortune_lines(per_language=6000 if a.sanitized else 12000)
    train = [l for i, l in enumerate(lines) if i % 4]
    held = [l for i, l in enumerate(lines) if i % 4 == 0] + EXTRA
    tpath = textref.write_lines(os.path.join(a.work, "train.txt"), train)
    hpath = textref.write_lines(os.path.join(a.work, "held.txt"), held)
    for cased in (False, True):
        tag = "cased" if cased else "uncased"
        folder = os.path.join(a.work, tag)
        os.makedirs(folder, exist_ok=True)
        vocab = os.path.join(folder, "vocab.txt")
        flag = ["--cased"] if cased else []
        textref.run([sys.executable, ref_py, "vocab", tpath, "--out", vocab, "--size", "8000",
                     *flag])
        with open(hpath, "rb") as f:
            ref = textref.run([sys.executable, ref_py, "encode", vocab, *flag], stdin=f)
        ref = ref.decode().split("\n")[:-1]
        json.dump({"do_lower_case": not cased},
                  open(os.path.join(folder, "tokenizer_config.json"), "w"))
        got = textref.strop_tokenize(a.strop, folder, hpath, os.path.join(a.work, f"{tag}.ids"))
        textref.compare(f"BERT reference vs strop ({tag} vocab.txt)", ref, got, held)
        tj = bert_json(vocab, not cased, os.path.join(a.work, f"{tag}.json"))
        got = textref.strop_tokenize(a.strop, tj, hpath, os.path.join(a.work, f"{tag}.json.ids"))
        textref.compare(f"BERT reference vs strop ({tag} tokenizer.json)", ref, got, held)
    return 0


if __name__ == "__main__":
    sys.exit(main())
