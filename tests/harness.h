/* SPDX-License-Identifier: MIT */
/* strop tests — numeric harness for layers: finite-difference gradient checks and PyTorch
 * parity through committed safetensors fixtures. Used by every layer family's suite. */
#ifndef STROP_HARNESS_H
#define STROP_HARNESS_H

#include <stdint.h>

#include "strop/model.h"

typedef struct strop_test_gc_opts {
  double eps;      /* central-difference step (default 1e-3; computed in float32) */
  double tol;      /* max relative error allowed (default 2e-2; floor 1e-3 on |g|) */
  int check_input; /* 1: also check d loss / d input (default 1) */
  int int_inputs; /* 1: inputs are integers in [0, int_max) (token ids); implies no input check */
  int64_t int_max;
  float input_scale;  /* inputs ~ U(-scale, scale) (default 1) */
  int max_per_tensor; /* entries checked per tensor, sampled (default 48) */
  const float *mask;  /* the batch's padding mask [batch, T], or NULL (default) */
  const float *types; /* the batch's token types [batch, T], or NULL (default) */
} strop_test_gc_opts;

void strop_test_gc_defaults(strop_test_gc_opts *o);

/* Finite-difference check of every trainable parameter's gradient (and the input's) on a
 * finalized model in train mode, with loss = sum(out .* R) for a fixed random R. The
 * model's RNG is restored before every forward, so dropout masks repeat. Fails the running
 * Check test (ck_assert) when the worst relative error exceeds opts->tol; returns it. */
double strop_test_gradcheck(strop_model *m, int64_t batch, uint64_t seed,
                            const strop_test_gc_opts *opts);

/* PyTorch parity. The fixture (safetensors) holds "input", "output", "dout" (the upstream
 * gradient), "grad.input" (optional), every parameter/buffer by its PyTorch name, and
 * "grad.<param name>" for each parameter; metadata "training" = "1" or "0". Loads the
 * parameters into m, runs forward in that mode, compares the output, runs backward with dout
 * and compares the gradients; relative tolerance tol with a floor of 1e-4 on |reference|.
 * Fails the running test on mismatch; returns the worst relative error. */
double strop_test_parity(strop_model *m, const char *fixture_path, double tol);

#endif
