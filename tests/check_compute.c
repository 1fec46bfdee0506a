/* SPDX-License-Identifier: MIT */
/* strop tests — mixed-precision training (strop_model_set_compute_dtype): linear and conv
 * products on BF16 values with FP32 sums — the rounding, the vdpbf16ps GEMM of two FP32
 * operands, the exact fallback, the weights' BF16 copies and their versions, gradients and
 * fine-tunes against FP32 within stated tolerances, the step's memory, errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "graph/graph.h"
#include "ops/bf16gemm.h"
#include "ops/conv.h"
#include "ops/dense.h"
#include "ops/loss.h"
#include "ops/lowp.h"
#include "optim/optim.h"
#include "testutil.h"

#define OK(x) strop_test_must((x), #x)

static const int64_t IN[2] = {12, 32};
enum { T = 12, D = 32, CLASSES = 4 };

/* A text-like model: per-position linears (fc2 [in, out] when in_out), a head. */
static strop_model *text_model(uint64_t seed, int in_out) {
  const strop_test_node nodes[] = {
      {"fc1", "linear", "out_features=64", NULL},
      {"act1", "gelu", NULL, NULL},
      {"fc2", "linear", in_out ? "out_features=32 weight_layout=in_out" : "out_features=32",
       NULL},
      {"act2", "gelu", NULL, NULL},
      {"flat", "flatten", NULL, NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  return strop_test_build(2, IN, nodes, 6, seed);
}

/* LoRA (rank 4) on fc1 and fc2, whose weights freeze (held in FP32); the head trains. */
static strop_model *lora_model(uint64_t seed) {
  strop_model *m = text_model(seed, 1);
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_set_seed(s, seed + 1));
  OK(strop_surgery_freeze(s, "fc*", 0));
  OK(strop_surgery_lora(s, "fc*", 4, 8.0f, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  return m;
}

static void inputs(float *x, size_t n, double phase) {
  for (size_t i = 0; i < n; i++) x[i] = (float)(sin(0.731 * (double)i + phase) * 1.5);
}

static float bf(float v) { return strop__bf16_to_f32(strop__bf16_from_f32(v)); }

static void fill(float *v, size_t n, double f) {
  for (size_t i = 0; i < n; i++)
    v[i] = (float)(cos(f * (double)i + 0.3) * (1.0 + (double)(i % 7)));
}

/* ---- kernels ---- */

/* The vectorised rounding gives strop__bf16_from_f32's bits (ties to even, NaN quiet, Inf,
 * subnormals, overflow to Inf), in place too; the weight's copy is strop__lowp_make's, both
 * layouts, on shapes with edges. */
START_TEST(rounding_matches_scalar) {
  const uint32_t bits[] = {0x00000000u, 0x80000000u, 0x3f808000u, 0x3f818000u, 0x3f807fffu,
                           0x3f808001u, 0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u,
                           0x7fc00000u, 0x7f800001u, 0xff800001u, 0x00000001u, 0x007fffffu,
                           0x00008000u, 0x80018000u, 0x4049fdb0u, 0xc2f6e979u, 0x3dcccccdu};
  enum { NB = sizeof bits / sizeof *bits, N = 3 * NB + 5 };
  float x[N], y[N];
  for (int i = 0; i < N; i++) {
    uint32_t u = bits[i % NB] ^ (i >= 2 * NB ? 0x80000000u : 0u);
    memcpy(&x[i], &u, sizeof u);
  }
  strop__bf16_round_f32(x, y, N);
  for (int i = 0; i < N; i++) {
    const float want = strop__bf16_to_f32(strop__bf16_from_f32(x[i]));
    ck_assert_msg(!memcmp(&y[i], &want, sizeof want), "element %d", i);
  }
  uint16_t h[N]; /* to BF16 storage, as the held weights and the packing round */
  strop__bf16_round_n(x, h, N);
  for (int i = 0; i < N; i++) ck_assert_msg(h[i] == strop__bf16_from_f32(x[i]), "bf16 %d", i);
  strop__bf16_round_f32(x, x, N); /* in place */
  ck_assert_mem_eq(x, y, sizeof x);
  /* the copy: edges of its 32 x 32 (transposed: 32 x 16) blocks, the special values inside */
  static const int64_t shapes[][2] = {{37, 45}, {1, 1}, {2, 17}, {33, 16}, {64, 32}, {70, 100}};
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
    for (int sc = 0; sc < 2; sc++) {
      const int64_t R = shapes[sh][0], C = shapes[sh][1];
      float *w = malloc((size_t)(R * C) * sizeof *w);
      fill(w, (size_t)(R * C), 0.37);
      for (int64_t i = 0; i < R * C; i += 7) memcpy(&w[i], &bits[(i / 7) % NB], sizeof *w);
      strop__lowp want,
          got = {STROP__LOWP_BF16, sc, R, C, 0, malloc((size_t)(R * C) * 2), NULL, 0};
      ck_assert_int_eq(strop__lowp_make(&want, STROP__LOWP_BF16, w, R, C, sc, 0), 0);
      strop__bf16_shadow_fill(&got, w);
      ck_assert_msg(!memcmp(got.v, want.v, (size_t)(R * C) * 2), "copy %lld x %lld, layout %d",
                    (long long)R, (long long)C, sc);
      strop__lowp_free(&want);
      free(got.v);
      free(w);
    }
}
END_TEST

/* C = op(A) op(B) (+ C) on vdpbf16ps with both FP32 operands rounded while packed, every
 * transpose, shapes with edges (m not a multiple of 8 or 16, n of 32, odd k): within FP32
 * summation error, (k + 2) 2^-23 sum |a b|, of a double sum of the rounded operands; the serial
 * entry with alpha (attention's) the same bits, and alpha 1/2 half of them. */
START_TEST(gemm_f32_edges) {
  if (!strop__bf16_dot_enabled()) return; /* the fallback is the FP32 GEMM (tested there) */
  /* the last two: over B_ALL_MAX bytes of B's panels, packed in groups (strop__bf16_b_groups;
   * b_groups_same_bits: the same bits as a panel at a time), the others all packed first */
  static const int64_t shapes[][3] = {{1, 1, 1},      {5, 7, 45},     {8, 32, 32}, {9, 33, 70},
                                      {3, 2, 301},    {17, 65, 64},   {40, 96, 7}, {33, 31, 0},
                                      {9, 1057, 513}, {17, 2050, 300}};
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
    for (int tr = 0; tr < 4; tr++)
      for (int beta = 0; beta < 2; beta++) {
        const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
        const int ta = tr & 1, tb = tr >> 1;
        const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
        const size_t na = (size_t)((ta ? k : m) * lda + 1), nb = (size_t)((tb ? n : k) * ldb + 1);
        float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
        float *c = malloc((size_t)(m * ldc) * sizeof *c);
        fill(a, na, 0.71);
        fill(b, nb, 0.29);
        for (int64_t i = 0; i < m * ldc; i++) c[i] = 0.5f;
        void *work = strop__malloc_aligned(strop__bf16_gemm_f32_scratch(m, n, k));
        strop__bf16_gemm_f32(ta, tb, m, n, k, a, lda, b, ldb, beta ? 1.0f : 0.0f, c, ldc, work);
        for (int64_t i = 0; i < m; i++)
          for (int64_t j = 0; j < n; j++) {
            double sum = beta ? 0.5 : 0.0, mag = 0.0;
            for (int64_t t = 0; t < k; t++) {
              const double p = (double)bf(ta ? a[t * lda + i] : a[i * lda + t]) *
                               (double)bf(tb ? b[j * ldb + t] : b[t * ldb + j]);
              sum += p;
              mag += fabs(p);
            }
            const double e = fabs((double)c[i * ldc + j] - sum);
            ck_assert_msg(e <= (double)(k + 2) * 0x1p-23 * (mag + 0.5) + 1e-30,
                          "m %lld n %lld k %lld ta %d tb %d beta %d: c(%lld, %lld) %g, want %g",
                          (long long)m, (long long)n, (long long)k, ta, tb, beta, (long long)i,
                          (long long)j, (double)c[i * ldc + j], sum);
          }
        for (int64_t i = 0; i < m; i++) /* the padding between rows of C untouched */
          for (int64_t j = n; j < ldc; j++) ck_assert_float_eq(c[i * ldc + j], 0.5f);
        /* on the calling thread: the same bits; alpha 1/2 halves each sum exactly */
        float *c2 = malloc((size_t)(m * ldc) * sizeof *c2);
        void *w2 = strop__malloc_aligned(strop__bf16_sgemm_serial_scratch(m, n, k));
        for (int al = 0; al < 2; al++) {
          for (int64_t i = 0; i < m * ldc; i++) c2[i] = 0.5f;
          strop__bf16_sgemm_serial(ta, tb, m, n, k, al ? 0.5f : 1.0f, a, lda, b, ldb,
                                   beta ? 1.0f : 0.0f, c2, ldc, w2);
          for (int64_t i = 0; i < m * ldc; i++) {
            const float want = al && !beta && i % ldc < n ? 0.5f * c[i] : c[i];
            if (al && beta) continue;
            ck_assert_msg(!memcmp(&c2[i], &want, sizeof want),
                          "serial alpha %g: m %lld n %lld k %lld ta %d tb %d beta %d, c[%lld]",
                          al ? 0.5 : 1.0, (long long)m, (long long)n, (long long)k, ta, tb, beta,
                          (long long)i);
          }
        }
        strop__free_aligned(w2);
        free(c2);
        strop__free_aligned(work);
        free(a);
        free(b);
        free(c);
      }
}
END_TEST

/* B's panels in groups that fit in L2 (strop__bf16_b_groups 1) give the bits of a panel at a
 * time against all of A (0): every transpose, written and added, 1 and 2 threads; groups of
 * unequal size (22 panels of 7 to a group: 6, 6, 6, 4 at 1 thread, 6 and 5 per thread at 2), m
 * not a multiple of 8, a last panel of 12 columns, and a panel too large to group (k 2100: a
 * panel at a time either way). */
START_TEST(b_groups_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {
      {9, 1057, 513}, {17, 2050, 300}, {41, 684, 1030}, {12, 300, 2100}};
  const int threads = strop_get_num_threads();
  for (int th = 1; th <= 2; th++) {
    ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
      for (int tr = 0; tr < 4; tr++)
        for (int beta = 0; beta < 2; beta++) {
          const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
          const int ta = tr & 1, tb = tr >> 1;
          const int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n + 1;
          float *a = malloc((size_t)(m * k) * sizeof *a),
                *b = malloc((size_t)(n * k) * sizeof *b);
          float *c[2] = {malloc((size_t)(m * ldc) * sizeof(float)),
                         malloc((size_t)(m * ldc) * sizeof(float))};
          fill(a, (size_t)(m * k), 0.53);
          fill(b, (size_t)(n * k), 0.31);
          void *work = strop__malloc_aligned(strop__bf16_gemm_f32_scratch(m, n, k));
          for (int g = 0; g < 2; g++) {
            strop__bf16_b_groups = g;
            for (int64_t i = 0; i < m * ldc; i++) c[g][i] = 0.25f * (float)(i % 5);
            strop__bf16_gemm_f32(ta, tb, m, n, k, a, lda, b, ldb, (float)beta, c[g], ldc, work);
          }
          strop__bf16_b_groups = 1;
          ck_assert_msg(!memcmp(c[0], c[1], (size_t)(m * ldc) * sizeof(float)),
                        "m %lld n %lld k %lld ta %d tb %d beta %d threads %d: groups differ",
                        (long long)m, (long long)n, (long long)k, ta, tb, beta, th);
          strop__free_aligned(work);
          free(a);
          free(b);
          free(c[0]);
          free(c[1]);
        }
  }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* Operands stored [k, cols] packed a few panels in one pass down their rows
 * (strop__bf16_pack_sweep 1) give the bits of a panel at a time (0): A with ta and B without tb
 * in every transpose, written and added, 1 and 2 threads; B all packed at once (300 x 700 x 70)
 * and in groups (the others), sweeps of unequal width (19 groups of A by 16: 16 and 3), m not a
 * multiple of 16 (33: a last group of one micro-panel), odd k (a last row pair of one row); and
 * a W [in, out] weight's BF16 panels (strop__bf16_shadow_fill): 5 panels of 48 KB a sweep, 8 of
 * 4 KB, a panel of 188 KB alone, n not a multiple of 32. */
START_TEST(pack_sweep_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {
      {300, 700, 70}, {41, 2050, 300}, {33, 1057, 513}, {17, 75, 1030}};
  static const int64_t weights[][2] = {{768, 300}, {45, 1000}, {3000, 70}}; /* in, out */
  const int threads = strop_get_num_threads();
  for (int th = 1; th <= 2; th++) {
    ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
      for (int tr = 0; tr < 4; tr++)
        for (int beta = 0; beta < 2; beta++) {
          const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
          const int ta = tr & 1, tb = tr >> 1;
          const int64_t lda = (ta ? m : k) + 5, ldb = (tb ? k : n) + 3, ldc = n + 1;
          const size_t na = (size_t)((ta ? k : m) * lda), nb = (size_t)((tb ? n : k) * ldb);
          float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
          float *c[2] = {malloc((size_t)(m * ldc) * sizeof(float)),
                         malloc((size_t)(m * ldc) * sizeof(float))};
          fill(a, na, 0.47);
          fill(b, nb, 0.23);
          const size_t wb = strop__bf16_gemm_f32_scratch(m, n, k);
          void *work = strop__malloc_aligned(wb);
          for (int g = 0; g < 2; g++) {
            strop__bf16_pack_sweep = g;
            memset(work, 0x5a, wb); /* no panel left over from the other side */
            for (int64_t i = 0; i < m * ldc; i++) c[g][i] = 0.25f * (float)(i % 5);
            strop__bf16_gemm_f32(ta, tb, m, n, k, a, lda, b, ldb, (float)beta, c[g], ldc, work);
          }
          strop__bf16_pack_sweep = 1;
          ck_assert_msg(!memcmp(c[0], c[1], (size_t)(m * ldc) * sizeof(float)),
                        "m %lld n %lld k %lld ta %d tb %d beta %d threads %d: sweep differs",
                        (long long)m, (long long)n, (long long)k, ta, tb, beta, th);
          strop__free_aligned(work);
          free(a);
          free(b);
          free(c[0]);
          free(c[1]);
        }
    for (size_t sh = 0; sh < sizeof weights / sizeof *weights; sh++) {
      const int64_t in = weights[sh][0], out = weights[sh][1];
      const size_t bytes = strop__bf16_panels_bytes(out, in);
      float *w = malloc((size_t)(in * out) * sizeof *w);
      fill(w, (size_t)(in * out), 0.61);
      strop__lowp q[2];
      for (int g = 0; g < 2; g++) {
        q[g] = (strop__lowp){
            STROP__LOWP_BF16, 1, in, out, 0, strop__malloc_aligned(bytes), NULL, 1};
        memset(q[g].v, 0x5a, bytes); /* every byte written, the padding's zeros too */
        strop__bf16_pack_sweep = g;
        strop__bf16_shadow_fill(&q[g], w);
      }
      strop__bf16_pack_sweep = 1;
      ck_assert_msg(!memcmp(q[0].v, q[1].v, bytes), "W [%lld, %lld] threads %d: panels differ",
                    (long long)in, (long long)out, th);
      strop__lowp_free(&q[0]);
      strop__lowp_free(&q[1]);
      free(w);
    }
  }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* strop__bf16_gemm_f32_finite: strop__bf16_gemm_f32's bits, and 1 only when every element of C
 * is finite — an infinity from an overflowing sum or a NaN from A, in the last tile's last row
 * and column (edges masked) or anywhere in a split over 2 threads; NaN in C's padding (ldc > n)
 * with beta 0 is not C's. Every path: B all packed, in groups, a panel at a time. */
START_TEST(gemm_f32_finite_seen) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {{37, 45, 70}, {33, 1057, 513}, {20, 300, 2100}};
  const int threads = strop_get_num_threads();
  for (int th = 1; th <= 2; th++) {
    ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
      for (int bad = 0; bad < 4; bad++) { /* none, 1e38 (overflows), NaN, NaN in C's padding */
        const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2], ldc = n + 3;
        float *a = malloc((size_t)(k * m) * sizeof *a), *b = malloc((size_t)(k * n) * sizeof *b);
        float *c[2] = {malloc((size_t)(m * ldc) * sizeof(float)),
                       malloc((size_t)(m * ldc) * sizeof(float))};
        fill(a, (size_t)(k * m), 0.41);
        fill(b, (size_t)(k * n), 0.17);
        /* dW = x^T dy (ta 1): A [k, m], element (i, t) at a[t m + i]; C(m - 1, n - 1) */
        if (bad == 1) a[(k - 1) * m + m - 1] = 1e38f, b[(k - 1) * n + n - 1] = 1e3f;
        if (bad == 2) a[(k / 2) * m + m - 1] = NAN;
        const size_t wb = strop__bf16_gemm_f32_scratch(m, n, k);
        void *work = strop__malloc_aligned(wb);
        int seen = -1;
        for (int g = 0; g < 2; g++) {
          for (int64_t i = 0; i < m * ldc; i++) c[g][i] = bad == 3 ? NAN : 0.5f;
          if (g)
            seen = strop__bf16_gemm_f32_finite(1, 0, m, n, k, a, m, b, n, 0.0f, c[g], ldc, work);
          else strop__bf16_gemm_f32(1, 0, m, n, k, a, m, b, n, 0.0f, c[g], ldc, work);
        }
        ck_assert_msg(!memcmp(c[0], c[1], (size_t)(m * ldc) * sizeof(float)),
                      "m %lld n %lld k %lld case %d threads %d: bits differ", (long long)m,
                      (long long)n, (long long)k, bad, th);
        ck_assert_msg(seen == (bad == 0 || bad == 3),
                      "m %lld n %lld k %lld case %d threads %d: %d", (long long)m, (long long)n,
                      (long long)k, bad, th, seen);
        ck_assert(bad == 0 || bad == 3 || !isfinite(c[1][(m - 1) * ldc + n - 1]));
        strop__free_aligned(work);
        free(a);
        free(b);
        free(c[0]);
        free(c[1]);
      }
  }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* The input gradient through a weight held in panels whose _nn panel passes 512 KB (k the
 * outputs, over 8192: the LM head's) runs k in slices with each sum carried between them —
 * across the column blocks of a chunk (strop__bf16_kslices 2; more than 24 of them at 1 thread
 * for 900 inputs: a second group) or a column block at a time (1): the bits of all of k at once
 * (0) and of the weight stored plainly; both layouts, written and added, 1 and 2 threads, m not
 * a multiple of 8, n not of 32, a last slice shorter than the others (9000 outputs: 8 full
 * slices of 1024 and 832, 35 of 256 and 40). */
START_TEST(kslices_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {{9000, 45, 13}, {17000, 70, 9}, {9000, 900, 11}};
  const int threads = strop_get_num_threads();
  for (int th = 1; th <= 2; th++) {
    ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
      for (int sc = 0; sc < 2; sc++)
        for (int add = 0; add < 2; add++) {
          const int64_t out = shapes[sh][0], in = shapes[sh][1], m = shapes[sh][2];
          const int64_t R = sc ? in : out, C = sc ? out : in;
          float *w = malloc((size_t)(R * C) * sizeof *w), *dy = malloc((size_t)(m * out) * 4);
          fill(w, (size_t)(R * C), 0.37);
          fill(dy, (size_t)(m * out), 0.23);
          strop__lowp plain, held = {STROP__LOWP_BF16, sc, R, C, 0, NULL, NULL, 1};
          ck_assert_int_eq(strop__lowp_make(&plain, STROP__LOWP_BF16, w, R, C, sc, 0), 0);
          held.v = strop__malloc_aligned(strop__bf16_panels_bytes(out, in));
          strop__bf16_shadow_fill(&held, w);
          float *dx[4];
          static const char *const what[4] = {"", "a column block at a time", "all of k at once",
                                              "the plain weight"};
          for (int v = 0; v < 4; v++) { /* across the blocks, a block at a time, all k, plain */
            dx[v] = malloc((size_t)(m * in) * sizeof(float));
            for (int64_t i = 0; i < m * in; i++) dx[v][i] = 0.25f * (float)(i % 3);
            strop__bf16_kslices = v == 0 ? 2 : v == 1 ? 1 : 0;
            ck_assert_int_eq(strop__linear_backward_bf16(
                                 NULL, v == 3 ? &plain : &held, dy, dx[v], NULL, NULL, m, in, out,
                                 (add ? 0 : STROP__LB_ASSIGN_DX) | (sc ? STROP__LB_W_IN_OUT : 0)),
                             0);
          }
          strop__bf16_kslices = 2;
          for (int v = 1; v < 4; v++)
            ck_assert_msg(!memcmp(dx[0], dx[v], (size_t)(m * in) * sizeof(float)),
                          "%lld x %lld, %lld rows, layout %d, added %d, threads %d: the slices "
                          "differ from %s",
                          (long long)out, (long long)in, (long long)m, sc, add, th, what[v]);
          for (int v = 0; v < 4; v++) free(dx[v]);
          strop__lowp_free(&plain);
          strop__lowp_free(&held);
          free(w);
          free(dy);
        }
  }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* A held weight's forward (_nt, the panels read in place) whose A passes 512 KB runs groups of
 * panels against each tile of A (strop__bf16_held_groups): the same bits as a panel at a time
 * and as the plain BF16 weight's packed panels — rows and outputs not multiples of 8 and 32, a
 * last group of fewer panels, a bias, both layouts, 1 and 2 threads. */
START_TEST(held_groups_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {{333, 1000, 301}, {200, 600, 700}}; /* out, in, rows */
  const int threads = strop_get_num_threads();
  for (int th = 1; th <= 2; th++) {
    ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
      for (int sc = 0; sc < 2; sc++) {
        const int64_t out = shapes[sh][0], in = shapes[sh][1], m = shapes[sh][2];
        const int64_t R = sc ? in : out, C = sc ? out : in;
        float *w = malloc((size_t)(R * C) * sizeof *w), *x = malloc((size_t)(m * in) * 4);
        float *b = malloc((size_t)out * sizeof *b);
        fill(w, (size_t)(R * C), 0.37);
        fill(x, (size_t)(m * in), 0.23);
        fill(b, (size_t)out, 0.5);
        strop__lowp plain, held = {STROP__LOWP_BF16, sc, R, C, 0, NULL, NULL, 1};
        ck_assert_int_eq(strop__lowp_make(&plain, STROP__LOWP_BF16, w, R, C, sc, 0), 0);
        held.v = strop__malloc_aligned(strop__bf16_panels_bytes(out, in));
        strop__bf16_shadow_fill(&held, w);
        float *y[3];
        for (int v = 0; v < 3; v++) { /* groups, a panel at a time, plain */
          y[v] = malloc((size_t)(m * out) * sizeof(float));
          strop__bf16_held_groups = v == 0;
          ck_assert_int_eq(
              strop__linear_forward_bf16(x, v == 2 ? &plain : &held, b, y[v], m, in, out), 0);
        }
        strop__bf16_held_groups = 1;
        for (int v = 1; v < 3; v++)
          ck_assert_msg(
              !memcmp(y[0], y[v], (size_t)(m * out) * sizeof(float)),
              "%lld x %lld, %lld rows, layout %d, threads %d: the groups differ from %s",
              (long long)out, (long long)in, (long long)m, sc, th,
              v == 1 ? "a panel at a time" : "the plain weight");
        for (int v = 0; v < 3; v++) free(y[v]);
        strop__lowp_free(&plain);
        strop__lowp_free(&held);
        free(w);
        free(x);
        free(b);
      }
  }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* strop__bf16_pack_groups: every 8-row tile of A against a group of panels — a held weight's
 * forward whose A fits in L2 (the panels read in place), and the panels packed per call: a held
 * weight's input gradient, a plain BF16 weight's and an int8 weight's (per channel and in groups
 * of 32) forward and input gradient — gives the bits of a panel at a time (0). Rows past 8 and
 * not a multiple of it, outputs and inputs not multiples of 32, a last group of fewer panels
 * (333 outputs: 11 panels of 22.5 KB a group, over 1000 inputs: 32 column blocks), panels too
 * large to group (3000 inputs), both layouts, written and added, 1 and 2 threads. Fails when a
 * group's tile or panel is skipped or misplaced. */
START_TEST(pack_groups_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {{333, 1000, 37}, {200, 600, 13}, {70, 3000, 21}};
  const int threads = strop_get_num_threads();
  for (int th = 1; th <= 2; th++) {
    ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
      for (int sc = 0; sc < 2; sc++)
        for (int kind = 0; kind < 4; kind++) { /* held BF16, plain BF16, int8, int8 groups */
          const int64_t out = shapes[sh][0], in = shapes[sh][1], m = shapes[sh][2];
          const int64_t R = sc ? in : out, C = sc ? out : in;
          float *w = malloc((size_t)(R * C) * sizeof *w), *x = malloc((size_t)(m * in) * 4);
          float *dy = malloc((size_t)(m * out) * 4), *b = malloc((size_t)out * sizeof *b);
          fill(w, (size_t)(R * C), 0.37);
          fill(x, (size_t)(m * in), 0.23);
          fill(dy, (size_t)(m * out), 0.41);
          fill(b, (size_t)out, 0.5);
          strop__lowp q = {STROP__LOWP_BF16, sc, R, C, 0, NULL, NULL, 1};
          if (kind == 0) {
            q.v = strop__malloc_aligned(strop__bf16_panels_bytes(out, in));
            strop__bf16_shadow_fill(&q, w);
          } else {
            ck_assert_int_eq(strop__lowp_make(&q, kind == 1 ? STROP__LOWP_BF16 : STROP__LOWP_INT8,
                                              w, R, C, sc, kind == 3 ? 32 : 0),
                             0);
          }
          float *y[2], *dx[2][2];
          for (int v = 0; v < 2; v++) { /* groups, a panel at a time */
            strop__bf16_pack_groups = v == 0;
            y[v] = malloc((size_t)(m * out) * sizeof(float));
            ck_assert_int_eq(strop__linear_forward_lowp(x, &q, b, y[v], m, in, out, sc), 0);
            for (int add = 0; add < 2; add++) {
              dx[v][add] = malloc((size_t)(m * in) * sizeof(float));
              for (int64_t i = 0; i < m * in; i++) dx[v][add][i] = 0.25f * (float)(i % 3);
              ck_assert_int_eq(
                  strop__linear_backward_lowp(&q, dy, dx[v][add], m, in, out, sc, !add), 0);
            }
          }
          strop__bf16_pack_groups = 1;
          ck_assert_msg(!memcmp(y[0], y[1], (size_t)(m * out) * sizeof(float)),
                        "%lld x %lld, %lld rows, kind %d, layout %d, threads %d: the forward's "
                        "groups differ from a panel at a time",
                        (long long)out, (long long)in, (long long)m, kind, sc, th);
          for (int add = 0; add < 2; add++)
            ck_assert_msg(!memcmp(dx[0][add], dx[1][add], (size_t)(m * in) * sizeof(float)),
                          "%lld x %lld, %lld rows, kind %d, layout %d, added %d, threads %d: the "
                          "input gradient's groups differ from a panel at a time",
                          (long long)out, (long long)in, (long long)m, kind, sc, add, th);
          for (int v = 0; v < 2; v++) {
            free(y[v]);
            free(dx[v][0]);
            free(dx[v][1]);
          }
          strop__lowp_free(&q);
          free(w);
          free(x);
          free(dy);
          free(b);
        }
  }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* ---- linear ---- */

/* The fallback is the FP32 linear on the BF16-rounded x, dy and W, bit for bit: the forward,
 * dx and dW; db the sum of the unrounded dy. Both layouts, written and added. */
START_TEST(fallback_exact) {
  enum { M = 13, NI = 70, NO = 45 };
  strop__bf16_impl = 1;
  for (int in_out = 0; in_out < 2; in_out++)
    for (int assign = 0; assign < 2; assign++) {
      static float x[M * NI], w[NI * NO], b[NO], dy[M * NO], xr[M * NI], wr[NI * NO], dyr[M * NO];
      static float y1[M * NO], y2[M * NO], dx1[M * NI], dx2[M * NI], dw1[NI * NO], dw2[NI * NO],
          db1[NO], db2[NO];
      fill(x, M * NI, 0.3);
      fill(w, NI * NO, 0.11);
      fill(b, NO, 0.7);
      fill(dy, M * NO, 0.53);
      strop__bf16_round_f32(x, xr, M * NI);
      strop__bf16_round_f32(w, wr, NI * NO);
      strop__bf16_round_f32(dy, dyr, M * NO);
      strop__lowp q;
      ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_BF16, w, in_out ? NI : NO,
                                        in_out ? NO : NI, in_out, 0),
                       0);
      ck_assert_int_eq(strop__linear_forward_bf16(x, &q, b, y1, M, NI, NO), 0);
      strop__linear_forward_ex(xr, wr, b, y2, M, NI, NO, in_out);
      ck_assert_mem_eq(y1, y2, sizeof y1);
      for (int i = 0; i < M * NI; i++) dx1[i] = dx2[i] = 0.25f;
      for (int i = 0; i < NI * NO; i++) dw1[i] = dw2[i] = -0.5f;
      for (int i = 0; i < NO; i++) db1[i] = db2[i] = 0.125f;
      const unsigned fl = (assign ? STROP__LB_ASSIGN_DX | STROP__LB_ASSIGN_PARAMS : 0) |
                          (in_out ? STROP__LB_W_IN_OUT : 0);
      ck_assert_int_eq(strop__linear_backward_bf16(x, &q, dy, dx1, dw1, db1, M, NI, NO, fl), 0);
      (void)strop__linear_backward(xr, wr, dyr, dx2, dw2, NULL, M, NI, NO, fl);
      (void)strop__linear_backward(x, NULL, dy, NULL, NULL, db2, M, NI, NO, fl);
      ck_assert_mem_eq(dx1, dx2, sizeof dx1);
      ck_assert_mem_eq(dw1, dw2, sizeof dw1);
      ck_assert_mem_eq(db1, db2, sizeof db1);
      strop__lowp_free(&q);
    }
  strop__bf16_impl = 0;
}
END_TEST

/* vdpbf16ps (where the CPU has it) against the fallback: the same rounded operands, so the
 * two differ only by FP32 summation order: every element of y, dx and dW within
 * (k + 2) 2^-23 sum |a b| of it (k the product's length). Both layouts. */
START_TEST(dot_matches_fallback) {
  if (!strop__bf16_dot_enabled()) return;
  enum { M = 37, NI = 70, NO = 45 };
  for (int in_out = 0; in_out < 2; in_out++) {
    static float x[M * NI], w[NI * NO], dy[M * NO], y[2][M * NO], dx[2][M * NI], dw[2][NI * NO];
    fill(x, M * NI, 0.3);
    fill(w, NI * NO, 0.11);
    fill(dy, M * NO, 0.53);
    strop__lowp q;
    ck_assert_int_eq(
        strop__lowp_make(&q, STROP__LOWP_BF16, w, in_out ? NI : NO, in_out ? NO : NI, in_out, 0),
        0);
    const unsigned fl = STROP__LB_ASSIGN_DX | STROP__LB_ASSIGN_PARAMS |
                        (in_out ? STROP__LB_W_IN_OUT : 0);
    for (int p = 0; p < 2; p++) {
      strop__bf16_impl = p; /* 0: vdpbf16ps, 1: the fallback */
      ck_assert_int_eq(strop__linear_forward_bf16(x, &q, NULL, y[p], M, NI, NO), 0);
      ck_assert_int_eq(strop__linear_backward_bf16(x, &q, dy, dx[p], dw[p], NULL, M, NI, NO, fl),
                       0);
    }
    strop__bf16_impl = 0;
    for (int i = 0; i < M; i++)
      for (int o = 0; o < NO; o++) {
        double mag = 0;
        for (int k = 0; k < NI; k++)
          mag += fabs((double)bf(x[i * NI + k]) * bf(in_out ? w[k * NO + o] : w[o * NI + k]));
        const double e = fabs((double)y[0][i * NO + o] - y[1][i * NO + o]);
        ck_assert_msg(e <= (NI + 2) * 0x1p-23 * mag, "y(%d, %d): %g vs %g", i, o,
                      (double)y[0][i * NO + o], (double)y[1][i * NO + o]);
      }
    for (int i = 0; i < M; i++)
      for (int k = 0; k < NI; k++) {
        double mag = 0;
        for (int o = 0; o < NO; o++)
          mag += fabs((double)bf(dy[i * NO + o]) * bf(in_out ? w[k * NO + o] : w[o * NI + k]));
        ck_assert(fabs((double)dx[0][i * NI + k] - dx[1][i * NI + k]) <=
                  (NO + 2) * 0x1p-23 * mag);
      }
    for (int o = 0; o < NO; o++)
      for (int k = 0; k < NI; k++) {
        double mag = 0;
        for (int i = 0; i < M; i++) mag += fabs((double)bf(dy[i * NO + o]) * bf(x[i * NI + k]));
        const int at = in_out ? k * NO + o : o * NI + k;
        ck_assert_msg(fabs((double)dw[0][at] - dw[1][at]) <= (M + 2) * 0x1p-23 * mag,
                      "dw(%d, %d): %g vs %g", o, k, (double)dw[0][at], (double)dw[1][at]);
      }
    strop__lowp_free(&q);
  }
}
END_TEST

/* The BF16 products on the AMX tiles (where strop__bf16_amx_runs here; the suite's
 * compute_vdpbf16ps run, STROP_BF16_AMX=0, takes vdpbf16ps): a row of C is the same bits
 * whatever rows come with it (the rows from r0 on alone, as a fused loss's chunks or a decoded
 * token give them) and at 1 or 2 threads; a held BF16 weight (strop__bf16_gemm_nt, _nn) gives
 * the bits of the FP32 weight rounded while packed (strop__bf16_gemm_f32); every element within
 * (k + 2) 2^-23 sum |a b| of the double sum, as on vdpbf16ps — which gives other bits (the
 * tiles ran). Shapes with every edge: m past 32 and not a multiple of 16, n not of 32, k not
 * of 32 pairs. */
START_TEST(amx_rows_threads_and_paths) {
  if (!strop__bf16_amx_runs()) return;
  const int threads = strop_get_num_threads();
  static const int64_t shapes[][3] = {
      {1, 5, 7}, {37, 45, 70}, {70, 33, 513}, {33, 96, 64}, {5, 200, 1030}};
  int differs = 0;
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
    for (int tr = 0; tr < 4; tr++) {
      const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
      const int ta = tr & 1, tb = tr >> 1;
      const int64_t lda = ta ? m : k, ldb = tb ? k : n;
      float *a = malloc((size_t)(m * k) * sizeof *a), *b = malloc((size_t)(k * n) * sizeof *b);
      float *c[4];
      for (int v = 0; v < 4; v++) c[v] = malloc((size_t)(m * n) * sizeof *c[v]);
      fill(a, (size_t)(m * k), 0.37);
      fill(b, (size_t)(k * n), 0.21);
      void *work = strop__malloc_aligned(strop__bf16_gemm_f32_scratch(m, n, k));
      for (int th = 1; th <= 2; th++) {
        ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
        strop__bf16_gemm_f32(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, c[th - 1], n, work);
      }
      ck_assert_msg(!memcmp(c[0], c[1], (size_t)(m * n) * sizeof *c[0]),
                    "1 and 2 threads: m %lld n %lld k %lld ta %d tb %d", (long long)m,
                    (long long)n, (long long)k, ta, tb);
      /* the rows from r0 on, alone */
      const int64_t r0 = m > 3 ? 3 : 0;
      strop__bf16_gemm_f32(ta, tb, m - r0, n, k, ta ? a + r0 : a + r0 * lda, lda, b, ldb, 0.0f,
                           c[2], n, work);
      ck_assert_msg(!memcmp(c[2], c[0] + r0 * n, (size_t)((m - r0) * n) * sizeof *c[0]),
                    "rows %lld.. alone: m %lld n %lld k %lld ta %d tb %d", (long long)r0,
                    (long long)m, (long long)n, (long long)k, ta, tb);
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
          double sum = 0.0, mag = 0.0;
          for (int64_t t = 0; t < k; t++) {
            const double p = (double)bf(ta ? a[t * lda + i] : a[i * lda + t]) *
                             (double)bf(tb ? b[j * ldb + t] : b[t * ldb + j]);
            sum += p;
            mag += fabs(p);
          }
          ck_assert(fabs((double)c[0][i * n + j] - sum) <= (double)(k + 2) * 0x1p-23 * mag);
        }
      /* vdpbf16ps: within the same bound (gemm_f32_edges), not the same bits somewhere */
      strop__bf16_amx = 0;
      strop__bf16_gemm_f32(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, c[3], n, work);
      strop__bf16_amx = 1;
      differs += memcmp(c[3], c[0], (size_t)(m * n) * sizeof *c[0]) != 0;
      if (!ta) { /* B as a held BF16 weight: [n, k] (tb) or [k, n] */
        strop__lowp q;
        ck_assert_int_eq(
            strop__lowp_make(&q, STROP__LOWP_BF16, b, tb ? n : k, tb ? k : n, !tb, 0), 0);
        void *w2 = strop__malloc_aligned(strop__bf16_gemm_scratch_max(m, n, k));
        strop__bf16_gemm_nt(m, n, k, a, lda, &q, 0.0f, c[2], n, w2);
        ck_assert_msg(!memcmp(c[2], c[0], (size_t)(m * n) * sizeof *c[0]),
                      "held weight: m %lld n %lld k %lld tb %d", (long long)m, (long long)n,
                      (long long)k, tb);
        strop__free_aligned(w2);
        strop__lowp_free(&q);
      }
      strop__free_aligned(work);
      for (int v = 0; v < 4; v++) free(c[v]);
      free(a);
      free(b);
    }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
  ck_assert_msg(differs > 0, "the AMX products gave vdpbf16ps's bits everywhere");
}
END_TEST

static strop_tensor *wrap(float *x, int64_t n) {
  strop_tensor *t = NULL;
  const int64_t xd[3] = {n, T, D};
  OK(strop_tensor_wrap(x, (size_t)(n * T * D), 3, xd, &t));
  return t;
}

static strop_tensor *forward(strop_model *m, float *x, int64_t n) {
  strop_tensor *tx = wrap(x, n), *y = NULL;
  OK(strop_model_forward(m, tx, &y));
  strop_tensor_free(tx);
  return y;
}

/* One forward and backward of a trainer with the host's dout; the gradients of `names`. */
static void grads(strop_model *m, float *x, int64_t n, const float *dout,
                  const char *const *names, int nn, float **g, float *out) {
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  OK(strop_optimizer_create(m, STROP_OPTIM_SGD, &opt));
  OK(strop_trainer_create(m, opt, &tr));
  strop_tensor *tx = wrap(x, n), *y = NULL, *dy = NULL;
  OK(strop_trainer_forward(tr, tx, &y));
  memcpy(out, strop_tensor_data(y), (size_t)(n * CLASSES) * sizeof *out);
  const int64_t dd[2] = {n, CLASSES};
  OK(strop_tensor_wrap((float *)dout, (size_t)(n * CLASSES), 2, dd, &dy));
  OK(strop_trainer_backward(tr, dy));
  for (int k = 0; k < nn; k++) {
    strop_tensor *t = NULL;
    OK(strop_model_tensor_view(m, names[k], &t));
    const size_t cnt = (size_t)strop_tensor_numel(t);
    strop_tensor_free(t);
    OK(strop_model_get_grad(m, names[k], g[k], cnt));
  }
  strop_tensor_free(tx);
  strop_tensor_free(y);
  strop_tensor_free(dy);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
}

/* Outputs and every weight's gradient of a model computing in BF16 against the same model in
 * FP32, both weight layouts, both paths (vdpbf16ps where it runs, and the forced fallback):
 * the output within 1% of its scale, each gradient within 2% in relative L2 norm (measured
 * about 0.3%); and it differs (the BF16 products ran). */
START_TEST(model_gradcheck) {
  const int in_out = _i & 1, path = _i >> 1;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  static const char *const names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "head.weight"};
  enum { N = 5, NN = 4 };
  static float x[N * T * D], dout[N * CLASSES], ya[N * CLASSES], yb[N * CLASSES];
  float *ga[NN], *gb[NN];
  const size_t cnt[NN] = {64 * 32, 64, 32 * 64, 4 * 12 * 32};
  for (int k = 0; k < NN; k++)
    ga[k] = malloc(cnt[k] * sizeof(float)), gb[k] = malloc(cnt[k] * sizeof(float));
  inputs(x, N * T * D, 0.4);
  fill(dout, N * CLASSES, 0.9);
  strop_model *f = text_model(5, in_out), *b = NULL;
  OK(strop_model_clone(f, &b));
  OK(strop_model_set_compute_dtype(b, STROP_DTYPE_BF16));
  ck_assert_int_eq(strop_model_compute_dtype(b), STROP_DTYPE_BF16);
  ck_assert_int_eq(strop_model_compute_dtype(f), STROP_DTYPE_F32);
  strop__bf16_impl = path;
  grads(f, x, N, dout, names, NN, ga, ya);
  grads(b, x, N, dout, names, NN, gb, yb);
  strop__bf16_impl = 0;
  float scale = 0, err = 0;
  for (int i = 0; i < N * CLASSES; i++) {
    scale = fmaxf(scale, fabsf(ya[i]));
    err = fmaxf(err, fabsf(ya[i] - yb[i]));
  }
  ck_assert_float_gt(err, 0.0f);
  ck_assert_msg(err <= 0.01f * scale, "output: max |diff| %g, scale %g", err, scale);
  for (int k = 0; k < NN; k++) {
    double d2 = 0, n2 = 0;
    for (size_t i = 0; i < cnt[k]; i++) {
      d2 += ((double)ga[k][i] - gb[k][i]) * ((double)ga[k][i] - gb[k][i]);
      n2 += (double)ga[k][i] * ga[k][i];
    }
    ck_assert_msg(d2 > 0 || k == 1, "%s: the BF16 gradient equals FP32's", names[k]);
    ck_assert_msg(sqrt(d2) <= 0.02 * sqrt(n2), "%s: relative error %g", names[k], sqrt(d2 / n2));
    if (getenv("STROP_COMPUTE_VERBOSE"))
      fprintf(stderr, "in_out %d path %d %s: relative error %g\n", in_out, path, names[k],
              sqrt(d2 / n2));
    free(ga[k]);
    free(gb[k]);
  }
  strop_model_free(f);
  strop_model_free(b);
}
END_TEST

/* The attention core computes in the model's compute dtype too: an `attention` layer alone (no
 * weights) gives other outputs in BF16 than in FP32, within 2% of their scale (measured about
 * 0.3%); a model whose packed q|k|v comes from a linear (fc1 -> attention, causal, 4 heads ->
 * head): output within 1% of FP32's, the weights' gradients within 2% in relative L2 norm
 * (measured about 0.3–0.5%) — on vdpbf16ps and on the forced fallback. */
START_TEST(attention_model_close) {
  const int path = _i;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  strop__bf16_impl = path;
  { /* the layer alone */
    const strop_test_node one[] = {{"a", "attention", "num_heads=4 causal=true", NULL}};
    const int64_t shape[2] = {T, 3 * D};
    strop_model *f = strop_test_build(2, shape, one, 1, 2), *b = NULL;
    OK(strop_model_clone(f, &b));
    OK(strop_model_set_compute_dtype(b, STROP_DTYPE_BF16));
    static float x[3 * T * 3 * D];
    inputs(x, 3 * T * 3 * D, 0.1);
    const int64_t xd[3] = {3, T, 3 * D};
    strop_tensor *tx = NULL, *ya = NULL, *yb = NULL;
    OK(strop_tensor_wrap(x, 3 * T * 3 * D, 3, xd, &tx));
    OK(strop_model_forward(f, tx, &ya));
    OK(strop_model_forward(b, tx, &yb));
    float scale = 0, err = 0;
    for (int i = 0; i < 3 * T * D; i++) {
      scale = fmaxf(scale, fabsf(strop_tensor_data(ya)[i]));
      err = fmaxf(err, fabsf(strop_tensor_data(ya)[i] - strop_tensor_data(yb)[i]));
    }
    ck_assert_msg(err > 0.0f, "path %d: the attention's BF16 output is FP32's", path);
    ck_assert_msg(err <= 0.02f * scale, "path %d: attention output off by %g of %g", path, err,
                  scale);
    strop_tensor_free(tx), strop_tensor_free(ya), strop_tensor_free(yb);
    strop_model_free(f), strop_model_free(b);
  }
  const strop_test_node nodes[] = {
      {"fc1", "linear", "out_features=96", NULL},
      {"attn", "attention", "num_heads=4 causal=true", NULL},
      {"flat", "flatten", NULL, NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  static const char *const names[] = {"fc1.weight", "head.weight"};
  enum { N = 5, NN = 2 };
  static float x[N * T * D], dout[N * CLASSES], ya[N * CLASSES], yb[N * CLASSES];
  const size_t cnt[NN] = {96 * 32, 4 * 12 * 32};
  float *ga[NN], *gb[NN];
  for (int k = 0; k < NN; k++)
    ga[k] = malloc(cnt[k] * sizeof(float)), gb[k] = malloc(cnt[k] * sizeof(float));
  inputs(x, N * T * D, 0.4);
  fill(dout, N * CLASSES, 0.9);
  strop_model *f = strop_test_build(2, IN, nodes, 4, 6), *b = NULL;
  OK(strop_model_clone(f, &b));
  OK(strop_model_set_compute_dtype(b, STROP_DTYPE_BF16));
  grads(f, x, N, dout, names, NN, ga, ya);
  grads(b, x, N, dout, names, NN, gb, yb);
  strop__bf16_impl = 0;
  float scale = 0, err = 0;
  for (int i = 0; i < N * CLASSES; i++) {
    scale = fmaxf(scale, fabsf(ya[i]));
    err = fmaxf(err, fabsf(ya[i] - yb[i]));
  }
  ck_assert_msg(err <= 0.01f * scale, "output: max |diff| %g, scale %g", err, scale);
  for (int k = 0; k < NN; k++) {
    double d2 = 0, n2 = 0;
    for (size_t i = 0; i < cnt[k]; i++) {
      d2 += ((double)ga[k][i] - gb[k][i]) * ((double)ga[k][i] - gb[k][i]);
      n2 += (double)ga[k][i] * ga[k][i];
    }
    ck_assert_msg(d2 > 0, "%s: the BF16 gradient equals FP32's", names[k]);
    ck_assert_msg(sqrt(d2) <= 0.02 * sqrt(n2), "%s: relative error %g", names[k], sqrt(d2 / n2));
    if (getenv("STROP_COMPUTE_VERBOSE"))
      fprintf(stderr, "attention path %d %s: relative error %g (output %g of %g)\n", path,
              names[k], sqrt(d2 / n2), (double)err, (double)scale);
    free(ga[k]);
    free(gb[k]);
  }
  strop_model_free(f);
  strop_model_free(b);
}
END_TEST

/* On the fallback, a one-layer model computing in BF16 gives the bits of the FP32 model whose
 * weight holds the rounded values, on the rounded input. */
START_TEST(model_fallback_exact) {
  const strop_test_node nodes[] = {{"fc", "linear", "out_features=20", NULL}};
  const int64_t in1[1] = {33};
  strop_model *m = strop_test_build(1, in1, nodes, 1, 3), *r = NULL;
  OK(strop_model_clone(m, &r));
  OK(strop_model_set_compute_dtype(m, STROP_DTYPE_BF16));
  strop_tensor *w = NULL;
  OK(strop_model_tensor_view(r, "fc.weight", &w));
  strop__bf16_round_f32(strop_tensor_data(w), strop_tensor_data(w), 20 * 33);
  strop_tensor_free(w);
  static float x[7 * 33], xr[7 * 33];
  fill(x, 7 * 33, 0.77);
  strop__bf16_round_f32(x, xr, 7 * 33);
  const int64_t xd[2] = {7, 33};
  strop_tensor *tx = NULL, *txr = NULL, *a = NULL, *b = NULL;
  OK(strop_tensor_wrap(x, 7 * 33, 2, xd, &tx));
  OK(strop_tensor_wrap(xr, 7 * 33, 2, xd, &txr));
  strop__bf16_impl = 1;
  OK(strop_model_forward(m, tx, &a));
  OK(strop_model_forward(r, txr, &b));
  strop__bf16_impl = 0;
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 7 * 20 * sizeof(float));
  strop_tensor_free(a);
  strop_tensor_free(b);
  strop_tensor_free(tx);
  strop_tensor_free(txr);
  strop_model_free(m);
  strop_model_free(r);
}
END_TEST

/* ---- the BF16 copies ---- */

/* The copy follows the weight: after optimizer steps, strop_model_set_tensor, a load and a
 * write through a view, the model's outputs are those of a clone (which makes its copies from
 * the values as they are now) — a stale copy would give the outputs of the old weights. */
START_TEST(copy_follows_the_weight) {
  for (int path = 0; path < 2; path++) {
    if (path == 0 && !strop__bf16_dot_enabled()) continue;
    strop__bf16_impl = path;
    strop_model *m = text_model(8, 1);
    OK(strop_model_set_compute_dtype(m, STROP_DTYPE_BF16));
    static float x[3 * T * D];
    inputs(x, 3 * T * D, 0.2);
    strop_tensor *y0 = forward(m, x, 3); /* makes the copies */
    strop_tensor_free(y0);
    strop_optimizer *opt = NULL;
    strop_trainer *tr = NULL;
    OK(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt));
    OK(strop_optimizer_set_double(opt, STROP_OPT_LR, 1e-2));
    OK(strop_trainer_create(m, opt, &tr));
    for (int step = 0; step < 4; step++) { /* each step changes every weight */
      static float yv[3];
      for (int i = 0; i < 3; i++) yv[i] = (float)((i + step) % CLASSES);
      const int64_t yd[1] = {3};
      strop_tensor *tx = wrap(x, 3), *ty = NULL;
      OK(strop_tensor_wrap(yv, 3, 1, yd, &ty));
      float loss;
      OK(strop_trainer_step(tr, tx, ty, &loss));
      strop_tensor_free(tx);
      strop_tensor_free(ty);
      for (int what = 0; what < 2; what++) {
        if (what == 1 && step == 2) { /* set_tensor, then a write through a view */
          static float v[64 * 32];
          fill(v, 64 * 32, 0.05 * step);
          OK(strop_model_set_tensor(m, "fc1.weight", v, 64 * 32));
        } else if (what == 1 && step == 3) {
          strop_tensor *t = NULL;
          OK(strop_model_tensor_view(m, "fc2.weight", &t));
          strop_tensor_data(t)[5] += 0.75f;
          strop_tensor_free(t);
        } else if (what == 1) {
          continue;
        }
        strop_model *c = NULL;
        OK(strop_model_clone(m, &c));
        strop_tensor *a = forward(m, x, 3), *b = forward(c, x, 3);
        ck_assert_msg(
            !memcmp(strop_tensor_data(a), strop_tensor_data(b), 3 * CLASSES * sizeof(float)),
            "path %d step %d (%d): a stale BF16 copy", path, step, what);
        strop_tensor_free(a);
        strop_tensor_free(b);
        strop_model_free(c);
      }
    }
    strop_trainer_free(tr);
    strop_optimizer_free(opt);
    strop_model_free(m);
  }
  strop__bf16_impl = 0;
}
END_TEST

/* A copy held in the kernel's panels (strop__lowp.panels, as strop__param_shadow makes it)
 * stands for the same values and gives the same bits as the plain copy packed at each call:
 * expanded, copied, its bytes; strop__bf16_gemm_nt (which reads the panels as they are) and
 * _nn (which packs its panels from them), vectorised and element by element (strop__bf16_impl
 * 2); the few-row forward (which leaves panels to the general path) and the forced fallback.
 * Both layouts, shapes with edges (outputs and inputs not multiples of 32, odd, 1). */
START_TEST(panels_same_bits) {
  static const int64_t shapes[][2] = {{37, 45}, {1, 1}, {33, 70}, {64, 32}, {100, 129}, {5, 300}};
  enum { M = 13 };
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
    for (int sc = 0; sc < 2; sc++) {
      const int64_t out = shapes[sh][0], in = shapes[sh][1];
      const int64_t R = sc ? in : out, C = sc ? out : in;
      float *w = malloc((size_t)(R * C) * sizeof *w), *x = malloc((size_t)(M * in) * sizeof *x);
      float *dy = malloc((size_t)(M * out) * sizeof *dy);
      fill(w, (size_t)(R * C), 0.37);
      fill(x, (size_t)(M * in), 0.61);
      fill(dy, (size_t)(M * out), 0.23);
      strop__lowp plain, held = {STROP__LOWP_BF16, sc, R, C, 0, NULL, NULL, 1}, dup;
      ck_assert_int_eq(strop__lowp_make(&plain, STROP__LOWP_BF16, w, R, C, sc, 0), 0);
      held.v = strop__malloc_aligned(strop__bf16_panels_bytes(out, in));
      strop__bf16_shadow_fill(&held, w);
      ck_assert_uint_eq(strop__lowp_bytes(&held), strop__bf16_panels_bytes(out, in));
      ck_assert_uint_ge(strop__lowp_bytes(&held), strop__lowp_bytes(&plain));
      ck_assert_int_eq(strop__lowp_copy(&dup, &held), 0);
      float *e0 = malloc((size_t)(R * C) * sizeof *e0),
            *e1 = malloc((size_t)(R * C) * sizeof *e1);
      strop__lowp_expand(&plain, e0);
      strop__lowp_expand(&dup, e1);
      ck_assert_mem_eq(e0, e1, (size_t)(R * C) * sizeof *e0);
      float *y[2], *dx[2], *y1[2];
      for (int h = 0; h < 2; h++) {
        y[h] = malloc((size_t)(M * out) * sizeof(float));
        y1[h] = malloc((size_t)out * sizeof(float));
        dx[h] = malloc((size_t)(M * in) * sizeof(float));
      }
      for (int impl = 0; impl < 3; impl++) {
        if (impl != 1 && !strop__bf16_dot_enabled()) continue;
        strop__bf16_impl = impl; /* 0 vectorised, 1 the fallback, 2 element by element */
        for (int h = 0; h < 2; h++) {
          const strop__lowp *q = h ? &held : &plain;
          ck_assert_int_eq(strop__linear_forward_bf16(x, q, NULL, y[h], M, in, out), 0);
          ck_assert_int_eq(strop__linear_forward_bf16(x, q, NULL, y1[h], 1, in, out), 0);
          ck_assert_int_eq(
              strop__linear_backward_bf16(x, q, dy, dx[h], NULL, NULL, M, in, out,
                                          STROP__LB_ASSIGN_DX | (sc ? STROP__LB_W_IN_OUT : 0)),
              0);
        }
        ck_assert_msg(!memcmp(y[0], y[1], (size_t)(M * out) * sizeof(float)),
                      "y: %lld x %lld layout %d impl %d", (long long)out, (long long)in, sc,
                      impl);
        ck_assert_msg(!memcmp(y1[0], y1[1], (size_t)out * sizeof(float)),
                      "one row: %lld x %lld layout %d impl %d", (long long)out, (long long)in, sc,
                      impl);
        ck_assert_msg(!memcmp(dx[0], dx[1], (size_t)(M * in) * sizeof(float)),
                      "dx: %lld x %lld layout %d impl %d", (long long)out, (long long)in, sc,
                      impl);
      }
      strop__bf16_impl = 0;
      for (int h = 0; h < 2; h++) free(y[h]), free(y1[h]), free(dx[h]);
      free(e0), free(e1), free(w), free(x), free(dy);
      strop__lowp_free(&plain);
      strop__lowp_free(&held);
      strop__lowp_free(&dup);
    }
}
END_TEST

/* The copies are made once per change of the weights, not per forward: two forwards (and a
 * backward) share them; strop_model_step_memory counts them (the BF16 model's planned peak is
 * the FP32 one's plus 2 bytes per linear weight value, at least); back to FP32 gives them back
 * and gives FP32's bits again. */
START_TEST(copies_memory_and_default) {
  strop_model *m = text_model(4, 0), *r = NULL;
  OK(strop_model_clone(m, &r));
  size_t p32 = 0, p16 = 0;
  const int64_t shape[2] = {T, D};
  OK(strop_model_step_memory(m, 4, shape, 2, 2, NULL, &p32));
  OK(strop_model_set_compute_dtype(m, STROP_DTYPE_BF16));
  OK(strop_model_step_memory(m, 4, shape, 2, 2, NULL, &p16));
  const size_t copies = 2 * (64 * 32 + 32 * 64 + 4 * 12 * 32);
  strop__param *w = strop__model_param_find(m, "fc1.weight");
  ck_assert_int_eq(w->shadow.dtype, STROP__LOWP_BF16);
  ck_assert_uint_ge(p16, p32 + copies);
  static float x[2 * T * D];
  inputs(x, 2 * T * D, 0.6);
  const void *v = w->shadow.v;
  strop_tensor *a = forward(m, x, 2), *b = forward(m, x, 2);
  ck_assert_ptr_eq(w->shadow.v, v); /* the same copy, not made again */
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 2 * CLASSES * sizeof(float));
  strop_tensor_free(a);
  strop_tensor_free(b);
  OK(strop_model_set_compute_dtype(m, STROP_DTYPE_F32));
  ck_assert_int_eq(w->shadow.dtype, 0);
  a = forward(m, x, 2);
  b = forward(r, x, 2);
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 2 * CLASSES * sizeof(float));
  strop_tensor_free(a);
  strop_tensor_free(b);
  strop_model_free(m);
  strop_model_free(r);
}
END_TEST

/* ---- fine-tunes ---- */

typedef struct run {
  float loss[80];
} run;

static run train(strop_model *m, int steps, double lr) {
  run out;
  memset(&out, 0, sizeof out);
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  OK(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt));
  OK(strop_optimizer_set_double(opt, STROP_OPT_LR, lr));
  OK(strop_trainer_create(m, opt, &tr));
  enum { N = 16 };
  static float x[N * T * D], y[N];
  const int64_t yd[1] = {N};
  for (int s = 0; s < steps; s++) {
    inputs(x, N * T * D, 0.1 * (s % 8));
    for (int i = 0; i < N; i++) { /* the label: which quarter the first features' sum is in */
      double acc = 0;
      for (int k = 0; k < 2 * D; k++) acc += x[(size_t)i * T * D + (size_t)k];
      y[i] = (float)(acc < -3 ? 0 : acc < 0 ? 1 : acc < 3 ? 2 : 3);
    }
    strop_tensor *tx = wrap(x, N), *ty = NULL;
    OK(strop_tensor_wrap(y, N, 1, yd, &ty));
    OK(strop_trainer_step(tr, tx, ty, &out.loss[s]));
    strop_tensor_free(tx);
    strop_tensor_free(ty);
  }
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  return out;
}

/* The weight cache off (strop_model_set_weight_cache(m, 0)): the trained weights' BF16
 * products pack them per call instead of reading kept copies, with the same bits — six Adam
 * steps give the same losses and every parameter the same values as with the copies kept, for
 * a full fine-tune in both weight layouts, LoRA (its frozen FP32 bases keep their copies) and a
 * gated MLP, at 1 and 2 threads; the trained weights then hold no copy, and
 * strop_model_step_memory plans at least half their bytes less. On the forced fallback the
 * copies stay (the FP32 GEMM multiplies them) and so do the bits. */
static strop_model *cache_model(int kind) {
  if (kind < 2) return text_model(21, kind);
  if (kind == 2) return lora_model(21);
  const strop_test_node nodes[] = {
      {"fc1", "linear", "out_features=48", NULL},
      {"mlp", "gated_mlp", "intermediate_size=40 bias=true", NULL},
      {"flat", "flatten", NULL, NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  return strop_test_build(2, IN, nodes, 4, 21);
}

START_TEST(weight_cache_same_bits) {
  const int kind = _i % 4, threads = 1 + (_i / 4) % 2, path = _i / 8;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
  strop__bf16_impl = path;
  strop_model *on = cache_model(kind), *off = NULL;
  OK(strop_model_set_compute_dtype(on, STROP_DTYPE_BF16));
  OK(strop_model_clone(on, &off));
  ck_assert_int_eq(strop_model_weight_cache(off), 1); /* the default */
  OK(strop_model_set_weight_cache(off, 0));
  ck_assert_int_eq(strop_model_weight_cache(off), 0);
  size_t p_on = 0, p_off = 0;
  const int64_t shape[2] = {T, D};
  OK(strop_model_step_memory(on, 16, shape, 2, 2, NULL, &p_on));
  OK(strop_model_step_memory(off, 16, shape, 2, 2, NULL, &p_off));
  run a = train(on, 6, 1e-2), b = train(off, 6, 1e-2);
  strop__bf16_impl = 0;
  ck_assert_mem_eq(a.loss, b.loss, 6 * sizeof(float));
  ck_assert_float_ne(a.loss[0], a.loss[5]); /* it trained */
  size_t trained = 0;
  int frozen_copies = 0;
  ck_assert_int_eq(on->n_params, off->n_params);
  for (int i = 0; i < on->n_params; i++) {
    const strop__param *p = on->params[i], *q = off->params[i];
    ck_assert_str_eq(p->name, q->name);
    if (p->data) ck_assert_mem_eq(p->data, q->data, p->numel * sizeof(float));
    if (p->trainable && p->shadow.dtype) {
      trained += strop__lowp_bytes(&p->shadow);
      /* packed per call: no copy, but on the fallback, which multiplies it */
      ck_assert_int_eq(q->shadow.dtype, path ? STROP__LOWP_BF16 : 0);
    }
    if (!p->trainable && p->shadow.dtype) frozen_copies++, ck_assert(q->shadow.dtype);
  }
  ck_assert_uint_gt(trained, 0);
  ck_assert_int_eq(frozen_copies, kind == 2 ? 2 : 0); /* LoRA's two frozen bases keep theirs */
  if (path == 0) ck_assert_uint_le(p_off + trained / 2, p_on);
  else ck_assert_uint_eq(p_off, p_on);
  strop_model *c = NULL; /* a clone keeps the setting */
  OK(strop_model_clone(off, &c));
  ck_assert_int_eq(strop_model_weight_cache(c), 0);
  strop_model_free(c);
  /* back on: the copies are made again, and it goes on with the same bits */
  OK(strop_model_set_weight_cache(off, 1));
  a = train(on, 2, 1e-2), b = train(off, 2, 1e-2);
  ck_assert_mem_eq(a.loss, b.loss, 2 * sizeof(float));
  strop_model_free(on);
  strop_model_free(off);
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
  /* the arguments */
  ck_assert_int_eq(strop_model_set_weight_cache(NULL, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_weight_cache(NULL), -1);
  strop_model *m = text_model(1, 0);
  ck_assert_int_eq(strop_model_set_weight_cache(m, 2), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "0 or 1, got 2"));
  ck_assert_int_eq(strop_model_weight_cache(m), 1);
  strop_model_free(m);
}
END_TEST

/* Activations held in BF16 between forward and backward (graph/model.c, compact_plan): a step
 * computing in BF16 keeps an output that only BF16 products read (a layer norm's before its
 * projections, q, k and v before the attention; on vdpbf16ps a GELU's before its projection,
 * instead of computing it again) rounded to BF16, and widens it back for the backward (or the
 * products read it so): the same bits as keeping it in FP32. Six Adam steps with it on and off
 * give the same losses and every parameter the same values, for two pre-LN transformer blocks
 * with separate q, k, v (kind 0), with rotary embeddings (1: q and k are rotated in FP32 first,
 * so they stay FP32; the norms' outputs still go), with one packed q|k|v projection (2), and
 * with the blocks checkpointed (3: nothing inside them is held so), at 1 and 2 threads and on
 * the forced fallback; exactly the outputs named below are held at the end of a forward, and
 * the step's planned region is smaller (kind 3: the same). */
/* Block b: a pre-LN attention (separate q, k, v, or with kind 2 one packed q|k|v projection and
 * a causal mask; kind 1 with rotary embeddings) and a GELU MLP, each with its residual sum,
 * reading `in` and ending in "b<b>.out". */
static void add_block(strop_model *m, int b, int kind, const char *in) {
  char ln1[16], q[16], k[16], v[16], att[16], o[16], res[16], ln2[16], fc[16], act[16];
  char proj[16], out[16], ins[64];
#define NAME(buf, part) snprintf(buf, sizeof buf, "b%d." part, b)
  NAME(ln1, "ln1"), NAME(q, "q"), NAME(k, "k"), NAME(v, "v"), NAME(att, "att"), NAME(o, "o");
  NAME(res, "res"), NAME(ln2, "ln2"), NAME(fc, "fc"), NAME(act, "act"), NAME(proj, "proj");
  NAME(out, "out");
#undef NAME
  OK(strop_model_add(m, ln1, "layernorm", NULL, in));
  if (kind == 2) {
    snprintf(q, sizeof q, "b%d.qkv", b);
    OK(strop_model_add(m, q, "linear", "out_features=96", ln1));
    OK(strop_model_add(m, att, "attention", "num_heads=4 causal=true", q));
  } else {
    OK(strop_model_add(m, q, "linear", "out_features=32", ln1));
    OK(strop_model_add(m, k, "linear", "out_features=32", ln1));
    OK(strop_model_add(m, v, "linear", "out_features=32", ln1));
    snprintf(ins, sizeof ins, "%s,%s,%s", q, k, v);
    OK(strop_model_add(m, att, "attention",
                       kind == 1 ? "num_heads=4 rope=rotate_half" : "num_heads=4", ins));
  }
  OK(strop_model_add(m, o, "linear", "out_features=32", att));
  snprintf(ins, sizeof ins, "%s,%s", in, o);
  OK(strop_model_add(m, res, "add", NULL, ins));
  OK(strop_model_add(m, ln2, "layernorm", NULL, res));
  OK(strop_model_add(m, fc, "linear", "out_features=64", ln2));
  OK(strop_model_add(m, act, "gelu", NULL, fc));
  OK(strop_model_add(m, proj, "linear", "out_features=32", act));
  snprintf(ins, sizeof ins, "%s,%s", res, proj);
  OK(strop_model_add(m, out, "add", NULL, ins));
}

/* Two blocks (kind 2: one), a flatten and a 4-class head; kind 3 checkpoints the blocks. */
static strop_model *block_model(int kind) {
  strop_model *m = NULL;
  OK(strop_model_create(2, IN, &m));
  add_block(m, 0, kind, "input");
  if (kind != 2) add_block(m, 1, kind, "b0.out");
  OK(strop_model_add(m, "flat", "flatten", NULL, NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=4", NULL));
  OK(strop_model_finalize(m, 31));
  if (kind == 3) OK(strop_model_set_checkpointing(m, "b?"));
  return m;
}

/* One training forward of n samples of x with the compaction on or off: exactly the outputs
 * named in held (NULL-terminated) are held in BF16 at its end when on, none when off; returns
 * how many are, and the step's planned region in *region. */
static int held_in_bf16(strop_model *m, const float *x, int64_t n, const char *const *held,
                        int on, const char *label, size_t *region) {
  strop__compact_acts = on;
  const strop__act *o = NULL;
  OK(strop__model_forward_exec(m, x, n, 1, NULL, &o));
  *region = m->plan_bytes;
  int n_held = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    const int is = m->released[i] == STROP__ACT_COMPACT;
    int want = 0;
    for (int h = 0; held[h]; h++) want |= !strcmp(held[h], m->nodes[i].name);
    ck_assert_msg(is == (on && want), "%s compact %d: '%s' held in BF16: %d", label, on,
                  m->nodes[i].name, is);
    n_held += is;
  }
  strop__model_step_end(m);
  return n_held;
}

/* Six training steps of off with the compaction off and of on with it on (trainer: train or
 * train_cnn): the same losses and parameters bit for bit, and they trained; frees both models
 * and the forced path. */
static void compact_trains_same_bits(strop_model *on, strop_model *off,
                                     run (*trainer)(strop_model *, int, double)) {
  strop__compact_acts = 0;
  const run b = trainer(off, 6, 1e-2);
  strop__compact_acts = 1;
  const run a = trainer(on, 6, 1e-2);
  strop__bf16_impl = 0;
  ck_assert_mem_eq(a.loss, b.loss, 6 * sizeof(float));
  ck_assert_float_ne(a.loss[0], a.loss[5]); /* it trained */
  ck_assert_int_eq(on->n_params, off->n_params);
  for (int i = 0; i < on->n_params; i++) {
    const strop__param *p = on->params[i], *q = off->params[i];
    ck_assert_str_eq(p->name, q->name);
    if (p->data) ck_assert_mem_eq(p->data, q->data, p->numel * sizeof(float));
  }
  strop_model_free(on);
  strop_model_free(off);
}

START_TEST(compact_acts_same_bits) {
  const int kind = _i % 4, threads = 1 + (_i / 4) % 2, path = _i / 8;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
  strop__bf16_impl = path;
  strop_model *on = block_model(kind), *off = NULL;
  OK(strop_model_set_compute_dtype(on, STROP_DTYPE_BF16));
  OK(strop_model_clone(on, &off));
  /* one training forward of 16 samples each: which outputs are held in BF16 at its end, and
   * the planned region of the step's activations and gradients */
  static const char *const held[4][11] = {{"b0.ln1", "b0.q", "b0.k", "b0.v", "b0.ln2", "b1.ln1",
                                           "b1.q", "b1.k", "b1.v", "b1.ln2", NULL},
                                          {"b0.ln1", "b0.ln2", "b1.ln1", "b1.ln2", NULL},
                                          {"b0.ln1", "b0.qkv", "b0.ln2", NULL},
                                          {NULL}};
  /* on vdpbf16ps the GELUs too: held for their projections, which read them as held, rather
   * than computed again (strop__hold_recomputable) */
  const char *names[16];
  int nh = 0;
  for (; held[kind][nh]; nh++) names[nh] = held[kind][nh];
  if (path == 0 && kind != 3) names[nh++] = "b0.act";
  if (path == 0 && kind < 2) names[nh++] = "b1.act";
  names[nh] = NULL;
  static float x[16 * T * D];
  inputs(x, 16 * T * D, 0.4);
  size_t region[2];
  strop_model *ms[2] = {off, on};
  char label[16];
  snprintf(label, sizeof label, "kind %d", kind);
  for (int c = 0; c < 2; c++)
    ck_assert_int_eq(held_in_bf16(ms[c], x, 16, names, c, label, &region[c]) > 0, c && kind != 3);
  if (kind == 3) ck_assert_uint_eq(region[1], region[0]);
  else ck_assert_msg(region[1] < region[0], "planned %zu, in FP32 %zu", region[1], region[0]);
  compact_trains_same_bits(on, off, train);
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}
END_TEST

/* strop_model_set_attention: block_model(0)'s attention (12 positions, heads 8 wide) keeps its
 * weights by default (auto), as materialized does, with the same bits; tiled keeps none — the
 * planned step memory drops — and follows the same losses within 1e-3. A clone keeps the
 * setting; a forward pending when it changes keeps its own choice (its backward gives the
 * gradients of an unchanged step); bad arguments leave the model as it was. */
START_TEST(attention_setting) {
  strop_model *m[3] = {block_model(0), NULL, NULL}, *c = NULL;
  ck_assert_int_eq(strop_model_attention(m[0]), STROP_ATTENTION_AUTO);
  OK(strop_model_clone(m[0], &m[1]));
  OK(strop_model_clone(m[0], &m[2]));
  OK(strop_model_set_attention(m[1], STROP_ATTENTION_TILED));
  OK(strop_model_set_attention(m[2], STROP_ATTENTION_MATERIALIZED));
  OK(strop_model_clone(m[1], &c));
  ck_assert_int_eq(strop_model_attention(c), STROP_ATTENTION_TILED);
  /* what a training forward of 16 samples holds for its backward */
  size_t p[3];
  static float x16[16 * T * D];
  inputs(x16, 16 * T * D, 0.4);
  for (int k = 0; k < 3; k++) {
    const strop__act *o = NULL;
    OK(strop__model_forward_exec(m[k], x16, 16, 1, NULL, &o));
    p[k] = m[k]->arena.used_total;
    strop__model_step_end(m[k]);
  }
  ck_assert_uint_eq(p[0], p[2]);
  /* the weights of 2 layers x 4 heads x 12 x 12 at 16 samples, less the tiled statistics */
  ck_assert_uint_ge(p[0], p[1] + 2 * 4 * 12 * 12 * 16 * sizeof(float) * 3 / 4);
  run r[3];
  for (int k = 0; k < 3; k++) r[k] = train(m[k], 6, 1e-2);
  ck_assert_mem_eq(r[0].loss, r[2].loss, 6 * sizeof(float));
  for (int s = 0; s < 6; s++)
    ck_assert_msg(fabsf(r[0].loss[s] - r[1].loss[s]) <= 1e-3f, "step %d: %g tiled %g", s,
                  (double)r[0].loss[s], (double)r[1].loss[s]);
  /* switched between a forward and its backward: the backward runs as its forward did */
  strop_model *u[2] = {NULL, NULL};
  for (int k = 0; k < 2; k++) {
    OK(strop_model_clone(m[2], &u[k]));
    strop_optimizer *opt = NULL;
    strop_trainer *tr = NULL;
    OK(strop_optimizer_create(u[k], STROP_OPTIM_SGD, &opt));
    OK(strop_trainer_create(u[k], opt, &tr));
    static float x[4 * T * D];
    inputs(x, 4 * T * D, 0.2);
    strop_tensor *tx = wrap(x, 4), *out = NULL;
    OK(strop_trainer_forward(tr, tx, &out));
    if (k) OK(strop_model_set_attention(u[k], STROP_ATTENTION_TILED));
    const int64_t n = strop_tensor_numel(out);
    float *d = malloc((size_t)n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (int64_t e = 0; e < n; e++) d[e] = 0.01f * (float)(e % 5) - 0.02f;
    strop_tensor *td = NULL;
    int64_t od[4];
    const int orank = strop_tensor_shape(out, od, 4);
    OK(strop_tensor_wrap(d, (size_t)n, orank, od, &td));
    OK(strop_trainer_backward(tr, td));
    OK(strop_trainer_apply(tr));
    strop_tensor_free(td);
    free(d);
    strop_tensor_free(out);
    strop_tensor_free(tx);
    strop_trainer_free(tr);
    strop_optimizer_free(opt);
  }
  for (int i = 0; i < u[0]->n_params; i++)
    ck_assert_mem_eq(u[0]->params[i]->data, u[1]->params[i]->data,
                     u[0]->params[i]->numel * sizeof(float));
  /* the arguments */
  ck_assert_int_eq(strop_model_set_attention(NULL, 1), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_attention(NULL), -1);
  ck_assert_int_eq(strop_model_set_attention(m[1], 3), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "got 3"));
  ck_assert_int_eq(strop_model_attention(m[1]), STROP_ATTENTION_TILED);
  for (int k = 0; k < 3; k++) strop_model_free(m[k]);
  strop_model_free(c);
  strop_model_free(u[0]);
  strop_model_free(u[1]);
}
END_TEST

/* A full fine-tune (every linear trains in BF16) and a LoRA one (the FP32 base multiplies in
 * BF16) follow FP32's loss curve, on both paths: every step within 0.03 of the FP32 loss, and
 * the model learns. */
START_TEST(finetune_close) {
  const int lora = _i & 1, path = _i >> 1;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  enum { STEPS = 60 };
  strop_model *f = lora ? lora_model(11) : text_model(11, 1), *q = NULL;
  OK(strop_model_clone(f, &q));
  OK(strop_model_set_compute_dtype(q, STROP_DTYPE_BF16));
  strop__bf16_impl = path;
  run a = train(f, STEPS, 3e-3), b = train(q, STEPS, 3e-3);
  strop__bf16_impl = 0;
  double worst = 0, first = 0, last = 0;
  for (int s = 0; s < STEPS; s++) {
    const double d = fabs((double)a.loss[s] - (double)b.loss[s]);
    ck_assert_msg(d <= 0.03, "lora %d path %d step %d: fp32 loss %g, bf16 loss %g", lora, path, s,
                  (double)a.loss[s], (double)b.loss[s]);
    worst = fmax(worst, d);
  }
  if (getenv("STROP_COMPUTE_VERBOSE"))
    fprintf(stderr, "lora %d path %d: worst |loss diff| %g; fp32 %g -> %g, bf16 %g -> %g\n", lora,
            path, worst, (double)a.loss[0], (double)a.loss[STEPS - 1], (double)b.loss[0],
            (double)b.loss[STEPS - 1]);
  ck_assert(worst > 0); /* the BF16 products ran */
  for (int s = 0; s < 8; s++) first += b.loss[s], last += b.loss[STEPS - 8 + s];
  ck_assert_msg(last < 0.8 * first, "no learning: %g -> %g", first / 8, last / 8);
  strop_model_free(f);
  strop_model_free(q);
}
END_TEST

/* The trainer's cross-entropy takes its exponentials in single precision when the model
 * computes in BF16 (strop__loss_cfg.fp32_exp) and in double when it computes in FP32: a step of
 * a 1000-class head with strop__ce_fp32 on and off (the first of two accumulated, so the
 * gradients stay) gives bias gradients (FP32 sums of the loss's gradient) that differ, within
 * 1e-5 of the largest; an FP32 model's bits do not depend on the switch, nor a build's without
 * the AVX-512 path (the sanitizers'). */
START_TEST(loss_exponentials_follow_the_dtype) {
  enum { N = 16, F = 32, K = 1000 };
  const strop_test_node nodes[] = {{"head", "linear", "out_features=1000", NULL}};
  const int64_t in1[1] = {F}, xd[2] = {N, F}, yd[1] = {N};
  static float x[N * F], y[N];
  inputs(x, N * F, 0.3);
  for (int i = 0; i < N; i++) y[i] = (float)((i * 397) % K);
  for (int bf16 = 0; bf16 < 2; bf16++) {
    strop_model *m[2] = {strop_test_build(1, in1, nodes, 1, 5), NULL};
    OK(strop_model_clone(m[0], &m[1]));
    for (int k = 0; k < 2; k++) {
      if (bf16) OK(strop_model_set_compute_dtype(m[k], STROP_DTYPE_BF16));
      strop__ce_fp32 = k == 0;
      strop_optimizer *opt = NULL;
      strop_trainer *tr = NULL;
      OK(strop_optimizer_create(m[k], STROP_OPTIM_SGD, &opt));
      OK(strop_trainer_create(m[k], opt, &tr));
      OK(strop_trainer_set_int(tr, STROP_TRAIN_ACCUM_STEPS, 2)); /* the gradient stays */
      strop_tensor *tx = NULL, *ty = NULL;
      OK(strop_tensor_wrap(x, N * F, 2, xd, &tx));
      OK(strop_tensor_wrap(y, N, 1, yd, &ty));
      float loss = 0.0f;
      OK(strop_trainer_step(tr, tx, ty, &loss));
      strop_tensor_free(tx);
      strop_tensor_free(ty);
      strop_trainer_free(tr);
      strop_optimizer_free(opt);
    }
    strop__ce_fp32 = 1;
    const strop__param *a = strop__model_param_find(m[0], "head.bias"),
                       *b = strop__model_param_find(m[1], "head.bias");
    double worst = 0.0, big = 0.0;
    for (size_t i = 0; i < a->numel; i++) {
      worst = fmax(worst, fabs((double)a->grad[i] - (double)b->grad[i]));
      big = fmax(big, fabs((double)b->grad[i]));
    }
    if (bf16 && strop__ce_fp32_available())
      ck_assert_msg(worst > 0.0 && worst <= 1e-5 * big, "BF16: gradients %g apart (of %g)", worst,
                    big);
    else /* FP32, or a build without the single-precision path */
      ck_assert_msg(worst == 0.0, "FP32: the switch changed the gradient by %g", worst);
    for (int k = 0; k < 2; k++) strop_model_free(m[k]);
  }
}
END_TEST

/* ---- convolutions ---- */

/* Shapes with the lowering's cases: pointwise (P 9: a vdpbf16ps block holds several images),
 * 3x3 padded, one image wider than a block, stride 2, a 7x7 stem, a strided 1x1, groups; a
 * chunk's last block smaller than the others, and (512 inputs) one whose product packs all of
 * its columns at once where a full block's does not (more work area: ResNet-50's 14x14 stage
 * at batch 8 and 2 threads overran it before). */
typedef struct cshape {
  int64_t n, ci, h, w, co, k, s, p, g;
} cshape;
static const cshape CSH[] = {
    {5, 6, 3, 3, 7, 1, 1, 0, 1},    {3, 5, 9, 11, 8, 3, 1, 1, 1},
    {2, 4, 23, 24, 6, 3, 1, 1, 1},  {4, 3, 10, 9, 5, 3, 2, 1, 1},
    {2, 3, 15, 14, 4, 7, 2, 3, 1},  {3, 8, 7, 7, 16, 1, 2, 0, 1},
    {3, 6, 8, 7, 4, 3, 1, 1, 2},    {7, 5, 9, 11, 8, 3, 1, 1, 1},
    {9, 6, 14, 14, 12, 1, 1, 0, 1}, {8, 512, 14, 14, 16, 1, 1, 0, 1},
};
enum { NCSH = sizeof CSH / sizeof CSH[0] };

static strop__conv2d_dims cdims(const cshape *c, int bf16) {
  strop__conv2d_dims d;
  memset(&d, 0, sizeof d);
  d.n = c->n, d.c_in = c->ci, d.h = c->h, d.w = c->w, d.c_out = c->co;
  d.kh = d.kw = c->k, d.sh = d.sw = c->s, d.ph = d.pw = c->p, d.dh = d.dw = 1;
  d.groups = c->g, d.bf16 = bf16;
  strop__conv2d_out_size(&d);
  return d;
}

typedef struct cbufs {
  size_t nx, nw, ny;
  float *x, *w, *b, *dy, *xr, *wr, *dyr, *y, *dx, *dw, *db, *scratch;
} cbufs;

static cbufs calloc_bufs(const strop__conv2d_dims *d, int chunks) {
  cbufs c;
  c.nx = (size_t)(d->n * d->c_in * d->h * d->w);
  c.nw = (size_t)(d->c_out * d->c_in / d->groups * d->kh * d->kw);
  c.ny = (size_t)(d->n * d->c_out * d->oh * d->ow);
  float **v[] = {&c.x, &c.xr, &c.dx};
  for (int i = 0; i < 3; i++) *v[i] = calloc(c.nx, sizeof(float));
  float **u[] = {&c.w, &c.wr, &c.dw};
  for (int i = 0; i < 3; i++) *u[i] = calloc(c.nw, sizeof(float));
  float **t[] = {&c.dy, &c.dyr, &c.y};
  for (int i = 0; i < 3; i++) *t[i] = calloc(c.ny, sizeof(float));
  c.b = calloc((size_t)d->c_out, sizeof(float));
  c.db = calloc((size_t)d->c_out, sizeof(float));
  size_t fl = strop__conv2d_scratch_floats(d, 0, chunks, NULL);
  const size_t fb = strop__conv2d_scratch_floats(d, 1, chunks, NULL);
  if (fb > fl) fl = fb;
  c.scratch = aligned_alloc(64, (fl * sizeof(float) + 63) / 64 * 64);
  fill(c.x, c.nx, 0.3);
  fill(c.w, c.nw, 0.11);
  fill(c.b, (size_t)d->c_out, 0.7);
  fill(c.dy, c.ny, 0.53);
  strop__bf16_round_f32(c.x, c.xr, c.nx);
  strop__bf16_round_f32(c.w, c.wr, c.nw);
  strop__bf16_round_f32(c.dy, c.dyr, c.ny);
  return c;
}

static void free_bufs(cbufs *c) {
  float *all[] = {c->x, c->w, c->b, c->dy, c->xr, c->wr, c->dyr, c->y, c->dx, c->dw, c->db};
  for (int i = 0; i < 11; i++) free(all[i]);
  free(c->scratch);
}

/* The exact fallback (forced) is the FP32 conv on the rounded x, w and dy, bit for bit: the
 * forward (bias in FP32), dx and dW; db the FP32 sum of the unrounded dy. Every shape, 1 and 2
 * chunks, dx written and added. */
START_TEST(conv_fallback_exact) {
  strop__bf16_impl = 1;
  for (int k = 0; k < NCSH; k++)
    for (int chunks = 1; chunks <= 2; chunks++)
      for (int assign = 0; assign < 2; assign++) {
        const strop__conv2d_dims d = cdims(&CSH[k], 1), f = cdims(&CSH[k], 0);
        cbufs a = calloc_bufs(&d, chunks), r = calloc_bufs(&f, chunks);
        strop__conv2d_forward(&d, a.x, a.w, a.b, a.y, a.scratch, chunks, NULL);
        strop__conv2d_forward(&f, r.xr, r.wr, r.b, r.y, r.scratch, chunks, NULL);
        ck_assert_msg(!memcmp(a.y, r.y, a.ny * sizeof(float)), "shape %d forward", k);
        for (size_t i = 0; i < a.nx; i++) a.dx[i] = r.dx[i] = 0.25f;
        for (size_t i = 0; i < a.nw; i++) a.dw[i] = r.dw[i] = -0.5f;
        for (int64_t i = 0; i < d.c_out; i++) a.db[i] = r.db[i] = 0.125f;
        void (*bwd)(const strop__conv2d_dims *, const float *, const float *, const float *,
                    float *, float *, float *, float *, int,
                    const strop__conv2d_epilogue *) = assign ? strop__conv2d_backward_assign
                                                             : strop__conv2d_backward;
        bwd(&d, a.x, a.w, a.dy, a.dx, a.dw, a.db, a.scratch, chunks, NULL);
        bwd(&f, r.xr, r.wr, r.dyr, r.dx, r.dw, NULL, r.scratch, chunks, NULL);
        bwd(&f, r.x, r.w, r.dy, NULL, NULL, r.db, r.scratch, chunks, NULL);
        ck_assert_msg(!memcmp(a.dx, r.dx, a.nx * sizeof(float)), "shape %d dx", k);
        ck_assert_msg(!memcmp(a.dw, r.dw, a.nw * sizeof(float)), "shape %d dw", k);
        ck_assert_msg(!memcmp(a.db, r.db, (size_t)d.c_out * sizeof(float)), "shape %d db", k);
        free_bufs(&a);
        free_bufs(&r);
      }
  strop__bf16_impl = 0;
}
END_TEST

/* x's index of output (oy, ox) under kernel tap (ki, kj), or -1 in the padding */
static int64_t tap(const strop__conv2d_dims *d, int64_t oy, int64_t ox, int64_t ki, int64_t kj) {
  const int64_t iy = oy * d->sh - d->ph + ki, ix = ox * d->sw - d->pw + kj;
  return iy < 0 || iy >= d->h || ix < 0 || ix >= d->w ? -1 : iy * d->w + ix;
}

/* |got - (init + want)| within (terms + 2) 2^-23 mag: FP32 sums of the exact products */
static void near(float got, double init, double want, double mag, int64_t terms, const char *what,
                 int k, int64_t i) {
  const double e = fabs((double)got - init - want);
  ck_assert_msg(e <= (double)(terms + 2) * 0x1p-23 * (mag + fabs(init)) + 1e-30,
                "shape %d %s[%lld]: %.9g, want %.9g", k, what, (long long)i, (double)got,
                init + want);
}

/* BF16 Winograd F(2x2, 3x3) forward (strop__conv_bf16_wino) on 3x3 stride-1 convs of 64 or
 * more channels: whole images per product and strips of an image's tile rows, an odd c_in (a
 * pair of channels with one), tiles across a 16-lane block's and a 32-column panel's edge,
 * padding 0 to 2, 1 and 2 chunks, with and without a bias and a relu epilogue. Its error
 * against the float64 conv of the unrounded operands stays within 4x the direct BF16 form's
 * largest and 3x its RMS (measured 2.5-2.9x and 2.1-2.5x on these patterned values, 1.5-1.9x
 * and 1.4-1.6x on ResNet-50's shapes: docs/performance.md); it differs from the direct form (it ran); vdpbf16ps and the forced fallback
 * agree within FP32 summation; the filters made once (a frozen trunk's) give the per-call
 * bits; the relu epilogue is the relu of its output. */
static const cshape WSH[] = {
    {2, 64, 9, 13, 72, 3, 1, 1, 1},  /* blocks of whole images (35 tiles each) */
    {1, 65, 30, 35, 64, 3, 1, 2, 1}, /* strips of 5 tile rows of 19 tiles; c_in odd */
    {8, 64, 7, 7, 64, 3, 1, 1, 1},   /* blocks of 6 and 2 images of 16 tiles */
    {3, 64, 6, 5, 66, 3, 1, 0, 1},   /* no padding: 4 x 3 outputs */
};

START_TEST(conv_bf16_winograd) {
  strop__bf16_impl = 0;
  const int p0 = strop__bf16_dot_enabled() ? 0 : 1; /* the first path this CPU runs */
  for (size_t k = 0; k < sizeof WSH / sizeof WSH[0]; k++)
    for (int chunks = 1; chunks <= 2; chunks++)
      for (int bias = 0; bias < 2; bias++) {
        const strop__conv2d_dims d = cdims(&WSH[k], 1);
        cbufs a = calloc_bufs(&d, chunks);
        const int64_t P = d.oh * d.ow, HW = d.h * d.w;
        const float *b = bias ? a.b : NULL;
        double *ref = malloc(a.ny * sizeof(double)), ymax = 0;
        for (int64_t n = 0; n < d.n; n++)
          for (int64_t o = 0; o < d.c_out; o++)
            for (int64_t p = 0; p < P; p++) {
              double sum = b ? b[o] : 0.0;
              for (int64_t c = 0; c < d.c_in; c++)
                for (int64_t t = 0; t < 9; t++) {
                  const int64_t at = tap(&d, p / d.ow, p % d.ow, t / 3, t % 3);
                  if (at >= 0)
                    sum += (double)a.w[(o * d.c_in + c) * 9 + t] *
                           a.x[(n * d.c_in + c) * HW + at];
                }
              ref[(n * d.c_out + o) * P + p] = sum;
              ymax = fmax(ymax, fabs(sum));
            }
        size_t fl = 16; /* scratch for every path and form */
        for (int path = 0; path < 2; path++)
          for (int wino = 0; wino < 2; wino++) {
            strop__bf16_impl = path;
            strop__conv_bf16_wino = wino;
            const size_t f = strop__conv2d_scratch_floats(&d, 0, chunks, NULL);
            if (f > fl) fl = f;
          }
        float *scratch = aligned_alloc(64, (fl * sizeof(float) + 63) / 64 * 64);
        float *y[2][2]; /* [path: vdpbf16ps, fallback][0: direct, 1: Winograd] */
        for (int path = 0; path < 2; path++)
          for (int wino = 0; wino < 2; wino++) {
            y[path][wino] = malloc(a.ny * sizeof(float));
            if (path < p0) continue;
            strop__bf16_impl = path;
            strop__conv_bf16_wino = wino;
            for (size_t i = 0; i < a.ny; i++) y[path][wino][i] = NAN;
            strop__conv2d_forward(&d, a.x, a.w, b, y[path][wino], scratch, chunks, NULL);
          }
        for (int path = p0; path < 2; path++) {
          double ed = 0, ew = 0, sd = 0, sw = 0;
          int differs = 0;
          for (size_t i = 0; i < a.ny; i++) {
            ed = fmax(ed, fabs(y[path][0][i] - ref[i]));
            ew = fmax(ew, fabs(y[path][1][i] - ref[i]));
            sd += (y[path][0][i] - ref[i]) * (y[path][0][i] - ref[i]);
            sw += (y[path][1][i] - ref[i]) * (y[path][1][i] - ref[i]);
            differs |= y[path][0][i] != y[path][1][i];
          }
          ck_assert_msg(ew <= 4 * ed && sqrt(sw / sd) <= 3,
                        "shape %zu chunks %d bias %d path %d: Winograd error %.3g (RMS %.3g), "
                        "direct %.3g (RMS %.3g), of %.3g",
                        k, chunks, bias, path, ew, sqrt(sw / a.ny), ed, sqrt(sd / a.ny), ymax);
          ck_assert_msg(differs, "shape %zu path %d: Winograd did not run", k, path);
        }
        if (p0 == 0) {
          double e = 0;
          for (size_t i = 0; i < a.ny; i++) e = fmax(e, fabs(y[0][1][i] - y[1][1][i]));
          ck_assert_msg(e <= 1e-5 * ymax, "shape %zu chunks %d: paths differ by %.3g of %.3g", k,
                        chunks, e, ymax);
          /* the filters made once, handed to the forward: the same bits */
          strop__bf16_impl = 0;
          strop__conv_bf16_wino = 1;
          const size_t uf = strop__conv2d_filters_floats(&d);
          ck_assert_uint_gt(uf, 0);
          float *u = aligned_alloc(64, (uf * sizeof(float) + 63) / 64 * 64);
          ck_assert_int_eq(strop__conv2d_filters(&d, a.w, u), 0);
          float *yf = malloc(a.ny * sizeof(float));
          strop__conv2d_forward_filtered(&d, a.x, a.w, u, b, yf, scratch, chunks, NULL);
          ck_assert_msg(!memcmp(yf, y[0][1], a.ny * sizeof(float)), "shape %zu: held filters", k);
          /* a relu epilogue: the relu of the output */
          strop__conv2d_epilogue ep;
          memset(&ep, 0, sizeof ep);
          ep.relu = 1;
          strop__conv2d_forward(&d, a.x, a.w, b, yf, scratch, chunks, &ep);
          for (size_t i = 0; i < a.ny; i++)
            ck_assert_msg(yf[i] == (y[0][1][i] > 0 ? y[0][1][i] : 0.0f), "shape %zu: relu [%zu]",
                          k, i);
          free(u);
          free(yf);
        }
        for (int path = 0; path < 2; path++) free(y[path][0]), free(y[path][1]);
        free(scratch);
        free(ref);
        free_bufs(&a);
      }
  strop__bf16_impl = 0;
  strop__conv_bf16_wino = 1;
}
END_TEST

/* Both paths (vdpbf16ps where the CPU runs it, the forced fallback) against the double-precision
 * conv of the rounded operands, element by element within FP32 summation's bound: the forward,
 * dx, dW and db (of the unrounded dy), every shape, 1 and 2 chunks, dx written and added. */
START_TEST(conv_paths_match_reference) {
  const int path = _i;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  strop__bf16_impl = path;
  for (int k = 0; k < NCSH; k++)
    for (int chunks = 1; chunks <= 2; chunks++) {
      const int assign = chunks == 2;
      const strop__conv2d_dims d = cdims(&CSH[k], 1);
      cbufs a = calloc_bufs(&d, chunks);
      const int64_t P = d.oh * d.ow, HW = d.h * d.w, G = d.groups, cig = d.c_in / G;
      const int64_t cog = d.c_out / G, KK = d.kh * d.kw;
      strop__conv2d_forward(&d, a.x, a.w, a.b, a.y, a.scratch, chunks, NULL);
      for (size_t i = 0; i < a.nx; i++) a.dx[i] = 0.25f;
      for (size_t i = 0; i < a.nw; i++) a.dw[i] = -0.5f;
      for (int64_t i = 0; i < d.c_out; i++) a.db[i] = 0.125f;
      (assign ? strop__conv2d_backward_assign : strop__conv2d_backward)(
          &d, a.x, a.w, a.dy, a.dx, a.dw, a.db, a.scratch, chunks, NULL);
      double *dx = calloc(a.nx, sizeof(double)), *dxm = calloc(a.nx, sizeof(double));
      for (int64_t n = 0; n < d.n; n++)
        for (int64_t o = 0; o < d.c_out; o++) {
          const int64_t g = o / cog;
          for (int64_t p = 0; p < P; p++) {
            double sum = a.b[o], mag = fabs(a.b[o]);
            const double gy = a.dyr[(n * d.c_out + o) * P + p];
            for (int64_t c = 0; c < cig; c++)
              for (int64_t t = 0; t < KK; t++) {
                const int64_t at = tap(&d, p / d.ow, p % d.ow, t / d.kw, t % d.kw);
                if (at < 0) continue;
                const int64_t xi = (n * d.c_in + g * cig + c) * HW + at;
                const double wv = a.wr[(o * cig + c) * KK + t];
                sum += wv * a.xr[xi];
                mag += fabs(wv * a.xr[xi]);
                dx[xi] += wv * gy;
                dxm[xi] += fabs(wv * gy);
              }
            near(a.y[(n * d.c_out + o) * P + p], 0, sum, mag, cig * KK, "y", k, p);
          }
        }
      for (size_t i = 0; i < a.nx; i++)
        near(a.dx[i], assign ? 0 : 0.25, dx[i], dxm[i], cog * KK, "dx", k, (int64_t)i);
      for (int64_t o = 0; o < d.c_out; o++) {
        const int64_t g = o / cog;
        double sb = 0, mb = 0;
        for (int64_t n = 0; n < d.n; n++)
          for (int64_t p = 0; p < P; p++) {
            sb += a.dy[(n * d.c_out + o) * P + p];
            mb += fabs(a.dy[(n * d.c_out + o) * P + p]);
          }
        near(a.db[o], 0.125, sb, mb, d.n * P, "db", k, o);
        for (int64_t c = 0; c < cig; c++)
          for (int64_t t = 0; t < KK; t++) {
            double sw = 0, mw = 0;
            for (int64_t n = 0; n < d.n; n++)
              for (int64_t p = 0; p < P; p++) {
                const int64_t at = tap(&d, p / d.ow, p % d.ow, t / d.kw, t % d.kw);
                if (at < 0) continue;
                const double v = (double)a.dyr[(n * d.c_out + o) * P + p] *
                                 a.xr[(n * d.c_in + g * cig + c) * HW + at];
                sw += v;
                mw += fabs(v);
              }
            near(a.dw[(o * cig + c) * KK + t], -0.5, sw, mw, d.n * P, "dw", k,
                 (o * cig + c) * KK + t);
          }
      }
      free(dx);
      free(dxm);
      free_bufs(&a);
    }
  strop__bf16_impl = 0;
}
END_TEST

/* Shapes for the columns packed straight from the images (strop__conv_bf16_direct): blocks of
 * several images whose tiles cross an image's edge (P 36, 49, 99), P between 16 and 32 (two
 * images in a half panel; the product through a buffer), odd K, c_out not a multiple of 8, a
 * 5x5 pad 2, runs of output rows at stride 1 (no padding) and 2 (3x3, a 7x7 stem, 1x1; ow 5 to
 * 7); with CSH's shapes, the convs that keep im2col with the weight packed once (P < 16, a 1x1
 * stride 2 of ow 4). */
static const cshape DSH[] = {
    {8, 6, 6, 6, 12, 3, 1, 1, 1},  {6, 40, 7, 7, 20, 1, 1, 0, 1},  {5, 5, 5, 5, 9, 3, 1, 1, 1},
    {3, 5, 9, 11, 7, 3, 1, 1, 1},  {3, 8, 20, 20, 16, 5, 1, 2, 1}, {4, 3, 10, 9, 5, 3, 2, 1, 1},
    {2, 3, 15, 14, 4, 7, 2, 3, 1}, {3, 4, 12, 13, 6, 3, 1, 0, 1},  {6, 4, 14, 14, 10, 3, 2, 1, 1},
    {5, 8, 12, 12, 9, 1, 2, 0, 1},
};
enum { NDSH = sizeof DSH / sizeof DSH[0] };

/* One conv's outputs under strop__conv_bf16_direct = direct: y (with the bias or none, a relu
 * epilogue or none), then dx (written when assign, else added to 0.25), dW and db. */
static void conv_direct_run(const strop__conv2d_dims *d, const cbufs *a, int direct, int chunks,
                            int bias, int relu, int assign, float *y, float *dx, float *dw,
                            float *db) {
  const size_t ny = (size_t)(d->n * d->c_out * d->oh * d->ow);
  const size_t nx = (size_t)(d->n * d->c_in * d->h * d->w);
  const size_t nw = (size_t)(d->c_out * d->c_in / d->groups * d->kh * d->kw);
  strop__conv2d_epilogue ep;
  memset(&ep, 0, sizeof ep);
  ep.relu = 1;
  ep.y = y;
  strop__conv_bf16_direct = direct;
  size_t fl = strop__conv2d_scratch_floats(d, 0, chunks, relu ? &ep : NULL);
  const size_t fb = strop__conv2d_scratch_floats(d, 1, chunks, relu ? &ep : NULL);
  if (fb > fl) fl = fb;
  /* NaN in the scratch: nothing may read it before writing it; 16 floats past it that nothing
   * may write */
  float *scratch = aligned_alloc(64, ((fl + 16) * sizeof(float) + 63) / 64 * 64);
  for (size_t i = 0; i < fl; i++) scratch[i] = NAN;
  for (size_t i = fl; i < fl + 16; i++) scratch[i] = -7.0f;
  strop__conv2d_forward(d, a->x, a->w, bias ? a->b : NULL, y, scratch, chunks, relu ? &ep : NULL);
  for (size_t i = 0; i < nx; i++) dx[i] = 0.25f;
  for (size_t i = 0; i < nw; i++) dw[i] = -0.5f;
  for (int64_t i = 0; i < d->c_out; i++) db[i] = 0.125f;
  (assign ? strop__conv2d_backward_assign : strop__conv2d_backward)(
      d, a->x, a->w, a->dy, dx, dw, db, scratch, chunks, relu ? &ep : NULL);
  (void)ny;
  for (size_t i = fl; i < fl + 16; i++) ck_assert_msg(scratch[i] == -7.0f, "scratch overrun");
  free(scratch);
  strop__conv_bf16_direct = 1;
}

/* The columns packed straight from the images, the weight packed once and the product written
 * into y with the bias (and the relu in the tiles' stores) give the bits of im2col's columns
 * packed by the product (the path before them), forward and backward, on vdpbf16ps and with
 * the fallback forced, FP32 denormals in the images too. */
START_TEST(conv_direct_same_bits) {
  const int path = _i;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  strop__bf16_impl = path;
  strop__conv_bf16_dx = 0; /* its dx sums in another order: conv_dx_reference */
  for (int k = 0; k < NDSH + NCSH; k++)
    for (int v = 0; v < 8; v++) {
      const int chunks = 1 + (v & 1), bias = (v >> 1) & 1, relu = v >> 2, assign = v & 1;
      const cshape *cs = k < NDSH ? &DSH[k] : &CSH[k - NDSH];
      const strop__conv2d_dims d = cdims(cs, 1);
      cbufs a = calloc_bufs(&d, chunks);
      if (v == 3) { /* FP32 denormals rounded alike on both paths (none flushed), one that
                       rounds up to BF16's least normal, and a weight large enough for their
                       products to count */
        const uint32_t den[3] = {0x007fffffu, 0x807fff00u, 0x00000001u};
        for (int i = 0; i < 3; i++) memcpy(&a.x[(size_t)i * a.nx / 3], &den[i], 4);
        a.w[0] = 0x1p120f;
      }
      float *y0 = calloc(a.ny, sizeof(float)), *dx0 = calloc(a.nx, sizeof(float));
      float *dw0 = calloc(a.nw, sizeof(float)), *db0 = calloc((size_t)d.c_out, sizeof(float));
      conv_direct_run(&d, &a, 0, chunks, bias, relu, assign, y0, dx0, dw0, db0);
      conv_direct_run(&d, &a, 1, chunks, bias, relu, assign, a.y, a.dx, a.dw, a.db);
      ck_assert_msg(!memcmp(a.y, y0, a.ny * sizeof(float)), "shape %d v %d forward", k, v);
      ck_assert_msg(!memcmp(a.dx, dx0, a.nx * sizeof(float)), "shape %d v %d dx", k, v);
      ck_assert_msg(!memcmp(a.dw, dw0, a.nw * sizeof(float)), "shape %d v %d dw", k, v);
      ck_assert_msg(!memcmp(a.db, db0, (size_t)d.c_out * sizeof(float)), "shape %d v %d db", k,
                    v);
      free(y0), free(dx0), free(dw0), free(db0);
      free_bufs(&a);
    }
  strop__bf16_impl = 0;
  strop__conv_bf16_dx = 1;
}
END_TEST

/* The backward reading x as the step holds it in BF16 (strop__conv2d_backward_held on
 * strop__bf16_compact_par's values) gives the bits of the backward on x itself: dW from the
 * columns packed from the held values (ops/conv.c cols_row16_h), dx and db as before. Every
 * shape above and three more (a lone image's pointwise conv; a block of 7 x 7 images; a 1 x 1
 * stride-2 conv), at 1 to 3 chunks, dx written and added; x holds values that round to zero
 * (held as a marker: the zero with its sign), a zero of each sign, FP32 denormals, a NaN and a
 * large value. strop__conv2d_reads_x_held says which geometries it takes; at least 20 of the
 * calls run it. */
START_TEST(conv_held_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  strop__bf16_impl = 0;
  static const cshape more[] = {{3, 16, 20, 20, 8, 1, 1, 0, 1},
                                {8, 24, 7, 7, 16, 1, 1, 0, 1},
                                {4, 8, 12, 12, 6, 1, 2, 0, 1}};
  enum { NM = sizeof more / sizeof more[0] };
  int ran = 0;
  for (int k = 0; k < NDSH + NCSH + NM; k++)
    for (int chunks = 1; chunks <= 3; chunks++) {
      const cshape *cs = k < NDSH          ? &DSH[k]
                         : k < NDSH + NCSH ? &CSH[k - NDSH]
                                           : &more[k - NDSH - NCSH];
      const strop__conv2d_dims d = cdims(cs, 1);
      if (!strop__conv2d_reads_x_held(&d, chunks)) continue;
      ran++;
      const int assign = (k + chunks) & 1;
      cbufs a = calloc_bufs(&d, chunks);
      const uint32_t odd[] = {0x00000001u, 0x80000100u, 0x00008000u, 0x00007fffu, 0x80000000u,
                              0x00000000u, 0x007fffffu, 0x7fc00000u, 0x4b800000u};
      for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        memcpy(&a.x[(i * 7919) % a.nx], &odd[i], 4);
      uint16_t *h = malloc(a.nx * sizeof *h);
      strop__bf16_compact_par(a.x, h, a.nx);
      float *out[2][3];
      for (int v = 0; v < 2; v++) {
        out[v][0] = malloc(a.nx * sizeof(float));
        out[v][1] = malloc(a.nw * sizeof(float));
        out[v][2] = malloc((size_t)d.c_out * sizeof(float));
        for (size_t i = 0; i < a.nx; i++) out[v][0][i] = 0.25f;
        for (size_t i = 0; i < a.nw; i++) out[v][1][i] = -0.5f;
        for (int64_t i = 0; i < d.c_out; i++) out[v][2][i] = 0.125f;
      }
      (assign ? strop__conv2d_backward_assign : strop__conv2d_backward)(
          &d, a.x, a.w, a.dy, out[0][0], out[0][1], out[0][2], a.scratch, chunks, NULL);
      strop__conv2d_backward_held(&d, h, a.w, a.dy, out[1][0], out[1][1], out[1][2], a.scratch,
                                  chunks, NULL, assign);
      ck_assert_msg(!memcmp(out[0][0], out[1][0], a.nx * sizeof(float)), "shape %d chunks %d dx",
                    k, chunks);
      ck_assert_msg(!memcmp(out[0][1], out[1][1], a.nw * sizeof(float)), "shape %d chunks %d dw",
                    k, chunks);
      ck_assert_msg(!memcmp(out[0][2], out[1][2], (size_t)d.c_out * sizeof(float)),
                    "shape %d chunks %d db", k, chunks);
      for (int v = 0; v < 2; v++)
        for (int q = 0; q < 3; q++) free(out[v][q]);
      free(h);
      free_bufs(&a);
    }
  ck_assert_int_ge(ran, 20);
}
END_TEST

/* The BF16 input gradient as the BF16 Winograd forward of dy (strop__conv_bf16_wino_dx) on the
 * same shapes (dx's conv: blocks of whole images from the block's dy laid side by side, strips
 * of one image, padding 0 to 2, an odd channel count), 1 and 2 chunks, dx written and added, a
 * relu epilogue or none: without the relu, the bits of the BF16 Winograd forward of dy with the
 * flipped weight (whose error conv_bf16_winograd bounds); against the float64 input gradient of
 * the unrounded operands within 4x the direct form's largest and RMS errors (on these smooth
 * test values 1.3-3.0x and 1.7-3.2x); Winograd ran (dx differs from the direct form's); the
 * forward, dW and db the same bits either way, dW finite (shape 1 in 2 chunks: a chunk without
 * an image). */
START_TEST(conv_bf16_winograd_dx) {
  if (!strop__bf16_dot_enabled()) return;
  strop__bf16_impl = 0;
  for (size_t k = 0; k < sizeof WSH / sizeof WSH[0]; k++)
    for (int v = 0; v < 4; v++) {
      const int chunks = 1 + (v & 1), relu = v >> 1, assign = (int)((k + (size_t)v) & 1);
      const strop__conv2d_dims d = cdims(&WSH[k], 1);
      cbufs a = calloc_bufs(&d, chunks);
      const int64_t P = d.oh * d.ow, HW = d.h * d.w;
      float *got[2][4]; /* [wino_dx][y, dx, dw, db] */
      for (int wd = 0; wd < 2; wd++) {
        got[wd][0] = malloc(a.ny * sizeof(float));
        got[wd][1] = malloc(a.nx * sizeof(float));
        got[wd][2] = malloc(a.nw * sizeof(float));
        got[wd][3] = malloc((size_t)d.c_out * sizeof(float));
        strop__conv_bf16_wino_dx = wd;
        conv_direct_run(&d, &a, 1, chunks, 1, relu, assign, got[wd][0], got[wd][1], got[wd][2],
                        got[wd][3]);
      }
      strop__conv_bf16_wino_dx = 1;
      ck_assert_msg(!memcmp(got[0][0], got[1][0], a.ny * sizeof(float)), "shape %zu y", k);
      ck_assert_msg(!memcmp(got[0][2], got[1][2], a.nw * sizeof(float)), "shape %zu dw", k);
      /* an image alone in 2 chunks (shape 1): the chunk without one adds nothing to dW */
      for (size_t i = 0; i < a.nw; i++)
        ck_assert_msg(isfinite(got[1][2][i]), "shape %zu chunks %d: dw[%zu] %g", k, chunks, i,
                      got[1][2][i]);
      ck_assert_msg(!memcmp(got[0][3], got[1][3], (size_t)d.c_out * sizeof(float)),
                    "shape %zu db", k);
      double *ref = calloc(a.nx, sizeof(double)), dmax = 0;
      for (int64_t n = 0; n < d.n; n++)
        for (int64_t o = 0; o < d.c_out; o++)
          for (int64_t p = 0; p < P; p++) {
            const int64_t yi = (n * d.c_out + o) * P + p;
            if (relu && !(got[1][0][yi] > 0.0f)) continue;
            for (int64_t c = 0; c < d.c_in; c++)
              for (int64_t t = 0; t < 9; t++) {
                const int64_t at = tap(&d, p / d.ow, p % d.ow, t / 3, t % 3);
                if (at >= 0)
                  ref[(n * d.c_in + c) * HW + at] += (double)a.w[(o * d.c_in + c) * 9 + t] *
                                                     a.dy[yi];
              }
          }
      for (size_t i = 0; i < a.nx; i++) dmax = fmax(dmax, fabs(ref[i]));
      double ed = 0, ew = 0, sd = 0, sw = 0;
      int differs = 0;
      const double init = assign ? 0.0 : 0.25;
      for (size_t i = 0; i < a.nx; i++) {
        const double e0 = got[0][1][i] - init - ref[i], e1 = got[1][1][i] - init - ref[i];
        ed = fmax(ed, fabs(e0));
        ew = fmax(ew, fabs(e1));
        sd += e0 * e0;
        sw += e1 * e1;
        differs |= got[0][1][i] != got[1][1][i];
      }
      ck_assert_msg(ew <= 4 * ed && sqrt(sw / sd) <= 4,
                    "shape %zu chunks %d relu %d assign %d: Winograd dx error %.3g (RMS %.3g), "
                    "direct %.3g (RMS %.3g), of %.3g",
                    k, chunks, relu, assign, ew, sqrt(sw / a.nx), ed, sqrt(sd / a.nx), dmax);
      ck_assert_msg(differs, "shape %zu: the Winograd input gradient did not run", k);
      if (!relu) {
        /* the BF16 Winograd forward of dy with the flipped weight w'(c, o, t) = w(o, c, 8 - t)
         * (conv_bf16_winograd bounds its error): each element's sums are the same, in
         * whatever blocks of images either runs, so the same bits (+ 0.25 when added) */
        const strop__conv2d_dims e = {.n = d.n,
                                      .c_in = d.c_out,
                                      .h = d.oh,
                                      .w = d.ow,
                                      .c_out = d.c_in,
                                      .kh = 3,
                                      .kw = 3,
                                      .sh = 1,
                                      .sw = 1,
                                      .ph = 2 - d.ph,
                                      .pw = 2 - d.pw,
                                      .dh = 1,
                                      .dw = 1,
                                      .groups = 1,
                                      .bf16 = 1};
        strop__conv2d_dims eo = e;
        strop__conv2d_out_size(&eo);
        ck_assert(eo.oh == d.h && eo.ow == d.w);
        float *wf = malloc(a.nw * sizeof(float)), *fx = malloc(a.nx * sizeof(float));
        for (int64_t o = 0; o < d.c_out; o++)
          for (int64_t c = 0; c < d.c_in; c++)
            for (int t = 0; t < 9; t++)
              wf[(c * d.c_out + o) * 9 + t] = a.w[(o * d.c_in + c) * 9 + 8 - t];
        const size_t fl = strop__conv2d_scratch_floats(&eo, 0, chunks, NULL);
        float *sc = aligned_alloc(64, (fl * sizeof(float) + 63) / 64 * 64);
        strop__conv2d_forward(&eo, a.dy, wf, NULL, fx, sc, chunks, NULL);
        for (size_t i = 0; i < a.nx; i++) {
          const float want = assign ? fx[i] : 0.25f + fx[i];
          ck_assert_msg(got[1][1][i] == want,
                        "shape %zu chunks %d assign %d: dx[%zu] %.9g, the "
                        "forward's %.9g",
                        k, chunks, assign, i, got[1][1][i], want);
        }
        free(wf), free(fx), free(sc);
      }
      for (int wd = 0; wd < 2; wd++)
        for (int q = 0; q < 4; q++) free(got[wd][q]);
      free(ref);
      free_bufs(&a);
    }
  strop__bf16_impl = 0;
}
END_TEST

/* Shapes for the input gradient computed as the forward of dy with the flipped weight
 * (strop__conv_bf16_dx): a 3x3 of padding 0 (dy padded by 2), a 5x5 of padding 1 (by 3), a 2x2
 * (an even kernel: padding 1 gives a larger output, dy padded by 0), a 4x4 image (P < 16: dx's
 * columns keep im2col); with DSH's and CSH's, and each again at dilation 2 where it fits. */
static const cshape XSH[] = {
    {3, 6, 9, 10, 5, 3, 1, 0, 1},
    {2, 4, 11, 12, 9, 5, 1, 1, 1},
    {4, 5, 7, 6, 6, 2, 1, 1, 1},
    {5, 3, 4, 4, 7, 3, 1, 1, 1},
};
enum { NXSH = sizeof XSH / sizeof XSH[0] };

/* |got - (init + want)| within near()'s bound */
static int within(float got, double init, double want, double mag, int64_t terms) {
  return fabs((double)got - init - want) <=
         (double)(terms + 2) * 0x1p-23 * (mag + fabs(init)) + 1e-30;
}

/* The input gradient on vdpbf16ps against the double-precision one of the rounded weight and
 * output gradient (masked by a relu epilogue's), element by element within FP32 summation's
 * bound, on every shape, dilation 1 and 2, 1 and 2 chunks, with and without a relu, dx written
 * and added to; and the same numbers with the kernel left unflipped fail that bound (the test
 * tells a broken flip apart). */
START_TEST(conv_dx_reference) {
  if (!strop__bf16_dot_enabled()) return;
  for (int k = 0; k < 2 * (NDSH + NCSH + NXSH); k++)
    for (int v = 0; v < 4; v++) {
      const int kk = k % (NDSH + NCSH + NXSH), dil = 1 + k / (NDSH + NCSH + NXSH);
      const int chunks = 1 + (v & 1), relu = v >> 1, assign = (k + v) & 1;
      const cshape *cs = kk < NDSH          ? &DSH[kk]
                         : kk < NDSH + NCSH ? &CSH[kk - NDSH]
                                            : &XSH[kk - NDSH - NCSH];
      strop__conv2d_dims d = cdims(cs, 1);
      if (dil == 2) {
        d.dh = d.dw = 2;
        strop__conv2d_out_size(&d);
        if (d.kh == 1 || d.oh < 1 || d.ow < 1) continue;
      }
      cbufs a = calloc_bufs(&d, chunks);
      conv_direct_run(&d, &a, 1, chunks, 1, relu, assign, a.y, a.dx, a.dw, a.db);
      const int64_t P = d.oh * d.ow, HW = d.h * d.w, G = d.groups, cig = d.c_in / G;
      const int64_t cog = d.c_out / G, KK = d.kh * d.kw;
      double *dx = calloc(a.nx, sizeof(double)), *dxm = calloc(a.nx, sizeof(double));
      double *bad = calloc(a.nx, sizeof(double)), *badm = calloc(a.nx, sizeof(double));
      for (int64_t n = 0; n < d.n; n++)
        for (int64_t o = 0; o < d.c_out; o++)
          for (int64_t p = 0; p < P; p++) {
            const int64_t yi = (n * d.c_out + o) * P + p;
            const double gy = relu && !(a.y[yi] > 0.0f) ? 0.0 : a.dyr[yi];
            for (int64_t c = 0; c < cig; c++)
              for (int64_t t = 0; t < KK; t++) {
                const int64_t iy = p / d.ow * d.sh - d.ph + t / d.kw * d.dh;
                const int64_t ix = p % d.ow * d.sw - d.pw + t % d.kw * d.dw;
                if (iy < 0 || iy >= d.h || ix < 0 || ix >= d.w) continue;
                const int64_t xi = (n * d.c_in + o / cog * cig + c) * HW + iy * d.w + ix;
                const double wv = a.wr[(o * cig + c) * KK + t];
                const double wb = a.wr[(o * cig + c) * KK + KK - 1 - t];
                dx[xi] += wv * gy;
                dxm[xi] += fabs(wv * gy);
                bad[xi] += wb * gy;
                badm[xi] += fabs(wb * gy);
              }
          }
      int64_t off = 0;
      for (size_t i = 0; i < a.nx; i++) {
        near(a.dx[i], assign ? 0 : 0.25, dx[i], dxm[i], cog * KK, "dx", k, (int64_t)i);
        off += !within(a.dx[i], assign ? 0 : 0.25, bad[i], badm[i], cog * KK);
      }
      ck_assert_msg(KK == 1 || off > 0, "shape %d v %d: an unflipped kernel passes too", k, v);
      free(dx), free(dxm), free(bad), free(badm);
      free_bufs(&a);
    }
}
END_TEST

static const int64_t CIN[3] = {3, 12, 12};
enum { CCLASSES = 4 };

/* A small CNN: conv, batch norm, relu and max-pool (fused into the conv when the trunk is
 * frozen: the norm folded, the relu and pool in its epilogue), a strided 3x3 conv and a 1x1
 * conv with relus (fused: epilogues), a linear head; smooth: tanh and an average pool instead
 * (no relu mask or pool winner flips on a rounding: a gradient comparison measures the products'
 * precision, where the kinks alone move c1's gradient by 5% when only the input is rounded).
 * frozen: c1 and bn1 frozen. */
/* wide: c1 has 64 channels and a 64 -> 64 3x3 conv "cw" follows it (its BF16 forward runs
 * Winograd F(2x2, 3x3): strop__conv_bf16_wino) in place of the pool and stride-2 conv; frozen:
 * the trunk before them (c1, bn1, and cw) */
static strop_model *cnn_model_w(uint64_t seed, int frozen, int smooth, int wide) {
  const char *act = smooth ? "tanh" : "relu", *pool = smooth ? "avgpool2d" : "maxpool2d";
  const strop_test_node narrow[] = {
      {"c1", "conv2d", "out_channels=8 kernel_size=3 padding=1", NULL},
      {"bn1", "batchnorm2d", NULL, NULL},
      {"r1", act, NULL, NULL},
      {"p1", pool, "kernel_size=2", NULL},
      {"c2", "conv2d", "out_channels=12 kernel_size=3 stride=2 padding=1", NULL},
      {"r2", act, NULL, NULL},
      {"c3", "conv2d", "out_channels=16 kernel_size=1", NULL},
      {"r3", act, NULL, NULL},
      {"flat", "flatten", NULL, NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  const strop_test_node wider[] = {
      {"c1", "conv2d", "out_channels=64 kernel_size=3 padding=1", NULL},
      {"bn1", "batchnorm2d", NULL, NULL},
      {"r1", act, NULL, NULL},
      {"cw", "conv2d", "out_channels=64 kernel_size=3 padding=1", NULL},
      {"rw", act, NULL, NULL},
      {"p1", pool, "kernel_size=2", NULL},
      {"c3", "conv2d", "out_channels=16 kernel_size=1", NULL},
      {"r3", act, NULL, NULL},
      {"flat", "flatten", NULL, NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  strop_model *m = strop_test_build(3, CIN, wide ? wider : narrow, 10, seed);
  if (frozen) {
    static const char *const trunk[] = {"c1", "bn1", "cw"};
    strop_surgery *s = NULL;
    OK(strop_surgery_create(m, &s));
    for (int k = 0; k < (wide ? 3 : 2); k++) OK(strop_surgery_freeze(s, trunk[k], 0));
    OK(strop_surgery_apply(s));
    strop_surgery_free(s);
  }
  return m;
}
static strop_model *cnn_model(uint64_t seed, int frozen, int smooth) {
  return cnn_model_w(seed, frozen, smooth, 0);
}

static strop_tensor *wrap_img(float *x, int64_t n) {
  strop_tensor *t = NULL;
  const int64_t xd[4] = {n, CIN[0], CIN[1], CIN[2]};
  OK(strop_tensor_wrap(x, (size_t)(n * CIN[0] * CIN[1] * CIN[2]), 4, xd, &t));
  return t;
}

static void cnn_grads(strop_model *m, float *x, int64_t n, const float *dout,
                      const char *const *names, int nn, float **g, float *out) {
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  OK(strop_optimizer_create(m, STROP_OPTIM_SGD, &opt));
  OK(strop_trainer_create(m, opt, &tr));
  strop_tensor *tx = wrap_img(x, n), *y = NULL, *dy = NULL;
  OK(strop_trainer_forward(tr, tx, &y));
  memcpy(out, strop_tensor_data(y), (size_t)(n * CCLASSES) * sizeof *out);
  const int64_t dd[2] = {n, CCLASSES};
  OK(strop_tensor_wrap((float *)dout, (size_t)(n * CCLASSES), 2, dd, &dy));
  OK(strop_trainer_backward(tr, dy));
  for (int k = 0; k < nn; k++) {
    strop_tensor *t = NULL;
    OK(strop_model_tensor_view(m, names[k], &t));
    const size_t cnt = (size_t)strop_tensor_numel(t);
    strop_tensor_free(t);
    OK(strop_model_get_grad(m, names[k], g[k], cnt));
  }
  strop_tensor_free(tx);
  strop_tensor_free(y);
  strop_tensor_free(dy);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
}

/* The (smooth) CNN computing in BF16 against FP32, whole and with a frozen trunk (folded
 * norm), on both paths: the output within 1% of its scale, every trainable weight's gradient
 * within 2% in relative L2 norm (measured 0.4-0.7%), and not equal to FP32's. */
START_TEST(cnn_gradcheck) {
  const int frozen = _i & 1, path = _i >> 1;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  static const char *const names[] = {"c2.weight", "c2.bias", "c3.weight", "head.weight",
                                      "c1.weight"};
  enum { N = 16, NN = 5 };
  const int nn = frozen ? NN - 1 : NN;
  static float x[N * 3 * 12 * 12], dout[N * CCLASSES], ya[N * CCLASSES], yb[N * CCLASSES];
  const size_t cnt[NN] = {12 * 8 * 9, 12, 16 * 12, 4 * 16 * 9, 8 * 3 * 9};
  float *ga[NN], *gb[NN];
  for (int k = 0; k < NN; k++)
    ga[k] = malloc(cnt[k] * sizeof(float)), gb[k] = malloc(cnt[k] * sizeof(float));
  for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
    x[i] = (float)(sin(0.37 * (double)i) + cos(2.9 * (double)(i * i % 101)));
  fill(dout, N * CCLASSES, 0.9);
  strop_model *f = cnn_model(5, frozen, 1), *b = NULL;
  OK(strop_model_clone(f, &b));
  OK(strop_model_set_compute_dtype(b, STROP_DTYPE_BF16));
  strop__bf16_impl = path;
  cnn_grads(f, x, N, dout, names, nn, ga, ya);
  cnn_grads(b, x, N, dout, names, nn, gb, yb);
  strop__bf16_impl = 0;
  float scale = 0, err = 0;
  for (int i = 0; i < N * CCLASSES; i++) {
    scale = fmaxf(scale, fabsf(ya[i]));
    err = fmaxf(err, fabsf(ya[i] - yb[i]));
  }
  ck_assert_float_gt(err, 0.0f);
  ck_assert_msg(err <= 0.01f * scale, "output: max |diff| %g, scale %g", err, scale);
  for (int k = 0; k < nn; k++) {
    double d2 = 0, n2 = 0;
    for (size_t i = 0; i < cnt[k]; i++) {
      d2 += ((double)ga[k][i] - gb[k][i]) * ((double)ga[k][i] - gb[k][i]);
      n2 += (double)ga[k][i] * ga[k][i];
    }
    ck_assert_msg(d2 > 0, "%s: the BF16 gradient equals FP32's", names[k]);
    ck_assert_msg(sqrt(d2) <= 0.02 * sqrt(n2), "%s: relative error %g", names[k], sqrt(d2 / n2));
    if (getenv("STROP_COMPUTE_VERBOSE"))
      fprintf(stderr, "cnn frozen %d path %d %s: relative error %g\n", frozen, path, names[k],
              sqrt(d2 / n2));
  }
  for (int k = 0; k < NN; k++) free(ga[k]), free(gb[k]);
  strop_model_free(f);
  strop_model_free(b);
}
END_TEST

static run train_cnn(strop_model *m, int steps, double lr) {
  run out;
  memset(&out, 0, sizeof out);
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  OK(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt));
  OK(strop_optimizer_set_double(opt, STROP_OPT_LR, lr));
  OK(strop_trainer_create(m, opt, &tr));
  enum { N = 16, PIX = 3 * 12 * 12 };
  static float x[N * PIX], y[N];
  const int64_t yd[1] = {N};
  for (int s = 0; s < steps; s++) {
    /* images of stripes; the label: the quadrant of channel 0 with the largest sum */
    for (int i = 0; i < N; i++) {
      double q[4] = {0, 0, 0, 0};
      for (int c = 0; c < 3; c++)
        for (int r = 0; r < 12; r++)
          for (int k = 0; k < 12; k++) {
            const double v = sin(0.9 * r * (1 + i % 3) + 0.4 * k * (c + 1) + 0.1 * (s % 8) + i);
            x[i * PIX + (c * 12 + r) * 12 + k] = (float)v;
            if (c == 0) q[(r / 6) * 2 + k / 6] += v;
          }
      int best = 0;
      for (int t = 1; t < 4; t++)
        if (q[t] > q[best]) best = t;
      y[i] = (float)best;
    }
    strop_tensor *tx = wrap_img(x, N), *ty = NULL;
    OK(strop_tensor_wrap(y, N, 1, yd, &ty));
    OK(strop_trainer_step(tr, tx, ty, &out.loss[s]));
    strop_tensor_free(tx);
    strop_tensor_free(ty);
  }
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  return out;
}

/* A CNN fine-tune in BF16 (whole, and with a frozen trunk) follows FP32's loss curve on both
 * paths: every step within 0.03 of the FP32 loss, and the model learns; also a frozen trunk
 * with a 64-channel 3x3 conv, whose BF16 forward runs Winograd F(2x2, 3x3) (FP32's F(4x4)). */
START_TEST(cnn_finetune_close) {
  /* 0-3: frozen or not, either path; 4-5: wide with its trunk frozen, either path (a wide
   * net trained whole at this rate spikes at steps 13-16, apart by more than 0.03 in BF16 with
   * or without Winograd: the per-step bound holds for its frozen trunk) */
  const int wide = _i >= 4, frozen = wide ? 1 : _i & 1, path = wide ? _i - 4 : _i >> 1;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  enum { STEPS = 60 };
  strop_model *f = cnn_model_w(11, frozen, 0, wide), *q = NULL;
  OK(strop_model_clone(f, &q));
  OK(strop_model_set_compute_dtype(q, STROP_DTYPE_BF16));
  strop__bf16_impl = path;
  run a = train_cnn(f, STEPS, 3e-3), b = train_cnn(q, STEPS, 3e-3);
  strop__bf16_impl = 0;
  double worst = 0, first = 0, last = 0;
  for (int s = 0; s < STEPS; s++) {
    const double d = fabs((double)a.loss[s] - (double)b.loss[s]);
    ck_assert_msg(d <= 0.03, "frozen %d path %d wide %d step %d: fp32 loss %g, bf16 loss %g",
                  frozen, path, wide, s, (double)a.loss[s], (double)b.loss[s]);
    worst = fmax(worst, d);
  }
  if (getenv("STROP_COMPUTE_VERBOSE"))
    fprintf(stderr,
            "cnn frozen %d path %d wide %d: worst |loss diff| %g; fp32 %g -> %g, bf16 %g -> %g\n",
            frozen, path, wide, worst, (double)a.loss[0], (double)a.loss[STEPS - 1],
            (double)b.loss[0], (double)b.loss[STEPS - 1]);
  ck_assert(worst > 0);
  for (int s = 0; s < 8; s++) first += b.loss[s], last += b.loss[STEPS - 8 + s];
  ck_assert_msg(last < 0.8 * first, "no learning: %g -> %g", first / 8, last / 8);
  strop_model_free(f);
  strop_model_free(q);
}
END_TEST

/* A ResNet's activations held in BF16 (graph/model.c, compact_plan): a convolution's input is
 * read by its BF16 backward only through the weight gradient's rounding products, so the
 * outputs of a norm and relu, and of a residual chain (norm, sum, relu, whose backward reads
 * its output's sign), are held in BF16 between their readers' forwards and backwards. A stem,
 * a bottleneck with a strided shortcut, one with the identity, and a depthwise conv (its FP32
 * stencil reads its input as it is: not held) trained six Adam steps with it on and off give
 * the same losses and every parameter the same bits, at 1 and 2 threads and on the forced
 * fallback; exactly the outputs named below are held at the end of a forward, and the planned
 * region is smaller. */
static strop_model *res_model(void) {
  static const strop_test_node nodes[] = {
      {"c1", "conv2d", "out_channels=8 kernel_size=3 padding=1", NULL},
      {"bn1", "batchnorm2d", NULL, NULL},
      {"r1", "relu", NULL, NULL},
      {"b0.c1", "conv2d", "out_channels=4 kernel_size=1", NULL},
      {"b0.bn1", "batchnorm2d", NULL, NULL},
      {"b0.r1", "relu", NULL, NULL},
      {"b0.c2", "conv2d", "out_channels=4 kernel_size=3 stride=2 padding=1", NULL},
      {"b0.bn2", "batchnorm2d", NULL, NULL},
      {"b0.r2", "relu", NULL, NULL},
      {"b0.c3", "conv2d", "out_channels=16 kernel_size=1", NULL},
      {"b0.bn3", "batchnorm2d", NULL, NULL},
      {"b0.dc", "conv2d", "out_channels=16 kernel_size=1 stride=2", "r1"},
      {"b0.dbn", "batchnorm2d", NULL, NULL},
      {"b0.add", "add", NULL, "b0.bn3,b0.dbn"},
      {"b0.out", "relu", NULL, NULL},
      {"b1.c1", "conv2d", "out_channels=4 kernel_size=1", NULL},
      {"b1.bn1", "batchnorm2d", NULL, NULL},
      {"b1.r1", "relu", NULL, NULL},
      {"b1.c2", "conv2d", "out_channels=4 kernel_size=3 padding=1", NULL},
      {"b1.bn2", "batchnorm2d", NULL, NULL},
      {"b1.r2", "relu", NULL, NULL},
      {"b1.c3", "conv2d", "out_channels=16 kernel_size=1", NULL},
      {"b1.bn3", "batchnorm2d", NULL, NULL},
      {"b1.add", "add", NULL, "b0.out,b1.bn3"},
      {"b1.out", "relu", NULL, NULL},
      {"b2.dw", "conv2d", "out_channels=16 kernel_size=3 padding=1 groups=16", NULL},
      {"b2.bn", "batchnorm2d", NULL, NULL},
      {"b2.r", "relu", NULL, NULL},
      {"gap", "global_avgpool", NULL, NULL},
      {"flat", "flatten", NULL, NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  return strop_test_build(3, CIN, nodes, (int)(sizeof nodes / sizeof nodes[0]), 23);
}

START_TEST(compact_conv_acts_same_bits) {
  const int threads = 1 + _i % 2, path = _i / 2;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
  strop__bf16_impl = path;
  strop__compact_centred = 0; /* the norms' inputs kept (compact_norm_inputs_close) */
  strop_model *on = res_model(), *off = NULL;
  OK(strop_model_set_compute_dtype(on, STROP_DTYPE_BF16));
  OK(strop_model_clone(on, &off));
  static const char *const held[] = {"r1",    "b0.r1", "b0.r2", "b0.out",
                                     "b1.r1", "b1.r2", "b2.r",  NULL};
  enum { N = 16 };
  static float x[N * 3 * 12 * 12];
  for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)sin(0.37 * (double)i);
  size_t region[2];
  strop_model *ms[2] = {off, on};
  for (int c = 0; c < 2; c++) held_in_bf16(ms[c], x, N, held, c, "resnet", &region[c]);
  ck_assert_msg(region[1] < region[0], "planned %zu, in FP32 %zu", region[1], region[0]);
  compact_trains_same_bits(on, off, train_cnn);
  strop__compact_centred = 1;
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}
END_TEST

/* relative L2 distance of b from a over n values */
static double rel_l2(const float *a, const float *b, size_t n) {
  double d2 = 0, n2 = 0;
  for (size_t i = 0; i < n; i++) {
    d2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    n2 += (double)a[i] * a[i];
  }
  return n2 > 0 ? sqrt(d2 / n2) : sqrt(d2);
}

/* A ResNet's batch norms' inputs, its convs' outputs, held in BF16 as their deviations from the
 * norms' batch means (compact_plan's centred holding, strop__compact_centred) and read so by
 * the norms' backwards (strop__bn_res.dev), the fused relus' selects taken from the chains'
 * outputs. On res_model at 1 and 2 threads, on both paths: every conv output is held too (the
 * depthwise conv's as well: a norm reads it) and the planned region shrinks again; each
 * weight's gradient stays within 2% of FP32's in relative L2 norm (cnn_gradcheck's bound) and
 * within 1.5 times (plus 0.002) the distance of the BF16 step that keeps them in FP32, and
 * differs from that step's (it ran); twelve Adam steps follow that step's losses within 0.03
 * (cnn_finetune_close's bound). */
START_TEST(compact_norm_inputs_close) {
  const int threads = 1 + _i % 2, path = _i / 2;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
  strop__bf16_impl = path;
  strop_model *f = res_model(), *on = NULL, *off = NULL;
  OK(strop_model_clone(f, &on));
  OK(strop_model_clone(f, &off));
  OK(strop_model_set_compute_dtype(on, STROP_DTYPE_BF16));
  OK(strop_model_set_compute_dtype(off, STROP_DTYPE_BF16));
  static const char *const kept[] = {"r1",    "b0.r1", "b0.r2", "b0.out",
                                     "b1.r1", "b1.r2", "b2.r",  NULL};
  static const char *const held[] = {"c1",    "r1",    "b0.c1",  "b0.r1", "b0.c2", "b0.r2",
                                     "b0.c3", "b0.dc", "b0.out", "b1.c1", "b1.r1", "b1.c2",
                                     "b1.r2", "b1.c3", "b2.dw",  "b2.r",  NULL};
  enum { N = 16, NP = 6 };
  static float x[N * 3 * 12 * 12], dout[N * CCLASSES], y[N * CCLASSES];
  for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
    x[i] = (float)(sin(0.37 * (double)i) + cos(2.9 * (double)(i * i % 101)));
  fill(dout, N * CCLASSES, 0.9);
  size_t region[2];
  strop__compact_centred = 0;
  held_in_bf16(off, x, N, kept, 1, "resnet, norms' inputs kept", &region[0]);
  strop__compact_centred = 1;
  held_in_bf16(on, x, N, held, 1, "resnet, norms' inputs held", &region[1]);
  ck_assert_msg(region[1] < region[0], "planned %zu, with the norms' inputs in FP32 %zu",
                region[1], region[0]);
  static const char *const names[NP] = {"c1.weight",    "bn1.weight",   "b0.c2.weight",
                                        "b0.dc.weight", "b1.c3.weight", "head.weight"};
  float *g[3][NP];
  size_t cnt[NP];
  for (int k = 0; k < NP; k++) {
    strop_tensor *t = NULL;
    OK(strop_model_tensor_view(f, names[k], &t));
    cnt[k] = (size_t)strop_tensor_numel(t);
    strop_tensor_free(t);
    for (int v = 0; v < 3; v++) g[v][k] = malloc(cnt[k] * sizeof(float));
  }
  strop_model *ms[3] = {f, off, on};
  for (int v = 0; v < 3; v++) {
    strop__compact_centred = v == 2;
    cnn_grads(ms[v], x, N, dout, names, NP, g[v], y);
  }
  for (int k = 0; k < NP; k++) {
    const double e_off = rel_l2(g[0][k], g[1][k], cnt[k]),
                 e_on = rel_l2(g[0][k], g[2][k], cnt[k]),
                 apart = rel_l2(g[1][k], g[2][k], cnt[k]);
    if (getenv("STROP_COMPUTE_VERBOSE"))
      fprintf(stderr, "threads %d path %d %s: from FP32 %g held, %g kept; held from kept %g\n",
              threads, path, names[k], e_on, e_off, apart);
    ck_assert_msg(e_on <= 1.5 * e_off + 0.002,
                  "%s: relative error %g with the norms' inputs held, %g kept", names[k], e_on,
                  e_off);
    if (k == NP - 1) /* the head's, before any norm in the backward */
      ck_assert_msg(apart == 0, "%s: held and kept %g apart", names[k], apart);
    else
      ck_assert_msg(apart > 0 && apart <= 0.1 * e_off, "%s: held %g from kept, kept %g from FP32",
                    names[k], apart, e_off);
  }
  for (int v = 0; v < 3; v++)
    for (int k = 0; k < NP; k++) free(g[v][k]);
  strop_model_free(f);
  strop_model_free(on);
  strop_model_free(off);
  /* twelve steps from the same start, held and kept */
  on = res_model();
  OK(strop_model_set_compute_dtype(on, STROP_DTYPE_BF16));
  OK(strop_model_clone(on, &off));
  strop__compact_centred = 0;
  const run b = train_cnn(off, 12, 1e-2);
  strop__compact_centred = 1;
  const run a = train_cnn(on, 12, 1e-2);
  double worst = 0;
  for (int s = 0; s < 12; s++) worst = fmax(worst, fabs((double)a.loss[s] - b.loss[s]));
  ck_assert_msg(worst <= 0.03, "losses apart by %g", worst);
  ck_assert_float_ne(a.loss[0], a.loss[11]);
  strop_model_free(on);
  strop_model_free(off);
  strop__bf16_impl = 0;
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}
END_TEST

/* a and b, the runs of on and off, give the same six losses and parameters bit for bit, and
 * trained; frees both models */
static void same_training(const run *a, const run *b, strop_model *on, strop_model *off) {
  ck_assert_mem_eq(a->loss, b->loss, 6 * sizeof(float));
  ck_assert_float_ne(a->loss[0], a->loss[5]);
  for (int i = 0; i < on->n_params; i++)
    if (on->params[i]->data)
      ck_assert_mem_eq(on->params[i]->data, off->params[i]->data,
                       on->params[i]->numel * sizeof(float));
  strop_model_free(on);
  strop_model_free(off);
}

/* One training forward of res_model on 16 samples: the planned region, and the outputs whose
 * compact kind is 3 (held in BF16 and read so by every backward, never widened) are exactly
 * `held` (NULL-terminated, or NULL for none) */
static size_t held_read(strop_model *m, const float *x, const char *const *held,
                        const char *label) {
  const strop__act *o = NULL;
  OK(strop__model_forward_exec(m, x, 16, 1, NULL, &o));
  const size_t region = m->plan_bytes;
  for (int i = 0; i < m->n_nodes; i++) {
    int want = 0;
    for (int h = 0; held && held[h]; h++) want |= !strcmp(held[h], m->nodes[i].name);
    const int is = m->compact && m->compact[i] == 3;
    ck_assert_msg(is == want, "%s: '%s' read as held: %d", label, m->nodes[i].name, is);
  }
  strop__model_step_end(m);
  return region;
}

/* The outputs held in BF16 that every reader's backward reads as they are held (a conv's weight
 * gradient on vdpbf16ps packs its columns from the BF16 values: bf16_input 2, ops/conv.c
 * cols_row16_h) and whose own unit reads back only their signs (a norm chain's relu,
 * strop__bn_res.out_h: out_sign_only 2) are widened by none. On res_model at 1 and 2 threads:
 * the norm-and-relu and residual chains' outputs are read so (the last one's reader, the
 * pool, reads nothing), the planned region is smaller than the widening step's, and six Adam
 * steps give that step's losses and parameters bit for bit — with the convs' columns packed
 * from the images, and with them not (strop__conv_bf16_direct 0: each conv widens its held
 * input for its own call). On the forced fallback only the last chain's output is read as held
 * (its convs' rounded columns read FP32). */
START_TEST(compact_held_read_same_bits) {
  const int threads = 1 + _i % 2, mode = _i / 2; /* 0 direct, 1 not packed, 2 the fallback */
  if (!strop__bf16_dot_enabled()) return;
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
  strop__bf16_impl = mode == 2;
  strop__conv_bf16_direct = mode != 1;
  static const char *const held[] = {"r1",    "b0.r1", "b0.r2", "b0.out",
                                     "b1.r1", "b1.r2", "b2.r",  NULL};
  static float x[16 * 3 * 12 * 12];
  for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)sin(0.37 * (double)i);
  strop_model *on = res_model(), *off = NULL;
  OK(strop_model_set_compute_dtype(on, STROP_DTYPE_BF16));
  OK(strop_model_clone(on, &off));
  strop__compact_held = 0;
  const size_t widened = held_read(off, x, NULL, "widened");
  const run b = train_cnn(off, 6, 1e-2);
  strop__compact_held = 1;
  static const char *const fallback[] = {"b2.r", NULL};
  const size_t as_held = held_read(on, x, mode == 2 ? fallback : held, "held");
  ck_assert_msg(as_held < widened || (mode == 2 && as_held == widened),
                "planned %zu, widened %zu", as_held, widened);
  const run a = train_cnn(on, 6, 1e-2);
  same_training(&a, &b, on, off);
  strop__conv_bf16_direct = 1;
  strop__bf16_impl = 0;
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}
END_TEST

/* Two layer norms, each read by trained linears (one [in, out]) and a residual sum */
static strop_model *ln_model(void) {
  const strop_test_node nodes[] = {
      {"ln0", "layernorm", NULL, NULL},
      {"q", "linear", "out_features=32", "ln0"},
      {"k", "linear", "out_features=32 weight_layout=in_out", "ln0"},
      {"qk", "add", NULL, "q,k"},
      {"res", "add", NULL, "qk,ln0"},
      {"ln1", "layernorm", NULL, NULL},
      {"up", "linear", "out_features=48", NULL},
      {"act", "gelu", NULL, NULL},
      {"down", "linear", "out_features=32", NULL},
      {"res2", "add", NULL, "down,ln1"},
      {"flat", "flatten", NULL, NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  return strop_test_build(2, IN, nodes, 12, 31);
}

/* A trained linear layer's weight gradient on vdpbf16ps reads its input as the step holds it in
 * BF16 (linear_bf16_input 2, strop__bf16_gemm_kn_h: strop__linear_held), and dy as the input
 * gradient's product rounded it (strop__dy_once); the GELU before such a layer is held in BF16
 * for it rather than computed again (strop__hold_recomputable). On ln_model at 1 and 2 threads:
 * the two norms' outputs and the GELU's are read as held (compact kind 3; the norms' alone
 * without strop__hold_recomputable, none without strop__linear_held), and six Adam steps give
 * the losses and parameters of the step that widens the norms' outputs, computes the GELU again
 * and rounds dy twice, bit for bit. */
START_TEST(linear_held_read_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  ck_assert_int_eq(strop_set_num_threads(1 + _i), STROP_OK);
  strop_model *on = ln_model(), *off = NULL;
  OK(strop_model_set_compute_dtype(on, STROP_DTYPE_BF16));
  OK(strop_model_clone(on, &off));
  static float x[16 * T * D];
  inputs(x, 16 * T * D, 0.2);
  for (int v = 0; v < 3; v++) { /* nothing held, the norms' outputs, and the GELU's too */
    strop_model *m = v ? on : off;
    strop__linear_held = v > 0;
    strop__hold_recomputable = v > 1;
    const strop__act *o = NULL;
    OK(strop__model_forward_exec(m, x, 16, 1, NULL, &o));
    for (int i = 0; i < m->n_nodes; i++) {
      const char *name = m->nodes[i].name;
      const int want = (v && (!strcmp(name, "ln0") || !strcmp(name, "ln1"))) ||
                       (v > 1 && !strcmp(name, "act"));
      ck_assert_msg((m->compact && m->compact[i] == 3) == want, "held %d: '%s' read as held", v,
                    name);
    }
    strop__model_step_end(m);
  }
  strop__linear_held = 0;
  strop__dy_once = 0;
  strop__hold_recomputable = 0;
  const run b = train(off, 6, 1e-2);
  strop__linear_held = 1;
  strop__dy_once = 1;
  strop__hold_recomputable = 1;
  const run a = train(on, 6, 1e-2);
  same_training(&a, &b, on, off);
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}
END_TEST

/* The wide CNN trained whole in BF16 (its 64 -> 64 3x3 conv after a trainable stem, so its
 * input gradient is wanted), with that input gradient direct and as the BF16 Winograd forward
 * of dy (strop__conv_bf16_wino_dx), through the layers: the graph's planned scratch, the
 * fused relu, the threads' chunks. The two runs differ (the Winograd path ran) and follow each
 * other within 0.03 of the loss, cnn_finetune_close's bound between BF16 and FP32, over the
 * first 12 steps (before the spike that test describes; 0.0092 measured); both learn. */
START_TEST(cnn_winograd_dx_close) {
  if (!strop__bf16_dot_enabled()) return;
  enum { STEPS = 12 };
  strop_model *p = cnn_model_w(11, 0, 0, 1), *q = NULL;
  OK(strop_model_set_compute_dtype(p, STROP_DTYPE_BF16));
  OK(strop_model_clone(p, &q));
  strop__conv_bf16_wino_dx = 0;
  run a = train_cnn(p, STEPS, 3e-3);
  strop__conv_bf16_wino_dx = 1;
  run b = train_cnn(q, STEPS, 3e-3);
  double worst = 0;
  for (int s = 0; s < STEPS; s++) {
    const double d = fabs((double)a.loss[s] - (double)b.loss[s]);
    ck_assert_msg(d <= 0.03, "step %d: direct dx loss %g, Winograd dx loss %g", s,
                  (double)a.loss[s], (double)b.loss[s]);
    worst = fmax(worst, d);
  }
  if (getenv("STROP_COMPUTE_VERBOSE"))
    fprintf(stderr, "wide cnn: worst |loss diff| %g; direct %g -> %g, Winograd %g -> %g\n", worst,
            (double)a.loss[0], (double)a.loss[STEPS - 1], (double)b.loss[0],
            (double)b.loss[STEPS - 1]);
  ck_assert_msg(worst > 0, "the Winograd input gradient did not run");
  ck_assert(b.loss[STEPS - 1] < b.loss[0] && a.loss[STEPS - 1] < a.loss[0]);
  strop_model_free(p);
  strop_model_free(q);
}
END_TEST

/* ---- errors ---- */

START_TEST(errors) {
  ck_assert_int_eq(strop_model_set_compute_dtype(NULL, STROP_DTYPE_BF16), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "model is NULL"));
  ck_assert_int_eq(strop_model_compute_dtype(NULL), -1);
  strop_model *m = text_model(1, 0);
  OK(strop_model_set_compute_dtype(m, STROP_DTYPE_BF16));
  static const int bad[] = {STROP_DTYPE_INT8, -1, 3, 99};
  for (int k = 0; k < 4; k++) {
    ck_assert_int_eq(strop_model_set_compute_dtype(m, bad[k]), STROP_E_INVALID_ARG);
    char want[16];
    snprintf(want, sizeof want, "got %d", bad[k]);
    ck_assert_msg(strstr(strop_last_error(), "strop_model_set_compute_dtype") &&
                      strstr(strop_last_error(), want),
                  "%s", strop_last_error());
    ck_assert_int_eq(strop_model_compute_dtype(m), STROP_DTYPE_BF16); /* unchanged */
  }
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "")); /* never NULL */
  /* an unfinalized model records the choice; its first forward computes in it */
  strop_model *u = NULL;
  OK(strop_model_create(2, IN, &u));
  OK(strop_model_set_compute_dtype(u, STROP_DTYPE_BF16));
  ck_assert_int_eq(strop_model_compute_dtype(u), STROP_DTYPE_BF16);
  strop_model_free(u);
  strop_model_free(m);
}
END_TEST

/* ---- allocation failures in the middle of a step ---- */

/* The models the compute dtype reaches, each computing in BF16: 0 linears (with GELU), 1 LoRA on
 * a BF16-held base, 2 LoRA on an int8-held base (per-group scales), 3 an attention layer, 4 a
 * CNN training whole (batch norm in train mode, max-pool), 5 the CNN with its first conv and
 * norm frozen (folded, with the relu and pool in its epilogue), 6 the linears of 0 with the
 * weight cache off (the trained weights packed per product). */
enum { ALLOC_MODELS = 8, AN = 6 };

static strop_model *alloc_model(int which) {
  strop_model *m = NULL;
  if (which == 0 || which == 6) m = text_model(21, 1);
  else if (which <= 2) {
    m = lora_model(21);
    if (which == 2) OK(strop_model_set_frozen_int8_group(m, 16));
    OK(strop_model_set_frozen_dtype(m, which == 1 ? STROP_DTYPE_BF16 : STROP_DTYPE_INT8));
  } else if (which == 3) {
    const strop_test_node nodes[] = {
        {"fc1", "linear", "out_features=96", NULL},
        {"attn", "attention", "num_heads=4 causal=true", NULL},
        {"flat", "flatten", NULL, NULL},
        {"head", "linear", "out_features=4", NULL},
    };
    m = strop_test_build(2, IN, nodes, 4, 21);
  } else if (which == 7) m = res_model(); /* its block inputs held in BF16 */
  else m = cnn_model(21, which == 5, 0);
  OK(strop_model_set_compute_dtype(m, STROP_DTYPE_BF16));
  if (which == 6) OK(strop_model_set_weight_cache(m, 0));
  return m;
}

typedef struct arig {
  strop_model *m;
  strop_optimizer *opt;
  strop_trainer *tr;
} arig;

static arig alloc_rig(int which) {
  arig r;
  r.m = alloc_model(which);
  OK(strop_optimizer_create(r.m, STROP_OPTIM_ADAM, &r.opt));
  OK(strop_optimizer_set_double(r.opt, STROP_OPT_LR, 1e-2));
  OK(strop_trainer_create(r.m, r.opt, &r.tr));
  return r;
}

static void alloc_rig_free(arig *r) {
  strop_trainer_free(r->tr);
  strop_optimizer_free(r->opt);
  strop_model_free(r->m);
}

/* Every float the step may change: parameters (held weights have no float data: they never
 * train), float buffers, the optimizer's float state; with the counters' sum in the last one. */
static float *alloc_state(const arig *r, size_t *n_out) {
  size_t n = 1;
  for (int i = 0; i < r->m->n_params; i++)
    n += r->m->params[i]->data ? r->m->params[i]->numel : 0;
  const int cnt = strop__optim_state_count(r->opt);
  for (int i = 0; i < cnt; i++) {
    strop__state_entry e;
    OK(strop__optim_state_at(r->opt, i, &e));
    if (e.dtype == STROP__STATE_F32) n += e.numel;
  }
  float *v = malloc(n * sizeof *v);
  size_t k = 0;
  for (int i = 0; i < r->m->n_params; i++)
    if (r->m->params[i]->data) {
      memcpy(v + k, r->m->params[i]->data, r->m->params[i]->numel * sizeof *v);
      k += r->m->params[i]->numel;
    }
  double steps = (double)strop_trainer_global_step(r->tr) +
                 1e3 * (double)strop_optimizer_step_count(r->opt);
  for (int i = 0; i < cnt; i++) {
    strop__state_entry e;
    OK(strop__optim_state_at(r->opt, i, &e));
    if (e.dtype == STROP__STATE_F32) {
      memcpy(v + k, e.data, e.numel * sizeof *v);
      k += e.numel;
    } else steps += 1e6 * (double)(*(const int64_t *)e.data) * (i + 1);
  }
  v[k] = (float)steps;
  *n_out = n;
  return v;
}

static void alloc_batch(int which, float *x, float *y, strop_tensor **tx, strop_tensor **ty) {
  const int64_t yd[1] = {AN};
  if (which == 4 || which == 5 || which == 7) {
    const size_t nx = (size_t)(AN * CIN[0] * CIN[1] * CIN[2]);
    for (size_t i = 0; i < nx; i++)
      x[i] = (float)(sin(0.37 * (double)i) + cos(2.9 * (double)(i * i % 101)));
    *tx = wrap_img(x, AN);
  } else {
    inputs(x, (size_t)(AN * T * D), 0.3);
    *tx = wrap(x, AN);
  }
  for (int i = 0; i < AN; i++) y[i] = (float)(i % 4);
  OK(strop_tensor_wrap(y, AN, 1, yd, ty));
}

/* An allocation failing anywhere in a step of a model computing in BF16 — a first step (the
 * weights' BF16 copies and the optimizer state made), or one in the middle with its memory cold
 * (the step's arena made anew) — is STROP_E_NOMEM with a sentence and leaves the parameters,
 * buffers and optimizer state as they were; the steps then run to the bits of steps that never
 * failed, and nothing leaks. Both paths (vdpbf16ps where the CPU has it, the fallback). */
START_TEST(step_alloc_failures) {
  const int which = _i >> 1, path = _i & 1;
  if (path == 0 && !strop__bf16_dot_enabled()) return;
  strop__bf16_impl = path;
  static float x[AN * T * D + AN * 3 * 12 * 12], y[AN];
  strop_tensor *tx = NULL, *ty = NULL;
  alloc_batch(which, x, y, &tx, &ty);
  /* the reference: two steps that never fail (and the process-wide buffers made once) */
  arig ref = alloc_rig(which);
  OK(strop_trainer_step(ref.tr, tx, ty, NULL));
  OK(strop_trainer_step(ref.tr, tx, ty, NULL));
  size_t nw = 0;
  float *want = alloc_state(&ref, &nw);
  alloc_rig_free(&ref);
  int failures[2] = {0, 0};
  for (int first = 1; first >= 0; first--)
    for (int64_t n = 1; n < 100000; n++) {
      const int64_t live = strop__alloc_live();
      arig r = alloc_rig(which);
      if (!first) { /* the optimizer state and the BF16 copies exist: a step in the middle */
        OK(strop_trainer_step(r.tr, tx, ty, NULL));
        strop__model_step_end(r.m);
        /* cold again: the step allocates its memory anew */
        ck_assert_int_eq(strop__model_step_release(r.m), STROP_OK);
      }
      size_t nb = 0;
      float *before = alloc_state(&r, &nb);
      strop_clear_error();
      strop__alloc_fail_at(n);
      const int st = strop_trainer_step(r.tr, tx, ty, NULL);
      const int hit = strop__alloc_failed();
      strop__alloc_fail_at(0);
      if (hit && st != STROP_OK) {
        failures[first]++;
        ck_assert_msg(st == STROP_E_NOMEM,
                      "model %d path %d: allocation %lld of step %d failed, status %d (%s)",
                      which, path, (long long)n, 2 - first, st, strop_last_error());
        ck_assert(strop_last_error()[0] != '\0');
        size_t na = 0;
        float *after = alloc_state(&r, &na);
        ck_assert_msg(na == nb && !memcmp(after, before, nb * sizeof *after),
                      "model %d path %d: allocation %lld of step %d failed and the state moved",
                      which, path, (long long)n, 2 - first);
        free(after);
        OK(strop_trainer_step(r.tr, tx, ty, NULL));
      } else {
        ck_assert_msg(st == STROP_OK, "%s", strop_last_error());
      }
      if (first) OK(strop_trainer_step(r.tr, tx, ty, NULL));
      size_t ng = 0;
      float *got = alloc_state(&r, &ng);
      ck_assert_uint_eq(ng, nw);
      ck_assert_msg(!memcmp(got, want, nw * sizeof *got),
                    "model %d path %d: after allocation %lld of step %d failed, the bits differ",
                    which, path, (long long)n, 2 - first);
      free(got);
      free(before);
      alloc_rig_free(&r);
      ck_assert_int_eq(strop__alloc_live(), live);
      if (!hit) break;
    }
  strop__bf16_impl = 0;
  if (getenv("STROP_COMPUTE_VERBOSE"))
    fprintf(stderr, "model %d path %d: %d / %d allocation failures in a first / middle step\n",
            which, path, failures[1], failures[0]);
  ck_assert_int_ge(failures[1], 8);
  ck_assert_int_ge(failures[0], 1);
  free(want);
  strop_tensor_free(tx);
  strop_tensor_free(ty);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("compute");
  TCase *c = tcase_create("kernels");
  tcase_add_test(c, rounding_matches_scalar);
  tcase_add_test(c, gemm_f32_edges);
  tcase_add_test(c, b_groups_same_bits);
  tcase_add_test(c, kslices_same_bits);
  tcase_add_test(c, pack_sweep_same_bits);
  tcase_add_test(c, gemm_f32_finite_seen);
  tcase_add_test(c, held_groups_same_bits);
  tcase_add_test(c, pack_groups_same_bits);
  suite_add_tcase(s, c);
  c = tcase_create("linear");
  tcase_add_test(c, fallback_exact);
  tcase_add_test(c, dot_matches_fallback);
  tcase_add_test(c, amx_rows_threads_and_paths);
  tcase_add_loop_test(c, model_gradcheck, 0, 4);
  tcase_add_test(c, model_fallback_exact);
  tcase_add_loop_test(c, attention_model_close, 0, 2);
  suite_add_tcase(s, c);
  c = tcase_create("copies");
  tcase_add_test(c, copy_follows_the_weight);
  tcase_add_test(c, panels_same_bits);
  tcase_add_test(c, copies_memory_and_default);
  suite_add_tcase(s, c);
  c = tcase_create("train");
  tcase_add_loop_test(c, finetune_close, 0, 4);
  tcase_add_loop_test(c, weight_cache_same_bits, 0, 16);
  tcase_add_loop_test(c, compact_acts_same_bits, 0, 16);
  tcase_add_loop_test(c, compact_conv_acts_same_bits, 0, 4);
  tcase_add_loop_test(c, compact_norm_inputs_close, 0, 4);
  tcase_add_loop_test(c, compact_held_read_same_bits, 0, 6);
  tcase_add_loop_test(c, linear_held_read_same_bits, 0, 2);
  tcase_add_test(c, conv_held_same_bits);
  tcase_add_test(c, attention_setting);
  tcase_add_test(c, loss_exponentials_follow_the_dtype);
  suite_add_tcase(s, c);
  c = tcase_create("conv");
  tcase_add_test(c, conv_fallback_exact);
  tcase_add_loop_test(c, conv_paths_match_reference, 0, 2);
  tcase_add_loop_test(c, conv_direct_same_bits, 0, 2);
  tcase_add_test(c, conv_dx_reference);
  tcase_add_test(c, conv_bf16_winograd_dx);
  tcase_add_test(c, conv_bf16_winograd);
  tcase_add_loop_test(c, cnn_gradcheck, 0, 4);
  tcase_add_loop_test(c, cnn_finetune_close, 0, 6);
  tcase_add_test(c, cnn_winograd_dx_close);
  suite_add_tcase(s, c);
  c = tcase_create("errors");
  tcase_add_test(c, errors);
  tcase_add_loop_test(c, step_alloc_failures, 0, 2 * ALLOC_MODELS);
  tcase_set_timeout(c, 600);
  suite_add_tcase(s, c);
  return s;
}

int main(void) { return strop_test_run(suite()); }
