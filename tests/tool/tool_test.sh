#!/usr/bin/env bash
# strop tool tests: tool_test.sh CASE STROP_BINARY SOURCE_DIR. Exit 0 pass, 1 fail, 77 skip.
set -u
case_name=$1 strop=$2 src=$3
work=$(mktemp -d /tmp/strop_tool_XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# expect CODE WANT_TEXT -- CMD...: runs CMD, checks its exit code and that stderr+stdout has WANT_TEXT
expect() {
  local code=$1 want=$2; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  [ "$rc" -eq "$code" ] || fail "'$*' exited $rc, expected $code; output: $out"
  [ -z "$want" ] || grep -qF -- "$want" <<<"$out" || fail "'$*' output lacks '$want': $out"
  echo "ok: $* -> $rc"
}
FASHION=/usr/share/datasets/fashion-mnist
SKLEARN=/usr/lib/python3/dist-packages/sklearn/datasets/data

case $case_name in
usage)
  expect 0 "finetune RECIPE" -- "$strop" --help
  expect 0 "usage: strop finetune" -- "$strop" finetune --help
  expect 0 "usage: strop inspect" -- "$strop" inspect -h
  expect 2 "usage: strop" -- "$strop"
  expect 2 "unknown command 'frob'" -- "$strop" frob
  expect 2 "expected one RECIPE file" -- "$strop" finetune
  expect 2 "--seed takes a number" -- "$strop" train --seed x r.yaml
  expect 2 "unknown option '--wat'" -- "$strop" train --wat r.yaml
  expect 2 "--set takes KEY=VALUE" -- "$strop" train --set lr r.yaml
  expect 0 "strop 0.1.0" -- "$strop" version
  expect 0 "strop 0.1.0" -- "$strop" --version
  expect 0 "usage: strop version" -- "$strop" version --help
  expect 0 "usage: strop eval" -- "$strop" help eval
  expect 2 "option '--top' does not apply to train" -- "$strop" train --top 3 r.yaml
  expect 2 "--split takes one of test|val|train" -- "$strop" eval --split tst r.yaml
  # Each command's --help lists exactly the options its parser takes: every option of
  # `strop --help` is either in `strop CMD --help` and accepted, or refused as not applying.
  all_opts=$("$strop" --help | sed -nE 's/^  (-[a-z], )?(--[a-z-]+)( [^ ]+)?  .*/\2\3/p' | grep -v -- '--version')
  [ "$(wc -l <<<"$all_opts")" -ge 10 ] || fail "strop --help lists too few options: $all_opts"
  for cmd in train finetune tune eval predict summary inspect tokenize version; do
    help=$("$strop" "$cmd" --help) || fail "strop $cmd --help failed"
    while read -r opt placeholder; do
      case $placeholder in
        N | K) value=1 ;; KEY=VALUE) value=a=b ;; test*) value="test" ;; '') value="" ;; *) value=x ;;
      esac
      out=$("$strop" "$cmd" "$opt" ${value:+"$value"} 2>&1)
      if grep -qE "^  (-[a-z], )?$opt( |$)" <<<"$help"; then
        if grep -qE "unknown option|does not apply|needs a value|takes" <<<"$out"; then
          fail "strop $cmd --help lists $opt but the parser refuses it: $out"
        fi
      else
        grep -q "does not apply to $cmd" <<<"$out" ||
          fail "strop $cmd --help omits $opt, which the parser takes: $out"
      fi
    done <<<"$all_opts"
    echo "ok: strop $cmd --help lists what the parser takes"
  done
  # and the man page describes every option
  for opt in $(cut -d' ' -f1 <<<"$all_opts") --version; do
    grep -qF -- "${opt//-/\\-}" "$src/docs/man/strop.1" || fail "strop.1 does not describe $opt"
  done
  ;;
recipe_errors)
  printf 'model: {spec: a.yaml}\noptimiser: {lr: 1}\n' > "$work/r1.yaml"
  expect 3 "r1.yaml:2:1: unknown key 'optimiser' in 'recipe' (expected one of:" -- "$strop" train "$work/r1.yaml"
  printf 'optimizer:\n  kind: adamm\n' > "$work/r2.yaml"
  expect 3 "r2.yaml:2:9: 'kind' must be one of sgd, adam" -- "$strop" train "$work/r2.yaml"
  printf 'surgery:\n  - freez: "x.*"\n' > "$work/r3.yaml"
  expect 3 "r3.yaml:2:5: unknown surgery operation 'freez'" -- "$strop" finetune "$work/r3.yaml"
  printf 'train: {epochs: [1, 2]}\n' > "$work/r4.yaml"
  expect 3 "'epochs' must be a single value" -- "$strop" train "$work/r4.yaml"
  printf 'model:\n  spec: nope.yaml\ndata: {source: idx, train_images: a, train_labels: b}\n' > "$work/r5.yaml"
  expect 1 "nope.yaml" -- "$strop" train "$work/r5.yaml"
  expect 1 "no-such-recipe.yaml" -- "$strop" train "$work/no-such-recipe.yaml"
  expect 3 "'lr' must be a number" -- "$strop" finetune "$src/examples/fashion/finetune.yaml" --set optimizer.lr=fast
  # an error names each function once, and no internal (strop__) name
  out=$("$strop" finetune "$src/examples/fashion/finetune.yaml" --set optimizer.lr=fast 2>&1)
  [ "$(grep -o 'strop_recipe_set' <<<"$out" | wc -l)" -eq 1 ] || fail "the message repeats its prefix: $out"
  printf 'input: [2]\nlayers:\n  - {name: head, type: linear, out_features: 2}\n' > "$work/net.yaml"
  printf '0,0,0\n1,1,7\n' > "$work/bad.csv"
  printf 'model: {spec: net.yaml}\ndata: {source: csv, path: bad.csv, num_classes: 2}\noptimizer: {kind: sgd, lr: 0.1}\ntrain: {epochs: 1}\n' > "$work/r6.yaml"
  out=$("$strop" train "$work/r6.yaml" --quiet 2>&1)
  grep -q "error" <<<"$out" || fail "a label outside the classes was not refused: $out"
  if grep -q "strop__" <<<"$out"; then fail "the message names an internal function: $out"; fi
  echo "ok: $out"
  # a head narrower than the classes is refused before any training, naming both numbers
  if [ -f "$SKLEARN/iris.csv" ]; then
    printf 'input: [4]\nlayers:\n  - {name: body, type: linear, out_features: 8}\n  - {name: act, type: relu}\n  - {name: head, type: linear, out_features: 2}\n' > "$work/iris2.yaml"
    printf 'model: {spec: iris2.yaml}\ndata: {source: csv, path: %s, sklearn_header: true, num_classes: 3}\ntrain: {epochs: 1}\n' "$SKLEARN/iris.csv" > "$work/r7.yaml"
    expect 3 "3 classes but the model's output 'head' has 2 values per sample" -- "$strop" train "$work/r7.yaml"
    out=$("$strop" train "$work/r7.yaml" 2>&1)
    if grep -qE "stage 1|step 0|epoch" <<<"$out"; then fail "the head was checked only after training began: $out"; fi
  fi
  expect 3 "'model.weights' is required" -- "$strop" finetune "$src/examples/fashion/pretrain.yaml" --epochs 1
  ;;
inspect)
  expect 0 "features.0.weight" -- "$strop" inspect "$src/examples/fashion/base.safetensors"
  expect 0 "[32, 1, 3, 3]" -- "$strop" inspect "$src/examples/fashion/base.safetensors"
  "$strop" inspect --json "$src/examples/fashion/base.safetensors" > "$work/i.json" || fail "inspect --json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['metadata']['format']=='strop'; assert any(t['name']=='head.weight' for t in d['tensors'])" "$work/i.json" || fail "inspect --json output"
  expect 0 "head" -- "$strop" summary "$src/examples/fashion/base.yaml"
  expect 0 "features.1.running_mean" -- "$strop" inspect "$src/examples/fashion/base.safetensors"
  printf 'not a safetensors file' > "$work/bad.safetensors"
  expect 3 "bad.safetensors" -- "$strop" inspect "$work/bad.safetensors"
  expect 0 "transformer_block" -- "$strop" layers
  expect 0 "padding_mode" -- "$strop" layers conv2d
  expect 0 "| \`kernel_size\` | int[2] | required |" -- "$strop" layers conv2d --markdown
  expect 3 "unknown layer type 'conv3d'; known: linear, conv2d" -- "$strop" layers conv3d
  expect 2 "at most one layer type" -- "$strop" layers a b
  ;;
train_eval_predict)
  [ -f "$SKLEARN/iris.csv" ] || { echo "skip: $SKLEARN/iris.csv missing"; exit 77; }
  cat > "$work/iris_net.yaml" <<'Y'
input: [4]
layers:
  - {name: body.0, type: linear, out_features: 16}
  - {name: body.1, type: tanh}
  - {name: head, type: linear, out_features: 3}
Y
  cat > "$work/iris.yaml" <<Y
description: iris from scratch
seed: 2
model: {spec: iris_net.yaml}
data:
  source: csv
  path: $SKLEARN/iris.csv
  sklearn_header: true
  num_classes: 3
  test_fraction: 0.3
  normalize: auto
  batch_size: 16
optimizer: {kind: adam, lr: 0.02}
train: {epochs: 40}
output: {dir: out, weights: iris.safetensors, spec: iris.yaml, metrics: metrics.jsonl, plot: iris.svg,
         report: report.json}
Y
  "$strop" train "$work/iris.yaml" --json --quiet > "$work/run.json" || fail "train iris"
  python3 - "$work/run.json" <<'P' || fail "iris accuracy"
import json, sys
d = json.load(open(sys.argv[1]))
acc = d["stages"][0]["test_accuracy"]
print("iris test accuracy", acc)
assert d["test_size"] == 45 and d["train_size"] == 105, d
assert acc > 0.85, acc
P
  for f in iris.safetensors iris.yaml metrics.jsonl iris.svg report.json; do [ -s "$work/out/$f" ] || fail "missing output $f"; done
  python3 "$src/tests/tool/check_svg.py" "$work/out/iris.svg" --legend training \
    --legend "test, after each stage" --old "$src/examples/fashion/pretrain.svg" || fail "the training plot"
  # The files, the --json report and the screen agree: epochs are numbered from 1, the best
  # epoch is that of the last stage that is not a baseline, the run took time, and top-5 is
  # not reported for 3 classes.
  { sed 's/  test_fraction: 0.3/  test_fraction: 0.3\n  val_fraction: 0.2/' "$work/iris.yaml"
    printf 'stages:\n  - {name: a, epochs: 6}\n  - {name: b, epochs: 6}\nbaselines: [scratch]\n'; } \
    > "$work/iris_stages.yaml"
  "$strop" train "$work/iris_stages.yaml" --json > "$work/run2.json" 2>/dev/null || fail "train iris in stages"
  "$strop" train "$work/iris_stages.yaml" --quiet > "$work/run2.txt" || fail "train iris in stages (text)"
  python3 - "$work/run2.json" "$work/out/report.json" "$work/out/metrics.jsonl" "$work/run2.txt" <<'P' || fail "report"
import json, re, sys
run = json.load(open(sys.argv[1])); rep = json.load(open(sys.argv[2]))
rows = [json.loads(l) for l in open(sys.argv[3])]
text = open(sys.argv[4]).read()
assert rep["seconds"] > 0, rep["seconds"]
assert [s["baseline"] for s in run["stages"]] == [False, False, True], run["stages"]
main = [r for r in rows if r["stage"] == 1]          # stage b, the last that is not a baseline
assert [r["epoch"] for r in main] == list(range(1, 7)), [r["epoch"] for r in main]
assert [r["epoch"] for r in run["history"] if r["stage"] == 2] == list(range(1, 13))
key = "val_loss" if main[0]["val_loss"] is not None else "train_loss"
losses = [r[key] for r in main]
best = 1 + losses.index(min(losses))
assert rep["best_epoch"] == best == run["best_epoch"], (rep["best_epoch"], run["best_epoch"], best, key)
m = re.search(r"best epoch of stage '(\w+)': (\d+)", text)
assert m and m.group(1) == "b" and int(m.group(2)) == best, text
for st in rep["stages_results"]:
    assert "top5" not in st["test"], st
print("report: best epoch", best, "of stage 'b' by", key, "in files, --json and on screen;",
      f"{rep['seconds']:.2f} s")
P
  python3 "$src/tests/tool/check_svg.py" "$work/out/iris.svg" --legend training --legend validation \
    --legend "baseline (from scratch): training" --legend "baseline: validation" || fail "the staged plot"
  expect 0 "accuracy" -- "$strop" eval "$work/iris.yaml"
  "$strop" eval "$work/iris.yaml" --json > "$work/eval.json" || fail "eval --json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['samples']==45 and d['accuracy']>0.85 and len(d['per_class'])==3 and 'top5' not in d" "$work/eval.json" || fail "eval json"
  if "$strop" eval "$work/iris.yaml" | grep -qi "top-5"; then fail "eval reports top-5 accuracy for 3 classes"; fi
  python3 -c "import numpy as np; np.save('$work/x.npy', np.array([[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]], dtype=np.float32))" 2>/dev/null || { echo "skip predict: no numpy"; exit 0; }
  # the model was trained on normalised inputs; predict applies the raw model, so only check the format
  expect 0 "0:" -- "$strop" predict "$work/out/iris.yaml" "$work/out/iris.safetensors" "$work/x.npy" --top 2
  expect 3 "not a whole number of samples" -- bash -c "python3 -c \"import numpy as np; np.save('$work/y.npy', np.zeros(5, dtype=np.float32))\" && '$strop' predict '$work/out/iris.yaml' '$work/out/iris.safetensors' '$work/y.npy'"
  ;;
tune_iris)
  # a small search, to check what `strop tune` writes: the trials file, the best recipe and a
  # well-formed plot with round ticks
  [ -f "$SKLEARN/iris.csv" ] || { echo "skip: $SKLEARN/iris.csv missing"; exit 77; }
  printf 'input: [4]\nlayers:\n  - {name: body, type: linear, out_features: 16}\n  - {name: act, type: tanh}\n  - {name: head, type: linear, out_features: 3}\n' > "$work/net.yaml"
  data="data: {source: csv, path: $SKLEARN/iris.csv, sklearn_header: true, num_classes: 3, test_fraction: 0.3, val_fraction: 0.2, normalize: auto, batch_size: 16}"
  printf 'seed: 1\nmodel: {spec: net.yaml}\n%s\ntrain: {epochs: 3}\noutput: {dir: ., weights: net.safetensors}\n' "$data" > "$work/pre.yaml"
  "$strop" train "$work/pre.yaml" --quiet > /dev/null || fail "pre-training the iris net"
  cat > "$work/tune.yaml" <<Y
seed: 2
model: {spec: net.yaml, weights: net.safetensors}
$data
optimizer: {kind: adam, lr: 0.02}
train: {epochs: 6}
tune:
  strategy: random
  trials: 6
  metric: val_accuracy
  trials_file: trials.jsonl
  best_recipe: best.yaml
  plot: tune.svg
  params:
    - {key: optimizer.lr, type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    - {key: data.batch_size, type: int, low: 8, high: 64}
Y
  "$strop" tune "$work/tune.yaml" --quiet > /dev/null || fail "strop tune"
  [ "$(wc -l < "$work/trials.jsonl")" -eq 6 ] || fail "trials file"
  [ -s "$work/best.yaml" ] || fail "no best recipe"
  python3 "$src/tests/tool/check_svg.py" "$work/tune.svg" --legend "a trial" --legend "best so far" ||
    fail "the tune plot"
  ;;
demo_fashion|demo_digits)
  [ -f "$FASHION/train-images-idx3-ubyte.gz" ] || { echo "skip: $FASHION missing"; exit 77; }
  [ -z "${STROP_SANITIZED:-}" ] || { echo "skip: the demos are too slow under sanitizers"; exit 77; }
  recipe=$src/examples/fashion/finetune.yaml
  [ "$case_name" = demo_digits ] && recipe=$src/examples/digits/finetune.yaml
  [ "$case_name" = demo_digits ] && { [ -f "$SKLEARN/digits.csv.gz" ] || { echo "skip: digits missing"; exit 77; }; }
  epochs=${STROP_DEMO_EPOCHS:-12}
  "$strop" finetune "$recipe" --epochs "$epochs" --json --quiet --set output.dir="$work/out" > "$work/run.json" || fail "demo run"
  python3 "$src/tests/tool/check_svg.py" "$work/out/training.svg" --legend training \
    --legend "baseline (from scratch)" || fail "the demo's plot"
  python3 - "$work/run.json" <<'P' || fail "fine-tuning did not beat training from scratch"
import json, sys
d = json.load(open(sys.argv[1]))
st = d["stages"]
tuned = [s for s in st if not s["baseline"]][-1]["test_accuracy"]
scratch = [s for s in st if s["baseline"]][0]["test_accuracy"]
print(f"fine-tuned {tuned:.4f} vs scratch {scratch:.4f} on {d['test_size']} test images")
assert tuned > scratch, (tuned, scratch)
P
  ;;
tune_fashion)
  [ -f "$FASHION/train-images-idx3-ubyte.gz" ] || { echo "skip: $FASHION missing"; exit 77; }
  [ -z "${STROP_SANITIZED:-}" ] || { echo "skip: too slow under sanitizers"; exit 77; }
  recipe=$src/examples/fashion/tune.yaml
  common=(--epochs 4 --set output.dir="$work/out" --set tune.trials_file="$work/trials.jsonl"
          --set tune.best_recipe="$work/best.yaml" --set tune.plot="$work/tune.svg")
  # the recipe's own values, as a baseline
  "$strop" finetune "$recipe" "${common[@]}" --no-baselines --json --quiet > "$work/default.json" || fail "default run"
  "$strop" tune "$recipe" "${common[@]}" --set tune.trials=6 --set tune.initial=3 > "$work/table.txt" || fail "tune run"
  cat "$work/table.txt"
  [ "$(wc -l < "$work/trials.jsonl")" -eq 6 ] || fail "trials file has $(wc -l < "$work/trials.jsonl") lines, expected 6"
  python3 "$src/tests/tool/check_svg.py" "$work/tune.svg" || fail "the tune plot"
  "$strop" tune "$recipe" "${common[@]}" --set tune.trials=6 --json > "$work/resumed.json" || fail "resume"
  [ "$(wc -l < "$work/trials.jsonl")" -eq 6 ] || fail "a finished search ran trials again after resuming"
  python3 - "$work/default.json" "$work/resumed.json" <<'P' || fail "tuning did not reach the default's validation accuracy"
import json, sys
d = json.load(open(sys.argv[1])); t = json.load(open(sys.argv[2]))
default = [s for s in d["stages"] if not s["baseline"]][-1]["val_accuracy"]
print(f"default values: val accuracy {default:.4f}; best of {t['trials']} trials: {t['best_value']:.4f}")
assert t["trials"] == 6, t
assert t["best_value"] >= default, (t["best_value"], default)
P
  # the best recipe runs as it is, from anywhere
  (cd / && "$strop" finetune "$work/best.yaml" --epochs 1 --no-baselines --quiet --set output.dir="$work/out2" >/dev/null) || fail "best recipe does not run"
  ;;
tokenize)
  # a small WordPiece tokenizer.json: encode lines (file and stdin), decode back, errors
  cat > "$work/tok.json" <<'J'
{"normalizer": {"type": "BertNormalizer"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
 "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
 "decoder": {"type": "WordPiece"},
 "added_tokens": [{"id": 2, "content": "[CLS]", "special": true},
                  {"id": 3, "content": "[SEP]", "special": true}],
 "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[PAD]": 0, "[UNK]": 1,
  "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5, "##s": 6, "!": 7}}}
J
  printf 'Hello worlds!\n\nhi\n' > "$work/in.txt"
  out=$("$strop" tokenize "$work/tok.json" "$work/in.txt") || fail "tokenize a file"
  [ "$out" = "$(printf '2 4 5 6 7 3\n2 3\n2 1 3')" ] || fail "tokenize printed: $out"
  out=$(printf 'Hello\n' | "$strop" tokenize --no-special "$work/tok.json") || fail "tokenize stdin"
  [ "$out" = "4" ] || fail "tokenize --no-special printed: $out"
  out=$(printf '2 4 5 6 7 3\n\n' | "$strop" tokenize --decode "$work/tok.json") || fail "decode"
  [ "$out" = "$(printf '[CLS] hello worlds! [SEP]\n')" ] || fail "decode printed: $out"
  out=$(printf '2 4 5 6 7 3\n' | "$strop" tokenize --decode --no-special "$work/tok.json")
  [ "$out" = "hello worlds!" ] || fail "decode --no-special printed: $out"
  expect 3 "line 1: '4x' is not an id" -- bash -c "printf '4x\n' | '$strop' tokenize --decode '$work/tok.json'"
  expect 3 "ids[0] = 99 is not an id" -- bash -c "printf '99\n' | '$strop' tokenize --decode '$work/tok.json'"
  printf '{"model": {"type": "Mystery"}}' > "$work/bad.json"
  expect 3 "type 'Mystery' is not supported" -- "$strop" tokenize "$work/bad.json"
  expect 1 "cannot open" -- "$strop" tokenize "$work/none.json"
  expect 2 "expected TOKENIZER [FILE]" -- "$strop" tokenize
  expect 0 "usage: strop tokenize" -- "$strop" tokenize --help
  ;;
*) fail "unknown case $case_name" ;;
esac
echo "PASS: $case_name"
