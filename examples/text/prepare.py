#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the text demo's data from Debian's fortunes collections (deterministic, no seed needed
beyond the fixed one below):

  out/pretrain.txt      most English collections, one fortune a paragraph (pre-training)
  out/startrek.jsonl    the held-out `startrek` collection, {"text": ...} per fortune (adaptation)
  out/lang-train.jsonl  which language a fortune is in: {"text", "label": en|de|es|it}; the
  out/lang-test.jsonl   English ones from the held-out `humorists` collection
  base/tokenizer.json   with --tokenizer: a byte-level BPE of 4,096 ids trained by strop on
  base/config.json      out/pretrain.txt, and the GPT-2 config of the base model
  out/init/             the base's config and tokenizer with fresh, seeded weights (the start
                        of pre-training and of the from-scratch baselines)

Usage: prepare.py [--tokenizer] [--out DIR]   (run from anywhere; paths are beside this file)
Needs numpy and the strop Python bindings (PYTHONPATH=bindings/python, STROP_LIBRARY=...).
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


def write_init(base, init):
    """out/init/: base's config.json and tokenizer.json with fresh weights drawn as Hugging
    Face's GPT2PreTrainedModel._init_weights draws them (N(0, 0.02) for embeddings and Conv1D
    weights, c_proj scaled by 1/sqrt(2 n_layer), zero biases, LayerNorm 1 and 0), seeded. Both
    pre-training and the from-scratch baselines start from it: `strop train` would re-draw
    the weights with PyTorch's module defaults (N(0, 1) embeddings), which a GPT-2 whose
    output layer is tied to its embedding does not train well from."""
    import shutil
    import numpy as np
    from strop import safetensors
    cfg = json.load(open(os.path.join(base, "config.json")))
    os.makedirs(init, exist_ok=True)
    for n in ("config.json", "tokenizer.json"):
        shutil.copyfile(os.path.join(base, n), os.path.join(init, n))
    rng = np.random.default_rng(1)
    V, P, E, L = cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"]
    std, proj = 0.02, 0.02 / np.sqrt(2 * L)
    t = {"transformer.wte.weight": rng.normal(0, std, (V, E)),
         "transformer.wpe.weight": rng.normal(0, std, (P, E)),
         "transformer.ln_f.weight": np.ones(E), "transformer.ln_f.bias": np.zeros(E)}
    for i in range(L):
        h = "transformer.h.%d." % i
        t[h + "ln_1.weight"], t[h + "ln_1.bias"] = np.ones(E), np.zeros(E)
        t[h + "ln_2.weight"], t[h + "ln_2.bias"] = np.ones(E), np.zeros(E)
        t[h + "attn.c_attn.weight"] = rng.normal(0, std, (E, 3 * E))
        t[h + "attn.c_attn.bias"] = np.zeros(3 * E)
        t[h + "attn.c_proj.weight"] = rng.normal(0, proj, (E, E))
        t[h + "attn.c_proj.bias"] = np.zeros(E)
        t[h + "mlp.c_fc.weight"] = rng.normal(0, std, (E, 4 * E))
        t[h + "mlp.c_fc.bias"] = np.zeros(4 * E)
        t[h + "mlp.c_proj.weight"] = rng.normal(0, proj, (4 * E, E))
        t[h + "mlp.c_proj.bias"] = np.zeros(E)
    safetensors.save(os.path.join(init, "model.safetensors"),
                     {k: v.astype(np.float32) for k, v in t.items()}, metadata={"format": "pt"})


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
    if a.tokenizer or not os.path.exists(os.path.join(a.out, "init", "model.safetensors")):
        write_init(os.path.join(HERE, "base"), os.path.join(a.out, "init"))
    print("pre-training fortunes:", len(pre), "| startrek:",
          len(fortunes(os.path.join(FORTUNES, "startrek"))), "| language train/test:",
          len(train), len(test))


if __name__ == "__main__":
    main()
