#!/bin/sh
# SPDX-License-Identifier: MIT
# strop bench — a GPT-2-small-shaped LoRA fine-tuning step (rank 8 on c_attn, batch 4 x 128
# tokens, AdamW on the adapters) with the frozen base held in FP32, BF16 and int8
# (strop_model_set_frozen_dtype; docs/performance.md), side by side with PyTorch on the same
# reference modules in FP32 and under torch.autocast("cpu", dtype=torch.bfloat16): tokens/s,
# peak RSS, and strop's weight bytes as held. Nothing here is a test: no thresholds.
#
#   bench/run_lowp_vs_torch.sh [build-dir] [steps] [repeats]   (defaults: build 3 3)
#   LAYERS=1 bench/run_lowp_vs_torch.sh build 1 1              a smoke run (1 layer)
#   MODEL=llama THREADS="1 2" RANK=8 bench/run_lowp_vs_torch.sh build
#
# STROP_BF16_FALLBACK=1 runs strop's BF16 rows on the exact fallback instead of vdpbf16ps.
# PyTorch runs with torch.set_num_threads = threads and OPENBLAS_NUM_THREADS=1.
set -eu
BUILD=${1:-build}
STEPS=${2:-3}
REPEATS=${3:-3}
LAYERS=${LAYERS:-12}
MODEL=${MODEL:-gpt2}
THREADS=${THREADS:-"1 2"}
RANK=${RANK:-8}
PY=${PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
BL="$BUILD/bench/bench_llm"
[ -x "$BL" ] || { echo "run_lowp_vs_torch.sh: $BL not built (cmake --build $BUILD)" >&2; exit 1; }

field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
mb() { awk "BEGIN{printf \"%.0f\", $1/1024}"; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(nproc) cpus  load: $(cut -d' ' -f1-3 /proc/loadavg)  model=$MODEL layers=$LAYERS lora=$RANK"
printf '%-22s %3s %10s %10s %10s\n' run thr tokens/s peak_rss weights
for t in $THREADS; do
  for d in f32 bf16 int8; do
    s=$(OPENBLAS_NUM_THREADS=1 LORA=$RANK FROZEN_DTYPE=$d "$BL" "$MODEL" "$t" "$STEPS" "$REPEATS" \
        "$LAYERS" | grep '^RESULT')
    printf '%-22s %3s %10s %8sMB %8sMB\n' "strop base=$d" "$t" "$(field tokens_per_s "$s")" \
      "$(mb "$(field peak_rss_kb "$s")")" "$(field weights_mb "$s")"
  done
  for a in 0 1; do
    p=$(OPENBLAS_NUM_THREADS=1 LORA=$RANK AUTOCAST=$a "$PY" "$HERE/torch_llm.py" "$MODEL" "$t" \
        "$STEPS" "$REPEATS" "$LAYERS" | grep '^RESULT')
    if [ "$a" = 1 ]; then n="torch autocast-bf16"; else n="torch fp32"; fi
    printf '%-22s %3s %10s %8sMB %10s\n' "$n" "$t" "$(field tokens_per_s "$p")" \
      "$(mb "$(field peak_rss_kb "$p")")" "-"
  done
done
