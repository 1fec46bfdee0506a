#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop tests — Llama-style tokenizers, built from vocabularies trained at test time.

1. Llama-2's kind: spm_train makes a SentencePiece BPE model with Llama-2's settings (identity
   normalization, spaces kept, byte fallback, digits split, whitespace-only pieces). strop must
   give spm_encode's ids from the .model, and from the tokenizer.json Hugging Face's LlamaConverter
   writes for it (Prepend + Replace normalizer, BPE with byte_fallback and fuse_unk, merges
   derived from the piece scores, <s> template, Replace/ByteFallback/Fuse/Strip decoder) the same
   ids after <s>; decoding through that tokenizer.json gives spm_decode's text.
2. Llama-3's kind: strop trains a byte-level BPE (through the Python bindings), whose
   tokenizer.json is rewritten to Llama-3's pipeline (the regex split
   (?i:'s|'t|...)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|..., ByteLevel without its own
   regex, ignore_merges, a <|begin_of_text|> template). The reference is a JavaScript encoder
   (node's regex engine, not PCRE2) over the same vocabulary and merges.
Skips (77) without the sentencepiece tools, node, or the fortunes; part 2 needs the bindings
and is left out in sanitized builds (ctypes cannot load an ASan library)."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import textref  # noqa: E402

SPM_FLAGS = ["--model_type=bpe", "--vocab_size=3000", "--normalization_rule_name=identity",
             "--remove_extra_whitespaces=false", "--add_dummy_prefix=true",
             "--byte_fallback=true", "--split_digits=true", "--allow_whitespace_only_pieces=true",
             "--character_coverage=0.995"]

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# node 20 has no inline (?i:...): the same alternatives spelled out
REF_JS = r"""
const fs = require('fs');
const tj = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'));
const vocab = new Map(Object.entries(tj.model.vocab));
const ranks = new Map();
tj.model.merges.forEach((m, i) => { const [a, b] = Array.isArray(m) ? m : m.split(' ');
  ranks.set(a + '\u0001' + b, i); });
const pat = /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;
const bs = [];
for (let b = 33; b <= 126; b++) bs.push(b);
for (let b = 161; b <= 172; b++) bs.push(b);
for (let b = 174; b <= 255; b++) bs.push(b);
const cs = bs.slice();
let n = 0;
for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
const byteChar = new Array(256);
bs.forEach((b, i) => { byteChar[b] = String.fromCharCode(cs[i]); });
const enc = new TextEncoder();
function bpe(word) {
  if (vocab.has(word)) return [word];          // ignore_merges
  let parts = Array.from(word);
  while (parts.length > 1) {
    let best = -1, bestRank = Infinity;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = ranks.get(parts[i] + '\u0001' + parts[i + 1]);
      if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
    }
    if (best < 0) break;
    parts.splice(best, 2, parts[best] + parts[best + 1]);
  }
  return parts;
}
const lines = fs.readFileSync(0, 'utf-8').split('\n');
if (lines.length && lines[lines.length - 1] === '') lines.pop();
const out = lines.map(line => {
  const ids = [];
  for (const m of line.matchAll(pat)) {
    const word = Array.from(enc.encode(m[0])).map(b => byteChar[b]).join('');
    for (const p of bpe(word)) ids.push(vocab.get(p));
  }
  return ids.join(' ');
});
process.stdout.write(out.join('\n') + '\n');
"""


def spm_merges(model_path):
    """Hugging Face's SentencePieceExtractor: every split of a piece into two pieces, ordered by
    the piece's score (stable sort, high first), ties by the parts' ids."""
    sys.path.insert(0, "/usr/lib/python3/dist-packages")
    try:
        import sentencepiece as spm
    except ImportError:
        textref.skip("python3-sentencepiece is not installed")
    sp = spm.SentencePieceProcessor(model_file=model_path)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    merges = []
    for piece, score in scores:
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: x[2], reverse=True)
    return vocab, [[a, b] for a, b, _ in merges], sp


def llama2_json(model_path, path):
    vocab, merges, sp = spm_merges(model_path)
    special = [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True} for i in range(3)]
    tj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    json.dump(tj, open(path, "w", encoding="utf-8"), ensure_ascii=False)
    return path


def llama2(a, train_path, held, held_path):
    for tool in ("spm_train", "spm_encode", "spm_decode"):
        if not shutil.which(tool):
            textref.skip(f"{tool} is not installed (Debian package sentencepiece)")
    prefix = os.path.join(a.work, "llama2")
    if not os.path.isfile(prefix + ".model"):
        textref.run(["spm_train", f"--input={train_path}", f"--model_prefix={prefix}",
                     "--num_threads=2", "--minloglevel=2", *SPM_FLAGS])
    model = prefix + ".model"
    with open(held_path, "rb") as f:
        ref = textref.run(["spm_encode", f"--model={model}", "--output_format=id"], stdin=f)
    ref = ref.decode().split("\n")[:-1]
    got = textref.strop_tokenize(a.strop, model, held_path, os.path.join(a.work, "l2.model.ids"))
    textref.compare("spm_encode vs strop (Llama-2-style .model)", ref, got, held)
    tj = llama2_json(model, os.path.join(a.work, "llama2.json"))
    idpath = os.path.join(a.work, "l2.json.ids")
    got = textref.strop_tokenize(a.strop, tj, held_path, idpath)
    textref.compare("<s> + spm_encode vs strop (Llama-2 tokenizer.json)",
                    [("1 " + r).strip() for r in ref], got, held)
    with open(os.path.join(a.work, "l2.ref.ids"), "w") as f:
        f.write("\n".join(ref) + "\n")
    with open(os.path.join(a.work, "l2.ref.ids"), "rb") as f:
        dec = textref.run(["spm_decode", f"--model={model}", "--input_format=id"], stdin=f)
    got = textref.strop_tokenize(a.strop, tj, idpath, os.path.join(a.work, "l2.dec"), "--decode",
                                 "--no-special")
    textref.compare("spm_decode vs strop --decode (Llama-2 tokenizer.json)",
                    dec.decode("utf-8").split("\n")[:-1], got)


def llama3(a, train_path, held, held_path):
    if a.sanitized or not a.lib:
        print("llama-3 part left out: it trains through the Python bindings")
        return
    if not shutil.which("node"):
        textref.skip("node is not installed (Debian package nodejs)")
    env = dict(os.environ, STROP_LIBRARY=a.lib,
               PYTHONPATH=os.path.join(a.src, "bindings", "python"))
    saved = os.path.join(a.work, "trained.json")
    code = ("import strop, sys; t = strop.Tokenizer.train_bpe([sys.argv[1]], 3000, "
            "special_tokens=['<|begin_of_text|>', '<|end_of_text|>']); t.save(sys.argv[2])")
    r = subprocess.run(["/usr/bin/python3", "-c", code, train_path, saved], env=env,
                       capture_output=True)
    if r.returncode:
        print("FAIL: training through the bindings:", r.stderr.decode()[-2000:])
        sys.exit(1)
    tj = json.load(open(saved, encoding="utf-8"))
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated",
         "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False}]}
    tj["model"]["ignore_merges"] = True
    tj["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
         "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                  {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                  {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [0],
                                                  "tokens": ["<|begin_of_text|>"]}}}]}
    path = os.path.join(a.work, "llama3.json")
    json.dump(tj, open(path, "w", encoding="utf-8"), ensure_ascii=False)
    js = os.path.join(a.work, "llama3_ref.js")
    open(js, "w").write(REF_JS)
    with open(held_path, "rb") as f:
        ref = textref.run(["node", js, path], stdin=f).decode().split("\n")[:-1]
    got = textref.strop_tokenize(a.strop, path, held_path, os.path.join(a.work, "l3.ids"))
    textref.compare("node reference vs strop (Llama-3-style tokenizer.json)",
                    [("0 " + r).strip() for r in ref], got, held)
    back = textref.strop_tokenize(a.strop, path, os.path.join(a.work, "l3.ids"),
                                  os.path.join(a.work, "l3.dec"), "--decode", "--no-special")
    textref.compare("decode(encode(line)) == line (Llama-3-style)", held, back)


def main():
    a = textref.args()
    lines = textref.fortune_lines(per_language=6000 if a.sanitized else 12000)
    train = [l for i, l in enumerate(lines) if i % 4]
    held = [l for i, l in enumerate(lines) if i % 4 == 0]
    held += ["  leading spaces, trailing spaces  ", "digits 1234567 and 3.14159",
             "CJK 東京タワー and emoji \U0001F600 fall back to bytes", "It'S ALL'S WE'VE'LL"]
    tpath = textref.write_lines(os.path.join(a.work, "train.txt"), train)
    hpath = textref.write_lines(os.path.join(a.work, "held.txt"), held)
    llama2(a, tpath, held, hpath)
    llama3(a, tpath, held, hpath)
    return 0


if __name__ == "__main__":
    sys.exit(main())
