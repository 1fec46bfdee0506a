/* SPDX-License-Identifier: MIT */
/* strop bench — depthwise conv2d (groups = channels) forward+backward at MobileNetV2's sizes
 * (batch 16, 224x224 input), strop's direct kernel against its grouped im2col + GEMM path;
 * bench/torch_depthwise.py times PyTorch on the same shapes. Usage: bench_depthwise [iters]
 * [threads]. */
#include <stdio.h>
#include <stdlib.h>

#include "benchutil.h"
#include "core/core.h"
#include "ops/conv.h"
#include "strop/strop.h"

static float *randbuf(size_t n, strop__rng *r) {
  float *p = strop__malloc_aligned(n * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = 2.0f * strop__rng_uniform(r) - 1.0f;
  return p;
}

/* the depthwise layers of MobileNetV2 at 224x224: channels, input size, stride */
static const int CASES[][3] = {{32, 112, 1}, {96, 112, 2}, {144, 56, 1},
                               {144, 56, 2}, {192, 28, 1}, {384, 14, 1},
                               {576, 14, 1}, {576, 14, 2}, {960, 7, 1}};

static double run(const strop__conv2d_dims *d, int iters, float *x, float *w, float *b, float *y,
                  float *dy, float *dx, float *dw, float *db) {
  const int chunks = strop__par_chunks(strop__num_threads(), d->n, 1);
  size_t sf = strop__conv2d_scratch_floats(d, 0, chunks, NULL);
  size_t sb = strop__conv2d_scratch_floats(d, 1, chunks, NULL);
  float *scratch = strop__malloc_aligned((sf > sb ? sf : sb) * sizeof(float));
  double best = 1e30;
  for (int it = 0; it < iters; it++) {
    double t0 = bench_now();
    strop__conv2d_forward(d, x, w, b, y, scratch, chunks, NULL);
    strop__conv2d_backward(d, x, w, dy, dx, dw, db, scratch, chunks, NULL);
    double t = bench_now() - t0;
    if (t < best) best = t;
  }
  strop__free_aligned(scratch);
  return best;
}

int main(int argc, char **argv) {
  int iters = argc > 1 ? atoi(argv[1]) : 5, threads = argc > 2 ? atoi(argv[2]) : 1;
  if (iters < 1) iters = 1;
  if (strop_set_num_threads(threads) != STROP_OK) return 1;
  strop__rng r;
  strop__rng_seed(&r, 1, 0);
  double tot_direct = 0, tot_gemm = 0;
  printf("depthwise conv2d 3x3 pad 1, batch 16, forward+backward, %d thread(s), best of %d\n",
         threads, iters);
  printf("%-22s %12s %12s\n", "layer", "direct ms", "gemm ms");
  for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
    const int64_t c = CASES[k][0], hw = CASES[k][1], s = CASES[k][2];
    strop__conv2d_dims d = {16, c, hw, hw, c, 3, 3, s, s, 1, 1, 1, 1, c, 0, 0, 0};
    strop__conv2d_out_size(&d);
    const size_t nx = (size_t)(d.n * c * hw * hw), ny = (size_t)(d.n * c * d.oh * d.ow);
    float *x = randbuf(nx, &r), *w = randbuf((size_t)c * 9, &r), *b = randbuf((size_t)c, &r);
    float *y = randbuf(ny, &r), *dy = randbuf(ny, &r), *dx = randbuf(nx, &r);
    float *dw = randbuf((size_t)c * 9, &r), *db = randbuf((size_t)c, &r);
    strop__conv_depthwise_direct = 1;
    double a = run(&d, iters, x, w, b, y, dy, dx, dw, db);
    strop__conv_depthwise_direct = 0;
    double g = run(&d, iters, x, w, b, y, dy, dx, dw, db);
    tot_direct += a;
    tot_gemm += g;
    char name[64];
    snprintf(name, sizeof name, "%lldx%lld s%lld c%lld", (long long)hw, (long long)hw,
             (long long)s, (long long)c);
    printf("%-22s %12.2f %12.2f\n", name, a * 1e3, g * 1e3);
    strop__free_aligned(x), strop__free_aligned(w), strop__free_aligned(b);
    strop__free_aligned(y), strop__free_aligned(dy), strop__free_aligned(dx);
    strop__free_aligned(dw), strop__free_aligned(db);
  }
  printf("%-22s %12.2f %12.2f\n", "total", tot_direct * 1e3, tot_gemm * 1e3);
  return 0;
}
