#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop test — strop_model_step_memory and strop_model_memory_estimate against the peak RSS a
real training step reaches (issue 21): models of the issue's shapes at reduced depth, each run in
a child process (bench/bench_big, AdamW), whose peak RSS during the steps (VmHWM) minus the
process's RSS before the model was loaded (the baseline: code, C library, OpenBLAS as loaded)
must be within 10% of the prediction strop_model_step_memory made before the first step, and of
the sum of strop_model_memory_estimate's four figures (weights, gradients, optimizer state,
activations) for the model's input shape (bench_big declares a language model for the steps'
length).

    rss.py BENCH_BIG OUT_DIR

Rows: GPT-2-small width with 2 layers (4 x 128, full), BERT-base width with 2 layers (8 x 128,
full), ResNet-50 at 112 x 112 (batch 8, full and frozen trunk), the GPT-2 and ResNet-50 full
rows again with activation checkpointing ("auto": bench_big's CKPT=auto), the GPT-2 LoRA row with the
frozen base borrowed from the mapped file (in FP32, and computing in BF16, where its peak must
stay under the FP32 row's: the BF16 copies stand in for the file's pages), GPT-2 full computing
in BF16 with the trained weights' copies kept and packed per product (WEIGHT_CACHE=0: under the
kept row's peak), and the TinyLlama shape with 2 layers (1 x 64, LoRA
on q/v, the BF16 base borrowed, then an int8 base: the gated MLPs' weights held as the rest).
The peak is the steps' own: bench_big resets VmHWM after the load, the LoRA surgery and the
planning, whose peaks are not the step's. The setup's own peak (load, LoRA surgery, planning)
of the LoRA rows must not pass the steps' by more than 10%: the surgery's clone shares the frozen
base instead of copying it (the int8 row's setup was 20% over its steps when it copied). (5%
until the int8 base ran on vdpbf16ps: its steps no longer widen weights into scratch, so the
load's own staging, unchanged at 464 MB, now stands 5.8% over the 439 MB steps.) The
checkpoints are random weights written by bench/torch_big.py (kept in OUT_DIR for the next run).
Exits 77 (skipped) without torch."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "..", "bench")
TOLERANCE = 0.10
SETUP_OVER_STEPS = 0.10


def field(line, key):
    for tok in line.split():
        if tok.startswith(key + "="):
            return tok.split("=", 1)[1]
    raise KeyError(key)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    bench, out = sys.argv[1], sys.argv[2]
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        print("rss.py: torch or torchvision missing: skipped")
        return 77
    os.makedirs(out, exist_ok=True)
    for fam in ("gpt2", "bert", "resnet50", "tinyllama"):
        d = os.path.join(out, fam)
        if not os.path.exists(os.path.join(d, "model.safetensors")):
            subprocess.run([sys.executable, os.path.join(BENCH, "torch_big.py"), "write", fam, d,
                            "2"], check=True)
    # (row, environment, asserted)
    # the frozen trunk's step holds the copies of the convolutions' weights that its frozen
    # BatchNorms fold into (kept with the model), which the prediction counts
    # the frozen trunk also at 224^2 on 2 threads, FP32 and BF16: there the convs' scratch,
    # planned among dead tensors, made the step's peak bend away from the line through the
    # estimate's probes at 2 and 4 images (11-12% under before the probes left it out)
    rows = [("gpt2_full", {}, 1), ("bert_full", {}, 1), ("resnet50_full", {"SIZE": "112"}, 1),
            ("resnet50_frozen", {"SIZE": "112"}, 1), ("gpt2_lora", {}, 1),
            ("tinyllama_lora", {"FROZEN_DTYPE": "bf16", "TOKENS": "64"}, 1),
            ("tinyllama_lora", {"FROZEN_DTYPE": "int8", "TOKENS": "64"}, 1),
            ("resnet50_frozen", {"SIZE": "224", "THREADS": "2"}, 1),
            ("resnet50_frozen", {"SIZE": "224", "THREADS": "2", "COMPUTE_DTYPE": "bf16"}, 1),
            ("gpt2_full", {"CKPT": "auto"}, 1), ("resnet50_full", {"SIZE": "112", "CKPT": "auto"}, 1),
            ("gpt2_lora", {"COMPUTE_DTYPE": "bf16"}, 1),
            ("gpt2_full", {"COMPUTE_DTYPE": "bf16"}, 1),
            ("gpt2_full", {"COMPUTE_DTYPE": "bf16", "WEIGHT_CACHE": "0"}, 1)]
    bad = 0
    measured_of = {}
    for row, env, asserted in rows:
        env = dict(env)
        threads = env.pop("THREADS", "1")
        e = dict(os.environ, OPENBLAS_NUM_THREADS="1", **env)
        r = subprocess.run([bench, row, os.path.join(out, row.split("_")[0]), threads, "2", "1"],
                           env=e, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{row}: bench_big failed ({r.returncode}): {r.stderr.strip()}")
            bad += 1
            continue
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")][0]
        base = int(field(line, "rss_start_kb"))
        peak = int(field(line, "peak_rss_kb"))
        planned = int(field(line, "planned_peak_kb"))
        estimate = int(field(line, "estimate_peak_kb"))
        measured = peak - base
        err = (planned - measured) / measured
        est_err = (estimate - measured) / measured
        ok = abs(err) <= TOLERANCE and abs(est_err) <= TOLERANCE
        setup = int(field(line, "peak_setup_kb"))
        setup_over = (setup - peak) / peak
        setup_ok = "_lora" not in row or setup_over <= SETUP_OVER_STEPS
        bad += asserted and not (ok and setup_ok)
        row_name = row + ("/" + env["FROZEN_DTYPE"] if "FROZEN_DTYPE" in env else "")
        row_name += ("/" + env["SIZE"] if env.get("SIZE") == "224" else "") + \
            ("/t" + threads if threads != "1" else "") + \
            ("/bf16" if env.get("COMPUTE_DTYPE") == "bf16" else "") + \
            ("/ckpt" if env.get("CKPT") else "") + \
            ("/packed" if env.get("WEIGHT_CACHE") == "0" else "")
        measured_of[row_name] = measured
        print(f"{row_name:21s} baseline {base / 1024:7.1f} MB  peak {peak / 1024:7.1f} MB  "
              f"measured {measured / 1024:7.1f} MB  predicted {planned / 1024:7.1f} MB  "
              f"error {err * 100:+5.1f}%  estimate {estimate / 1024:7.1f} MB "
              f"({est_err * 100:+5.1f}%)  setup {setup / 1024:7.1f} MB ({setup_over * 100:+5.1f}%)"
              f"  {'ok' if ok else 'OVER 10%'}{'' if setup_ok else ', SETUP OVER THE STEPS'}"
              f"{'' if asserted else ' (known, not asserted)'}")
    # computing in BF16, the LoRA row's frozen FP32 base is read through its BF16 copy, which
    # stands in for the mapped file's pages (handed back): under the FP32 row's peak, where it
    # held both (1010 MB against 752 at full size before)
    if "gpt2_lora" in measured_of and "gpt2_lora/bf16" in measured_of:
        f32, b16 = measured_of["gpt2_lora"], measured_of["gpt2_lora/bf16"]
        print(f"gpt2_lora: BF16 {b16 / 1024:.1f} MB against FP32 {f32 / 1024:.1f} MB"
              f"{'' if b16 < f32 else ': NOT UNDER'}")
        bad += b16 >= f32
    # the trained weights' BF16 copies packed per product instead of kept (WEIGHT_CACHE=0,
    # strop_model_set_weight_cache): their 2 bytes per weight out of the peak, predicted too
    if "gpt2_full/bf16" in measured_of and "gpt2_full/bf16/packed" in measured_of:
        kept, packed = measured_of["gpt2_full/bf16"], measured_of["gpt2_full/bf16/packed"]
        print(f"gpt2_full/bf16: packed per call {packed / 1024:.1f} MB against kept "
              f"{kept / 1024:.1f} MB{'' if packed < kept else ': NOT UNDER'}")
        bad += packed >= kept
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
