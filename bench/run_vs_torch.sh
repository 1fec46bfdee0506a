#!/bin/sh
# SPDX-License-Identifier: MIT
# strop bench — the issue-5 headline: train the same models in strop (bench_train) and in
# PyTorch (torch_train.py, Debian's python3-torch under /usr/bin/python3) on this machine in one
# run, at 1 and 2 threads, and print samples/s, the ratio strop/PyTorch, the peak RSS of each
# process, and strop's step time over the GEMM floor. Nothing here is a test: no thresholds.
#
#   bench/run_vs_torch.sh [build-dir] [steps] [repeats]      (defaults: build 30 5)
#   MODELS="cnn cnn_frozen" THREADS="1" bench/run_vs_torch.sh build
#   NATIVE_BLAS=1 bench/run_vs_torch.sh build     both sides with OPENBLAS_CORETYPE and
#                                                 OPENBLAS_L2_SIZE unset (OpenBLAS detects the CPU)
#
# Both processes always see the same environment. Some machines pin OPENBLAS_CORETYPE (and
# OPENBLAS_L2_SIZE) on purpose because older OpenBLAS builds misbehave on their CPU; the
# header says which kernel set each side ran (blas_core in the raw lines).
#
# On 2 threads PyTorch gets its best setting, not its default: every combination of
# torch.set_num_threads in {1,2} and OPENBLAS_NUM_THREADS in {1,2} is run and the fastest kept
# (its default oversubscribes). On 1 thread both run with one thread and one BLAS thread.
# Each process reports the best of `repeats` windows of `steps` steps after a warm-up; the whole
# set is run ROUNDS times (default 2) and the best round kept per row, because the machine is
# shared and single windows fluctuate.
set -eu
BUILD=${1:-build}
STEPS=${2:-30}
REPEATS=${3:-5}
ROUNDS=${ROUNDS:-2}
MODELS=${MODELS:-"mlp_sgd mlp_adam cnn cnn_frozen transformer"}
THREADS=${THREADS:-"1 2"}
PY=${PYTHON:-/usr/bin/python3}
if [ -n "${NATIVE_BLAS:-}" ]; then unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; fi
HERE=$(cd "$(dirname "$0")" && pwd)
BT="$BUILD/bench/bench_train"
[ -x "$BT" ] || { echo "run_vs_torch.sh: $BT not built (cmake --build $BUILD)" >&2; exit 1; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

field() { # field NAME LINE
  echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(uname -m)  $(nproc) cpus  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# strop: $BT   torch: $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null)"
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-<unset>} (both sides)"
for r in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    for m in $MODELS; do
      # strop runs BLAS single-threaded inside its own workers (it sets OpenBLAS to one thread
      # itself); the variable only spares OpenBLAS from starting idle threads of its own
      OPENBLAS_NUM_THREADS=1 "$BT" "$m" "$t" "$STEPS" "$REPEATS" | sed "s/^/$t /" >>"$OUT"
      if [ "$t" = 1 ]; then combos="1:1"; else combos="1:1 1:2 2:1 2:2"; fi
      for c in $combos; do
        tt=${c%%:*}; bt=${c##*:}
        OPENBLAS_NUM_THREADS=$bt "$PY" "$HERE/torch_train.py" "$m" "$tt" "$STEPS" "$REPEATS" \
          | sed "s/^/$t /" >>"$OUT"
      done
    done
  done
done

printf '\n%-12s %3s %12s %12s %7s %10s %10s %8s %9s %9s %6s  %s\n' model thr strop_sps torch_sps ratio \
  strop_rss torch_rss rss_frac floor_ms strop_ms xfloor torch_best
for t in $THREADS; do
  for m in $MODELS; do
    s=$(grep "^$t RESULT impl=strop model=$m " "$OUT" | sort -t= -k6 -g | awk '
      { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "samples_per_s") v = kv[2] }
        if (v > best) { best = v; line = $0 } } END { print line }')
    p=$(grep "^$t RESULT impl=torch model=$m " "$OUT" | awk '
      { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "samples_per_s") v = kv[2] }
        if (v > best) { best = v; line = $0 } } END { print line }')
    ss=$(field samples_per_s "$s"); ps=$(field samples_per_s "$p")
    sr=$(field train_rss_kb "$s"); pr=$(field train_rss_kb "$p")
    fl=$(field gemm_floor_ms "$s"); sm=$(field step_ms "$s"); fm=$(field floor_mult "$s")
    printf '%-12s %3s %12s %12s %7s %8sMB %8sMB %8s %9s %9s %6s  threads=%s,blas=%s\n' "$m" "$t" "$ss" "$ps" \
      "$(awk "BEGIN{printf \"%.2f\", $ss/$ps}")" \
      "$(awk "BEGIN{printf \"%.1f\", $sr/1024}")" "$(awk "BEGIN{printf \"%.1f\", $pr/1024}")" \
      "$(awk "BEGIN{printf \"%.3f\", $sr/$pr}")" "$fl" "$sm" "$fm" \
      "$(field threads "$p")" "$(field blas_threads "$p")"
  done
done
# the frozen-trunk ratio (issue 9): full fine-tuning step over frozen-trunk step, per thread count
for t in $THREADS; do
  a=$(grep "^$t RESULT impl=strop model=cnn " "$OUT" | sed 's/.*step_ms=\([^ ]*\).*/\1/' | sort -g | head -1)
  b=$(grep "^$t RESULT impl=strop model=cnn_frozen " "$OUT" | sed 's/.*step_ms=\([^ ]*\).*/\1/' | sort -g | head -1)
  [ -n "$a" ] && [ -n "$b" ] && printf 'frozen trunk, %s thread(s): cnn %s ms / cnn_frozen %s ms = %s x\n' \
    "$t" "$a" "$b" "$(awk "BEGIN{printf \"%.2f\", $a/$b}")"
done
echo "# OpenBLAS kernels: strop $(grep 'impl=strop' "$OUT" | grep -o 'blas_core=[^ ]*' | sort -u | head -n1 | cut -d= -f2), torch $(grep 'impl=torch' "$OUT" | grep -o 'blas_core=[^ ]*' | sort -u | head -n1 | cut -d= -f2)"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${RAW:-}" ]; then echo; cat "$OUT"; fi
