/* SPDX-License-Identifier: MIT */
/* strop bench — conv2d forward+backward of the small CNN's two conv layers (batch 64:
 * conv 1->32 3x3 pad 1 on 28x28, conv 32->64 3x3 pad 1 on 14x14) against the bare
 * strop__sgemm calls of the same shapes: the "GEMM floor". Target: GEMM share >= 70%. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "ops/conv.h"
#include "ops/ops.h"
#include "benchutil.h"

static float *randbuf(size_t n, strop__rng *r) {
  float *p = strop__malloc_aligned(n * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = 2.0f * strop__rng_uniform(r) - 1.0f;
  return p;
}

typedef struct conv_case {
  const char *name;
  strop__conv2d_dims d;
  int need_dx; /* the first conv sees the model input: no input gradient */
} conv_case;

/* The GEMMs strop__conv2d_forward/backward issue, on the same shapes, without the lowering. */
static void gemm_floor(const strop__conv2d_dims *d, int need_dx, const float *w, const float *col,
                       const float *dy, float *y, float *dw, float *dcol) {
  const int64_t G = d->groups, cout_g = d->c_out / G, K = d->c_in / G * d->kh * d->kw;
  const int64_t P = d->oh * d->ow;
  for (int64_t n = 0; n < d->n; n++) {
    const float *dyn = dy + n * d->c_out * P;
    for (int64_t g = 0; g < G; g++)
      strop__sgemm(0, 0, cout_g, P, K, 1.0f, w + g * cout_g * K, K, col + g * K * P, P, 1.0f,
                   y + n * d->c_out * P + g * cout_g * P, P);
    for (int64_t g = 0; g < G; g++)
      strop__sgemm(0, 1, cout_g, K, P, 1.0f, dyn + g * cout_g * P, P, col + g * K * P, P, 1.0f,
                   dw + g * cout_g * K, K);
    if (need_dx)
      for (int64_t g = 0; g < G; g++)
        strop__sgemm(1, 0, K, P, cout_g, 1.0f, w + g * cout_g * K, K, dyn + g * cout_g * P, P,
                     0.0f, dcol + g * K * P, P);
  }
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int iters = argc > 1 ? atoi(argv[1]) : 20;
  if (iters < 3) iters = 3;
  conv_case cases[2] = {
      {"conv1 1->32 3x3 pad1 28x28", {64, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0}, 0},
      {"conv2 32->64 3x3 pad1 14x14", {64, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0}, 1},
  };
  strop__rng r;
  strop__rng_seed(&r, 1, 0);
  /* one thread: the kernels and the floor both run single-threaded BLAS on this thread */
  if (strop_set_num_threads(1) != STROP_OK) return 1;
  printf("bench_conv: batch 64, best of %d iterations, 1 thread\n", iters);
  double total_s = 0, total_g = 0;
  for (int c = 0; c < 2; c++) {
    strop__conv2d_dims *d = &cases[c].d;
    strop__conv2d_out_size(d);
    const int64_t K = d->c_in / d->groups * d->kh * d->kw, P = d->oh * d->ow;
    size_t nx = (size_t)(d->n * d->c_in * d->h * d->w), ny = (size_t)(d->n * d->c_out * P);
    size_t nw = (size_t)(d->c_out * K), ncol = (size_t)(d->c_in * d->kh * d->kw * P);
    float *x = randbuf(nx, &r), *w = randbuf(nw, &r), *b = randbuf((size_t)d->c_out, &r);
    float *dy = randbuf(ny, &r), *y = randbuf(ny, &r), *dx = randbuf(nx, &r);
    float *dw = randbuf(nw, &r), *db = randbuf((size_t)d->c_out, &r);
    float *scratch = randbuf(strop__conv2d_scratch_floats(d, 1, 1, NULL) +
                                 strop__conv2d_scratch_floats(d, 0, 1, NULL) + 1,
                             &r);
    float *col = randbuf(ncol, &r), *dcol = randbuf(ncol, &r);
    double *ts = malloc((size_t)iters * sizeof *ts), *tg = malloc((size_t)iters * sizeof *tg);
    for (int it = -2; it < iters; it++) { /* two warm-up rounds */
      double t0 = bench_now();
      strop__conv2d_forward(d, x, w, b, y, scratch, 1, NULL);
      strop__conv2d_backward(d, x, w, dy, cases[c].need_dx ? dx : NULL, dw, db, scratch, 1, NULL);
      double t1 = bench_now();
      gemm_floor(d, cases[c].need_dx, w, col, dy, y, dw, dcol);
      double t2 = bench_now();
      if (it >= 0) {
        ts[it] = t1 - t0;
        tg[it] = t2 - t1;
      }
    }
    qsort(ts, (size_t)iters, sizeof *ts, cmp_d);
    qsort(tg, (size_t)iters, sizeof *tg, cmp_d);
    /* the best run of each: the machine is shared, and contention only ever adds time */
    double s = ts[0], g = tg[0];
    double gflop = 2.0 * (double)d->n * (double)(d->c_out * K * P) * (cases[c].need_dx ? 3 : 2) *
                   1e-9;
    printf("%-30s strop fwd+bwd %8.3f ms (%6.1f GFLOP/s)  GEMM floor %8.3f ms  GEMM share %5.1f%%"
           "  (medians %.3f / %.3f ms)\n",
           cases[c].name, s * 1e3, gflop / s, g * 1e3, 100.0 * g / s, ts[iters / 2] * 1e3,
           tg[iters / 2] * 1e3);
    total_s += s;
    total_g += g;
    free(ts);
    free(tg);
    strop__free_aligned(x), strop__free_aligned(w), strop__free_aligned(b);
    strop__free_aligned(dy), strop__free_aligned(y), strop__free_aligned(dx);
    strop__free_aligned(dw), strop__free_aligned(db), strop__free_aligned(scratch);
    strop__free_aligned(col), strop__free_aligned(dcol);
  }
  printf(
      "%-30s strop fwd+bwd %8.3f ms                    GEMM floor %8.3f ms  GEMM share %5.1f%%\n",
      "both convs", total_s * 1e3, total_g * 1e3, 100.0 * total_g / total_s);
  return 0;
}
