#!/bin/sh
# SPDX-License-Identifier: MIT
# strop bench — issue 21's real-size rows side by side with PyTorch in one run, same threads:
# ResNet-50 224x224 batch 8 (full, frozen trunk), BERT-base 8x128 (full), GPT-2 small 4x128
# (full, LoRA r8 on c_attn), a TinyLlama-shaped 1.1B model 1x256 (LoRA r8 on q/v, base in BF16
# and in int8). PyTorch in FP32 and under torch.autocast("cpu", dtype=torch.bfloat16); strop in
# FP32 and, on the BERT, GPT-2 and ResNet-50 rows, with its linear and conv products in BF16
# (`strop bf16`: the model's compute dtype, beside `torch autocast`). Per row:
# samples or tokens/s, the step's GEMM floor (its multiply-adds over bench_peak's measured FP32
# peak; the BF16 rows also over the BF16 peak) and the step's share of it, the process's peak RSS
# (load, surgery and steps, as PyTorch's), and strop_model_step_memory's prediction of the
# steps' peak (bench_big prints the steps' own peak apart). Nothing here is a test: no thresholds.
#
#   bench/run_big_vs_torch.sh [build-dir] [steps] [repeats]      (defaults: build 2 2)
#   SMOKE=1 bench/run_big_vs_torch.sh build                     1 layer, 1 step, small shapes
#   ROWS="gpt2_lora tinyllama_lora" THREADS="1 2" ...           a subset
#   RESULTS=FILE ...                 every RESULT line of both sides appended to FILE as well
#                                    (the steps' own peak, the setup's, the load's: bench_big)
#
# The checkpoints (random weights of the real shapes, written by bench/torch_big.py) go to
# BUILD/bench-big/ (SMOKE: BUILD/bench-big-smoke/) and are kept for the next run: the TinyLlama
# folder is 2.2 GB (BF16). Nothing is downloaded. Runs under nice -n 10 when NICE=1.
set -eu
BUILD=${1:-build}
STEPS=${2:-2}
REPEATS=${3:-2}
SMOKE=${SMOKE:-0}
THREADS=${THREADS:-"1 2"}
ROWS=${ROWS:-"resnet50_full resnet50_frozen bert_full gpt2_full gpt2_lora tinyllama_lora"}
PY=${PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
BB="$BUILD/bench/bench_big"
BP="$BUILD/bench/bench_peak"
for b in "$BB" "$BP"; do
  [ -x "$b" ] || { echo "run_big_vs_torch.sh: $b not built (cmake --build $BUILD)" >&2; exit 1; }
done
PRE=""
[ "${NICE:-0}" = 1 ] && PRE="nice -n 10"
if [ "$SMOKE" = 1 ]; then
  OUT="$BUILD/bench-big-smoke"; LAYERS=1; STEPS=1; REPEATS=1
  export SIZE=${SIZE:-64} TOKENS=${TOKENS:-32} BATCH=${BATCH:-2}
  PEAKSEC=0.05
else
  OUT="$BUILD/bench-big"; LAYERS=0; PEAKSEC=0.5
fi
mkdir -p "$OUT"

field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
mb() { awk "BEGIN{printf \"%.0f\", $1/1024}"; }

# the peaks, per thread count
PEAKS=$($PRE "$BP" $PEAKSEC)
peak() { echo "$PEAKS" | awk -v k="$1" -v t="$2" '$0 ~ k && $0 ~ "threads " t " " {print $(NF-1)}'; }

family() { echo "$1" | cut -d_ -f1; }
for r in $ROWS; do
  f=$(family "$r")
  [ -f "$OUT/$f/model.safetensors" ] || $PRE "$PY" "$HERE/torch_big.py" write "$f" "$OUT/$f" "$LAYERS"
done

echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(nproc) cpus  load: $(cut -d' ' -f1-3 /proc/loadavg)  smoke=$SMOKE steps=$STEPS repeats=$REPEATS"
echo "# peaks (GFLOP/s): $(echo "$PEAKS" | awk '{printf "%s %s t%s %s; ", $1, $3, $5, $6}')"
printf '%-16s %-18s %3s %10s %9s %7s %9s %9s\n' row run thr rate floor_ms of_peak peak_rss planned
for t in $THREADS; do
  fp32=$(peak "fp32 fma zmm" "$t"); bf16=$(peak "bf16 vdpbf16ps" "$t")
  [ -n "$bf16" ] || bf16=$fp32
  for r in $ROWS; do
    f=$(family "$r")
    dts="f32"
    [ "$f" = tinyllama ] && dts="bf16 int8"
    # the rows again with the products in BF16 (mixed precision: COMPUTE_DTYPE=bf16)
    case "$r" in bert_full|gpt2_full|gpt2_lora|resnet50_*) dts="f32 compute_bf16" ;; esac
    for d in $dts; do
      cd_=f32; fd=$d; label="strop base=$d"
      [ "$d" = compute_bf16 ] && { cd_=bf16; fd=f32; label="strop bf16"; }
      s=$(OPENBLAS_NUM_THREADS=1 FROZEN_DTYPE=$fd COMPUTE_DTYPE=$cd_ $PRE "$BB" "$r" "$OUT/$f" "$t" "$STEPS" "$REPEATS" | grep '^RESULT')
      [ -z "${RESULTS:-}" ] || echo "$s" >> "$RESULTS"
      fl=$(field gemm_flops "$s"); ms=$(field step_ms "$s")
      pk=$fp32; [ "$d" = f32 ] || pk=$bf16
      floor=$(awk "BEGIN{printf \"%.1f\", $fl / ($pk * 1e9) * 1e3}")
      share=$(awk "BEGIN{printf \"%.0f%%\", $floor / $ms * 100}")
      rate=$(field tokens_per_s "$s"); [ -n "$rate" ] || rate=$(field samples_per_s "$s")
      # the process's peak (setup or steps), as PyTorch's ru_maxrss; planned is the steps' peak
      pk_kb=$(awk "BEGIN{a=$(field peak_rss_kb "$s"); b=$(field peak_setup_kb "$s"); print (a>b?a:b)}")
      printf '%-16s %-18s %3s %10s %9s %7s %7sMB %7sMB\n' "$r" "$label" "$t" "$rate" \
        "$floor" "$share" "$(mb "$pk_kb")" "$(mb "$(field planned_peak_kb "$s")")"
    done
    for a in 0 1; do
      p=$(OPENBLAS_NUM_THREADS=1 $PRE "$PY" "$HERE/torch_big.py" train "$r" "$OUT/$f" "$t" "$STEPS" \
          "$REPEATS" "$a" | grep '^RESULT')
      [ -z "${RESULTS:-}" ] || echo "$p autocast=$a" >> "$RESULTS"
      ms=$(field step_ms "$p")
      pk=$fp32; [ "$a" = 1 ] && pk=$bf16
      floor=$(awk "BEGIN{printf \"%.1f\", $fl / ($pk * 1e9) * 1e3}")
      share=$(awk "BEGIN{printf \"%.0f%%\", $floor / $ms * 100}")
      rate=$(field tokens_per_s "$p"); [ -n "$rate" ] || rate=$(field samples_per_s "$p")
      if [ "$a" = 1 ]; then n="torch autocast"; else n="torch fp32"; fi
      printf '%-16s %-18s %3s %10s %9s %7s %7sMB %9s\n' "$r" "$n" "$t" "$rate" "$floor" "$share" \
        "$(mb "$(field peak_rss_kb "$p")")" "-"
    done
  done
done
