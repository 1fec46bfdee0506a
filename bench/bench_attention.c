/* SPDX-License-Identifier: MIT */
/* strop bench — issue 21's attention kernel: the core (strop__sdpa_forward + _backward) tiled
 * with the online softmax against the materialised t x t weights, at GPT-2 small's head shape
 * (12 heads of 64, causal), one sample, sequence lengths T (default 128 512 2048).
 *
 *   bench_attention [threads] [repeats] [T ...]
 *
 * Prints per T and path "RESULT bench=attention path=tiled|materialised t= threads= fwd_ms=
 * bwd_ms= saved_mb= scratch_mb=": the best of `repeats` forward and backward calls, what the
 * forward keeps for the backward (weights, or each row's max and inverse sum) and the larger of
 * the two scratch areas, in MB. The inputs, their gradients and the output (4 x T x 768 floats
 * each way) are the same for both paths and not counted. COMPUTE_DTYPE=bf16 runs the products
 * in BF16 (strop__sdpa_dims.bf16, the model's compute dtype); COMPUTE_DTYPE=ab alternates FP32
 * and BF16 calls (each repetition one of each, the order swapped every time), times them by the
 * thread's CPU time at 1 thread, and prints both and their ratio (bf16_fwd_speedup,
 * bf16_bwd_speedup: FP32's time over BF16's), the measure that carries over on a shared machine.
 *
 *   bench_attention layer [threads] [repeats] [d heads kv_heads t] [batch]
 *
 * Llama's layers as the graph runs them (training forward, backward with the input's
 * gradient), default TinyLlama's shape (d 2048, 32 heads of 64 with 4 key/value heads, t 256,
 * one sample): `rmsnorm` over d (eps 1e-5, its weight trained) and `attention` on a packed
 * q|k|v input (causal, GQA, rotary embeddings rotate_half), each its own model, interleaved
 * per repetition. Prints "RESULT bench=layer layer=rmsnorm|attention ... fwd_ms= bwd_ms=" (best
 * of `repeats`; thread CPU time at 1 thread, so other processes on a loaded machine mostly drop
 * out; wall time at more) and the attention's strop_model_step_memory (step_mb). The same
 * source builds against older trees (it uses no newer API), for A/B runs of two builds; under
 * valgrind --tool=callgrind --toggle-collect=rmsnorm_forward (rmsnorm_backward, attn_forward,
 * attn_backward) it gives each layer's instruction count. LAYER=rmsnorm or LAYER=attention in
 * the environment runs that one only; STEP_MEMORY=0 skips the planning step (a forward and
 * backward of its own); ATTN_OPTS replaces the attention's options (e.g. "num_heads=12
 * dropout=0.1" for BERT's self-attention on a packed q|k|v of 3 x 768: d 768, heads 12,
 * kv_heads 12). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "core/core.h"
#include "graph/graph.h"
#include "ops/attention.h"

enum { HEADS = 12, HD = 64 };

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A one-node model on [t, width] inputs whose backward also gives the input's gradient. */
static strop_model *one_node(int64_t t, int64_t width, const char *type, const char *opts) {
  const int64_t shape[2] = {t, width};
  strop_model *m = NULL;
  bench_must(strop_model_create(2, shape, &m), "model");
  bench_must(strop_model_add(m, "layer", type, opts, NULL), "add");
  bench_must(strop_model_finalize(m, 1), "finalize");
  m->want_input_grad = 1;
  return m;
}

static int layer_main(int argc, char **argv) {
  const int threads = argc > 2 ? atoi(argv[2]) : 1, repeats = argc > 3 ? atoi(argv[3]) : 5;
  const int64_t d = argc > 4 ? atoll(argv[4]) : 2048, h = argc > 5 ? atoll(argv[5]) : 32;
  const int64_t kvh = argc > 6 ? atoll(argv[6]) : 4, t = argc > 7 ? atoll(argv[7]) : 256;
  const int64_t nb = argc > 8 ? atoll(argv[8]) : 1, hd = d / h, w = (h + 2 * kvh) * hd;
  bench_must(strop_set_num_threads(threads), "threads");
  char opts[160];
  snprintf(opts, sizeof opts,
           "num_heads=%lld num_kv_heads=%lld causal=true rope=rotate_half rope_theta=10000",
           (long long)h, (long long)kvh);
  if (getenv("ATTN_OPTS")) snprintf(opts, sizeof opts, "%s", getenv("ATTN_OPTS"));
  strop_model *m[2] = {one_node(t, d, "rmsnorm", "eps=1e-5"), one_node(t, w, "attention", opts)};
  const int64_t width[2] = {d, w};
  float *x[2], *dy[2];
  for (int l = 0; l < 2; l++) {
    const size_t e = (size_t)(nb * t * width[l]), o = (size_t)(nb * t * (l ? h * hd : d));
    x[l] = malloc(e * sizeof(float));
    dy[l] = malloc(o * sizeof(float));
    if (!x[l] || !dy[l]) return 1;
    for (size_t i = 0; i < e; i++) x[l][i] = sinf(0.37f * (float)(i % 10007));
    for (size_t i = 0; i < o; i++) dy[l][i] = 0.01f * cosf(0.11f * (float)(i % 9973));
  }
  const char *only = getenv("LAYER"), *sm = getenv("STEP_MEMORY");
  const int run[2] = {!only || !strcmp(only, "rmsnorm"), !only || !strcmp(only, "attention")};
  size_t step = 0;
  if (run[1] && !(sm && !strcmp(sm, "0")))
    bench_must(strop_model_step_memory(m[1], nb, NULL, 0, 0, &step, NULL), "step memory");
  double bf[2] = {1e30, 1e30}, bb[2] = {1e30, 1e30};
  for (int r = 0; r <= repeats; r++) /* the first round warms up */
    for (int l = 0; l < 2; l++) {
      if (!run[l]) continue;
      const strop__act *out;
      bench_must(strop__model_zero_grad(m[l]), "zero");
      const double t0 = threads == 1 ? cpu_now() : bench_now();
      bench_must(strop__model_forward_exec(m[l], x[l], nb, 1, NULL, &out), "forward");
      const double t1 = threads == 1 ? cpu_now() : bench_now();
      bench_must(strop__model_backward(m[l], dy[l]), "backward");
      const double t2 = threads == 1 ? cpu_now() : bench_now();
      strop__model_step_end(m[l]);
      if (r && t1 - t0 < bf[l]) bf[l] = t1 - t0;
      if (r && t2 - t1 < bb[l]) bb[l] = t2 - t1;
    }
  for (int l = 0; l < 2; l++)
    if (run[l])
      printf("RESULT bench=layer layer=%s d=%lld heads=%lld kv_heads=%lld t=%lld batch=%lld "
             "threads=%d fwd_ms=%.3f bwd_ms=%.3f%s",
             l ? "attention" : "rmsnorm", (long long)d, (long long)h, (long long)kvh,
             (long long)t, (long long)nb, threads, bf[l] * 1e3, bb[l] * 1e3, l ? "" : "\n");
  if (run[1]) printf(" step_mb=%.2f\n", (double)step / 1e6);
  for (int l = 0; l < 2; l++) free(x[l]), free(dy[l]), strop_model_free(m[l]);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "layer")) return layer_main(argc, argv);
  const int threads = argc > 1 ? atoi(argv[1]) : 1, repeats = argc > 2 ? atoi(argv[2]) : 3;
  static const int64_t def_t[] = {128, 512, 2048};
  const int n_t = argc > 3 ? argc - 3 : 3;
  bench_must(strop_set_num_threads(threads), "threads");
  const char *cdt = getenv("COMPUTE_DTYPE");
  const int ab = cdt && !strcmp(cdt, "ab"), bf16 = cdt && !strcmp(cdt, "bf16");
  if (getenv("BLOCK_Q")) strop__sdpa_block_q = atoi(getenv("BLOCK_Q"));
  if (getenv("BLOCK_K")) strop__sdpa_block_k = atoi(getenv("BLOCK_K"));
  for (int ti = 0; ti < n_t; ti++) {
    const int64_t t = argc > 3 ? atoll(argv[3 + ti]) : def_t[ti], w = HEADS * HD;
    const size_t rows = (size_t)(t * w);
    float *q = strop__malloc_aligned(rows * 4), *k = strop__malloc_aligned(rows * 4);
    float *v = strop__malloc_aligned(rows * 4), *ctx = strop__malloc_aligned(rows * 4);
    float *dc = strop__malloc_aligned(rows * 4), *dq = strop__malloc_aligned(rows * 4);
    float *dk = strop__malloc_aligned(rows * 4), *dv = strop__malloc_aligned(rows * 4);
    if (!q || !k || !v || !ctx || !dc || !dq || !dk || !dv) {
      fprintf(stderr, "bench_attention: out of memory at t = %lld\n", (long long)t);
      return 1;
    }
    for (size_t i = 0; i < rows; i++) {
      q[i] = sinf(0.37f * (float)i);
      k[i] = cosf(0.23f * (float)i);
      v[i] = sinf(0.11f * (float)i + 1.0f);
      dc[i] = cosf(0.07f * (float)i);
    }
    for (int tiled = 1; tiled >= 0; tiled--) {
      strop__sdpa_dims dm = {.n = 1,
                             .t = t,
                             .heads = HEADS,
                             .kv_heads = HEADS,
                             .head_dim = HD,
                             .ldq = w,
                             .ldk = w,
                             .ldv = w,
                             .causal = 1,
                             .scale = 0.125f,
                             .chunks = 1,
                             .tiled = tiled,
                             .bf16 = bf16 || ab};
      const size_t saved = strop__sdpa_saved_floats(&dm); /* the larger scratch: BF16's */
      size_t scr = strop__sdpa_forward_scratch(&dm), sb = strop__sdpa_backward_scratch(&dm);
      if (sb > scr) scr = sb;
      float *p = strop__malloc_aligned(saved * 4), *scratch = strop__malloc_aligned(scr * 4);
      if (!p || !scratch) {
        fprintf(stderr, "bench_attention: out of memory at t = %lld\n", (long long)t);
        return 1;
      }
      if (ab) { /* interleaved, by the thread's CPU time */
        double f[2] = {1e30, 1e30}, b[2] = {1e30, 1e30};
        for (int r = 0; r <= repeats; r++) /* the first round warms up */
          for (int h = 0; h < 2; h++) {
            dm.bf16 = (r + h) % 2;
            const double t0 = threads == 1 ? cpu_now() : bench_now();
            strop__sdpa_forward(&dm, q, k, v, p, scratch, ctx);
            const double t1 = threads == 1 ? cpu_now() : bench_now();
            strop__sdpa_backward(&dm, q, k, v, p, ctx, dc, scratch, dq, dk, dv, 0);
            const double t2 = threads == 1 ? cpu_now() : bench_now();
            if (r && t1 - t0 < f[dm.bf16]) f[dm.bf16] = t1 - t0;
            if (r && t2 - t1 < b[dm.bf16]) b[dm.bf16] = t2 - t1;
          }
        printf("RESULT bench=attention path=%s t=%lld threads=%d compute_dtype=ab "
               "f32_fwd_ms=%.3f bf16_fwd_ms=%.3f f32_bwd_ms=%.3f bf16_bwd_ms=%.3f "
               "bf16_fwd_speedup=%.3f bf16_bwd_speedup=%.3f\n",
               tiled ? "tiled" : "materialised", (long long)t, threads, f[0] * 1e3, f[1] * 1e3,
               b[0] * 1e3, b[1] * 1e3, f[0] / f[1], b[0] / b[1]);
        fflush(stdout);
        strop__free_aligned(p);
        strop__free_aligned(scratch);
        continue;
      }
      double bf = 1e30, bb = 1e30;
      for (int r = 0; r < repeats; r++) {
        double t0 = bench_now();
        strop__sdpa_forward(&dm, q, k, v, p, scratch, ctx);
        double t1 = bench_now();
        strop__sdpa_backward(&dm, q, k, v, p, ctx, dc, scratch, dq, dk, dv, 0);
        double t2 = bench_now();
        if (t1 - t0 < bf) bf = t1 - t0;
        if (t2 - t1 < bb) bb = t2 - t1;
      }
      printf("RESULT bench=attention path=%s t=%lld threads=%d fwd_ms=%.2f bwd_ms=%.2f "
             "saved_mb=%.2f scratch_mb=%.2f\n",
             tiled ? "tiled" : "materialised", (long long)t, threads, bf * 1e3, bb * 1e3,
             (double)saved * 4 / 1e6, (double)scr * 4 / 1e6);
      fflush(stdout);
      strop__free_aligned(p);
      strop__free_aligned(scratch);
    }
    strop__free_aligned(q), strop__free_aligned(k), strop__free_aligned(v);
    strop__free_aligned(ctx), strop__free_aligned(dc), strop__free_aligned(dq);
    strop__free_aligned(dk), strop__free_aligned(dv);
  }
  return 0;
}
