#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop bench — data-parallel scaling (issue 22): the Fashion base CNN, one epoch fine-tuned
# (full, and head only) on 1 and 2 MPI ranks of this machine, the gradients summed after the
# backward (blocking) or during it (overlap); docs/scaling.md reads the lines.
# Usage: bench/dist_scaling.sh [MPI_BUILD_DIR=build-mpi] [SAMPLES=4096] [BATCH=64]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-build-mpi}
samples=${2:-4096}
batch=${3:-64}
exe="$build/bench/dist_scaling"
[ -x "$exe" ] || { echo "dist_scaling: build it first: cmake -S . -B $build -DSTROP_WITH_MPI=ON && cmake --build $build --target dist_scaling" >&2; exit 1; }
for mode in full head; do
  for n in 1 2; do
    for comm in blocking overlap; do
      [ "$n" = 1 ] && [ "$comm" = overlap ] && continue # one rank sends nothing
      OPENBLAS_NUM_THREADS=1 mpirun --oversubscribe --allow-run-as-root -np "$n" "$exe" \
        "$root/examples/fashion/base.yaml" "$samples" "$batch" "$mode" "$comm"
    done
  done
done
