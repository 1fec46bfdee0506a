#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop tests — `mpirun -np 2 strop train RECIPE` with no other change: one report (rank 0's),
# the outputs and checkpoint written once, the same test accuracy as one process within a
# sample. Usage: tool_mpi.sh STROP_BIN MPIRUN...
set -uo pipefail
strop=$1
shift
work=$(mktemp -d /tmp/strop_mpi_XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
SKLEARN=/usr/lib/python3/dist-packages/sklearn/datasets/data
[ -f "$SKLEARN/iris.csv" ] || { echo "skip: $SKLEARN/iris.csv missing"; exit 77; }
cat > "$work/net.yaml" <<'Y'
input: [4]
layers:
  - {name: body.0, type: linear, out_features: 16}
  - {name: body.1, type: tanh}
  - {name: head, type: linear, out_features: 3}
Y
for d in one two; do
  cat > "$work/$d.yaml" <<Y
description: iris from scratch
seed: 2
model: {spec: net.yaml}
data: {source: csv, path: $SKLEARN/iris.csv, sklearn_header: true, num_classes: 3,
       test_fraction: 0.3, normalize: auto, batch_size: 16}
optimizer: {kind: adam, lr: 0.02}
train: {epochs: 40, checkpoint_every: 5}
output: {dir: out_$d, weights: iris.safetensors, report: report.json, checkpoint: run.ckpt}
Y
done
"$strop" train "$work/one.yaml" --json --quiet > "$work/one.json" || fail "one process"
"$@" "$strop" train "$work/two.yaml" --json > "$work/two.json" 2> "$work/two.err" ||
  { cat "$work/two.err"; fail "mpirun -np 2 strop train"; }
grep -q "on 2 ranks" "$work/two.err" || fail "the run did not say it ran on 2 ranks"
[ "$(grep -c "strop train" "$work/two.err")" = 1 ] || fail "more than one rank printed progress"
for f in iris.safetensors report.json run.ckpt; do [ -s "$work/out_two/$f" ] || fail "missing $f"; done
python3 - "$work/one.json" "$work/two.json" <<'P' || fail "the 2-rank report"
import json, sys
one = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
two = json.loads(text)  # exactly one JSON document: rank 1 printed nothing
a1, a2 = one["stages"][0]["test_accuracy"], two["stages"][0]["test_accuracy"]
print("iris test accuracy: one process %.4f, 2 ranks %.4f" % (a1, a2))
assert two["test_size"] == 45 and two["train_size"] == 105, two
assert abs(a1 - a2) <= 1.0 / 45 + 1e-9, (a1, a2)  # at most one test sample flips
P
echo "PASS"
