/* SPDX-License-Identifier: MIT */
/* strop bench — issue 21's fused residual sum and RMSNorm: the add of a Llama block whose sum
 * feeds both the norm and the next residual sum, run as the graph fuses it (the add writes the
 * sum and normalises each row in the same pass; the backward hands the norm's input gradient
 * and the next sum's to the add's inputs at once) against the same graph unfused.
 *
 *   bench_block [threads] [repeats] [d t batch]
 *
 * The model, on [t, d] inputs (default TinyLlama's d 2048, t 256, one sample): a = silu(x),
 * s = x + a, n = rmsnorm(s) (eps 1e-5), y = s + n, whose backward also gives the input's
 * gradient; the silu and the last add stand for the block's other readers and are the same in
 * both. FROZEN=1 freezes the norm's weight (a LoRA run's), else it trains. Fused and unfused
 * steps alternate on the one model (m->no_fusion), the order swapped every round; prints
 * "RESULT bench=block ... fused_fwd_ms= unfused_fwd_ms= fused_bwd_ms= unfused_bwd_ms=
 * fwd_ratio= bwd_ratio=" from the best of `repeats` rounds, by the thread's CPU time at 1
 * thread (a shared machine's other processes mostly drop out), the wall clock at more.
 *
 *   bench_block gate [repeats] [d f t]
 *
 * What a GEMM epilogue could save the gated MLP (lib/layers/gated_mlp.c): at one thread, the
 * SiLU product pass h = silu(g) u over [t, f] (strop__silu_gate_forward) against one of the
 * forward's three products, x [t, d] times a [f, d] weight (strop__linear_forward), default
 * TinyLlama's d 2048, f 5632, t 256; best of `repeats`, thread CPU time. Prints "RESULT
 * bench=gate_pass ... pass_ms= gemm_ms= pass_over_mlp=" (the pass against the forward's three
 * products).
 *
 *   bench_block gelu [repeats] [d f t approximate]
 *
 * What a GELU epilogue on the c_fc product of GPT-2 / BERT could save (issue 21): at one
 * thread, the product y = x w^T ([t, d] by a [f, d] weight, strop__linear_forward; default
 * GPT-2's d 768, f 3072, t 512 = 4 x 128, approximate 1 = tanh form, 0 = BERT's erf form), then
 * the GELU pass over y as the layer runs it (strop__gelu_forward over [t, f] just written by
 * the product: "pass"), then the same count of GELU over a 4096-float tile of y that is in L1
 * ("hot": what an epilogue applied while C's tile is in cache would still pay — a floor, its
 * output staying in cache too), then the pass again over y evicted from every cache by 64 MB
 * of other writes ("cold": the recompute before backward, long after the product). pass - hot
 * and cold - hot are all an epilogue could save of the forward's pass and of the recompute's
 * (which no product writes: a bound only); a layer's GEMMs are about 9 of these products
 * (12 d^2 multiply-adds a token forward, 3x with backward, c_fc's 4 d^2), so
 * saved_over_layer_gemms = (pass + cold - 2 hot) / (9 gemm) bounds the share of a step from
 * above. Best of `repeats`, thread CPU time. Prints "RESULT bench=gelu_pass ... pass_ms=
 * hot_ms= cold_ms= gemm_ms= saved_over_layer_gemms=".
 *
 *   bench_block gelu_ab [repeats] [n approximate]
 *
 * The GELU kernels alone, the per-CPU clones of the plain loops (strop__gelu_isa 1) and the
 * AVX-512 ones (0) alternately in one process, the order swapped every round: the forward and
 * the backward into an uninitialised dx over n floats (default 1024 x 3072, BERT's
 * intermediate at 8 x 128 tokens; approximate 0 = erf form, 1 = tanh form), inputs spread
 * over [-3, 3]. Best of `repeats`, thread CPU time. Prints "RESULT bench=gelu_ab ...
 * fwd_speedup= bwd_speedup=" (the clones' time over AVX-512's). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "graph/graph.h"
#include "ops/dense.h"

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int gate_main(int argc, char **argv) {
  const int repeats = argc > 2 ? atoi(argv[2]) : 10;
  const int64_t d = argc > 3 ? atoll(argv[3]) : 2048, f = argc > 4 ? atoll(argv[4]) : 5632;
  const int64_t t = argc > 5 ? atoll(argv[5]) : 256;
  bench_must(strop_set_num_threads(1), "threads");
  const size_t tf = (size_t)(t * f), td = (size_t)(t * d), fd = (size_t)(f * d);
  float *g = malloc(tf * sizeof *g), *u = malloc(tf * sizeof *u), *h = malloc(tf * sizeof *h);
  float *x = malloc(td * sizeof *x), *w = malloc(fd * sizeof *w);
  if (!g || !u || !h || !x || !w) return 1;
  for (size_t i = 0; i < tf; i++) g[i] = sinf(0.37f * (float)(i % 10007)), u[i] = 0.5f;
  for (size_t i = 0; i < td; i++) x[i] = cosf(0.11f * (float)(i % 9973));
  for (size_t i = 0; i < fd; i++) w[i] = 0.01f * sinf(0.07f * (float)(i % 8191));
  double bp = 1e30, bg = 1e30;
  for (int r = 0; r <= repeats; r++) {
    const double t0 = cpu_now();
    strop__silu_gate_forward(g, u, h, tf);
    const double t1 = cpu_now();
    strop__linear_forward(x, w, NULL, u, t, d, f);
    const double t2 = cpu_now();
    if (r && t1 - t0 < bp) bp = t1 - t0;
    if (r && t2 - t1 < bg) bg = t2 - t1;
  }
  printf("RESULT bench=gate_pass d=%lld f=%lld t=%lld threads=1 pass_ms=%.3f gemm_ms=%.3f "
         "pass_over_mlp=%.4f\n",
         (long long)d, (long long)f, (long long)t, bp * 1e3, bg * 1e3, bp / (3 * bg));
  free(g), free(u), free(h), free(x), free(w);
  return 0;
}

static int gelu_main(int argc, char **argv) {
  const int repeats = argc > 2 ? atoi(argv[2]) : 10;
  const int64_t d = argc > 3 ? atoll(argv[3]) : 768, f = argc > 4 ? atoll(argv[4]) : 3072;
  const int64_t t = argc > 5 ? atoll(argv[5]) : 512;
  const int approx = argc > 6 ? atoi(argv[6]) : 1;
  bench_must(strop_set_num_threads(1), "threads");
  const size_t tf = (size_t)(t * f), td = (size_t)(t * d), fd = (size_t)(f * d), tile = 4096;
  float *y = malloc(tf * sizeof *y), *h = malloc(tf * sizeof *h);
  float *x = malloc(td * sizeof *x), *w = malloc(fd * sizeof *w), *ht = malloc(tile * sizeof *ht);
  if (!y || !h || !x || !w || !ht || tf < tile) return 1;
  for (size_t i = 0; i < td; i++) x[i] = cosf(0.11f * (float)(i % 9973));
  for (size_t i = 0; i < fd; i++) w[i] = 0.05f * sinf(0.07f * (float)(i % 8191));
  const size_t evict = (size_t)64 << 20;
  unsigned char *ev = malloc(evict);
  if (!ev) return 1;
  double bp = 1e30, bh = 1e30, bg = 1e30, bc = 1e30;
  float sink = 0;
  for (int r = 0; r <= repeats; r++) {
    const double t0 = cpu_now();
    strop__linear_forward(x, w, NULL, y, t, d, f);
    const double t1 = cpu_now();
    strop__gelu_forward(y, h, tf, approx);
    const double t2 = cpu_now();
    for (size_t o = 0; o + tile <= tf; o += tile) {
      strop__gelu_forward(y, ht, tile, approx);
      sink += ht[o % tile];
    }
    const double t3 = cpu_now();
    memset(ev, r, evict); /* y out of every cache, as before the recompute in backward */
    const double t4 = cpu_now();
    strop__gelu_forward(y, h, tf, approx);
    const double t5 = cpu_now();
    if (r && t1 - t0 < bg) bg = t1 - t0;
    if (r && t2 - t1 < bp) bp = t2 - t1;
    if (r && t3 - t2 < bh) bh = t3 - t2;
    if (r && t5 - t4 < bc) bc = t5 - t4;
  }
  printf("RESULT bench=gelu_pass d=%lld f=%lld t=%lld approximate=%d threads=1 pass_ms=%.3f "
         "hot_ms=%.3f cold_ms=%.3f gemm_ms=%.3f saved_over_layer_gemms=%.4f check=%g\n",
         (long long)d, (long long)f, (long long)t, approx, bp * 1e3, bh * 1e3, bc * 1e3, bg * 1e3,
         (bp + bc - 2 * bh) / (9 * bg), (double)(sink + h[tf / 3]));
  free(ev), free(y), free(h), free(x), free(w), free(ht);
  return 0;
}

static int gelu_ab_main(int argc, char **argv) {
  const int repeats = argc > 2 ? atoi(argv[2]) : 10;
  const size_t n = argc > 3 ? (size_t)atoll(argv[3]) : (size_t)1024 * 3072;
  const int approx = argc > 4 ? atoi(argv[4]) : 0;
  float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *dy = malloc(n * sizeof *dy);
  float *dx = malloc(n * sizeof *dx);
  if (!x || !y || !dy || !dx) return 1;
  for (size_t i = 0; i < n; i++) {
    x[i] = 3.0f * sinf(0.37f * (float)(i % 10007));
    dy[i] = 0.5f * cosf(0.11f * (float)(i % 9973));
  }
  double bf[2] = {1e30, 1e30}, bb[2] = {1e30, 1e30};
  for (int r = 0; r <= repeats; r++)
    for (int h = 0; h < 2; h++) {
      const int isa = (r + h) % 2;
      strop__gelu_isa = isa;
      const double t0 = cpu_now();
      strop__gelu_forward(x, y, n, approx);
      const double t1 = cpu_now();
      strop__gelu_backward_assign(x, dy, dx, n, approx);
      const double t2 = cpu_now();
      if (r && t1 - t0 < bf[isa]) bf[isa] = t1 - t0;
      if (r && t2 - t1 < bb[isa]) bb[isa] = t2 - t1;
    }
  strop__gelu_isa = 0;
  printf("RESULT bench=gelu_ab n=%zu approximate=%d threads=1 clones_fwd_ms=%.3f "
         "avx512_fwd_ms=%.3f fwd_speedup=%.3f clones_bwd_ms=%.3f avx512_bwd_ms=%.3f "
         "bwd_speedup=%.3f check=%g\n",
         n, approx, bf[1] * 1e3, bf[0] * 1e3, bf[1] / bf[0], bb[1] * 1e3, bb[0] * 1e3,
         bb[1] / bb[0], (double)(y[n / 3] + dx[n / 5]));
  free(x), free(y), free(dy), free(dx);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "gelu")) return gelu_main(argc, argv);
  if (argc > 1 && !strcmp(argv[1], "gelu_ab")) return gelu_ab_main(argc, argv);
  if (argc > 1 && !strcmp(argv[1], "gate")) return gate_main(argc, argv);
  const int threads = argc > 1 ? atoi(argv[1]) : 1, repeats = argc > 2 ? atoi(argv[2]) : 20;
  const int64_t d = argc > 3 ? atoll(argv[3]) : 2048, t = argc > 4 ? atoll(argv[4]) : 256;
  const int64_t nb = argc > 5 ? atoll(argv[5]) : 1;
  const char *fz = getenv("FROZEN");
  const int frozen = fz && !strcmp(fz, "1");
  bench_must(strop_set_num_threads(threads), "threads");
  const int64_t shape[2] = {t, d};
  strop_model *m = NULL;
  bench_must(strop_model_create(2, shape, &m), "model");
  bench_must(strop_model_add(m, "a", "silu", "", "input"), "add a");
  bench_must(strop_model_add(m, "s", "add", "", "input,a"), "add s");
  bench_must(strop_model_add(m, "n", "rmsnorm", "eps=1e-5", NULL), "add n");
  bench_must(strop_model_add(m, "y", "add", "", "s,n"), "add y");
  bench_must(strop_model_finalize(m, 1), "finalize");
  if (frozen) bench_must(strop_model_freeze(m, "n"), "freeze");
  m->want_input_grad = 1;
  const size_t e = (size_t)(nb * t * d);
  float *x = malloc(e * sizeof *x), *dy = malloc(e * sizeof *dy);
  if (!x || !dy) return 1;
  for (size_t i = 0; i < e; i++) {
    x[i] = sinf(0.37f * (float)(i % 10007));
    dy[i] = 0.01f * cosf(0.11f * (float)(i % 9973));
  }
  double bf[2] = {1e30, 1e30}, bb[2] = {1e30, 1e30};
  int absorbed = 0;
  for (int r = 0; r <= repeats; r++) /* the first round warms up */
    for (int h = 0; h < 2; h++) {
      const int v = (r + h) % 2; /* 0: fused, 1: unfused */
      const strop__act *out;
      m->no_fusion = v;
      bench_must(strop__model_zero_grad(m), "zero");
      const double t0 = threads == 1 ? cpu_now() : bench_now();
      bench_must(strop__model_forward_exec(m, x, nb, 1, NULL, &out), "forward");
      const double t1 = threads == 1 ? cpu_now() : bench_now();
      bench_must(strop__model_backward(m, dy), "backward");
      const double t2 = threads == 1 ? cpu_now() : bench_now();
      if (!v) absorbed = m->nodes[2].fused < 0;
      strop__model_step_end(m);
      if (r && t1 - t0 < bf[v]) bf[v] = t1 - t0;
      if (r && t2 - t1 < bb[v]) bb[v] = t2 - t1;
    }
  printf("RESULT bench=block d=%lld t=%lld batch=%lld threads=%d norm=%s fused=%d "
         "fused_fwd_ms=%.3f unfused_fwd_ms=%.3f fused_bwd_ms=%.3f unfused_bwd_ms=%.3f "
         "fwd_ratio=%.3f bwd_ratio=%.3f step_ratio=%.3f\n",
         (long long)d, (long long)t, (long long)nb, threads, frozen ? "frozen" : "trained",
         absorbed, bf[0] * 1e3, bf[1] * 1e3, bb[0] * 1e3, bb[1] * 1e3, bf[0] / bf[1],
         bb[0] / bb[1], (bf[0] + bb[0]) / (bf[1] + bb[1]));
  free(x), free(dy);
  strop_model_free(m);
  return 0;
}
