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
#   ROUNDS=3 ...                     each row's runs (strop's, then PyTorch's) made 3 times in
#                                    turn; a rate is the best of them, `spread` how far the
#                                    lowest fell below it (a quiet machine still moves PyTorch's
#                                    rates by 10-25% between runs: one round's ratio carries that)
#
# After the rows, the ratios the issue's targets are written in: strop FP32 / PyTorch FP32,
# strop BF16 / autocast, strop BF16 / strop FP32, peak RSS against PyTorch FP32's and the BF16
# run's against autocast's; TinyLlama's line per frozen base (BF16, int8) against PyTorch FP32
# and autocast.
#
# The checkpoints (random weights of the real shapes, written by bench/torch_big.py) go to
# BUILD/bench-big/ (SMOKE: BUILD/bench-big-smoke/) and are kept for the next run: the TinyLlama
# folder is 2.2 GB (BF16). Nothing is downloaded. Runs under nice -n 10 when NICE=1.
set -eu
BUILD=${1:-build}
STEPS=${2:-2}
REPEATS=${3:-2}
ROUNDS=${ROUNDS:-1}
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

echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(nproc) cpus  load: $(cut -d' ' -f1-3 /proc/loadavg)  smoke=$SMOKE steps=$STEPS repeats=$REPEATS rounds=$ROUNDS"
# (bench_peak's lines: "fp32 fma zmm threads 1 231.3 GFLOP/s", "bf16 vdpbf16ps threads 1 ...",
# "bf16 amx threads 1 ...")
echo "# peaks (GFLOP/s): $(echo "$PEAKS" | awk '{printf "%s %s t%s %s; ", $1, $(NF-4), $(NF-2), $(NF-1)}')"
printf '%-16s %-18s %3s %10s %9s %7s %9s %9s %7s %7s\n' row run thr rate floor_ms of_peak peak_rss planned spread c2c_ns
RATES=$(mktemp)
trap 'rm -f "$RATES"' EXIT
# One side of a row once: the RESULT line of bench_big (strop) or torch_big.py (PyTorch).
# $1 row, $2 folder, $3 threads, $4 strop's frozen dtype or "torch", $5 compute dtype or autocast
# The line ends with c2c_ns, the one-way latency between the two CPUs measured just before the
# run (bench_peak c2c): a 2-thread run while the host keeps the virtual CPUs apart (170-300 ns
# against 27-40) is up to 15% slower, PyTorch's as strop's (docs/performance.md, "The two speeds
# of a 2-thread process").
run_side() {
  c2c=$("$BP" c2c)
  if [ "$4" = torch ]; then
    l=$(OPENBLAS_NUM_THREADS=1 $PRE "$PY" "$HERE/torch_big.py" train "$1" "$2" "$3" "$STEPS" \
      "$REPEATS" "$5" | grep '^RESULT')
  else
    l=$(OPENBLAS_NUM_THREADS=1 FROZEN_DTYPE=$4 COMPUTE_DTYPE=$5 $PRE "$BB" "$1" "$2" "$3" \
      "$STEPS" "$REPEATS" | grep '^RESULT')
  fi
  echo "$l $c2c"
}
rate_of() { r=$(field tokens_per_s "$1"); [ -n "$r" ] || r=$(field samples_per_s "$1"); echo "$r"; }
for t in $THREADS; do
  # the BF16 rows against the peak of what strop's BF16 products run on: the AMX tiles where
  # they run there (bench_peak prints their line only then), else vdpbf16ps
  fp32=$(peak "fp32 fma zmm" "$t"); bf16=$(peak "bf16 vdpbf16ps" "$t")
  a=$(peak "bf16 amx" "$t"); [ -z "$a" ] || bf16=$a
  [ -n "$bf16" ] || bf16=$fp32
  for r in $ROWS; do
    f=$(family "$r")
    dts="f32"
    [ "$f" = tinyllama ] && dts="bf16 int8"
    # the rows again with the products in BF16 (mixed precision: COMPUTE_DTYPE=bf16)
    case "$r" in bert_full|gpt2_full|gpt2_lora|resnet50_*) dts="f32 compute_bf16" ;; esac
    # the runs of this row: strop's dtypes, then PyTorch FP32 and autocast; with ROUNDS > 1 the
    # whole sequence again, so that both sides meet the same drift of the machine
    runs=""
    for d in $dts; do runs="$runs strop:$d"; done
    runs="$runs torch:0 torch:1"
    best=""
    i=1
    while [ "$i" -le "$ROUNDS" ]; do
      for u in $runs; do
        side=${u%%:*}; d=${u#*:}
        if [ "$side" = torch ]; then s=$(run_side "$r" "$OUT/$f" "$t" torch "$d")
        elif [ "$d" = compute_bf16 ]; then s=$(run_side "$r" "$OUT/$f" "$t" f32 bf16)
        else s=$(run_side "$r" "$OUT/$f" "$t" "$d" f32); fi
        [ -z "${RESULTS:-}" ] || { [ "$side" = torch ] && echo "$s autocast=$d" || echo "$s"; } >> "$RESULTS"
        # per run: the best rate, the lowest, and the RESULT line of the best
        rt=$(rate_of "$s")
        prev=$(echo "$best" | awk -v u="$u" -F'|' '$1 == u')
        if [ -z "$prev" ]; then
          best=$(printf '%s\n%s|%s|%s|%s' "$best" "$u" "$rt" "$rt" "$s")
        else
          others=$(echo "$best" | awk -v u="$u" -F'|' '$1 != u')
          line=$(echo "$prev" | awk -F'|' -v rt="$rt" -v s="$s" -v u="$u" \
            '{hi=$2; lo=$3; l=$4; if (rt+0 > hi+0) {hi=rt; l=s}; if (rt+0 < lo+0) lo=rt;
              printf "%s|%s|%s|%s", u, hi, lo, l}')
          best=$(printf '%s\n%s' "$others" "$line")
        fi
      done
      i=$((i + 1))
    done
    fl=""
    for u in $runs; do
      side=${u%%:*}; d=${u#*:}
      e=$(echo "$best" | awk -v u="$u" -F'|' '$1 == u')
      hi=$(echo "$e" | cut -d'|' -f2); lo=$(echo "$e" | cut -d'|' -f3); s=$(echo "$e" | cut -d'|' -f4-)
      [ -n "$fl" ] || fl=$(field gemm_flops "$s")
      ms=$(field step_ms "$s")
      spread=$(awk "BEGIN{printf \"%.1f%%\", ($hi - $lo) / $hi * 100}")
      [ "$ROUNDS" -gt 1 ] || spread="-"
      if [ "$side" = torch ]; then
        pk=$fp32; [ "$d" = 1 ] && pk=$bf16
        if [ "$d" = 1 ]; then label="torch autocast"; else label="torch fp32"; fi
        pk_kb=$(field peak_rss_kb "$s"); planned="-"
      else
        pk=$fp32; [ "$d" = f32 ] || pk=$bf16
        label="strop base=$d"; [ "$d" = compute_bf16 ] && label="strop bf16"
        # the process's peak (setup or steps), as PyTorch's ru_maxrss; planned is the steps' peak
        pk_kb=$(awk "BEGIN{a=$(field peak_rss_kb "$s"); b=$(field peak_setup_kb "$s"); print (a>b?a:b)}")
        planned="$(mb "$(field planned_peak_kb "$s")")MB"
      fi
      floor=$(awk "BEGIN{printf \"%.1f\", $fl / ($pk * 1e9) * 1e3}")
      sharev=$(awk "BEGIN{printf \"%.2f\", $floor / $ms * 100}")
      share=$(awk "BEGIN{printf \"%.0f%%\", $sharev}")
      printf '%-16s %-18s %3s %10s %9s %7s %7sMB %9s %7s %7s\n' "$r" "$label" "$t" "$hi" \
        "$floor" "$share" "$(mb "$pk_kb")" "$planned" "$spread" "$(field c2c_ns "$s")"
      echo "$r $t $label|$hi|$pk_kb|$sharev|$(field c2c_ns "$s")" >> "$RATES"
    done
  done
done

# The ratios the issue states its targets in, from the rates above (best of the rounds), and
# the share of the BF16 peak that 1.5x PyTorch's autocast asks of strop's BF16 step (above 100%:
# out of reach for any implementation of the same arithmetic). At 2 threads a ratio is marked
# with ~ when its two runs had the host's CPUs placed differently (one c2c_ns under 100, the
# other over): the apart placement costs strop 10-12% and PyTorch 5% (docs/performance.md).
echo
printf '%-27s %3s %11s %13s %9s %9s %11s %9s\n' row thr strop/torch bf16/autocast bf16/own \
  rss/torch bf16rss/ac 1.5xac@
awk -F'|' '
  { split($1, k, " "); key = k[1] " " k[2]; lab = substr($1, length(key) + 2)
    rate[key, lab] = $2; rss[key, lab] = $3; shr[key, lab] = $4; c2c[key, lab] = $5
    if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
  # a ratio of the rates of runs a and b of row key, ~ after it when their placements differ
  function r(key, a, b,   t, x, y, kk) {
    t = q(rate[key, a], rate[key, b]); x = c2c[key, a]; y = c2c[key, b]; split(key, kk, " ")
    if (t != "-" && kk[2] + 0 > 1 && x + 0 > 0 && y + 0 > 0 && (x + 0 < 100) != (y + 0 < 100))
      t = t "~"
    return t
  }
  function q(a, b) { return (a != "" && b != "" && b + 0 > 0) ? sprintf("%.2fx", a / b) : "-" }
  END {
    for (i = 0; i < n; i++) {
      key = order[i]; split(key, k, " ")
      t = rate[key, "torch fp32"]; a = rate[key, "torch autocast"]
      tr = rss[key, "torch fp32"]; ar = rss[key, "torch autocast"]
      need = shr[key, "torch autocast"] != "" ? sprintf("%.0f%%", 1.5 * shr[key, "torch autocast"]) : "-"
      if (rate[key, "strop base=f32"] != "") {
        f = rate[key, "strop base=f32"]; b = rate[key, "strop bf16"]
        printf "%-27s %3s %11s %13s %9s %9s %11s %9s\n", k[1], k[2],
          r(key, "strop base=f32", "torch fp32"), r(key, "strop bf16", "torch autocast"),
          r(key, "strop bf16", "strop base=f32"),
          q(rss[key, "strop base=f32"], tr), q(rss[key, "strop bf16"], ar), need
      } else { # a frozen base held in BF16 or int8 (TinyLlama): each base against PyTorch
        for (j = 1; j <= 2; j++) {
          base = j == 1 ? "bf16" : "int8"; b = rate[key, "strop base=" base]
          if (b == "") continue
          printf "%-27s %3s %11s %13s %9s %9s %11s %9s\n", k[1] " (" base " base)", k[2],
            r(key, "strop base=" base, "torch fp32"), r(key, "strop base=" base, "torch autocast"),
            "-", q(rss[key, "strop base=" base], tr), "-", need
        }
      }
    }
  }' "$RATES"
