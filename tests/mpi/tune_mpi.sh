#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop tests — `mpirun -np 2 strop tune RECIPE`: the trials spread over the ranks, one trials
# file (rank 0's) with every trial once, and the same trials, values and best as one process
# (random search, same seed, a fixed number of trials). Usage: tune_mpi.sh STROP_BIN MPIRUN...
set -uo pipefail
strop=$1
shift
work=$(mktemp -d /tmp/strop_mpitune_XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
SKLEARN=/usr/lib/python3/dist-packages/sklearn/datasets/data
[ -f "$SKLEARN/iris.csv" ] || { echo "skip: $SKLEARN/iris.csv missing"; exit 77; }
printf 'input: [4]\nlayers:\n  - {name: body, type: linear, out_features: 16}\n  - {name: act, type: tanh}\n  - {name: head, type: linear, out_features: 3}\n' > "$work/net.yaml"
data="data: {source: csv, path: $SKLEARN/iris.csv, sklearn_header: true, num_classes: 3, test_fraction: 0.3, val_fraction: 0.2, normalize: auto, batch_size: 16}"
printf 'seed: 1\nmodel: {spec: net.yaml}\n%s\ntrain: {epochs: 3}\noutput: {dir: ., weights: net.safetensors}\n' "$data" > "$work/pre.yaml"
"$strop" train "$work/pre.yaml" --quiet > /dev/null || fail "pre-training the iris net"
for d in one two; do
  mkdir -p "$work/$d"
  cp "$work/net.yaml" "$work/net.safetensors" "$work/$d/"
  cat > "$work/$d/tune.yaml" <<Y
seed: 2
model: {spec: net.yaml, weights: net.safetensors}
$data
optimizer: {kind: adam, lr: 0.02}
train: {epochs: 4}
tune:
  strategy: random
  trials: 5
  metric: val_loss
  trials_file: trials.jsonl
  best_recipe: best.yaml
  params:
    - {key: optimizer.lr, type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    - {key: data.batch_size, type: int, low: 8, high: 64}
Y
done
"$strop" tune "$work/one/tune.yaml" --quiet --json > "$work/one.json" || fail "one process"
"$@" "$strop" tune "$work/two/tune.yaml" --json > "$work/two.json" 2> "$work/two.err" ||
  { cat "$work/two.err"; fail "mpirun -np 2 strop tune"; }
[ -s "$work/two/best.yaml" ] || fail "no best recipe"
python3 - "$work/one/trials.jsonl" "$work/two/trials.jsonl" "$work/one.json" "$work/two.json" <<'P' || fail "the 2-rank search"
import json, sys
def trials(p):
    return sorted((d["id"], json.dumps(d["values"]), d["value"], d["status"])
                  for d in map(json.loads, open(p)))
a, b = trials(sys.argv[1]), trials(sys.argv[2])
print("one process:", len(a), "trials; 2 ranks:", len(b), "trials")
assert len(a) == 5 and len(b) == 5, (a, b)
assert a == b, "the trials differ:\n%s\n%s" % (a, b)
one, two = json.load(open(sys.argv[3])), json.loads(open(sys.argv[4]).read())
best = lambda d: (d["best_trial"], d["best_value"], d["best_values"])
assert best(one) == best(two), (best(one), best(two))
print("same 5 trials, same best:", best(two))
P
echo "PASS"
