#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
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
# numpy, for the steps that write or read .npy files: the first python3 that has it (a pyenv
# shim first on PATH may not); empty when none has
PYNP=
for py in python3 /usr/bin/python3; do "$py" -c 'import numpy' 2>/dev/null && { PYNP=$py; break; }; done
FASHION=/usr/share/datasets/fashion-mnist
SKLEARN=/usr/lib/python3/dist-packages/sklearn/datasets/data

case $case_name in
import)
  # strop import and recipes' model.pretrained on a torchvision ResNet-18 state_dict: names
  # and shapes as torchvision writes them (values random; numpy writes the safetensors file)
  [ -n "$PYNP" ] || { echo "skipped: no python3 with numpy"; exit 77; }
  expect 0 "resnet18" -- "$strop" import --list
  expect 0 "usage: strop import" -- "$strop" import --help
  "$PYNP" - "$work/r18.safetensors" "$work/x.npy" "$work/y.npy" <<'PY' || fail "writing the ResNet-18 file"
import json, struct, sys
import numpy as np
rng = np.random.default_rng(0)
t = {}
def conv(name, cout, cin, k):
    t[name + ".weight"] = rng.normal(0, (2.0 / (cin * k * k)) ** 0.5, (cout, cin, k, k))
def bn(name, c):
    t[name + ".weight"] = np.ones(c); t[name + ".bias"] = np.zeros(c)
    t[name + ".running_mean"] = np.zeros(c); t[name + ".running_var"] = np.ones(c)
    t[name + ".num_batches_tracked"] = np.array(0, dtype=np.int64)
conv("conv1", 64, 3, 7); bn("bn1", 64)
cin = 64
for layer, planes in enumerate((64, 128, 256, 512), 1):
    for b in range(2):
        p = "layer%d.%d" % (layer, b)
        conv(p + ".conv1", planes, cin, 3); bn(p + ".bn1", planes)
        conv(p + ".conv2", planes, planes, 3); bn(p + ".bn2", planes)
        if b == 0 and layer > 1:
            conv(p + ".downsample.0", planes, cin, 1); bn(p + ".downsample.1", planes)
        cin = planes
t["fc.weight"] = rng.normal(0, 0.04, (1000, 512)); t["fc.bias"] = np.zeros(1000)
header, blobs, off = {}, [], 0
for k, a in t.items():
    a = a.astype("<i8" if a.dtype == np.int64 else "<f4")
    raw = a.tobytes()
    header[k] = {"dtype": "I64" if a.dtype.kind == "i" else "F32", "shape": list(a.shape),
                 "data_offsets": [off, off + len(raw)]}
    blobs.append(raw); off += len(raw)
h = json.dumps(header).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
np.save(sys.argv[2], rng.uniform(0, 1, (24, 3, 32, 32)).astype(np.float32))
np.save(sys.argv[3], np.arange(24) % 3)
PY
  expect 0 "every tensor loaded; spec written to $work/r18.yaml" -- \
    "$strop" import "$work/r18.safetensors" --arch resnet18 --image-size 32 -o "$work/r18.yaml"
  grep -q "name: layer4.1.conv2" "$work/r18.yaml" || fail "the spec lacks layer4.1.conv2"
  expect 0 "fc" -- "$strop" summary "$work/r18.yaml" "$work/r18.safetensors"
  expect 0 "weights written to $work/one.safetensors" -- \
    "$strop" import "$work/r18.safetensors" --arch resnet18 -o "$work/r18b.yaml" --weights-out "$work/one.safetensors"
  expect 0 "layer1.0.conv1.weight" -- "$strop" inspect "$work/one.safetensors"
  expect 0 "name: conv1" -- "$strop" import "$work/r18.safetensors" --arch resnet18
  expect 3 "single safetensors file" -- "$strop" import "$work/r18.safetensors"
  expect 3 "name it with --arch NAME; 'strop import --list' lists the names" -- "$strop" import "$work/r18.safetensors"
  expect 3 "resnet9000" -- "$strop" import "$work/r18.safetensors" --arch resnet9000
  expect 1 "no such file or folder" -- "$strop" import "$work/nope" --arch resnet18
  expect 3 "missing" -- "$strop" import "$work/r18.safetensors" --arch resnet34
  expect 2 "no PATH with --list" -- "$strop" import --list "$work/r18.safetensors"
  # a recipe starts from the checkpoint itself: a new head on the frozen trunk, one epoch
  cat >"$work/r.yaml" <<EOF
seed: 1
model: {pretrained: r18.safetensors, arch: resnet18, image_size: 32}
surgery:
  - replace: {node: fc, type: linear, options: {out_features: 3}}
  - freeze: "*"
  - unfreeze: "fc"
data: {source: npy, x: x.npy, y: y.npy, test_fraction: 0.25, batch_size: 6}
optimizer: {kind: adam, lr: 0.001}
stages: [{epochs: 1}]
output: {dir: out, weights: tuned.safetensors, spec: tuned.yaml}
EOF
  expect 0 "test acc" -- "$strop" finetune "$work/r.yaml" --no-baselines -q
  # the fine-tuned file is still a torchvision ResNet-18 (of 3 classes: fc's rows say so)
  expect 0 "every tensor loaded" -- "$strop" import "$work/out/tuned.safetensors" --arch resnet18 -o "$work/x.yaml"
  grep -q "out_features: 3" "$work/x.yaml" || fail "the re-imported head is not 3 classes"
  expect 0 "fc" -- "$strop" summary "$work/out/tuned.yaml" "$work/out/tuned.safetensors"
  cat >"$work/bad.yaml" <<EOF
model: {pretrained: r18.safetensors, spec: r18.yaml}
data: {source: npy, x: x.npy, y: y.npy}
EOF
  expect 3 "brings its own architecture" -- "$strop" finetune "$work/bad.yaml"
  ;;
usage)
  expect 0 "finetune RECIPE" -- "$strop" --help
  expect 0 "usage: strop finetune" -- "$strop" finetune --help
  expect 0 "usage: strop inspect" -- "$strop" inspect -h
  expect 2 "usage: strop" -- "$strop"
  expect 2 "unknown command 'frob'" -- "$strop" frob
  expect 2 "expected one RECIPE file" -- "$strop" finetune
  expect 2 "--seed takes a whole number from 0" -- "$strop" train --seed x r.yaml
  expect 2 "unknown option '--wat'" -- "$strop" train --wat r.yaml
  expect 2 "--set takes KEY=VALUE" -- "$strop" train --set lr r.yaml
  ver=$(sed -nE 's/^project\(strop VERSION ([0-9.]+).*/\1/p' "$src/CMakeLists.txt")
  expect 0 "strop $ver" -- "$strop" version
  expect 0 "strop $ver" -- "$strop" --version
  expect 0 "usage: strop version" -- "$strop" version --help
  expect 0 "usage: strop eval" -- "$strop" help eval
  expect 2 "option '--top' does not apply to train" -- "$strop" train --top 3 r.yaml
  expect 2 "--split takes one of test|val|train" -- "$strop" eval --split tst r.yaml
  # Each command's --help lists exactly the options its parser takes: every option of
  # `strop --help` is either in `strop CMD --help` and accepted, or refused as not applying.
  all_opts=$("$strop" --help | sed -nE 's/^  (-[a-z], )?(--[a-z-]+)( [^ ]+)?  .*/\2\3/p' | grep -v -- '--version')
  [ "$(wc -l <<<"$all_opts")" -ge 10 ] || fail "strop --help lists too few options: $all_opts"
  for cmd in train finetune tune eval predict summary inspect import tokenize generate version; do
    help=$("$strop" "$cmd" --help) || fail "strop $cmd --help failed"
    while read -r opt placeholder; do
      case $placeholder in
        N | K | SECONDS | T | P) value=1 ;; KEY=VALUE) value=a=b ;; test*) value="test" ;; '') value="" ;; *) value=x ;;
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
  # model.head is for a pretrained text model, named at the key
  printf '0,0,0\n1,1,1\n' > "$work/good.csv"
  printf 'model: {spec: net.yaml, head: {pool: mean}}\ndata: {source: csv, path: good.csv, num_classes: 2}\ntrain: {epochs: 1}\n' > "$work/r8.yaml"
  expect 3 "r8.yaml:1:31: 'model.head' goes with 'model.pretrained'" -- "$strop" train "$work/r8.yaml"
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
  # a model's own metadata (strop.meta.*) is shown apart, whole, without the prefix
  meta=$src/tests/fuzz/corpus/safetensors/hostile_model_meta.safetensors
  expect 0 'model metadata classes = [{"label": 5, "name": "Sandal"}]' -- "$strop" inspect "$meta"
  "$strop" inspect --json "$meta" | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['model_metadata'] == {'classes': '[{\"label\": 5, \"name\": \"Sandal\"}]', 'input.scale': '0.00392156862745098'}, d; assert d['metadata']['strop.meta.input.scale'] == '0.00392156862745098'" || fail "inspect --json model_metadata"
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
  # output.pretrained needs a model read from a Hugging Face folder: the error says which key
  expect 1 "iris.yaml: output.pretrained: strop_model_save_pretrained: the model was not loaded from a Hugging Face folder" -- \
    "$strop" train "$work/iris.yaml" --quiet --set train.epochs=1 --set output.dir=out-hf --set output.pretrained=hf
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
    # one prediction a sample: no perplexity, no token count (the language model case of
    # report.json is checked by demo_text)
    for part in ("test", "val"):
        assert st[part]["perplexity"] is None and st[part]["tokens"] is None, st
        assert st[part]["samples"] > 0 and st[part]["accuracy"] is not None, st
print("report: best epoch", best, "of stage 'b' by", key, "in files, --json and on screen;",
      f"{rep['seconds']:.2f} s")
P
  python3 "$src/tests/tool/check_svg.py" "$work/out/iris.svg" --legend training --legend validation \
    --legend "baseline (from scratch): training" --legend "baseline: validation" || fail "the staged plot"
  expect 0 "accuracy" -- "$strop" eval "$work/iris.yaml"
  "$strop" eval "$work/iris.yaml" --json > "$work/eval.json" || fail "eval --json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['samples']==45 and d['accuracy']>0.85 and len(d['per_class'])==3 and 'top5' not in d" "$work/eval.json" || fail "eval json"
  if "$strop" eval "$work/iris.yaml" | grep -qi "top-5"; then fail "eval reports top-5 accuracy for 3 classes"; fi
  "${PYNP:-python3}" -c "import numpy as np; np.save('$work/x.npy', np.array([[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]], dtype=np.float32))" 2>/dev/null || { echo "skip predict: no numpy"; exit 0; }
  # the model was trained on normalised inputs: predict applies the normalisation saved with it
  # and names the classes as the data did (sklearn's header)
  expect 0 "0:" -- "$strop" predict "$work/out/iris.yaml" "$work/out/iris.safetensors" "$work/x.npy" --top 2
  expect 0 "0: 0 setosa (" -- "$strop" predict "$work/out/iris.yaml" "$work/out/iris.safetensors" "$work/x.npy"
  expect 0 "1: 2 virginica (" -- "$strop" predict "$work/out/iris.yaml" "$work/out/iris.safetensors" "$work/x.npy"
  expect 3 "not a whole number of samples" -- bash -c "'${PYNP:-python3}' -c \"import numpy as np; np.save('$work/y.npy', np.zeros(5, dtype=np.float32))\" && '$strop' predict '$work/out/iris.yaml' '$work/out/iris.safetensors' '$work/y.npy'"
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
  # a second run resumes the finished search: it says so, runs nothing, names the best values
  # and where the tuned recipe is
  "$strop" tune "$work/tune.yaml" > "$work/again.txt" 2>&1 || fail "strop tune again"
  cat "$work/again.txt"
  grep -q "^resuming 6 finished trials from .*trials.jsonl" "$work/again.txt" || fail "no 'resuming' line"
  grep -q "^nothing left to do" "$work/again.txt" || fail "no 'nothing left to do' line"
  grep -q "^best: trial [0-9]*, val_accuracy " "$work/again.txt" || fail "no best line"
  grep -q "^  optimizer.lr = " "$work/again.txt" || fail "the best values are not named"
  grep -q "^tuned recipe written to .*best.yaml" "$work/again.txt" || fail "the tuned recipe is not named"
  [ "$(wc -l < "$work/trials.jsonl")" -eq 6 ] || fail "a finished search ran trials again"
  out=$("$strop" tune "$work/tune.yaml" --trials 8 --json) || fail "--trials 8"
  grep -q '"trials":8,"resumed":6,"ran":2' <<<"$out" || fail "--trials 8 ran: $out"
  [ "$(wc -l < "$work/trials.jsonl")" -eq 8 ] || fail "--trials 8: the trials file"
  # Two stages, the second one's lr tuned, median pruning: the pruner sees the last stage's
  # epochs only (steps 1-3), never the first's; a pruned trial shows its last value in the
  # table and in the trials file; the column header keeps the end of the key path
  cat > "$work/stages.yaml" <<Y
seed: 2
model: {spec: net.yaml, weights: net.safetensors}
$data
optimizer: {kind: adam, lr: 0.02}
stages:
  - {name: head, epochs: 3, surgery: [{freeze: "body.*"}]}
  - {name: all, epochs: 3, surgery: [{unfreeze: "*"}]}
tune:
  strategy: random
  trials: 8
  metric: val_loss
  prune: median
  prune_warmup_trials: 1
  trials_file: stages.jsonl
  best_recipe: stages-best.yaml
  params:
    - {key: "stages[1].optimizer.lr", type: float, low: 1.0e-4, high: 3.0, log: true}
    - {key: data.batch_size, type: int, low: 8, high: 64}
Y
  "$strop" tune "$work/stages.yaml" > "$work/table.txt" || fail "strop tune (stages)"
  cat "$work/table.txt"
  grep -q " s\[1\].optimizer.lr " "$work/table.txt" || fail "the header is not abbreviated from the left"
  grep -q "es\[1\]" "$work/table.txt" && ! grep -q "stages\[1\]" "$work/table.txt" && fail "a header cut from the left"
  python3 - "$work/stages.jsonl" "$work/table.txt" <<'P' || fail "pruning on the last stage / pruned values"
import json, sys
trials = [json.loads(l) for l in open(sys.argv[1])]
rows = {int(l.split()[0]): l.split() for l in open(sys.argv[2]) if l.split() and l.split()[0].isdigit()}
for t in trials:
    steps = [s for s, _ in t["intermediate"]]
    assert steps == list(range(1, len(steps) + 1)) and 1 <= len(steps) <= 3, (t["id"], steps)
    if t["status"] == "ok":
        assert len(steps) == 3, t
    row = rows[t["id"]]
    assert row[-2] == t["status"], (row, t["status"])
    if t["status"] == "pruned":
        assert t["value"] == t["intermediate"][-1][1], t
        assert row[-3] == "%.4f" % t["value"], (row, t["value"])
print("pruned:", sum(t["status"] == "pruned" for t in trials), "of", len(trials))
P
  # tune.best_recipe where the tuned recipe's run writes its model spec: refused before a trial
  expect 3 "would overwrite it" -- "$strop" tune "$work/stages.yaml" --set output.dir="$work" --set output.spec=stages-best.yaml
  # --time: no trial starts after the budget (the running one finishes); 200 trials of 300
  # epochs cannot fit in 1 s
  "$strop" tune "$work/stages.yaml" --quiet --time 1 --trials 200 --set tune.trials_file=timed.jsonl \
    --set 'stages[1].epochs=300' > /dev/null || fail "--time"
  n=$(wc -l < "$work/timed.jsonl")
  [ "$n" -ge 1 ] && [ "$n" -lt 200 ] || fail "--time 1 ran $n trials"
  # Ctrl-C: the running trial is recorded as interrupted (not failed), exit 130; the next run
  # says it resumes and runs that trial first, with its values. Without pruning, so that every
  # trial runs its 303 epochs and the signal lands in one (a trial pruned within the poll's 50 ms
  # let it land between two, where nothing runs to be recorded: the tool then says only
  # "interrupted")
  rm -f "$work/int.jsonl"
  "$strop" tune "$work/stages.yaml" --trials 200 --set tune.trials_file=int.jsonl \
    --set tune.prune=none --set 'stages[1].epochs=300' > "$work/int.txt" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    [ -f "$work/int.jsonl" ] && [ "$(wc -l < "$work/int.jsonl")" -ge 2 ] && break
    sleep 0.05
  done
  kill -INT "$pid"
  wait "$pid"; rc=$?
  cat "$work/int.txt"
  [ "$rc" -eq 130 ] || fail "Ctrl-C: exit $rc, expected 130"
  grep -q "recorded as interrupted" "$work/int.txt" || fail "Ctrl-C: no message"
  last=$(tail -n 1 "$work/int.jsonl")
  grep -q '"status":"interrupted"' <<<"$last" || fail "the last trial is not recorded as interrupted: $last"
  lines=$(wc -l < "$work/int.jsonl")
  "$strop" tune "$work/stages.yaml" --trials "$lines" --set tune.trials_file=int.jsonl \
    --set 'stages[1].epochs=3' > "$work/resume.txt" 2>&1 || fail "resuming after Ctrl-C"
  cat "$work/resume.txt"
  grep -q "interrupted one runs again first" "$work/resume.txt" || fail "the resume does not say it re-runs"
  python3 - "$work/int.jsonl" "$lines" <<'P' || fail "the interrupted trial was not run again first"
import json, sys
t = [json.loads(l) for l in open(sys.argv[1])]
n = int(sys.argv[2])
stopped, again = t[n - 1], t[n]
assert stopped["status"] == "interrupted" and again["id"] == stopped["id"], (stopped, again)
assert again["values"] == stopped["values"] and again["status"] != "interrupted", again
P
  ;;
demo_fashion_png)
  # The Fashion demo from PNG files written from the IDX set (at test time: nothing generated is
  # committed): the images of classes 5-9 as one PNG each, listed in the IDX order with their
  # labels, give the same samples in the same order, so the run gives the IDX run's accuracy
  # exactly. A folder laid out as ImageFolder (root/<label>/<n>.png) loads the same images in
  # class order. `strop predict` on a PNG file then gives what the .npy row gives.
  [ -f "$FASHION/train-images-idx3-ubyte.gz" ] || { echo "skip: $FASHION missing"; exit 77; }
  [ -z "${STROP_SANITIZED:-}" ] || { echo "skip: the demos are too slow under sanitizers"; exit 77; }
  /usr/bin/python3 -c 'import PIL, numpy' 2>/dev/null || { echo "skip: python3-pil missing"; exit 77; }
  /usr/bin/python3 - "$FASHION" "$work" <<'P' || fail "writing the PNG files"
import gzip, os, sys
import numpy as np
from PIL import Image
d, w = sys.argv[1], sys.argv[2]
for part, pre in (("train", "train"), ("test", "t10k")):
    x = np.frombuffer(gzip.open(f"{d}/{pre}-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(f"{d}/{pre}-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    root = f"{w}/png/{part}"
    lines = ["path,label"]
    for i in np.nonzero(y >= 5)[0]:
        os.makedirs(f"{root}/{y[i]}", exist_ok=True)
        rel = f"{y[i]}/{i:05d}.png"
        Image.fromarray(x[i], "L").save(f"{root}/{rel}")
        lines.append(f"{rel},{y[i]}")
    open(f"{root}/list.csv", "w").write("\n".join(lines) + "\n")
    if part == "test":
        np.save(f"{w}/x_first.npy", x[np.nonzero(y >= 5)[0][:1]])
P
  recipe=$src/examples/fashion/finetune.yaml
  epochs=${STROP_DEMO_EPOCHS:-12}
  "$strop" finetune "$recipe" --epochs "$epochs" --json --quiet --set output.dir="$work/idx" > "$work/idx.json" || fail "IDX run"
  png_set=(--set data.source=images --set "data.path=$work/png/train/list.csv"
           --set "data.test_path=$work/png/test/list.csv" --set data.channels=1)
  "$strop" finetune "$recipe" --epochs "$epochs" --json --quiet --set output.dir="$work/pngout" \
    "${png_set[@]}" > "$work/png.json" || fail "PNG run"
  /usr/bin/python3 - "$work/idx.json" "$work/png.json" <<'P' || fail "the PNG run differs from the IDX run"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for sa, sb in zip(a["stages"], b["stages"]):
    print(f"{sa['name']:>8}: IDX test accuracy {sa['test_accuracy']:.4f}, PNG {sb['test_accuracy']:.4f}")
    assert sa["test_accuracy"] == sb["test_accuracy"], (sa, sb)
assert a["test_size"] == b["test_size"] == 5000 and a["train_size"] == b["train_size"]
P
  # the same images as ImageFolder lays them out: classes are the folder names 5-9
  rm "$work/png/train/list.csv" "$work/png/test/list.csv"
  "$strop" finetune "$recipe" --epochs 2 --json --quiet --set output.dir="$work/folder" "${png_set[@]}" \
    --set "data.path=$work/png/train" --set "data.test_path=$work/png/test" \
    --set 'data.classes=[0, 1, 2, 3, 4]' --set 'data.class_names=[Sandal, Shirt, Sneaker, Bag, Ankle boot]' \
    > "$work/folder.json" || fail "ImageFolder run"
  /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["test_size"] == 5000, d["test_size"]; print("folder run:", d["stages"][-1]["test_accuracy"])' "$work/folder.json" || fail "ImageFolder sizes"
  # strop predict on a PNG file: the first test image of classes 5-9, as its .npy row says
  first=$(/usr/bin/python3 -c 'import glob,sys; print(min(glob.glob(sys.argv[1] + "/*/*.png"), key=lambda p: p[-9:]))' "$work/png/test")
  "$strop" predict "$work/pngout/finetuned.yaml" "$work/pngout/finetuned.safetensors" "$first" --top 2 > "$work/p_png.txt" || fail "predict PNG"
  "$strop" predict "$work/pngout/finetuned.yaml" "$work/pngout/finetuned.safetensors" "$work/x_first.npy" --top 2 > "$work/p_npy.txt" || fail "predict npy"
  sed 's/^0: [^:]*:/0:/' "$work/p_png.txt" | cmp -s - "$work/p_npy.txt" || fail "predict on the PNG ($(cat "$work/p_png.txt")) differs from the .npy row ($(cat "$work/p_npy.txt"))"
  echo "ok: predict on $first: $(cat "$work/p_png.txt")"
  # an image of another size, on a model without input.resize: the file, its size, the way on
  /usr/bin/python3 - "$first" "$work/wide.png" <<'P' || fail "writing wide.png"
import sys
from PIL import Image
Image.open(sys.argv[1]).resize((100, 50)).save(sys.argv[2])
P
  expect 3 "wide.png is 100 x 50 pixels: strop_model_predict: the input" -- "$strop" predict "$work/pngout/finetuned.yaml" "$work/pngout/finetuned.safetensors" "$work/wide.png"
  expect 3 "resize the image, or fine-tune with a recipe that resizes" -- "$strop" predict "$work/pngout/finetuned.yaml" "$work/pngout/finetuned.safetensors" "$work/wide.png"
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
  [ "$case_name" = demo_fashion ] || exit 0
  [ -n "$PYNP" ] || { echo "skip predict: no numpy"; exit 0; }
  # The fine-tuned model carries its preprocessing and class names: `strop predict` on the raw
  # uint8 test images of classes 5-9 gives the classes `strop eval` counts, as the source's
  # labels (5-9, not the outputs 0-4) with their names.
  "$PYNP" - "$FASHION" "$work" <<'P' || fail "the test images as a uint8 .npy"
import gzip, sys
import numpy as np
d, w = sys.argv[1], sys.argv[2]
x = np.frombuffer(gzip.open(d + "/t10k-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 28, 28)
y = np.frombuffer(gzip.open(d + "/t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
np.save(w + "/x59.npy", x[y >= 5])
np.save(w + "/y59.npy", y[y >= 5].astype(np.int64))
P
  "$strop" eval "$recipe" --set output.dir="$work/out" --json > "$work/eval.json" || fail "eval"
  "$strop" predict "$work/out/finetuned.yaml" "$work/out/finetuned.safetensors" "$work/x59.npy" \
    --json --top 2 > "$work/pred.jsonl" || fail "predict"
  "$strop" predict "$work/out/finetuned.yaml" "$work/out/finetuned.safetensors" "$work/x59.npy" \
    > "$work/pred.txt" || fail "predict (text)"
  "$PYNP" - "$work/eval.json" "$work/pred.jsonl" "$work/y59.npy" "$work/pred.txt" <<'P' || fail "predict and eval disagree"
import json, re, sys
import numpy as np
ev = json.load(open(sys.argv[1]))
rows = [json.loads(l) for l in open(sys.argv[2])]
y = np.load(sys.argv[3])
names = {5: "Sandal", 6: "Shirt", 7: "Sneaker", 8: "Bag", 9: "Ankle boot"}
assert len(rows) == len(y) == ev["samples"] == 5000, (len(rows), len(y), ev["samples"])
for r in rows:
    for t in r["top"]:
        assert t["class"] in names and t["name"] == names[t["class"]], r
        assert t["index"] == t["class"] - 5 and 0 <= t["p"] <= 1, r
    assert r["top"][0]["p"] >= r["top"][1]["p"], r
pred = np.array([r["top"][0]["class"] for r in rows])
correct = int((pred == y).sum())
assert correct == round(ev["accuracy"] * 5000), (correct, ev["accuracy"])
# per class, as eval counts them (recall of class c = correct ones among the images of c)
for c, pc in enumerate(ev["per_class"]):
    mine = int(((pred == y) & (y == c + 5)).sum())
    assert mine == round(pc["recall"] * pc["support"]), (c, mine, pc)
text = open(sys.argv[4]).read().splitlines()
assert len(text) == 5000 and all(re.match(r"^\d+: [5-9] (Sandal|Shirt|Sneaker|Bag|Ankle boot) \(\d+\.\d%\)$", l) for l in text), text[:3]
print(f"predict: {correct} of 5000 right, as eval counts ({ev['accuracy']:.4f}); labels 5-9 with names")
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
  "$strop" tune "$recipe" "${common[@]}" --trials 6 --set tune.initial=3 > "$work/table.txt" || fail "tune run"
  cat "$work/table.txt"
  # the headers keep the end of the key paths; the last lines name the best values and the recipe
  grep -q " s\[0\].optimizer.lr " "$work/table.txt" || fail "header s[0].optimizer.lr"
  grep -q "^  stages\[1\].optimizer.lr = " "$work/table.txt" || fail "the best values"
  grep -q "^tuned recipe written to $work/best.yaml" "$work/table.txt" || fail "where the tuned recipe is"
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
hardening)
  # hostile inputs of issue 18: each refused with its sentence and the right exit code
  cd "$work" || fail "cd"
  awk 'BEGIN { for (i = 0; i < 90; i++) { c = i % 3; printf "%.3f,%.3f,%.3f,%.3f,%d\n", (i * 7 % 11) / 11 + c, (i * 5 % 13) / 13, (i * 3 % 7) / 7 - c, c * 0.5, c } }' > d.csv
  printf 'input: [4]\nlayers:\n  - {name: body.0, type: linear, out_features: 8}\n  - {name: body.1, type: tanh}\n  - {name: head, type: linear, out_features: 3}\n' > net.yaml
  cat > r.yaml <<'Y'
seed: 4
model: {spec: net.yaml}
data: {source: csv, path: d.csv, num_classes: 3, batch_size: 8, prefetch: false}
optimizer: {kind: sgd, lr: 0.05, momentum: 0.9}
train: {epochs: 6, checkpoint_every: 5}
output: {dir: out, weights: w.safetensors, spec: s.yaml, checkpoint: ck/ck.safetensors}
Y
  # a first run with checkpoint_every: the checkpoint's folder exists before the first one
  "$strop" train r.yaml --quiet > /dev/null || fail "first run with checkpoint_every"
  [ -s out/ck/ck.safetensors ] && [ -s out/w.safetensors ] || fail "outputs missing"
  cp out/w.safetensors whole.safetensors
  # stopped after one epoch, then --resume: the uninterrupted run's weights, bit for bit
  rm -rf out
  "$strop" train r.yaml --quiet --epochs 1 > /dev/null || fail "one epoch"
  "$strop" train r.yaml --quiet --resume > /dev/null || fail "resume"
  cmp -s whole.safetensors out/w.safetensors || fail "resumed weights differ from the whole run's"
  # killed (kill -9) after a periodic checkpoint, then --resume; the killed writer's temporary goes
  rm -rf out
  sed 's/epochs: 6/epochs: 400/' r.yaml > long.yaml
  "$strop" train long.yaml --quiet --epochs 60 > /dev/null || fail "long reference run"
  cp out/w.safetensors long_whole.safetensors
  rm -rf out
  "$strop" train long.yaml --quiet --epochs 60 > /dev/null & pid=$!
  for _ in $(seq 1 500); do [ -s out/ck/ck.safetensors ] && break; sleep 0.01; done
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  "$strop" train long.yaml --quiet --epochs 60 --resume > /dev/null || fail "resume after kill -9"
  cmp -s long_whole.safetensors out/w.safetensors || fail "weights after kill -9 and resume differ"
  ls out/ck | grep -q '\.tmp\.' && fail "a temporary file of the killed run is left: $(ls out/ck)"
  # Ctrl-C: exit 130, the epoch counted from 1 as the progress lines count it, and the way on
  rm -rf out
  "$strop" train long.yaml > int.txt 2>&1 & pid=$!
  for _ in $(seq 1 500); do [ -s out/ck/ck.safetensors ] && break; sleep 0.01; done
  kill -INT "$pid"; wait "$pid"; rc=$?
  [ "$rc" -eq 130 ] || fail "Ctrl-C: exit $rc, expected 130: $(tail -3 int.txt)"
  grep -qF "strop train: interrupted (strop_trainer_fit: stopped by the progress callback in epoch" int.txt || fail "Ctrl-C: $(tail -3 int.txt)"
  grep -qF "'--resume' continues from the last checkpoint (output.checkpoint)" int.txt || fail "Ctrl-C: no way on: $(tail -3 int.txt)"
  grep -q "in epoch 0 " int.txt && fail "Ctrl-C: an epoch counted from 0: $(tail -3 int.txt)"
  # a full output folder (a 1 KiB file size limit) fails before the first epoch, naming it
  rm -rf out
  out=$( (trap '' XFSZ; ulimit -f 1; "$strop" train r.yaml) 2>&1); rc=$?
  [ "$rc" -eq 1 ] || fail "full folder: exit $rc: $out"
  grep -qF "output (checked before training)" <<<"$out" || fail "full folder: $out"
  grep -qF "the folder 'out' cannot take files (writing failed: File too large)" <<<"$out" || fail "no folder: $out"
  grep -q "epoch *1/" <<<"$out" && fail "full folder: training ran first: $out"
  # an output folder that cannot be made
  expect 1 "cannot create the folder d.csv/out" -- "$strop" train r.yaml --set output.dir=d.csv/out
  # resuming needs a checkpoint to resume from
  expect 3 "resuming needs 'output.checkpoint'" -- "$strop" train r.yaml --resume --set 'output.checkpoint=~'
  # two outputs naming one file (the spec wrote YAML over the weights before), nothing trained
  expect 3 "output.weights and output.spec both name 'out/./w.safetensors'" -- "$strop" train r.yaml --set output.spec=./w.safetensors
  # --epochs 0 (the library's "no cap": it ran every epoch) and --top 0 are refused
  expect 2 "--epochs takes a whole number from 1 to 2147483647, got '0'" -- "$strop" train r.yaml --epochs 0
  # skipped steps are told (the library's warnings on stderr, at most 8 and a count): a run
  # whose every update overflows looked like one that trained
  expect 0 "strop: warning: strop_trainer_step: step 0: strop_optimizer_step: the update of" -- "$strop" train r.yaml --epochs 2 --set optimizer.lr=1e308
  expect 0 "strop: warning: more warnings follow; only the first 8 are shown" -- "$strop" train r.yaml --epochs 2 --set optimizer.lr=1e308
  # one beta (it was dropped without a word)
  expect 3 "'betas' takes two values, [beta1, beta2]" -- "$strop" train r.yaml --set 'optimizer={kind: adam, lr: 0.01, betas: [0.5]}'
  # nonsense values in the recipe, at their line and column
  expect 3 "'val_fraction' must be in [0, 1), got -0.5" -- "$strop" train r.yaml --set data.val_fraction=-0.5
  expect 3 "'stages' must hold >= 1 entries, got 0" -- "$strop" train r.yaml --set 'stages=[]'
  printf '1,2,3,4,0\n' > one.csv
  expect 3 "'val_fraction' 0.2 of 1 sample leaves the validation set empty" -- "$strop" train r.yaml --set data.path=one.csv --set data.val_fraction=0.2 --set data.num_classes=-1
  # a corrupt gzip CSV is invalid data (exit 3), and the message names the file only
  printf '\037\213\010\000\000\000\000\000\000\003\336\255\276\357' > bad.csv.gz
  expect 3 "bad.csv.gz: corrupt gzip data" -- "$strop" train r.yaml --set data.path=bad.csv.gz
  "$strop" train r.yaml --set data.path=bad.csv.gz 2>&1 | grep -q '<fd:' && fail "a stray <fd:N> in the message"
  # a FIFO given as a data path is refused at once instead of blocking
  mkfifo data.fifo
  expect 1 "data.fifo is a FIFO (named pipe); give a regular file" -- timeout 60 "$strop" train r.yaml --set data.path=data.fifo
  # predict: the library's NPY reader; NaN inputs and broken shapes are invalid data
  "$strop" train r.yaml --quiet > /dev/null || fail "train for predict"
  npy() { # npy FILE DICT BYTES: a version 1.0 .npy file
    python3 - "$@" <<'P'
import struct, sys
h = sys.argv[2]; h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
open(sys.argv[1], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + bytes.fromhex(sys.argv[3]))
P
  }
  f4="0000803f000000400000404000008040"   # 1 2 3 4 as <f4
  npy ok.npy "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }" "$f4"
  npy nan.npy "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }" "0000803f0000c07f0000404000008040"
  npy neg.npy "{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 4), }" ""
  npy huge.npy "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709550832, 4), }" ""
  expect 0 "0:" -- "$strop" predict out/s.yaml out/w.safetensors ok.npy
  expect 3 "nan.npy: element 1 is not finite (nan)" -- "$strop" predict out/s.yaml out/w.safetensors nan.npy
  "$strop" predict out/s.yaml out/w.safetensors nan.npy 2>&1 | grep -q 'nan%' && fail "nan% rows printed"
  expect 3 "neg.npy: bad NPY header: 'shape' entry 0 is negative" -- "$strop" predict out/s.yaml out/w.safetensors neg.npy
  expect 3 "NPY shape entry 0 is 18446744073709550832, above the limit of 2^40" -- "$strop" predict out/s.yaml out/w.safetensors huge.npy
  # inspect: shapes with a zero beside a huge dimension are refused by the library; a long
  # valid shape is printed whole
  expect 3 "shape[1] is 9223372036854775807, above the limit of 2^40" -- "$strop" inspect "$src/tests/fixtures/io/broken/zero_then_huge_dim.safetensors"
  expect 3 "shape[0] is 4611686018427387904, above the limit of 2^40" -- "$strop" inspect "$src/tests/fixtures/io/broken/huge_dim_then_zero.safetensors"
  python3 - <<'P'
import json, struct
h = json.dumps({"a": {"dtype": "F32", "shape": [0, 1099511627776, 1099, 1, 1, 1, 1, 8], "data_offsets": [0, 0]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
open("long.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * 8)
P
  expect 0 "[0, 1099511627776, 1099, 1, 1, 1, 1, 8]" -- "$strop" inspect long.safetensors
  expect 0 "2 elements in all" -- "$strop" inspect long.safetensors
  "$strop" inspect --json long.safetensors | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['elements'] == 2 and d['tensors'][0]['shape'][1] == 1099511627776, d" || fail "inspect --json"
  ;;
nan_batch)
  # Issue 18, item 1: a batch whose forward overflows (a sample of 3e38s) is skipped, and it must
  # not leave NaN in BatchNorm's running statistics: finetune exits 0 and saves finite ones.
  python3 - "$work" <<'P' || fail "writing the data"
import random, sys
w = sys.argv[1]
random.seed(3)
rows = []
for i in range(60):
    c = i % 3
    x = [random.gauss(0, 0.5) + (2.0 if k == c else 0.0) for k in range(4)]
    rows.append(x + [c])
with open(f"{w}/clean.csv", "w") as f:
    for r in rows:
        f.write(",".join(f"{v:.5f}" for v in r[:4]) + f",{r[4]}\n")
with open(f"{w}/poisoned.csv", "w") as f:
    for i, r in enumerate(rows):
        x = ["3e38"] * 4 if i == 7 else [f"{v:.5f}" for v in r[:4]]
        f.write(",".join(x) + f",{r[4]}\n")
P
  cat > "$work/net.yaml" <<'Y'
input: [4]
layers:
  - {name: fc1, type: linear, out_features: 8}
  - {name: bn, type: batchnorm1d}
  - {name: act, type: relu}
  - {name: head, type: linear, out_features: 3}
Y
  cat > "$work/base.yaml" <<Y
seed: 1
model: {spec: net.yaml}
data: {source: csv, path: clean.csv, num_classes: 3, batch_size: 10}
optimizer: {kind: adam, lr: 0.01}
train: {epochs: 2}
output: {dir: out, weights: base.safetensors}
Y
  cat > "$work/ft.yaml" <<Y
seed: 1
model: {spec: net.yaml, weights: out/base.safetensors}
data: {source: csv, path: poisoned.csv, num_classes: 3, batch_size: 10}
optimizer: {kind: adam, lr: 0.01}
train: {epochs: 2}
output: {dir: out, weights: ft.safetensors}
Y
  "$strop" train "$work/base.yaml" --quiet > /dev/null || fail "training the base"
  "$strop" finetune "$work/ft.yaml" --quiet > /dev/null || fail "finetune on a poisoned batch"
  python3 - "$work/out/ft.safetensors" <<'P' || fail "finetune saved non-finite running statistics"
import json, math, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
for name in ("bn.running_mean", "bn.running_var"):
    t = head[name]
    a, b = t["data_offsets"]
    vals = struct.unpack(f"<{(b - a) // 4}f", raw[8 + n + a:8 + n + b])
    assert all(math.isfinite(v) for v in vals), (name, vals)
    print(name, "finite:", ", ".join(f"{v:.4g}" for v in vals))
P
  ;;
demo_text)
  # The text demo (examples/text/README.md) on its committed base model at a reduced budget
  # (STROP_DEMO_EPOCHS, default 3): prepare.py writes the data at test time, the from-scratch
  # runs draw fresh weights from base/config.json (weights: none); every adaptation keeps
  # validation windows and restores its best epoch by validation loss; LoRA (on c_attn, and on the
  # token embedding, lm_head and the block linears), full fine-tuning and the last block adapt
  # the base to the held-out `startrek` collection and must each reach a lower test perplexity
  # than the same network trained from scratch with the same budget, each LoRA training under
  # 5% of the parameters, the one with the embedding's adapter below the one on c_attn; the
  # few-shot language classifier from the base must beat chance and the one from scratch.
  FORT=/usr/share/games/fortunes
  for f in startrek humorists de es it; do
    [ -e "$FORT/$f" ] || { echo "skipped: $FORT/$f missing (packages fortunes, fortunes-de/-es/-it)"; exit 77; }
  done
  [ -z "${STROP_SANITIZED:-}" ] || { echo "skip: the demos are too slow under sanitizers"; exit 77; }
  [ -n "$PYNP" ] || { echo "skipped: no python3 with numpy"; exit 77; }
  lib=$(cd "$(dirname "$strop")/../.." && pwd)/libstrop.so
  [ -r "$lib" ] || { echo "skipped: no libstrop.so two folders above the tool"; exit 77; }
  ex=$src/examples/text
  STROP_LIBRARY=$lib PYTHONPATH=$src/bindings/python "$PYNP" "$ex/prepare.py" --out "$work/out" ||
    fail "prepare.py"
  epochs=${STROP_DEMO_EPOCHS:-3}
  for m in lora lora-emb full last scratch; do
    set -- --set data.path="$work/out/startrek.jsonl" --set output.dir="$work/adapt-$m"
    "$strop" finetune "$ex/adapt-$m.yaml" --epochs "$epochs" --quiet "$@" > "$work/adapt-$m.txt" 2>&1 ||
      fail "adapt-$m.yaml: $(cat "$work/adapt-$m.txt")"
  done
  for m in fewshot scratch; do
    set -- --set data.path="$work/out/lang-train.jsonl" --set data.test_path="$work/out/lang-test.jsonl" \
      --set output.dir="$work/lang-$m"
    "$strop" finetune "$ex/lang-$m.yaml" --epochs $((epochs * 4)) --quiet "$@" > "$work/lang-$m.txt" 2>&1 ||
      fail "lang-$m.yaml: $(cat "$work/lang-$m.txt")"
  done
  python3 - "$work" <<'P' || fail "the text demo's outcomes"
import json, sys
w = sys.argv[1]
rep = {n: json.load(open(f"{w}/{n}/report.json"))
       for n in ("adapt-lora", "adapt-lora-emb", "adapt-full", "adapt-last", "adapt-scratch",
                 "lang-fewshot", "lang-scratch")}
ppl = {n: r["stages_results"][-1]["test"]["perplexity"] for n, r in rep.items() if n.startswith("adapt")}
share = {n: r["trainable_params"] / r["total_params"] for n, r in rep.items()}
for n in ppl:
    print(f"{n:14s} test perplexity {ppl[n]:8.2f}, {100 * share[n]:6.2f}% of the parameters trained")
acc = {n: rep[n]["stages_results"][-1]["test"]["accuracy"] for n in ("lang-fewshot", "lang-scratch")}
print("language, 16 per class: from the base %.1f%%, from scratch %.1f%% (chance 25%%)"
      % (100 * acc["lang-fewshot"], 100 * acc["lang-scratch"]))
assert share["adapt-lora"] < 0.05 and share["adapt-lora-emb"] < 0.05, share
# the honest protocol: each adaptation keeps validation windows apart from its training ones
# (the test fifth unchanged) and its weights are those of the epoch of lowest validation loss
for n, r in rep.items():
    if n.startswith("adapt"):
        assert r["val_size"] > 0 and r["train_size"] > r["val_size"], (n, r["train_size"], r["val_size"])
        assert 1 <= r["best_epoch"] <= r["epochs"], (n, r["best_epoch"], r["epochs"])
        st = r["stages_results"][-1]
        assert st["val"]["perplexity"] > 1 and st["test"]["perplexity"] > 1, (n, st)
assert share["adapt-full"] == 1.0 and share["adapt-last"] < 0.5, share
for n in ("adapt-lora", "adapt-lora-emb", "adapt-full", "adapt-last"):
    assert ppl[n] < ppl["adapt-scratch"], (n, ppl)
assert ppl["adapt-lora-emb"] < ppl["adapt-lora"], ppl
# the LayerNorms that train beside its adapters travel in its PEFT folder (modules_to_save)
cfg = json.load(open(f"{w}/adapt-lora-emb/adapters/adapter_config.json"))
assert "transformer.ln_f" in cfg["modules_to_save"] and len(cfg["modules_to_save"]) == 9, cfg
assert acc["lang-fewshot"] > 0.5, acc
assert acc["lang-fewshot"] > acc["lang-scratch"], acc
P
  # the adapted model is a Hugging Face folder (output.pretrained, LoRA folded in): samples
  # as the README shows them, the same twice with one seed
  a=$("$strop" generate "$work/adapt-lora/model" --prompt "Captain's log" --max-tokens 12 --temperature 0.8 --top-k 40 --seed 1) ||
    fail "generate from the LoRA-adapted folder"
  b=$("$strop" generate "$work/adapt-lora/model" --prompt "Captain's log" --max-tokens 12 --temperature 0.8 --top-k 40 --seed 1)
  [ "$a" = "$b" ] && [[ $a == "Captain's log"* ]] || fail "seeded samples differ or lack the prompt: '$a' / '$b'"
  ;;
text_fresh)
  # a GPT-2 folder of config.json and tokenizer.json only: `model.weights: none` draws the
  # weights as Hugging Face does (initializer_range), so the first steps' loss is about
  # ln(vocab) (PyTorch's N(0, 1) embeddings, tied to the output layer, start far above);
  # `strop train` draws them so too; train.log_every writes a row every N steps into the
  # metrics file (columns step and kind) and a step curve into the plot
  FORT=/usr/share/games/fortunes/fortunes
  [ -r "$FORT" ] || { echo "skipped: package fortunes missing"; exit 77; }
  lib=$(cd "$(dirname "$strop")/../.." && pwd)/libstrop.so
  [ -r "$lib" ] || { echo "skipped: no libstrop.so two folders above the tool"; exit 77; }
  pre=
  if ldd "$lib" | grep -q libasan; then
    pre=$(ldd "$lib" | awk '/libasan/ {print $3}')
    [ -n "$pre" ] && ubsan=$(ldd "$lib" | awk '/libubsan/ {print $3}') && pre="$pre${ubsan:+ $ubsan}"
  fi
  LD_PRELOAD=$pre ASAN_OPTIONS=detect_leaks=0 STROP_LIBRARY=$lib PYTHONPATH=$src/bindings/python \
    /usr/bin/python3 - "$FORT" "$work" <<'PY' || fail "writing the GPT-2 config folder"
import json, os, sys
import strop
fort, work = sys.argv[1], sys.argv[2]
raw = open(fort, "rb").read().decode("utf-8", "replace")
texts = [t.strip() for t in raw.split("\n%\n") if t.strip() and len(t.strip()) < 200][:240]
with open(work + "/corpus.txt", "w") as f:
    f.write("\n".join(texts) + "\n")
tok = strop.Tokenizer.train_bpe([work + "/corpus.txt"], vocab_size=400,
                                special_tokens=["<|endoftext|>"])
d = work + "/gpt2"
os.mkdir(d)
tok.save(d + "/tokenizer.json")
cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": tok.vocab_size,
       "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2, "bos_token_id": 0,
       "eos_token_id": 0}
with open(d + "/config.json", "w") as f:
    json.dump(cfg, f)
with open(work + "/train.jsonl", "w") as f:
    for t in texts:
        f.write(json.dumps({"text": t}) + "\n")
PY
  cat > "$work/fresh.yaml" <<Y
seed: 3
model: {pretrained: gpt2, weights: none}
data:
  source: jsonl
  path: train.jsonl
  task: causal_lm
  max_length: 64
  val_fraction: 0.2
  batch_size: 8
optimizer: {kind: adamw, lr: 0.003}
train: {epochs: 2, log_every: 3}
output: {dir: out, metrics: metrics.csv, plot: plot.svg, pretrained: folder}
Y
  "$strop" finetune "$work/fresh.yaml" --quiet > "$work/fresh.txt" 2>&1 || fail "weights: none: $(cat "$work/fresh.txt")"
  # without weights: none the folder's missing weights are named, with the key that draws them
  expect 3 "but for 'weights: none'" -- "$strop" finetune "$work/fresh.yaml" --set model.weights=x.safetensors
  sed 's/, weights: none//' "$work/fresh.yaml" > "$work/noweights.yaml"
  expect 1 "weights: none" -- "$strop" finetune "$work/noweights.yaml"
  # `strop train` of a folder with weights draws fresh ones as Hugging Face does, too
  "$strop" train "$work/noweights.yaml" --quiet --set model.pretrained=out/folder \
    --set output.dir=out-train > "$work/train.txt" 2>&1 || fail "strop train: $(cat "$work/train.txt")"
  python3 - "$work" <<'P' || fail "the metrics file's step rows"
import csv, math, sys
w = sys.argv[1]
for run in ("out", "out-train"):
    rows = list(csv.DictReader(open(f"{w}/{run}/metrics.csv")))
    assert list(rows[0].keys())[-2:] == ["step", "kind"], rows[0].keys()
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(epochs) == 2 and [r["epoch"] for r in epochs] == ["1", "2"], epochs
    per = int(epochs[0]["step"])
    assert int(epochs[1]["step"]) == 2 * per, epochs
    assert [int(r["step"]) for r in steps] == list(range(3, 2 * per + 1, 3)), steps
    assert all(r["val_loss"] == "" and r["train_loss"] and r["lr"] for r in steps), steps[0]
    assert all(r["val_loss"] for r in epochs), epochs
    # each step row comes before the row of its epoch
    order = [r["kind"] + r["epoch"] for r in rows]
    assert order.index("epoch1") < order.index("step2") < order.index("epoch2"), order
    first = float(steps[0]["train_loss"])
    print(f"{run}: {len(steps)} step rows, first loss {first:.3f} (ln 400 = {math.log(400):.3f})")
    assert first < math.log(400) + 0.5, first
P
  grep -q 'class="steps"' "$work/out/plot.svg" || fail "the plot has no step curve"
  python3 "$src/tests/tool/check_svg.py" "$work/out/plot.svg" --legend "training, every 3 steps" ||
    fail "plot.svg"
  ;;
text_finetune)
  # a GPT-2 folder and a byte-level BPE trained on fortunes, both written by strop (through the
  # Python bindings: a partial load of an empty file, saved), fine-tuned by `strop finetune` on
  # a JSON Lines file: the loss goes down and the test perplexity is printed and reported
  FORT=/usr/share/games/fortunes/fortunes
  [ -r "$FORT" ] || { echo "skipped: package fortunes missing"; exit 77; }
  lib=$(cd "$(dirname "$strop")/../.." && pwd)/libstrop.so
  [ -r "$lib" ] || { echo "skipped: no libstrop.so two folders above the tool"; exit 77; }
  # a sanitized library loads into python3 only after its runtime (leaks of python3 itself
  # are not the library's)
  pre=
  if ldd "$lib" | grep -q libasan; then
    pre=$(ldd "$lib" | awk '/libasan/ {print $3}')
    [ -n "$pre" ] && ubsan=$(ldd "$lib" | awk '/libubsan/ {print $3}') && pre="$pre${ubsan:+ $ubsan}"
  fi
  LD_PRELOAD=$pre ASAN_OPTIONS=detect_leaks=0 STROP_LIBRARY=$lib PYTHONPATH=$src/bindings/python \
    /usr/bin/python3 - "$FORT" "$work" <<'PY' || fail "writing the GPT-2 folder"
import json, os, struct, sys
import strop
fort, work = sys.argv[1], sys.argv[2]
raw = open(fort, "rb").read().decode("utf-8", "replace")
texts = [t.strip() for t in raw.split("\n%\n") if t.strip() and len(t.strip()) < 200][:240]
with open(work + "/corpus.txt", "w") as f:
    f.write("\n".join(texts) + "\n")
tok = strop.Tokenizer.train_bpe([work + "/corpus.txt"], vocab_size=400,
                                special_tokens=["<|endoftext|>"])
d = work + "/gpt2"
os.mkdir(d)
tok.save(d + "/tokenizer.json")
cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": tok.vocab_size,
       "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2, "bos_token_id": 0,
       "eos_token_id": 0}
with open(d + "/config.json", "w") as f:
    json.dump(cfg, f)
with open(d + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", 2) + b"{}")
m = strop.Model.from_pretrained(d, strict=False, seed=1)
m.save_weights(d + "/model.safetensors")
m.close()
with open(work + "/train.jsonl", "w") as f:
    for t in texts:
        f.write(json.dumps({"text": t}) + "\n")
PY
  cat > "$work/lm.yaml" <<Y
seed: 3
model: {pretrained: gpt2}
data:
  source: jsonl
  path: train.jsonl
  task: causal_lm
  max_length: 64
  test_fraction: 0.2
  batch_size: 8
optimizer: {kind: adamw, lr: 0.003}
train: {epochs: 6}
output: {dir: out, report: report.json, weights: lm.safetensors}
Y
  "$strop" finetune "$work/lm.yaml" > "$work/lm.txt" 2> "$work/lm.err" || fail "finetune: $(cat "$work/lm.err")"
  cat "$work/lm.txt"
  grep -q "test perplexity" "$work/lm.txt" || fail "no perplexity printed"
  python3 - "$work/out/report.json" "$work/lm.err" <<'P' || fail "the loss did not go down"
import json, math, re, sys
rep = json.load(open(sys.argv[1]))
test = rep["stages_results"][-1]["test"]
assert math.isclose(test["perplexity"], math.exp(test["loss"]), rel_tol=1e-6), test
assert test["tokens"] > test["samples"] > 0, test
losses = [float(x) for x in re.findall(r"loss ([0-9.]+)", open(sys.argv[2]).read())]
assert len(losses) >= 6 and losses[-1] < 0.7 * losses[0], losses
P
  # a frozen trunk (LoRA, last block only): text batches are not served from cached trunk
  # features, which would lose the padding masks and the per-token targets
  { cat "$work/lm.yaml"; printf 'surgery:\n  - freeze: "*"\n  - unfreeze: "transformer.h.1.*"\n'; } > "$work/last.yaml"
  "$strop" finetune "$work/last.yaml" --set train.epochs=1 --set output.dir=out-last \
    --set output.pretrained=folder > "$work/last.txt" 2>&1 ||
    fail "finetune with a frozen trunk: $(cat "$work/last.txt")"
  grep -q "test perplexity" "$work/last.txt" || fail "frozen trunk: no perplexity printed"
  # output.pretrained: a Hugging Face folder again, with the tokenizer: strop generate runs on it
  for f in config.json model.safetensors tokenizer.json; do
    [ -s "$work/out-last/folder/$f" ] || fail "output.pretrained wrote no $f"
  done
  "$strop" generate "$work/out-last/folder" --prompt "The" --max-tokens 4 > /dev/null ||
    fail "strop generate on the output.pretrained folder"
  # LoRA on the token embedding (PEFT's lora_embedding_A / _B) and on lm_head, which share one
  # weight: the adapters go to a PEFT folder (output.lora); folding them into a Hugging Face
  # folder would change both sides, so output.pretrained is refused, naming the tie
  { cat "$work/lm.yaml"; printf 'surgery:\n  - freeze: "*"\n  - lora: {match: "transformer.wte", rank: 4, alpha: 8}\n  - lora: {match: "lm_head", rank: 4, alpha: 8}\n'; } > "$work/loraemb.yaml"
  "$strop" finetune "$work/loraemb.yaml" --set train.epochs=1 --set output.dir=out-loraemb \
    --set output.lora=adapters > "$work/loraemb.txt" 2>&1 ||
    fail "finetune with LoRA on the embedding: $(cat "$work/loraemb.txt")"
  grep -q "test perplexity" "$work/loraemb.txt" || fail "LoRA on the embedding: no perplexity printed"
  python3 - "$work/out-loraemb/adapters" <<'P' || fail "the embedding's adapter folder"
import json, struct, sys
d = sys.argv[1]
raw = open(d + "/adapter_model.safetensors", "rb").read()
head = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
a, b = head["base_model.model.transformer.wte.lora_embedding_A"], head["base_model.model.transformer.wte.lora_embedding_B"]
assert a["shape"][0] == 4 and b["shape"] == [32, 4], (a, b)
assert "base_model.model.lm_head.lora_A.weight" in head, sorted(head)
cfg = json.load(open(d + "/adapter_config.json"))
assert cfg["target_modules"] == ["transformer.wte", "lm_head"], cfg
print("adapters:", ", ".join(sorted(k for k in head if k != "__metadata__")))
P
  expect 3 "the LoRA adapter of 'transformer.wte' cannot be merged" -- "$strop" finetune "$work/loraemb.yaml" \
    --set train.epochs=1 --set output.dir=out-loraemb2 --set output.pretrained=folder
  # the model records its tokenizer; a missing tokenizer and a bad task are named
  "$strop" inspect "$work/out/lm.safetensors" | grep -q 'input.tokenizer = {"path": ".*gpt2", "max_length": 64, "task": "causal_lm"}' ||
    fail "input.tokenizer metadata: $("$strop" inspect "$work/out/lm.safetensors" 2>&1 | grep -i tokenizer)"
  sed 's/task: causal_lm/task: summarize/' "$work/lm.yaml" > "$work/bad.yaml"
  expect 3 "bad.yaml:6:9: 'task' must be one of classify, causal_lm, prompt_response" -- "$strop" finetune "$work/bad.yaml"
  printf '{"text": "a"}\n{"text": "b",\n' > "$work/broken.jsonl"
  sed 's/train.jsonl/broken.jsonl/' "$work/lm.yaml" > "$work/bad2.yaml"
  expect 3 "broken.jsonl:2:" -- "$strop" finetune "$work/bad2.yaml"
  # the same language model as a classifier: model.head pools the last token the mask keeps
  # into a new `score` layer of the data's classes (long or short fortunes)
  python3 - "$work" <<'P'
import json, sys
work = sys.argv[1]
with open(work + "/train.jsonl") as f, open(work + "/cls.jsonl", "w") as g:
    for line in f:
        t = json.loads(line)["text"]
        g.write(json.dumps({"text": t, "label": "long" if len(t) > 70 else "short"}) + "\n")
P
  cat > "$work/cls.yaml" <<Y
seed: 3
model: {pretrained: gpt2, head: {pool: last, dropout: 0.1}}
data:
  source: jsonl
  path: cls.jsonl
  task: classify
  max_length: 64
  test_fraction: 0.2
  batch_size: 8
optimizer: {kind: adamw, lr: 0.003}
train: {epochs: 3}
output: {dir: out_cls, report: report.json, weights: cls.safetensors}
Y
  "$strop" finetune "$work/cls.yaml" > "$work/cls.txt" 2> "$work/cls.err" || fail "finetune with a head: $(cat "$work/cls.err")"
  grep -q "test acc" "$work/cls.txt" || fail "no accuracy printed: $(cat "$work/cls.txt")"
  "$strop" inspect "$work/out_cls/cls.safetensors" | grep -q "score.weight.*\[2, 32\]" ||
    fail "no score head of 2 classes: $("$strop" inspect "$work/out_cls/cls.safetensors" 2>&1 | grep -i score)"
  sed 's/pool: last/pool: first/' "$work/cls.yaml" > "$work/bad3.yaml"
  expect 3 "bad3.yaml:2:40: 'pool' must be one of cls, mean, last" -- "$strop" finetune "$work/bad3.yaml"
  # instruction tuning with the folder's chat template (tokenizer_config.json): chat_template: true
  cat > "$work/gpt2/tokenizer_config.json" <<'J'
{"eos_token": "<|endoftext|>", "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"}
J
  head -n 40 "$work/corpus.txt" | /usr/bin/python3 -c 'import json, sys
for i, l in enumerate(sys.stdin):
    print(json.dumps({"prompt": "say %d" % i, "response": l.strip()[:30] or "x"}))' > "$work/chat.jsonl"
  sed -e 's/task: causal_lm/task: prompt_response\n  chat_template: true/' -e 's/train.jsonl/chat.jsonl/' -e 's/epochs: 6/epochs: 1/' \
    -e 's/report: report.json, //' "$work/lm.yaml" > "$work/chat.yaml"
  "$strop" finetune "$work/chat.yaml" > "$work/chat.txt" 2> "$work/chat.err" || fail "finetune with a chat template: $(cat "$work/chat.err")"
  grep -q "test perplexity" "$work/chat.txt" || fail "no perplexity printed for the chat run"
  sed 's/chat_template: true/chat_template: "{{ messages[0].content | wordcount }}"/' "$work/chat.yaml" > "$work/badchat.yaml"
  expect 3 "chat.jsonl:1: strop_tokenizer_apply_chat_template: the chat template:1:" -- "$strop" finetune "$work/badchat.yaml"
  rm "$work/gpt2/tokenizer_config.json"
  # a text classifier trained by a recipe predicts from raw strings: `strop predict --text`
  # reads input.tokenizer from the weights; class names are printed as for images
  mkdir -p "$work/cls"
  cat > "$work/cls/tokenizer.json" <<'J'
{"pre_tokenizer": {"type": "Whitespace"}, "model": {"type": "WordLevel", "unk_token": "<unk>",
 "vocab": {"<pad>": 0, "<unk>": 1, "good": 2, "bad": 3, "very": 4, "film": 5}}}
J
  printf 'input: [8]\nlayers:\n  - {name: emb, type: embedding, num_embeddings: 6, embedding_dim: 8}\n  - {name: pool, type: mean_pool}\n  - {name: head, type: linear, out_features: 2}\n' > "$work/cls/net.yaml"
  for i in $(seq 0 39); do
    v=; [ $((i % 3)) -ne 0 ] && v="very "
    if [ $((i % 2)) -eq 1 ]; then echo "{\"review\": \"${v}good film\", \"y\": \"pos\"}"
    else echo "{\"review\": \"${v}bad film\", \"y\": \"neg\"}"; fi
  done > "$work/cls/reviews.jsonl"
  cat > "$work/cls/cls.yaml" <<'Y'
seed: 1
model: {spec: net.yaml}
data: {source: jsonl, path: reviews.jsonl, tokenizer: tokenizer.json, text: review, label: y,
       max_length: 8, test_fraction: 0.25, batch_size: 8, cache_dir: tokcache}
optimizer: {kind: adam, lr: 0.05}
train: {epochs: 15}
output: {dir: out, weights: cls.safetensors, spec: cls.yaml}
Y
  "$strop" train -q "$work/cls/cls.yaml" > /dev/null || fail "training the text classifier"
  # data.cache_dir: the tokenised reviews are kept beside the recipe, and a second run (reading
  # them back) trains the same model
  ls "$work/cls/tokcache/"reviews.jsonl.*.tokens > /dev/null || fail "no tokenisation cache written"
  cp "$work/cls/out/cls.safetensors" "$work/cls/first.safetensors"
  "$strop" train -q "$work/cls/cls.yaml" > /dev/null || fail "training from the cache"
  cmp -s "$work/cls/out/cls.safetensors" "$work/cls/first.safetensors" || fail "the cached run trained another model"
  expect 0 "0: 1 pos (" -- "$strop" predict "$work/cls/out/cls.yaml" "$work/cls/out/cls.safetensors" --text "very good film"
  expect 0 "0: 0 neg (" -- "$strop" predict "$work/cls/out/cls.yaml" "$work/cls/out/cls.safetensors" --text "bad film"
  printf 'good\nvery bad\n' > "$work/cls/lines.txt"
  out=$("$strop" predict "$work/cls/out/cls.yaml" "$work/cls/out/cls.safetensors" --text-file "$work/cls/lines.txt" --top 2) ||
    fail "predict --text-file"
  echo "$out" | grep -q "^0: 1 pos (.*) 0 neg (" || fail "predict --text-file printed: $out"
  echo "$out" | grep -q "^1: 0 neg (" || fail "predict --text-file printed: $out"
  out=$(printf 'good\n' | "$strop" predict "$work/cls/out/cls.yaml" "$work/cls/out/cls.safetensors" --text-file - --json) ||
    fail "predict --text-file - --json"
  echo "$out" | grep -q '"name":"pos"' || fail "predict --json printed: $out"
  # a missing tokenizer file, a model without the metadata, a language model: named
  mv "$work/cls/tokenizer.json" "$work/cls/moved.json"
  expect 1 "input.tokenizer names ($work/cls/tokenizer.json) does not load" -- "$strop" predict "$work/cls/out/cls.yaml" "$work/cls/out/cls.safetensors" --text good
  mv "$work/cls/moved.json" "$work/cls/tokenizer.json"
  LD_PRELOAD=$pre ASAN_OPTIONS=detect_leaks=0 STROP_LIBRARY=$lib PYTHONPATH=$src/bindings/python \
    /usr/bin/python3 - "$work/cls/out" <<'PY' || fail "writing weights without metadata"
import sys
import strop
d = sys.argv[1]
m = strop.Model.load(d + "/cls.yaml", d + "/cls.safetensors")
del m.meta["input.tokenizer"]
m.save_weights(d + "/bare.safetensors")
m.close()
PY
  expect 3 "no 'input.tokenizer' metadata" -- "$strop" predict "$work/cls/out/cls.yaml" "$work/cls/out/bare.safetensors" --text good
  expect 2 "give --text or --text-file, not both" -- "$strop" predict "$work/cls/out/cls.yaml" "$work/cls/out/cls.safetensors" --text a --text-file b
  expect 2 "expected SPEC WEIGHTS with --text" -- "$strop" predict "$work/cls/out/cls.yaml" --text a
  # sentence pairs (data.text_pair): the tokenizer's pair template gives [CLS] A [SEP] B [SEP]
  # token types 0 and 1, which reach the model's positional_embedding (positions: types). The
  # task ("is cat the first sentence?") cannot be told from a bag of tokens: only the types
  # let the recipe reach 100% test accuracy (without them it stays at or below 50%)
  mkdir -p "$work/pair"
  cat > "$work/pair/tokenizer.json" <<'J'
{"normalizer": {"type": "BertNormalizer"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
 "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
 "added_tokens": [{"id": 0, "content": "[PAD]", "special": true},
                  {"id": 2, "content": "[CLS]", "special": true},
                  {"id": 3, "content": "[SEP]", "special": true}],
 "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[PAD]": 0, "[UNK]": 1,
  "[CLS]": 2, "[SEP]": 3, "cat": 4, "dog": 5, "sat": 6, "ran": 7, "on": 8, "mat": 9, "a": 10,
  "big": 11}}}
J
  for seg in types constant; do
    printf 'input: [8]\nlayers:\n  - {name: tok, type: embedding, num_embeddings: 12, embedding_dim: 16}\n  - {name: seg, type: positional_embedding, num_embeddings: 2, positions: %s}\n  - {name: act, type: gelu}\n  - {name: pool, type: mean_pool}\n  - {name: head, type: linear, out_features: 2}\n' "$seg" > "$work/pair/net_$seg.yaml"
  done
  for r in 1 2 3; do for w in dog sat ran on mat a big; do
    echo "{\"a\": \"cat\", \"b\": \"$w\", \"y\": \"first\"}"
    echo "{\"a\": \"$w\", \"b\": \"cat\", \"y\": \"second\"}"
  done; done > "$work/pair/pairs.jsonl"
  for seg in types constant; do
    cat > "$work/pair/$seg.yaml" <<Y
seed: 2
model: {spec: net_$seg.yaml}
data: {source: jsonl, path: pairs.jsonl, tokenizer: tokenizer.json, text: a, text_pair: b,
       label: y, max_length: 8, test_fraction: 0.25, batch_size: 4}
optimizer: {kind: adam, lr: 0.03}
train: {epochs: 40}
output: {dir: out_$seg, report: report.json}
Y
    "$strop" train -q "$work/pair/$seg.yaml" > /dev/null 2> "$work/pair/$seg.err" ||
      fail "training on pairs ($seg): $(cat "$work/pair/$seg.err")"
  done
  python3 - "$work/pair" <<'P' || fail "the pair recipe's types did not reach the model"
import json, sys
acc = {s: json.load(open(f"{sys.argv[1]}/out_{s}/report.json"))["stages_results"][-1]["test"]["accuracy"]
       for s in ("types", "constant")}
print("pair recipe test accuracy:", acc)
assert acc["types"] == 1.0 and acc["constant"] <= 0.5, acc
P
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
generate)
  # a tiny GPT-2 folder (numpy writes random weights) with the WordPiece tokenizer.json of the
  # tokenize case: greedy, seeded sampling, top-k 1 = greedy, errors
  [ -n "$PYNP" ] || { echo "skipped: no python3 with numpy"; exit 77; }
  mkdir -p "$work/gpt"
  cat > "$work/gpt/tokenizer.json" <<'J'
{"normalizer": {"type": "BertNormalizer"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
 "decoder": {"type": "WordPiece"},
 "added_tokens": [{"id": 2, "content": "[CLS]", "special": true},
                  {"id": 3, "content": "[SEP]", "special": true}],
 "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[PAD]": 0, "[UNK]": 1,
  "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5, "##s": 6, "!": 7}}}
J
  "$PYNP" - "$work/gpt" "$src/tests/fixtures" <<'PY' || fail "writing the GPT-2 folder"
import json, os, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import safetensors_np
d, V, P, E = sys.argv[1], 8, 16, 8
json.dump({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V,
           "n_positions": P, "n_embd": E, "n_layer": 1, "n_head": 2}, open(os.path.join(d, "config.json"), "w"))
rng = np.random.default_rng(0)
t = {"transformer.wte.weight": (V, E), "transformer.wpe.weight": (P, E),
     "transformer.h.0.ln_1.weight": (E,), "transformer.h.0.ln_1.bias": (E,),
     "transformer.h.0.attn.c_attn.weight": (E, 3 * E), "transformer.h.0.attn.c_attn.bias": (3 * E,),
     "transformer.h.0.attn.c_proj.weight": (E, E), "transformer.h.0.attn.c_proj.bias": (E,),
     "transformer.h.0.ln_2.weight": (E,), "transformer.h.0.ln_2.bias": (E,),
     "transformer.h.0.mlp.c_fc.weight": (E, 4 * E), "transformer.h.0.mlp.c_fc.bias": (4 * E,),
     "transformer.h.0.mlp.c_proj.weight": (4 * E, E), "transformer.h.0.mlp.c_proj.bias": (E,),
     "transformer.ln_f.weight": (E,), "transformer.ln_f.bias": (E,)}
t = {k: rng.normal(0, 0.8, s).astype(np.float32) for k, s in t.items()}
safetensors_np.save(os.path.join(d, "model.safetensors"), t, metadata={"format": "pt"})
PY
  greedy=$("$strop" generate "$work/gpt" --prompt "hello world" --max-tokens 6) || fail "generate"
  [ "${greedy#hello world}" != "$greedy" ] || fail "generate does not start with the prompt: $greedy"
  [ "$greedy" != "hello world" ] || fail "generate added nothing"
  again=$("$strop" generate "$work/gpt" --prompt "hello world" --max-tokens 6 --threads 1)
  [ "$again" = "$greedy" ] || fail "greedy differs between runs: '$greedy' / '$again'"
  a=$("$strop" generate "$work/gpt" --prompt "hello" --max-tokens 12 --temperature 1.5 --seed 7)
  b=$("$strop" generate "$work/gpt" --prompt "hello" --max-tokens 12 --temperature 1.5 --seed 7)
  [ "$a" = "$b" ] || fail "the same seed sampled '$a' and '$b'"
  k1=$("$strop" generate "$work/gpt" --prompt "hello world" --max-tokens 6 --temperature 3 --top-k 1 --seed 9)
  [ "$k1" = "$greedy" ] || fail "top-k 1 gave '$k1', greedy '$greedy'"
  p=$("$strop" generate "$work/gpt" --prompt "hello world" --max-tokens 6 --temperature 3 --top-p 0.000001)
  [ "$p" = "$greedy" ] || fail "a tiny top-p gave '$p', greedy '$greedy'"
  # several prompts as one batch: each line is what the prompt gives alone
  h=$("$strop" generate "$work/gpt" --prompt "hello" --max-tokens 6)
  w=$("$strop" generate "$work/gpt" --prompt "world ! hello worlds" --max-tokens 6)
  both=$("$strop" generate "$work/gpt" --prompt "hello world" --prompt "hello" --prompt "world ! hello worlds" --max-tokens 6) || fail "generate a batch"
  [ "$both" = "$(printf '%s\n%s\n%s' "$greedy" "$h" "$w")" ] || fail "a batch printed '$both', alone '$greedy' / '$h' / '$w'"
  printf 'hello\nworld ! hello worlds\n' > "$work/prompts.txt"
  fromfile=$("$strop" generate "$work/gpt" --prompt "hello world" --prompts "$work/prompts.txt" --max-tokens 6) || fail "generate --prompts"
  [ "$fromfile" = "$both" ] || fail "--prompts printed '$fromfile', --prompt '$both'"
  : > "$work/empty.txt"
  expect 2 "holds no prompt" -- "$strop" generate "$work/gpt" --prompts "$work/empty.txt"
  expect 0 "usage: strop generate" -- "$strop" generate --help
  expect 2 "expected MODEL_DIR" -- "$strop" generate
  expect 2 "--temperature takes a number" -- "$strop" generate "$work/gpt" --temperature hot
  # checked with the other options, before the prompt is printed (exit 2, not 3 after the prompt)
  expect 2 "--top-p takes a probability in (0, 1], got '2'" -- "$strop" generate "$work/gpt" --prompt hello --top-p 2
  expect 2 "neither a beginning- nor an end-of-sequence token" -- "$strop" generate "$work/gpt"
  # beams whose key/value caches and scores cannot fit: refused before the search takes them
  expect 1 "num_beams 2000000000 needs" -- "$strop" generate "$work/gpt" --prompt hello --max-tokens 6 --num-beams 2000000000
  expect 0 "hello" -- "$strop" generate "$work/gpt" --prompt hello --max-tokens 6 --num-beams 3
  expect 1 "" -- "$strop" generate "$work/none"
  # --chat: the folder's chat template renders the prompt as a user message; only the reply
  # is printed, the same tokens greedy generation gives after the rendered text
  expect 3 "has no chat template" -- "$strop" generate "$work/gpt" --chat --prompt hello
  cat > "$work/gpt/tokenizer_config.json" <<'J'
{"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %} world{% endif %}"}
J
  chat=$("$strop" generate "$work/gpt" --chat --prompt "hello" --max-tokens 6) || fail "generate --chat"
  [ "hello world$chat" = "$greedy" ] || fail "generate --chat printed '$chat' after 'hello world' (greedy: '$greedy')"
  echo '{"chat_template": "{{ messages[0].content + 1 }}"}' > "$work/gpt/tokenizer_config.json"
  expect 3 "tokenizer_config.json (chat_template 'default'):1:24: unsupported operand types" -- "$strop" generate "$work/gpt" --chat --prompt hello
  rm "$work/gpt/tokenizer_config.json"
  ;;
bf16_curves)
  # Mixed-precision training through the recipe (`--set model.compute_dtype=bf16`): the loss
  # curve of the Fashion demo's recipe (shortened: 3 epochs a stage, no baseline) and of the text
  # example's full fine-tune (2 epochs) in BF16 — on vdpbf16ps where the CPU has it and on the
  # forced exact fallback (STROP_BF16_FALLBACK=1) — stays within a stated tolerance of FP32's:
  # each epoch's train and val loss within 2% (Fashion) and 1% (text) of FP32's.
  [ -f "$FASHION/train-images-idx3-ubyte.gz" ] || { echo "skip: $FASHION missing"; exit 77; }
  [ -z "${STROP_SANITIZED:-}" ] || { echo "skip: the demos are too slow under sanitizers"; exit 77; }
  FORT=/usr/share/games/fortunes
  for f in startrek humorists de es it; do
    [ -e "$FORT/$f" ] || { echo "skipped: $FORT/$f missing (packages fortunes, fortunes-de/-es/-it)"; exit 77; }
  done
  [ -n "$PYNP" ] || { echo "skipped: no python3 with numpy"; exit 77; }
  lib=$(cd "$(dirname "$strop")/../.." && pwd)/libstrop.so
  [ -r "$lib" ] || { echo "skipped: no libstrop.so two folders above the tool"; exit 77; }
  STROP_LIBRARY=$lib PYTHONPATH=$src/bindings/python "$PYNP" "$src/examples/text/prepare.py" \
    --out "$work/text" > /dev/null || fail "prepare.py"
  for run in f32 bf16 fallback; do
    set -- --set output.dir="$work/fashion-$run" --set "baselines=[]"
    [ "$run" = f32 ] || set -- "$@" --set model.compute_dtype=bf16
    fb=0; [ "$run" = fallback ] && fb=1
    STROP_BF16_FALLBACK=$fb "$strop" finetune "$src/examples/fashion/finetune.yaml" --epochs 3 \
      --quiet "$@" > "$work/fashion-$run.txt" 2>&1 || fail "fashion $run: $(cat "$work/fashion-$run.txt")"
    set -- --set data.path="$work/text/startrek.jsonl" --set output.dir="$work/text-$run" \
      --set output.metrics=metrics.csv
    [ "$run" = f32 ] || set -- "$@" --set model.compute_dtype=bf16
    STROP_BF16_FALLBACK=$fb "$strop" finetune "$src/examples/text/adapt-full.yaml" --epochs 2 \
      --quiet "$@" > "$work/text-$run.txt" 2>&1 || fail "text $run: $(cat "$work/text-$run.txt")"
  done
  # the trained weights' BF16 copies packed per call instead of kept (model.weight_cache:
  # false), and the attention tiled (model.attention: tiled, what auto picks for its causal
  # windows of 128 tokens): the same losses bit for bit, and the report says both
  "$strop" finetune "$src/examples/text/adapt-full.yaml" --epochs 2 --quiet \
    --set data.path="$work/text/startrek.jsonl" --set output.dir="$work/text-packed" \
    --set output.metrics=metrics.csv --set model.compute_dtype=bf16 \
    --set model.weight_cache=false --set model.attention=tiled > "$work/text-packed.txt" 2>&1 ||
    fail "text packed: $(cat "$work/text-packed.txt")"
  grep -q "^precision:  products in bf16 with f32 sums, weight cache off$" "$work/text-packed.txt" ||
    fail "the packed run's report does not say so: $(cat "$work/text-packed.txt")"
  grep -q "^attention:  tiled (no T x T weights kept)$" "$work/text-packed.txt" ||
    fail "the packed run's report does not name the attention: $(cat "$work/text-packed.txt")"
  ! grep -q "^attention:" "$work/fashion-bf16.txt" ||
    fail "a run with the default attention names it: $(cat "$work/fashion-bf16.txt")"
  # (every column but the last, the seconds)
  cut -d, -f1-8 "$work/text-bf16/metrics.csv" > "$work/text-bf16.losses"
  cut -d, -f1-8 "$work/text-packed/metrics.csv" > "$work/text-packed.losses"
  grep -q "train_loss" "$work/text-packed.losses" && [ "$(wc -l < "$work/text-packed.losses")" -ge 3 ] ||
    fail "no losses in $(cat "$work/text-packed/metrics.csv")"
  cmp "$work/text-bf16.losses" "$work/text-packed.losses" > /dev/null ||
    fail "weight_cache false changed the losses: $(diff "$work/text-bf16.losses" "$work/text-packed.losses")"
  # the report says what is not float32
  grep -q "^precision:  products in bf16 with f32 sums$" "$work/fashion-bf16.txt" ||
    fail "the BF16 run's report does not say so: $(cat "$work/fashion-bf16.txt")"
  ! grep -q "^precision:" "$work/fashion-f32.txt" ||
    fail "the FP32 run's report has a precision line: $(cat "$work/fashion-f32.txt")"
  grep -q '"compute_dtype":"bf16","frozen_dtype":"f32"' "$work/fashion-bf16/report.json" ||
    fail "report.json of the BF16 run: $(cat "$work/fashion-bf16/report.json")"
  grep -q '"compute_dtype":"f32","frozen_dtype":"f32"' "$work/fashion-f32/report.json" ||
    fail "report.json of the FP32 run: $(cat "$work/fashion-f32/report.json")"
  python3 - "$work" <<'P' || fail "a BF16 loss curve left FP32's"
import csv, sys
w = sys.argv[1]
def curve(path):
    rows = list(csv.DictReader(open(path)))
    return [(r["stage"], r["epoch"], float(r["train_loss"]), float(r["val_loss"] or "nan"))
            for r in rows]
for ex, tol, metrics in (("fashion", 0.02, "metrics.csv"), ("text", 0.01, "metrics.csv")):
    ref = curve(f"{w}/{ex}-f32/{metrics}")
    for run in ("bf16", "fallback"):
        got = curve(f"{w}/{ex}-{run}/{metrics}")
        assert len(got) == len(ref), (ex, run, len(got), len(ref))
        worst = 0.0
        for a, b in zip(ref, got):
            for i in (2, 3):
                if a[i] != a[i]:
                    continue
                d = abs(b[i] - a[i]) / abs(a[i])
                worst = max(worst, d)
                assert d <= tol, f"{ex} {run} stage {a[0]} epoch {a[1]}: fp32 {a[i]:.5f}, {run} {b[i]:.5f}"
        print(f"{ex:8s} {run:9s}: {len(got)} epochs, worst relative loss difference {worst:.5f} (tolerance {tol})")
P
  ;;
*) fail "unknown case $case_name" ;;
esac
echo "PASS: $case_name"
