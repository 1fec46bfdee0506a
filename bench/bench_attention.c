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
 * each way) are the same for both paths and not counted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "benchutil.h"
#include "core/core.h"
#include "ops/attention.h"

enum { HEADS = 12, HD = 64 };

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1, repeats = argc > 2 ? atoi(argv[2]) : 3;
  static const int64_t def_t[] = {128, 512, 2048};
  const int n_t = argc > 3 ? argc - 3 : 3;
  bench_must(strop_set_num_threads(threads), "threads");
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
                             .tiled = tiled};
      const size_t saved = strop__sdpa_saved_floats(&dm);
      size_t scr = strop__sdpa_forward_scratch(&dm), sb = strop__sdpa_backward_scratch(&dm);
      if (sb > scr) scr = sb;
      float *p = strop__malloc_aligned(saved * 4), *scratch = strop__malloc_aligned(scr * 4);
      if (!p || !scratch) {
        fprintf(stderr, "bench_attention: out of memory at t = %lld\n", (long long)t);
        return 1;
      }
      double bf = 1e30, bb = 1e30;
      for (int r = 0; r < repeats; r++) {
        double t0 = bench_now();
        strop__sdpa_forward(&dm, q, k, v, p, NULL, NULL, scratch, ctx);
        double t1 = bench_now();
        strop__sdpa_backward(&dm, q, k, v, p, NULL, ctx, dc, scratch, dq, dk, dv, 0);
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
