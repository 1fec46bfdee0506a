#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the text demo's data from Debian's fortunes collections (deterministic, no seed needed
beyond the fixed one below):

  out/pretrain.txt      most English collections, one fortune a paragraph (pre-training)
  out/startrek.jsonl    the held-out `startrek` collection, {"text": ...} per fortune (adaptation)
  out/lang-train.jsonl  which language a fortune is in: {"text", "label": en|de|es|it}; the
  out/lang-test.jsonl   English ones from the held-out `humorists` collection
  base/tokenizer.json   with --tokenizer: a byte-level BPE of 4,096 ids trained by strop on
  base/config.json      out/pretrain.txt, and the GPT-2 config of the base model (from which
                        pre-training and the from-scratch baselines draw fresh weights: the
                        recipes' `model.weights: none`)

Usage: prepare.py [--tokenizer] [--out DIR]   (run from anywhere; paths are beside this file)
With --tokenizer, needs the strop Python bindings (PYTHONPATH=bindings/python,
STROP_LIBRARY=...).
"""
import argparse
import json
import os
import random

FORTUNES = "/usr/share/games/fortunes"
HERE = os.path.dirname(os.path.abspath(__file__))
# held out of pre-training: the adaptation target and the English side of the language task
HELD_OUT = {"startrek", "humorists"}
# not prose: pictures drawn with characters, and a file asking to be translated
SKIP = {"art", "ascii-art", "translate-me"}


def fortunes(path):
    """The fortunes of one collection: text between lines holding a single '%'."""
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8", "replace")
    out, cur = [], []
    for line in raw.split("\n"):
        if line.strip() == "%":
            if cur:
                out.append("\n".join(cur).strip("\n"))
            cur = []
        else:
            cur.append(line.rstrip())
    if cur and "\n".join(cur).strip():
        out.append("\n".join(cur).strip("\n"))
    return [t for t in out if t.strip()]


def collections(folder):
    """The text files of a folder (no .dat/.u8 indexes or links), sorted by name."""
    names = []
    for n in sorted(os.listdir(folder)):
        p = os.path.join(folder, n)
        if os.path.islink(p) or not os.path.isfile(p) or n.endswith((".dat", ".u8")):
            continue
        names.append(n)
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--tokenizer", action="store_true",
                    help="also train base/tokenizer.json (needs the strop Python bindings)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    pre = []
    for n in collections(FORTUNES):
        if n in HELD_OUT or n in SKIP:
            continue
        pre += fortunes(os.path.join(FORTUNES, n))
    with open(os.path.join(a.out, "pretrain.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(pre) + "\n")
    with open(os.path.join(a.out, "startrek.jsonl"), "w", encoding="utf-8") as f:
        for t in fortunes(os.path.join(FORTUNES, "startrek")):
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")

    # language identification: short fortunes (<= 300 bytes) of each language, shuffled with
    # a fixed seed; 100 per class go to the test set, the rest (from which recipes take k per
    # class) to the training file
    rng = random.Random(20)
    langs = {"en": [os.path.join(FORTUNES, "humorists")]}
    for lang in ("de", "es", "it"):
        d = os.path.join(FORTUNES, lang)
        langs[lang] = [os.path.join(d, n) for n in collections(d)]
    train, test = [], []
    for lang, paths in langs.items():
        texts = [t for p in paths for t in fortunes(p) if len(t.encode("utf-8")) <= 300]
        texts = sorted(set(texts))
        rng.shuffle(texts)
        test += [{"text": t, "label": lang} for t in texts[:100]]
        train += [{"text": t, "label": lang} for t in texts[100:600]]
    rng.shuffle(train)
    rng.shuffle(test)
    for name, rows in (("lang-train.jsonl", train), ("lang-test.jsonl", test)):
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    if a.tokenizer:
        import strop  # noqa: F401  (the bindings: the tokenizer is trained by strop)
        base = os.path.join(HERE, "base")
        os.makedirs(base, exist_ok=True)
        tok = strop.Tokenizer.train_bpe([os.path.join(a.out, "pretrain.txt")], vocab_size=4096,
                                        special_tokens=["<|endoftext|>"])
        tok.save(os.path.join(base, "tokenizer.json"))
        cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
               "vocab_size": tok.vocab_size, "n_positions": 128, "n_ctx": 128, "n_embd": 192,
               "n_layer": 4, "n_head": 4, "activation_function": "gelu_new",
               "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
               "layer_norm_epsilon": 1e-5, "bos_token_id": 0, "eos_token_id": 0,
               "tie_word_embeddings": True, "torch_dtype": "float32"}
        with open(os.path.join(base, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
    print("pre-training fortunes:", len(pre), "| startrek:",
          len(fortunes(os.path.join(FORTUNES, "startrek"))), "| language train/test:",
          len(train), len(test))


if __name__ == "__main__":
    main()
