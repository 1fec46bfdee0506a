/* SPDX-License-Identifier: MIT */
/* strop bench — ResNet-50's convolutions (224 x 224, batch 8 by default) in BF16 on vdpbf16ps,
 * layer shape by layer shape: the forward with its columns packed straight from the images
 * (strop__conv_bf16_direct 1) and written by im2col first (0), the backward, and the bare
 * product (the weight packed once, the columns' panels left as they are: the tile's own rate
 * on the shape), and the input gradient alone as the forward of dy (strop__conv_bf16_dx 1:
 * stride 1) and through FP32 columns and col2im (0). The variants alternate in one process, best of `iters` by the thread's CPU
 * time (the machine is shared: compare the columns of one run, not runs). Per shape and summed
 * over the network (each shape times its count): GFLOP/s, and the bare product's share.
 *
 *   bench_bf16conv [iters] [batch] [threads]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "core/core.h"
#include "ops/bf16gemm.h"
#include "ops/conv.h"
#include "ops/lowp.h"

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct shape {
  const char *name;
  int64_t ci, h, co, k, s, count;
} shape;

/* torchvision's ResNet-50 (v1.5: the stride on the 3x3), its convolutions by shape */
static const shape SH[] = {
    {"stem 7x7 s2", 3, 224, 64, 7, 2, 1},        {"l1 1x1 64-64", 64, 56, 64, 1, 1, 1},
    {"l1 1x1 256-64", 256, 56, 64, 1, 1, 2},     {"l1 3x3 64", 64, 56, 64, 3, 1, 3},
    {"l1 1x1 64-256", 64, 56, 256, 1, 1, 4},     {"l2 1x1 256-128", 256, 56, 128, 1, 1, 1},
    {"l2 3x3 s2 128", 128, 56, 128, 3, 2, 1},    {"l2 1x1 s2 256-512", 256, 56, 512, 1, 2, 1},
    {"l2 1x1 512-128", 512, 28, 128, 1, 1, 3},   {"l2 3x3 128", 128, 28, 128, 3, 1, 3},
    {"l2 1x1 128-512", 128, 28, 512, 1, 1, 4},   {"l3 1x1 512-256", 512, 28, 256, 1, 1, 1},
    {"l3 3x3 s2 256", 256, 28, 256, 3, 2, 1},    {"l3 1x1 s2 512-1024", 512, 28, 1024, 1, 2, 1},
    {"l3 1x1 1024-256", 1024, 14, 256, 1, 1, 5}, {"l3 3x3 256", 256, 14, 256, 3, 1, 5},
    {"l3 1x1 256-1024", 256, 14, 1024, 1, 1, 6}, {"l4 1x1 1024-512", 1024, 14, 512, 1, 1, 1},
    {"l4 3x3 s2 512", 512, 14, 512, 3, 2, 1},    {"l4 1x1 s2 1024-2048", 1024, 14, 2048, 1, 2, 1},
    {"l4 1x1 2048-512", 2048, 7, 512, 1, 1, 2},  {"l4 3x3 512", 512, 7, 512, 3, 1, 2},
    {"l4 1x1 512-2048", 512, 7, 2048, 1, 1, 3},
};
enum { NSH = sizeof SH / sizeof SH[0], V = 7 };

/* the bare product's packer: the panel is left as it is */
static void no_pack(const void *ctx, int64_t j0, uint32_t *p) { (void)ctx, (void)j0, (void)p; }

int main(int argc, char **argv) {
  const int iters = argc > 1 ? atoi(argv[1]) : 3;
  const int64_t batch = argc > 2 ? atoll(argv[2]) : 8;
  const int threads = argc > 3 ? atoi(argv[3]) : 1;
  if (!strop__bf16_dot_enabled()) {
    fprintf(stderr, "bench_bf16conv: no vdpbf16ps here\n");
    return 0;
  }
  bench_must(strop_set_num_threads(threads), "threads");
  strop__rng rng;
  strop__rng_seed(&rng, 5, 0);
  static const char *const vn[V] = {"fwd",     "fwd_im2col", "bare",     "bwd",
                                    "bwd_old", "dx",         "dx_col2im"};
  double tot[V] = {0}, flops_all = 0;
  printf("%-20s %5s %6s %7s  GFLOP/s: %7s %10s %7s %7s %7s %7s %9s  bare/fwd\n", "shape", "K",
         "CO", "L", vn[0], vn[1], vn[2], vn[3], vn[4], vn[5], vn[6]);
  for (int i = 0; i < NSH; i++) {
    const shape *s = &SH[i];
    strop__conv2d_dims d;
    memset(&d, 0, sizeof d);
    d.n = batch, d.c_in = s->ci, d.h = d.w = s->h, d.c_out = s->co, d.kh = d.kw = s->k;
    d.sh = d.sw = s->s, d.ph = d.pw = s->k / 2, d.dh = d.dw = 1, d.groups = 1, d.bf16 = 1;
    strop__conv2d_out_size(&d);
    const int64_t K = s->ci * s->k * s->k, P = d.oh * d.ow, CO = s->co;
    const size_t nx = (size_t)(batch * s->ci * s->h * s->h), nw = (size_t)(CO * K);
    const size_t ny = (size_t)(batch * CO * P);
    float *x = strop__malloc_aligned(nx * 4), *w = strop__malloc_aligned(nw * 4);
    float *y = strop__malloc_aligned(ny * 4), *dy = strop__malloc_aligned(ny * 4);
    float *dx = strop__malloc_aligned(nx * 4), *dw = strop__malloc_aligned(nw * 4);
    for (size_t t = 0; t < nx; t++) x[t] = strop__rng_uniform(&rng) - 0.5f;
    for (size_t t = 0; t < nw; t++) w[t] = strop__rng_uniform(&rng) - 0.5f;
    for (size_t t = 0; t < ny; t++) dy[t] = strop__rng_uniform(&rng) - 0.5f;
    const int chunks = threads < batch ? threads : (int)batch;
    size_t fl = strop__conv2d_scratch_floats(&d, 0, chunks, NULL);
    const size_t fb = strop__conv2d_scratch_floats(&d, 1, chunks, NULL);
    if (fb > fl) fl = fb;
    strop__conv_bf16_direct = 0; /* the old layout needs the most */
    if (strop__conv2d_scratch_floats(&d, 0, chunks, NULL) > fl)
      fl = strop__conv2d_scratch_floats(&d, 0, chunks, NULL);
    if (strop__conv2d_scratch_floats(&d, 1, chunks, NULL) > fl)
      fl = strop__conv2d_scratch_floats(&d, 1, chunks, NULL);
    strop__conv_bf16_direct = 1, strop__conv_bf16_dx = 0; /* dx through col2im */
    if (strop__conv2d_scratch_floats(&d, 1, chunks, NULL) > fl)
      fl = strop__conv2d_scratch_floats(&d, 1, chunks, NULL);
    strop__conv_bf16_dx = 1;
    float *scratch = strop__malloc_aligned(fl * 4);
    /* the bare product: the conv's blocks (bf16_block: at least 512 columns) */
    int64_t nb = (512 + P - 1) / P;
    if (nb > batch) nb = batch;
    uint32_t *ap = strop__malloc_aligned(strop__bf16_pack_a_bytes(CO, K) + 64);
    void *work = strop__malloc_aligned(strop__bf16_gemm_f32_scratch(CO, nb * P, K));
    float *c = strop__malloc_aligned((size_t)(CO * nb * P) * 4);
    memset(work, 0, strop__bf16_gemm_f32_scratch(CO, nb * P, K));
    double best[V];
    for (int v = 0; v < V; v++) best[v] = 1e30;
    for (int it = 0; it < iters; it++)
      for (int v = 0; v < V; v++) {
        const double t0 = cpu_now();
        if (v <= 1) {
          strop__conv_bf16_direct = v == 0;
          strop__conv2d_forward(&d, x, w, NULL, y, scratch, chunks, NULL);
        } else if (v == 2) {
          strop__bf16_pack_a(0, CO, K, w, K, ap);
          for (int64_t n0 = 0; n0 < batch; n0 += nb) {
            const int64_t L = (batch - n0 < nb ? batch - n0 : nb) * P;
            strop__bf16_gemm_f32_packed(CO, L, K, ap, NULL, 0, no_pack, NULL, 0.0f, c, L, NULL,
                                        work);
          }
        } else if (v <= 4) {
          strop__conv_bf16_direct = v == 3;
          strop__conv2d_backward_assign(&d, x, w, dy, dx, dw, NULL, scratch, chunks, NULL);
        } else { /* the input gradient alone: as a forward of dy (stride 1), through col2im */
          strop__conv_bf16_direct = 1, strop__conv_bf16_dx = v == 5;
          strop__conv2d_backward_assign(&d, x, w, dy, dx, NULL, NULL, scratch, chunks, NULL);
          strop__conv_bf16_dx = 1;
        }
        const double dt = cpu_now() - t0;
        if (dt < best[v]) best[v] = dt;
      }
    strop__conv_bf16_direct = 1;
    const double f = 2.0 * (double)CO * (double)K * (double)P * (double)batch;
    printf("%-20s %5lld %6lld %7lld  GFLOP/s:", s->name, (long long)K, (long long)CO,
           (long long)(nb * P));
    for (int v = 0; v < V; v++) {
      const double ff = v == 3 || v == 4 ? 2 * f : f;
      printf(" %*.1f", v == 1 ? 10 : v == 6 ? 9 : 7, ff / best[v] / 1e9);
      tot[v] += (double)s->count * best[v];
    }
    printf("  %.2f\n", best[2] / best[0]);
    flops_all += (double)s->count * f;
    strop__free_aligned(x), strop__free_aligned(w), strop__free_aligned(y);
    strop__free_aligned(dy), strop__free_aligned(dx), strop__free_aligned(dw);
    strop__free_aligned(scratch), strop__free_aligned(ap), strop__free_aligned(work);
    strop__free_aligned(c);
  }
  printf("%-20s %27s", "network (x count)", "GFLOP/s:");
  for (int v = 0; v < V; v++)
    printf(" %*.1f",
           v == 1   ? 10
           : v == 6 ? 9
                    : 7,
           (v == 3 || v == 4 ? 2 : 1) * flops_all / tot[v] / 1e9);
  printf("  %.2f\nRESULT bench=bf16conv batch=%lld threads=%d fwd_ms=%.1f fwd_im2col_ms=%.1f "
         "bare_ms=%.1f bwd_ms=%.1f bwd_old_ms=%.1f dx_ms=%.1f dx_col2im_ms=%.1f fwd_speedup=%.3f "
         "bwd_speedup=%.3f dx_speedup=%.3f\n",
         tot[2] / tot[0], (long long)batch, threads, tot[0] * 1e3, tot[1] * 1e3, tot[2] * 1e3,
         tot[3] * 1e3, tot[4] * 1e3, tot[5] * 1e3, tot[6] * 1e3, tot[1] / tot[0], tot[4] / tot[3],
         tot[6] / tot[5]);
  return 0;
}
