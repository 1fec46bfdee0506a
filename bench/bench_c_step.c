/* SPDX-License-Identifier: MIT */
/* strop bench — the C side of bench_python_overhead.py: the small CNN (conv 32, conv 64, each
 * with ReLU and 2x2 max-pool, linear 3136->128->10), batch 64, Adam, trained with
 * strop_trainer_step() on wrapped buffers, as a host program would. Prints the median and
 * best step time. Usage: bench_c_step [steps] [warmup] */
#ifndef _POSIX_C_SOURCE
#  define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <strop/strop.h>

#define BATCH 64

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != STROP_OK) {                                               \
      fprintf(stderr, "bench_c_step: %s: %s\n", #call, strop_last_error()); \
      return 1;                                                             \
    }                                                                       \
  } while (0)

int main(int argc, char **argv) {
  int steps = argc > 1 ? atoi(argv[1]) : 30, warm = argc > 2 ? atoi(argv[2]) : 5;
  if (steps < 1) steps = 1;
  int64_t in[3] = {1, 28, 28};
  strop_model *m = NULL;
  CHECK(strop_model_create(3, in, &m));
  CHECK(strop_model_add(m, "c1", "conv2d",
                        "in_channels=1 out_channels=32 kernel_size=3 padding=1", NULL));
  CHECK(strop_model_add(m, "r1", "relu", NULL, NULL));
  CHECK(strop_model_add(m, "p1", "maxpool2d", "kernel_size=2", NULL));
  CHECK(strop_model_add(m, "c2", "conv2d",
                        "in_channels=32 out_channels=64 kernel_size=3 padding=1", NULL));
  CHECK(strop_model_add(m, "r2", "relu", NULL, NULL));
  CHECK(strop_model_add(m, "p2", "maxpool2d", "kernel_size=2", NULL));
  CHECK(strop_model_add(m, "flat", "flatten", NULL, NULL));
  CHECK(strop_model_add(m, "fc1", "linear", "in_features=3136 out_features=128", NULL));
  CHECK(strop_model_add(m, "r3", "relu", NULL, NULL));
  CHECK(strop_model_add(m, "fc2", "linear", "in_features=128 out_features=10", NULL));
  CHECK(strop_model_finalize(m, 1));
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  CHECK(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt));
  CHECK(strop_optimizer_set_float(opt, STROP_OPT_LR, 1e-3f));
  CHECK(strop_trainer_create(m, opt, &tr));
  float *x = malloc(sizeof(float) * BATCH * 784), *y = malloc(sizeof(float) * BATCH);
  if (!x || !y) return 1;
  strop_rng *rng = NULL;
  CHECK(strop_rng_create(0, &rng));
  CHECK(strop_rng_uniform(rng, 0.0f, 1.0f, x, BATCH * 784));
  for (int i = 0; i < BATCH; i++) y[i] = (float)(i % 10);
  double *t = malloc(sizeof(double) * (size_t)steps);
  int64_t xd[4] = {BATCH, 1, 28, 28}, yd[1] = {BATCH};
  float loss = 0;
  for (int s = -warm; s < steps; s++) {
    double t0 = now();
    strop_tensor *tx = NULL,
                 *ty = NULL; /* the host wraps its buffers each step, as Python does */
    CHECK(strop_tensor_wrap(x, BATCH * 784, 4, xd, &tx));
    CHECK(strop_tensor_wrap(y, BATCH, 1, yd, &ty));
    CHECK(strop_trainer_step(tr, tx, ty, &loss));
    strop_tensor_free(tx);
    strop_tensor_free(ty);
    if (s >= 0) t[s] = now() - t0;
  }
  qsort(t, (size_t)steps, sizeof *t, cmp_d);
  double sum = 0;
  for (int s = 0; s < steps; s++) sum += t[s];
  printf("c_step: steps %d median_ms %.4f min_ms %.4f mean_ms %.4f loss %.4f\n", steps,
         1e3 * t[steps / 2], 1e3 * t[0], 1e3 * sum / steps, loss);
  free(t);
  free(x);
  free(y);
  strop_rng_free(rng);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  return 0;
}
