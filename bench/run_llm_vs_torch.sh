#!/bin/sh
# SPDX-License-Identifier: MIT
# strop bench — GPT-2-small-shaped, Llama-shaped and examples/text-shaped causal-LM fine-tuning steps (batch 4 x 128
# tokens, AdamW) in strop (bench_llm, the models loaded through strop_model_load_pretrained
# from a Hugging Face folder) and in PyTorch (torch_llm.py on the reference modules of
# tests/pretrained/hf_reference.py) side by side, at 1 and 2 threads: tokens/s, the ratio
# strop/PyTorch, peak RSS. Nothing here is a test: no thresholds.
#
#   bench/run_llm_vs_torch.sh [build-dir] [steps] [repeats]     (defaults: build 3 3)
#   LAYERS=1 STEPS... bench/run_llm_vs_torch.sh build 1 1       a smoke run (1 layer each)
#   MODELS=llama THREADS=2 bench/run_llm_vs_torch.sh build
#   MODELS=example bench/run_llm_vs_torch.sh build     the text example's model (4 layers, d 192)
#
# At 2 threads PyTorch gets the best of torch.set_num_threads in {1,2} x OPENBLAS_NUM_THREADS
# in {1,2}, as in run_vs_torch.sh; strop runs BLAS single-threaded in its own workers.
set -eu
BUILD=${1:-build}
STEPS=${2:-3}
REPEATS=${3:-3}
LAYERS=${LAYERS:-12}
MODELS=${MODELS:-"gpt2 llama example"}
THREADS=${THREADS:-"1 2"}
PY=${PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
BL="$BUILD/bench/bench_llm"
[ -x "$BL" ] || { echo "run_llm_vs_torch.sh: $BL not built (cmake --build $BUILD)" >&2; exit 1; }

field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(nproc) cpus  load: $(cut -d' ' -f1-3 /proc/loadavg)  layers=$LAYERS"
printf '%-7s %3s %12s %12s %7s %10s %10s  %s\n' model thr strop_tok/s torch_tok/s ratio \
  strop_rss torch_rss torch_best
for t in $THREADS; do
  for m in $MODELS; do
    l=$LAYERS # the example model has 4 layers: at most that many
    [ "$m" = example ] && [ "$l" -gt 4 ] && l=4
    s=$(OPENBLAS_NUM_THREADS=1 "$BL" "$m" "$t" "$STEPS" "$REPEATS" "$l" | grep '^RESULT')
    best=""; bestv=0; bestc=""
    if [ "$t" = 1 ]; then combos="1:1"; else combos="1:1 1:2 2:1 2:2"; fi
    for c in $combos; do
      tt=${c%%:*}; bt=${c##*:}
      p=$(OPENBLAS_NUM_THREADS=$bt "$PY" "$HERE/torch_llm.py" "$m" "$tt" "$STEPS" "$REPEATS" \
          "$l" | grep '^RESULT')
      v=$(field tokens_per_s "$p")
      if awk "BEGIN{exit !($v > $bestv)}"; then best=$p; bestv=$v; bestc="threads=$tt,blas=$bt"; fi
    done
    ss=$(field tokens_per_s "$s")
    printf '%-7s %3s %12s %12s %7s %8sMB %8sMB  %s\n' "$m" "$t" "$ss" "$bestv" \
      "$(awk "BEGIN{printf \"%.2f\", $ss/$bestv}")" \
      "$(awk "BEGIN{printf \"%.0f\", $(field peak_rss_kb "$s")/1024}")" \
      "$(awk "BEGIN{printf \"%.0f\", $(field peak_rss_kb "$best")/1024}")" "$bestc"
  done
done
