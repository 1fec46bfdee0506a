/* SPDX-License-Identifier: MIT */
/* strop bench — conv2d forward+backward of the small CNN's two conv layers (batch 64:
 * conv 1->32 3x3 pad 1 on 28x28, conv 32->64 3x3 pad 1 on 14x14) against the bare
 * strop__sgemm calls of the same shapes: the "GEMM floor". Target: GEMM share >= 70%.
 * `bench_conv resnet [threads] [iters] [batch]`: ResNet-18's 3x3 stride-1 convs at 224x224
 * (64 to 512 channels, 56x56 to 7x7), the forward lowered (im2col + GEMM) against Winograd
 * F(2x2, 3x3) and F(4x4, 3x3), the three run alternately in one process (best of iters each,
 * ratios), the same for the backward (dx dW db; dx and dW by Winograd where the forward is),
 * and each forward's and weight gradient's largest error against a double reference over two
 * images; iters 0: one run of each, no reference, and a 5th argument 0, 2 or 4 runs that one
 * alone (for valgrind --tool=callgrind). */
#include <math.h>
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

/* y = conv3x3(x, w) + b over the first `n` images, in double */
static void ref3x3(const strop__conv2d_dims *d, int64_t n, const float *x, const float *w,
                   const float *b, double *y) {
  const int64_t H = d->h, W = d->w, OH = d->oh, OW = d->ow;
  for (int64_t i = 0; i < n * d->c_out * OH * OW; i++) y[i] = b[(i / (OH * OW)) % d->c_out];
  for (int64_t im = 0; im < n; im++)
    for (int64_t o = 0; o < d->c_out; o++)
      for (int64_t c = 0; c < d->c_in; c++)
        for (int64_t ki = 0; ki < 3; ki++)
          for (int64_t kj = 0; kj < 3; kj++) {
            const double wv = w[((o * d->c_in + c) * 3 + ki) * 3 + kj];
            double *yo = y + (im * d->c_out + o) * OH * OW;
            const float *xc = x + (im * d->c_in + c) * H * W;
            for (int64_t oy = 0; oy < OH; oy++) {
              const int64_t yy = oy + ki - d->ph;
              if (yy < 0 || yy >= H) continue;
              for (int64_t ox = 0; ox < OW; ox++) {
                const int64_t xx = ox + kj - d->pw;
                if (xx >= 0 && xx < W) yo[oy * OW + ox] += wv * xc[yy * W + xx];
              }
            }
          }
}

/* dw = the weight gradient of a 3x3 conv over the first n images of x and dy, in double */
static void ref3x3_dw(const strop__conv2d_dims *d, int64_t n, const float *x, const float *dy,
                      double *dw) {
  const int64_t H = d->h, W = d->w, OH = d->oh, OW = d->ow;
  for (int64_t i = 0; i < d->c_out * d->c_in * 9; i++) dw[i] = 0;
  for (int64_t im = 0; im < n; im++)
    for (int64_t o = 0; o < d->c_out; o++)
      for (int64_t c = 0; c < d->c_in; c++)
        for (int64_t ki = 0; ki < 3; ki++)
          for (int64_t kj = 0; kj < 3; kj++) {
            const float *g = dy + (im * d->c_out + o) * OH * OW;
            const float *xc = x + (im * d->c_in + c) * H * W;
            double s = 0;
            for (int64_t oy = 0; oy < OH; oy++) {
              const int64_t yy = oy + ki - d->ph;
              if (yy < 0 || yy >= H) continue;
              for (int64_t ox = 0; ox < OW; ox++) {
                const int64_t xx = ox + kj - d->pw;
                if (xx >= 0 && xx < W) s += (double)g[oy * OW + ox] * xc[yy * W + xx];
              }
            }
            dw[((o * d->c_in + c) * 3 + ki) * 3 + kj] += s;
          }
}

static int resnet(int threads, int iters, int64_t batch, int only) {
  static const struct {
    int64_t c, hw, count;
  } shapes[] = {{64, 56, 4}, {128, 28, 3}, {256, 14, 3}, {512, 7, 3}};
  static const int modes[3] = {0, 2, 4};
  strop__rng r;
  strop__rng_seed(&r, 1, 0);
  if (strop_set_num_threads(threads) != STROP_OK) return 1;
  printf("bench_conv resnet: ResNet-18's 3x3 stride-1 convs, batch %lld, %d thread(s), best of "
         "%d, forward only\n",
         (long long)batch, threads, iters);
  printf("%-22s %10s %10s %10s %8s %8s %10s %10s %10s\n", "shape", "lowered_ms", "F2_ms", "F4_ms",
         "F2_x", "F4_x", "err_low", "err_F2", "err_F4");
  printf("%-22s (backward: dx dW db; its err_*: dW's largest error / max |dW|)\n", "");
  double tot[3] = {0, 0, 0}, totb[3] = {0, 0, 0};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    const int64_t C = shapes[k].c, S = shapes[k].hw;
    strop__conv2d_dims d = {batch, C, S, S, C, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
    strop__conv2d_out_size(&d);
    const int chunks = strop__par_chunks(threads, d.n, 1);
    size_t nx = (size_t)(d.n * C * S * S), nw = (size_t)(C * C * 9);
    float *x = randbuf(nx, &r), *w = randbuf(nw, &r), *b = randbuf((size_t)C, &r);
    for (size_t i = 0; i < nw; i++) w[i] *= 1.0f / 24; /* about PyTorch's init: |y| ~ |x| */
    float *y[3];
    size_t sf = 0;
    for (int v = 0; v < 3; v++) {
      strop__conv_winograd = modes[v];
      size_t f = strop__conv2d_scratch_floats(&d, 0, chunks, NULL);
      size_t fb = strop__conv2d_scratch_floats(&d, 1, chunks, NULL);
      if (f > sf) sf = f;
      if (fb > sf) sf = fb;
      y[v] = randbuf(nx, &r);
    }
    float *scratch = randbuf(sf, &r), *dx = randbuf(nx, &r), *dw = randbuf(nw, &r);
    float *db = randbuf((size_t)C, &r);
    double best[3] = {1e30, 1e30, 1e30}, bestb[3] = {1e30, 1e30, 1e30};
    for (int it = iters ? -1 : 0; it < (iters ? iters : 1); it++)
      for (int v = 0; v < 3; v++) { /* alternating, so the load the machine has hits all three */
        if (only >= 0 && modes[v] != only) continue;
        strop__conv_winograd = modes[v];
        double t0 = bench_now();
        strop__conv2d_forward(&d, x, w, b, y[v], scratch, chunks, NULL);
        double t1 = bench_now();
        /* the backward of a conv inside the trunk: dx, dW and db (dx by Winograd with v) */
        strop__conv2d_backward(&d, x, w, y[v], dx, dw, db, scratch, chunks, NULL);
        double t2 = bench_now();
        if (it >= 0 && t1 - t0 < best[v]) best[v] = t1 - t0;
        if (it >= 0 && t2 - t1 < bestb[v]) bestb[v] = t2 - t1;
      }
    const int64_t nref = !iters ? 0 : batch < 2 ? batch : 2, ny = nref * C * S * S;
    double *ref = malloc(sizeof(double) * (size_t)(ny + 1)), err[3], ymax = 0;
    ref3x3(&d, nref, x, w, b, ref);
    for (int64_t i = 0; i < ny; i++) ymax = ymax > fabs(ref[i]) ? ymax : fabs(ref[i]);
    for (int v = 0; v < 3; v++) {
      err[v] = 0;
      for (int64_t i = 0; i < ny; i++) {
        const double e = fabs(y[v][i] - ref[i]);
        err[v] = e > err[v] ? e : err[v];
      }
      tot[v] += best[v] * (double)shapes[k].count;
      totb[v] += bestb[v] * (double)shapes[k].count;
    }
    char name[64];
    snprintf(name, sizeof name, "%lld->%lld %lldx%lld (x%lld)", (long long)C, (long long)C,
             (long long)S, (long long)S, (long long)shapes[k].count);
    printf("%-22s %10.2f %10.2f %10.2f %8.2f %8.2f %10.2e %10.2e %10.2e  (|y| max %.2f)\n", name,
           best[0] * 1e3, best[1] * 1e3, best[2] * 1e3, best[0] / best[1], best[0] / best[2],
           err[0], err[1], err[2], ymax);
    /* the weight gradient of the first nref images against double, each mode on its own */
    double derr[3] = {0, 0, 0};
    if (nref) {
      strop__conv2d_dims d2 = d;
      d2.n = nref;
      const int64_t nw9 = C * C * 9;
      double *dref = malloc(sizeof(double) * (size_t)nw9), dmax = 0;
      ref3x3_dw(&d2, nref, x, y[0], dref);
      for (int64_t i = 0; i < nw9; i++) dmax = dmax > fabs(dref[i]) ? dmax : fabs(dref[i]);
      const int c2 = strop__par_chunks(threads, d2.n, 1);
      for (int v = 0; v < 3; v++) {
        strop__conv_winograd = modes[v];
        memset(dw, 0, sizeof(float) * nw);
        strop__conv2d_backward(&d2, x, w, y[0], NULL, dw, NULL, scratch, c2, NULL);
        for (int64_t i = 0; i < nw9; i++) {
          const double e = fabs(dw[i] - dref[i]) / dmax;
          derr[v] = e > derr[v] ? e : derr[v];
        }
      }
      free(dref);
    }
    printf("%-22s %10.2f %10.2f %10.2f %8.2f %8.2f %10.2e %10.2e %10.2e\n", "  backward",
           bestb[0] * 1e3, bestb[1] * 1e3, bestb[2] * 1e3, bestb[0] / bestb[1],
           bestb[0] / bestb[2], derr[0], derr[1], derr[2]);
    free(ref);
    strop__free_aligned(x), strop__free_aligned(w), strop__free_aligned(b);
    for (int v = 0; v < 3; v++) strop__free_aligned(y[v]);
    strop__free_aligned(scratch), strop__free_aligned(dx), strop__free_aligned(dw);
    strop__free_aligned(db);
  }
  strop__conv_winograd = -1;
  printf("%-22s %10.2f %10.2f %10.2f %8.2f %8.2f\n", "all 13 (weighted)", tot[0] * 1e3,
         tot[1] * 1e3, tot[2] * 1e3, tot[0] / tot[1], tot[0] / tot[2]);
  printf("%-22s %10.2f %10.2f %10.2f %8.2f %8.2f\n", "  backward", totb[0] * 1e3, totb[1] * 1e3,
         totb[2] * 1e3, totb[0] / totb[1], totb[0] / totb[2]);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "resnet"))
    return resnet(argc > 2 ? atoi(argv[2]) : 1, argc > 3 ? atoi(argv[3]) : 3,
                  argc > 4 ? atoll(argv[4]) : 16, argc > 5 ? atoi(argv[5]) : -1);
  int iters = argc > 1 ? atoi(argv[1]) : 20;
  if (iters < 3) iters = 3;
  conv_case cases[2] = {
      {"conv1 1->32 3x3 pad1 28x28", {64, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0}, 0},
      {"conv2 32->64 3x3 pad1 14x14",
       {64, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
       1},
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
