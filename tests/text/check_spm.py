#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop tests — SentencePiece .model files against SentencePiece itself.

Debian's spm_train trains, at test time, two models on fortunes lines (English, German, Spanish,
Italian): a unigram model with a user-defined symbol and the default nmt_nfkc normalization, and
a BPE model with byte fallback on a narrower character coverage (so rare characters fall back to
<0xXX> pieces). On held-out lines strop must give spm_encode's ids, and decoding spm_encode's ids
must give spm_decode's text. Skips (77) without the sentencepiece tools or the fortunes."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import textref  # noqa: E402

MODELS = {
    "unigram": ["--model_type=unigram", "--vocab_size=2000", "--character_coverage=0.9995",
                "--user_defined_symbols=<sep>"],
    "bpe": ["--model_type=bpe", "--vocab_size=2000", "--character_coverage=0.995",
            "--byte_fallback=true"],
}


def main():
    a = textref.args()
    for tool in ("spm_train", "spm_encode", "spm_decode"):
        if not shutil.which(tool):
            textref.skip(f"{tool} is not installed (Debian package sentencepiece)")
    lines = textref.fortune_lines(per_language=8000 if a.sanitized else 14000)
    # every fourth line is held out; the rest trains
    train = [l for i, l in enumerate(lines) if i % 4]
    held = [l for i, l in enumerate(lines) if i % 4 == 0]
    held.append("a <sep> in the text, and CJK 東京 and \u00e9\u0301 decomposed")
    tpath = textref.write_lines(os.path.join(a.work, "train.txt"), train)
    hpath = textref.write_lines(os.path.join(a.work, "held.txt"), held)
    print(f"{len(train)} training lines, {len(held)} held-out lines")
    for name, flags in MODELS.items():
        prefix = os.path.join(a.work, name)
        if not os.path.isfile(prefix + ".model"):
            textref.run(["spm_train", f"--input={tpath}", f"--model_prefix={prefix}",
                         "--num_threads=2", "--minloglevel=2", *flags])
        model = prefix + ".model"
        with open(hpath, "rb") as f:
            ref = textref.run(["spm_encode", f"--model={model}", "--output_format=id"], stdin=f)
        ref_ids = ref.decode().split("\n")[:-1]
        idpath = os.path.join(a.work, f"{name}.ref.ids")
        open(idpath, "wb").write(ref)
        got = textref.strop_tokenize(a.strop, model, hpath, os.path.join(a.work, f"{name}.ids"))
        textref.compare(f"spm_encode vs strop ({name} .model)", ref_ids, got, held)
        with open(idpath, "rb") as f:
            dec = textref.run(["spm_decode", f"--model={model}", "--input_format=id"], stdin=f)
        ref_text = dec.decode("utf-8").split("\n")[:-1]
        got = textref.strop_tokenize(a.strop, model, idpath, os.path.join(a.work, f"{name}.dec"),
                                     "--decode")
        textref.compare(f"spm_decode vs strop --decode ({name})", ref_text, got)
    return 0


if __name__ == "__main__":
    sys.exit(main())
