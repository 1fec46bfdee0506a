#!/bin/sh
# SPDX-License-Identifier: MIT
# strop bench — issue 19's speed and memory targets, strop and PyTorch side by side in one run:
# torchvision's ResNet-18 at 224x224, batch 16, AdamW, full fine-tune and frozen trunk
# (everything but fc frozen), at 1 and 2 threads: images/s, the ratio strop/PyTorch (targets:
# >= 1.1 full, >= 1.3 frozen), the peak RSS of each process and their ratio (target <= 0.75),
# each side's forward / backward / optimizer phases, and strop's convolutions alone (conv_ms);
# then the time strop_model_load_pretrained takes on a ~500 MB checkpoint (target < 1 s): a
# torchvision resnet101 with a 40000-class fc (498 MB). Nothing here is a test: no thresholds.
#
#   bench/run_pretrained.sh [build-dir] [steps] [repeats]      (defaults: build 5 3)
#   THREADS="1" MODES="full" bench/run_pretrained.sh build 2 1  a quick check that it works
#   SKIP_LOAD=1 ...                                           without the 500 MB file
#
# Threads as bench/run_vs_torch.sh has them: strop with strop_set_num_threads(t) and one
# OpenBLAS thread inside its workers; PyTorch at 1 thread with one of each, at 2 threads the
# best of torch.set_num_threads in {1, 2} x OPENBLAS_NUM_THREADS in {1, 2}. The checkpoints
# are written by PyTorch into a temporary folder (removed at the end); both sides load the
# same file. The load time is the best of 3 with the file in the page cache.
set -eu
BUILD=${1:-build}
STEPS=${2:-5}
REPEATS=${3:-3}
THREADS=${THREADS:-"1 2"}
MODES=${MODES:-"full frozen"}
PY=${PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
BP="$BUILD/bench/bench_pretrained"
[ -x "$BP" ] || { echo "run_pretrained.sh: $BP not built (cmake --build $BUILD)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP/results"

field() { # field NAME LINE
  echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}
best_of() { # best_of PATTERN: the line of the results with the highest samples_per_s
  grep "$1" "$OUT" | awk '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "samples_per_s") v = kv[2] }
      if (v > best) { best = v; line = $0 } } END { print line }'
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(uname -m)  $(nproc) cpus  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# strop: $BP   torch: $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null)"
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} (both sides)"
"$PY" "$HERE/torch_pretrained.py" write "$TMP/resnet18.safetensors" resnet18 >/dev/null
: >"$OUT"
for t in $THREADS; do
  for mode in $MODES; do
    OPENBLAS_NUM_THREADS=1 "$BP" train "$TMP/resnet18.safetensors" "$mode" "$t" "$STEPS" "$REPEATS" \
      | sed "s/^/$t /" >>"$OUT"
    if [ "$t" = 1 ]; then combos="1:1"; else combos="1:1 1:2 2:1 2:2"; fi
    for c in $combos; do
      tt=${c%%:*}; bt=${c##*:}
      OPENBLAS_NUM_THREADS=$bt "$PY" "$HERE/torch_pretrained.py" train "$TMP/resnet18.safetensors" \
        "$mode" "$tt" "$STEPS" "$REPEATS" | sed "s/^/$t /" >>"$OUT"
    done
  done
done

printf '\n%-16s %3s %9s %9s %6s %9s %9s %6s  %-22s %-22s %8s\n' model thr strop_ips torch_ips \
  ratio strop_rss torch_rss rss_fr "strop fwd/bwd/opt ms" "torch fwd/bwd/opt ms" conv_ms
for t in $THREADS; do
  for mode in $MODES; do
    m=resnet18; [ "$mode" = frozen ] && m=resnet18_frozen
    s=$(best_of "^$t RESULT impl=strop model=$m ")
    p=$(best_of "^$t RESULT impl=torch model=$m ")
    ss=$(field samples_per_s "$s"); ps=$(field samples_per_s "$p")
    sr=$(field train_rss_kb "$s"); pr=$(field train_rss_kb "$p")
    printf '%-16s %3s %9s %9s %6s %7sMB %7sMB %6s  %-22s %-22s %8s  torch threads=%s,blas=%s\n' \
      "$m" "$t" "$ss" "$ps" "$(awk "BEGIN{printf \"%.2f\", $ss/$ps}")" \
      "$(awk "BEGIN{printf \"%.0f\", $sr/1024}")" "$(awk "BEGIN{printf \"%.0f\", $pr/1024}")" \
      "$(awk "BEGIN{printf \"%.2f\", $sr/$pr}")" \
      "$(field fwd_ms "$s")/$(field bwd_ms "$s")/$(field opt_ms "$s")" \
      "$(field fwd_ms "$p")/$(field bwd_ms "$p")/$(field opt_ms "$p")" "$(field conv_ms "$s")" \
      "$(field threads "$p")" "$(field blas_threads "$p")"
  done
done

if [ -z "${SKIP_LOAD:-}" ]; then
  "$PY" "$HERE/torch_pretrained.py" write "$TMP/big.safetensors" resnet101 40000 >/dev/null
  OPENBLAS_NUM_THREADS=1 "$BP" load "$TMP/big.safetensors" resnet101 3
fi
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${RAW:-}" ]; then echo; cat "$OUT"; fi
