/* SPDX-License-Identifier: MIT */
/* strop tests — frozen weights held in BF16 or int8 (strop_model_set_frozen_dtype): the
 * conversions, exactness of the fallback path, the vdpbf16ps path within its tolerance, the
 * backward through a frozen low-precision linear, LoRA fine-tunes, memory and errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "graph/graph.h"
#include "ops/bf16gemm.h"
#include "ops/dense.h"
#include "ops/lowp.h"
#include "ops/ops.h"
#include "testutil.h"

#define OK(x) strop_test_must((x), #x)

/* A text-like model: 12 positions of 32 features, per-position linears, a head. */
static const int64_t IN[2] = {12, 32};
enum { T = 12, D = 32, CLASSES = 4 };

static strop_model *text_model(uint64_t seed) {
  const strop_test_node nodes[] = {
      {"fc1", "linear", "out_features=64", NULL},
      {"act1", "gelu", NULL, NULL},
      {"fc2", "linear", "out_features=32", NULL},
      {"act2", "gelu", NULL, NULL},
      {"flat", "flatten", NULL, NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  return strop_test_build(2, IN, nodes, 6, seed);
}

/* The same with fc2's weight stored [in, out] (GPT-2's Conv1D layout). */
static strop_model *text_model_in_out(uint64_t seed) {
  const strop_test_node nodes[] = {
      {"fc1", "linear", "out_features=64", NULL},
      {"act1", "gelu", NULL, NULL},
      {"fc2", "linear", "out_features=32 weight_layout=in_out", NULL},
      {"act2", "gelu", NULL, NULL},
      {"flat", "flatten", NULL, NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  return strop_test_build(2, IN, nodes, 6, seed);
}

/* LoRA (rank 4) on fc1 and fc2, whose weights freeze; the head trains. */
static strop_model *lora_model(uint64_t seed) {
  strop_model *m = text_model(seed);
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

/* Replaces the FP32 weight `name` of r by what dtype holds of it (rounded / quantised, int8
 * with `group` inputs per scale). */
static void round_like_g(strop_model *r, const char *name, int dtype, int scale_cols,
                         int64_t group) {
  strop_tensor *t = NULL;
  OK(strop_model_tensor_view(r, name, &t));
  int64_t d[2];
  ck_assert_int_eq(strop_tensor_shape(t, d, 2), 2);
  const size_t n = (size_t)(d[0] * d[1]);
  float *v = malloc(n * sizeof *v);
  strop__lowp q;
  ck_assert_int_eq(
      strop__lowp_make(&q, dtype, strop_tensor_data(t), d[0], d[1], scale_cols, group), 0);
  strop__lowp_expand(&q, v);
  strop__lowp_free(&q);
  OK(strop_model_set_tensor(r, name, v, n));
  free(v);
  strop_tensor_free(t);
}

static void round_like(strop_model *r, const char *name, int dtype, int scale_cols) {
  round_like_g(r, name, dtype, scale_cols, 0);
}

static strop_tensor *forward(strop_model *m, const float *x, int64_t n) {
  strop_tensor *tx = NULL, *y = NULL;
  const int64_t xd[3] = {n, T, D};
  OK(strop_tensor_wrap((float *)x, (size_t)(n * T * D), 3, xd, &tx));
  OK(strop_model_forward(m, tx, &y));
  strop_tensor_free(tx);
  return y;
}

/* ---- conversions ---- */

START_TEST(bf16_rounding) {
  /* to nearest, ties to even, NaN stays NaN, BF16 -> FP32 exact */
  ck_assert_uint_eq(strop__bf16_from_f32(1.0f), 0x3f80);
  ck_assert_uint_eq(strop__bf16_from_f32(1.0f + 0x1p-8f), 0x3f80);           /* tie, even below */
  ck_assert_uint_eq(strop__bf16_from_f32(1.0f + 0x1p-7f + 0x1p-8f), 0x3f82); /* tie, even above */
  ck_assert_uint_eq(strop__bf16_from_f32(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  ck_assert_uint_eq(strop__bf16_from_f32(-2.0f), 0xc000);
  ck_assert(isnan(strop__bf16_to_f32(strop__bf16_from_f32(NAN))));
  ck_assert(isinf(strop__bf16_to_f32(strop__bf16_from_f32(INFINITY))));
  for (int i = 0; i < 1000; i++) {
    const float x = (float)sin(i * 0.37) * (float)(i + 1);
    const float y = strop__bf16_to_f32(strop__bf16_from_f32(x));
    ck_assert_float_le(fabsf(x - y), fabsf(x) * 0x1p-8f);
    ck_assert_uint_eq(strop__bf16_from_f32(y), strop__bf16_from_f32(x)); /* idempotent */
  }
  /* either layout widens back to W's own layout; [in, out] is stored transposed */
  float w[3 * 5], back[3 * 5];
  for (int i = 0; i < 15; i++) w[i] = 1.0f + (float)i * 0x1p-10f;
  for (int sc = 0; sc < 2; sc++) {
    strop__lowp q;
    ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_BF16, w, 3, 5, sc, 0), 0);
    ck_assert_uint_eq(strop__lowp_bytes(&q), 15 * sizeof(uint16_t));
    strop__lowp_expand(&q, back);
    for (int i = 0; i < 15; i++)
      ck_assert_float_eq(back[i], strop__bf16_to_f32(strop__bf16_from_f32(w[i])));
    if (sc) ck_assert_uint_eq(((uint16_t *)q.v)[1], strop__bf16_from_f32(w[5])); /* W(1, 0) */
    strop__lowp_free(&q);
  }
}
END_TEST

START_TEST(int8_quantisation) {
  /* one scale per output channel, absmax / 127; |w - q s| <= s / 2 */
  float w[3 * 5] = {0.5f, -1.0f, 0.25f, 0.0f, 0.1f, 0, 0, 0, 0, 0, 100.0f, -3.0f, 2.0f, 1.0f, 0};
  for (int sc = 0; sc < 2; sc++) {
    strop__lowp q;
    ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_INT8, w, 3, 5, sc, 0), 0);
    ck_assert_uint_eq(strop__lowp_bytes(&q), 15 + (sc ? 5 : 3) * sizeof(float));
    float back[15];
    strop__lowp_expand(&q, back);
    for (int i = 0; i < 15; i++) {
      const float s = q.scale[sc ? i % 5 : i / 5];
      ck_assert_float_le(fabsf(back[i] - w[i]), s * 0.5f + 1e-6f);
    }
    if (!sc) {
      ck_assert_float_eq(q.scale[0], 1.0f / 127.0f);
      ck_assert_float_eq(q.scale[1], 0.0f); /* an all-zero row */
      ck_assert_int_eq(((int8_t *)q.v)[10], 127);
    }
    strop__lowp_free(&q);
  }
}
END_TEST

/* Scales per group of inputs: ceil(inputs / group) per output channel (the last run shorter),
 * each the absmax / 127 of its own run, in both layouts; a group as wide as the inputs is the
 * per-channel quantisation bit for bit; a weight with outliers is followed more closely. */
START_TEST(int8_group_quantisation) {
  enum { OUT = 3, IN = 40 };
  float w[OUT * IN], wt[IN * OUT], back[OUT * IN], back_t[IN * OUT];
  for (int o = 0; o < OUT; o++)
    for (int i = 0; i < IN; i++) {
      w[o * IN + i] = (float)sin(0.37 * (o * IN + i)) * (i == 3 ? 50.0f : 1.0f); /* outliers */
      wt[i * OUT + o] = w[o * IN + i];
    }
  strop__lowp q, qt, qc;
  ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_INT8, w, OUT, IN, 0, 16), 0);
  ck_assert_int_eq(strop__lowp_make(&qt, STROP__LOWP_INT8, wt, IN, OUT, 1, 16), 0);
  ck_assert_int_eq(strop__lowp_scales(&q), OUT * 3); /* runs of 16, 16, 8 */
  ck_assert_int_eq(strop__lowp_scales(&qt), OUT * 3);
  ck_assert_uint_eq(strop__lowp_bytes(&q), OUT * IN + OUT * 3 * sizeof(float));
  strop__lowp_expand(&q, back);
  strop__lowp_expand(&qt, back_t);
  for (int o = 0; o < OUT; o++)
    for (int g = 0; g < 3; g++) {
      float a = 0.0f;
      for (int i = g * 16; i < IN && i < g * 16 + 16; i++)
        if (fabsf(w[o * IN + i]) > a) a = fabsf(w[o * IN + i]);
      ck_assert_float_eq(q.scale[o * 3 + g], a / 127.0f);
      ck_assert_float_eq(qt.scale[o * 3 + g], a / 127.0f);
      for (int i = g * 16; i < IN && i < g * 16 + 16; i++) {
        ck_assert_float_le(fabsf(back[o * IN + i] - w[o * IN + i]), a / 254.0f + 1e-6f);
        ck_assert_float_eq(back_t[i * OUT + o], back[o * IN + i]); /* layouts agree */
      }
    }
  /* a group as wide as the inputs (or wider) is one scale per channel, the same bits */
  strop__lowp wide, chan;
  ck_assert_int_eq(strop__lowp_make(&wide, STROP__LOWP_INT8, w, OUT, IN, 0, 64), 0);
  ck_assert_int_eq(strop__lowp_make(&chan, STROP__LOWP_INT8, w, OUT, IN, 0, 0), 0);
  ck_assert_int_eq(strop__lowp_scales(&wide), OUT);
  ck_assert_mem_eq(wide.v, chan.v, OUT * IN);
  ck_assert_mem_eq(wide.scale, chan.scale, OUT * sizeof(float));
  /* the outlier at input 3 costs the per-channel scales; groups keep the other runs finer */
  float back_c[OUT * IN];
  strop__lowp_expand(&chan, back_c);
  double err_g = 0, err_c = 0;
  for (int i = 0; i < OUT * IN; i++)
    err_g += fabs(back[i] - w[i]), err_c += fabs(back_c[i] - w[i]);
  ck_assert_msg(err_g < 0.5 * err_c, "grouped error %g, per channel %g", err_g, err_c);
  /* a copy keeps the group and every scale */
  ck_assert_int_eq(strop__lowp_copy(&qc, &q), 0);
  ck_assert_int_eq(qc.group, 16);
  ck_assert_mem_eq(qc.scale, q.scale, OUT * 3 * sizeof(float));
  strop__lowp_free(&qc);
  strop__lowp_free(&wide);
  strop__lowp_free(&chan);
  strop__lowp_free(&q);
  strop__lowp_free(&qt);
}
END_TEST

/* ---- forward ---- */

/* The fallback gives the bits of an FP32 model whose frozen weights hold the same values. */
static void forward_exact_g(int dtype, int in_out, int64_t group) {
  strop_model *m = in_out ? text_model_in_out(7) : text_model(7), *r = NULL;
  OK(strop_model_freeze(m, "fc*"));
  OK(strop_model_clone(m, &r));
  if (group) OK(strop_model_set_frozen_int8_group(m, group));
  OK(strop_model_set_frozen_dtype(m, dtype));
  ck_assert_int_eq(strop_model_frozen_dtype(m), dtype);
  round_like_g(r, "fc1.weight", dtype, 0, group);
  round_like_g(r, "fc2.weight", dtype, in_out, group);
  float x[3 * T * D];
  inputs(x, sizeof x / sizeof *x, 0.0);
  strop__bf16_impl = 1;
  strop_tensor *a = forward(m, x, 3), *b = forward(r, x, 3);
  strop__bf16_impl = 0;
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 3 * CLASSES * sizeof(float));
  strop_tensor_free(a);
  strop_tensor_free(b);
  strop_model_free(m);
  strop_model_free(r);
}

static void forward_exact(int dtype, int in_out) { forward_exact_g(dtype, in_out, 0); }

START_TEST(bf16_fallback_exact) {
  forward_exact(STROP_DTYPE_BF16, 0);
  forward_exact(STROP_DTYPE_BF16, 1);
}
END_TEST
START_TEST(int8_exact) {
  forward_exact(STROP_DTYPE_INT8, 0);
  forward_exact(STROP_DTYPE_INT8, 1);
}
END_TEST

/* Grouped scales: the model's forward is that of an FP32 model on the group-quantised weights,
 * both layouts, a group that divides the inputs and one that leaves a short last run. */
START_TEST(int8_group_exact) {
  static const int64_t groups[] = {8, 16, 24};
  for (int g = 0; g < 3; g++) {
    forward_exact_g(STROP_DTYPE_INT8, 0, groups[g]);
    forward_exact_g(STROP_DTYPE_INT8, 1, groups[g]);
  }
}
END_TEST

/* vdpbf16ps (where the CPU has it) rounds the inputs to BF16 too: within 1% of the output's
 * scale of the FP32 model on the same rounded weights. */
START_TEST(bf16_dot_tolerance) {
  if (!strop__bf16_dot_enabled()) return; /* the fallback is tested above */
  const int in_out = _i;                  /* both layouts take the vdpbf16ps product */
  strop_model *m = in_out ? text_model_in_out(9) : text_model(9), *r = NULL;
  OK(strop_model_freeze(m, "fc*"));
  OK(strop_model_clone(m, &r));
  OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_BF16));
  round_like(r, "fc1.weight", STROP__LOWP_BF16, 0);
  round_like(r, "fc2.weight", STROP__LOWP_BF16, in_out);
  float x[5 * T * D];
  inputs(x, sizeof x / sizeof *x, 1.0);
  strop_tensor *a = forward(m, x, 5), *b = forward(r, x, 5);
  const float *pa = strop_tensor_data(a), *pb = strop_tensor_data(b);
  float scale = 0.0f, err = 0.0f;
  for (int i = 0; i < 5 * CLASSES; i++) {
    scale = fmaxf(scale, fabsf(pb[i]));
    err = fmaxf(err, fabsf(pa[i] - pb[i]));
  }
  ck_assert_float_gt(err, 0.0f); /* it did run the BF16 product */
  ck_assert_msg(err <= 0.01f * scale, "max |diff| %g, output scale %g", err, scale);
  strop_tensor_free(a);
  strop_tensor_free(b);
  strop_model_free(m);
  strop_model_free(r);
}
END_TEST

/* The input gradient through a frozen BF16 weight (dX = dY W) on vdpbf16ps, dY rounded to
 * BF16 like the forward's x: each element within BF16's unit roundoff (2^-8) of sum |dy w|
 * (plus FP32 summation error) of the FP32 backward on the same rounded weights, both layouts,
 * written and added (the fallback's bits are backward_exact's). */
START_TEST(bf16_backward_tolerance) {
  if (!strop__bf16_dot_enabled()) return;
  enum { M = 13, IN = 70, OUT = 45 };
  for (int in_out = 0; in_out < 2; in_out++)
    for (int assign = 0; assign < 2; assign++) {
      float w[IN * OUT], wr[IN * OUT], dy[M * OUT], got[M * IN], want[M * IN];
      for (int i = 0; i < IN * OUT; i++) w[i] = (float)cos(0.7 * i);
      for (int i = 0; i < M * OUT; i++) dy[i] = (float)sin(0.3 * i);
      for (int i = 0; i < M * IN; i++) got[i] = want[i] = 0.25f;
      strop__lowp q;
      ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_BF16, w, in_out ? IN : OUT,
                                        in_out ? OUT : IN, in_out, 0),
                       0);
      strop__lowp_expand(&q, wr);
      ck_assert_int_eq(strop__linear_backward_lowp(&q, dy, got, M, IN, OUT, in_out, assign), 0);
      strop__linear_backward(
          NULL, wr, dy, want, NULL, NULL, M, IN, OUT,
          (assign ? STROP__LB_ASSIGN_DX : 0) | (in_out ? STROP__LB_W_IN_OUT : 0));
      double worst = 0.0;
      for (int i = 0; i < M; i++)
        for (int j = 0; j < IN; j++) {
          double mag = 0.0;
          for (int k = 0; k < OUT; k++)
            mag += fabs((double)dy[i * OUT + k] * wr[in_out ? j * OUT + k : k * IN + j]);
          const double e = fabs((double)got[i * IN + j] - want[i * IN + j]);
          ck_assert_msg(e <= (1.0 / 256 + 1e-6) * mag + 1e-6,
                        "in_out %d assign %d: dx(%d, %d) %g, fp32 %g, sum |dy w| %g", in_out,
                        assign, i, j, (double)got[i * IN + j], (double)want[i * IN + j], mag);
          worst = fmax(worst, e);
        }
      ck_assert(worst > 0.0); /* it did run the BF16 product */
      strop__lowp_free(&q);
    }
}
END_TEST

/* An activation held in BF16 (strop__bf16_compact_par) and widened back
 * (strop__bf16_expand_par): every value widened rounds to the BF16 its original rounds to, and
 * has its original's sign and zeroness — also the nonzero values of magnitude at most 2^-134,
 * which round to zero and are held as a marker; NaN stays NaN; a normal value is held as it
 * rounds. Over more than one task's run (64K values), at 1 and 2 threads. */
START_TEST(bf16_compact_keeps_sign) {
  enum { N = 70000 + 13 };
  static float x[N], e[N];
  static uint16_t h[N];
  static const uint32_t special[] = {
      0x00000000u, 0x80000000u, 0x00000001u, 0x80000001u, 0x00007fffu, 0x00008000u,
      0x00008001u, 0x80008000u, 0x80008001u, 0x0000ffffu, 0x00010000u, 0x007fffffu,
      0x00800000u, 0x3f800000u, 0xbf800000u, 0x7f7fffffu, 0x7f800000u, 0xff800000u,
      0x7fc00000u, 0x7f800001u, 0xffc00001u, 0x3f808000u, 0x3f818000u, 0x00018000u};
  const int ns = (int)(sizeof special / sizeof special[0]);
  uint64_t r = 0x9e3779b97f4a7c15u;
  for (int i = 0; i < N; i++) {
    uint32_t u;
    if (i < ns) u = special[i];
    else if (i % 3 == 0) u = (uint32_t)(r >> 33) & 0x8000ffffu; /* tiny, either sign */
    else u = (uint32_t)(r >> 32);
    r = r * 6364136223846793005u + 1442695040888963407u;
    memcpy(&x[i], &u, sizeof u);
  }
  for (int t = 1; t <= 2; t++) {
    ck_assert_int_eq(strop_set_num_threads(t), STROP_OK);
    memset(e, 0, sizeof e);
    strop__bf16_compact_par(x, h, N);
    strop__bf16_expand_par(h, e, N);
    for (int i = 0; i < N; i++) {
      if (isnan(x[i])) {
        ck_assert_msg(isnan(e[i]), "value %d: NaN widened to %g", i, (double)e[i]);
        continue;
      }
      ck_assert_msg(strop__bf16_from_f32(e[i]) == strop__bf16_from_f32(x[i]),
                    "value %d (%a): rounds to %04x, widened %a to %04x", i, (double)x[i],
                    strop__bf16_from_f32(x[i]), (double)e[i], strop__bf16_from_f32(e[i]));
      ck_assert_msg(
          (e[i] > 0) == (x[i] > 0) && (e[i] < 0) == (x[i] < 0) && signbit(e[i]) == signbit(x[i]),
          "value %d: %a widened to %a", i, (double)x[i], (double)e[i]);
      const uint32_t a = (uint32_t)(fabsf(x[i]) >= 0x1p-126f);
      if (a) ck_assert_uint_eq(h[i], strop__bf16_from_f32(x[i]));
    }
  }
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
  /* the marker is what a tiny nonzero value is held as, and what rounding never makes */
  const float tiny = 0x1p-140f;
  strop__bf16_compact_par(&tiny, h, 1);
  ck_assert_uint_eq(h[0], STROP__BF16_TINY);
  for (uint32_t u = 0; u < 0x10000u; u++) {
    const uint32_t bits = u << 16 | 0xffffu; /* as near the marker as a value comes */
    float f;
    memcpy(&f, &bits, sizeof f);
    ck_assert_uint_ne(strop__bf16_from_f32(f) & 0x7fffu, STROP__BF16_TINY);
  }
}
END_TEST

/* The vdpbf16ps kernel on shapes with edges (m, n not multiples of its 4 x 4 tile, k not of
 * 32): against a double sum of the same BF16-rounded operands, to FP32 summation error; B
 * stored [n, k] (the forward) and [k, n] (the backward's input gradient). */
START_TEST(bf16_kernel_edges) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {{1, 1, 1},   {5, 7, 45},  {4, 4, 32},
                                      {9, 33, 70}, {3, 2, 300}, {17, 65, 64}};
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
    const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
    float *a = malloc((size_t)(m * k) * sizeof *a), *w = malloc((size_t)(n * k) * sizeof *w);
    float *c = malloc((size_t)(m * n) * sizeof *c);
    void *abf = strop__malloc_aligned(strop__bf16_gemm_scratch_max(m, n, k));
    for (int64_t i = 0; i < m * k; i++) a[i] = (float)sin(0.3 * (double)i);
    for (int64_t i = 0; i < n * k; i++) w[i] = (float)cos(0.7 * (double)i);
    for (int64_t i = 0; i < m * n; i++) c[i] = 0.5f;
    strop__lowp q;
    ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_BF16, w, n, k, 0, 0), 0);
    strop__bf16_gemm_nt(m, n, k, a, k, &q, 1.0f, c, n, abf);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double ref = 0.5, mag = 0;
        for (int64_t t = 0; t < k; t++) {
          const double p = (double)strop__bf16_to_f32(strop__bf16_from_f32(a[i * k + t])) *
                           (double)strop__bf16_to_f32(((uint16_t *)q.v)[j * k + t]);
          ref += p;
          mag += fabs(p);
        }
        ck_assert_msg(fabs((double)c[i * n + j] - ref) <= 1e-6 * (mag + 1),
                      "[%lld x %lld x %lld] C(%lld, %lld) = %g, want %g", (long long)m,
                      (long long)n, (long long)k, (long long)i, (long long)j,
                      (double)c[i * n + j], ref);
      }
    strop__lowp_free(&q);
    /* the same values read as B [k, n] (the backward's dX = dY W) */
    ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_BF16, w, k, n, 0, 0), 0);
    for (int64_t i = 0; i < m * n; i++) c[i] = 0.5f;
    strop__bf16_gemm_nn(m, n, k, a, k, &q, 1.0f, c, n, abf);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double ref = 0.5, mag = 0;
        for (int64_t t = 0; t < k; t++) {
          const double p = (double)strop__bf16_to_f32(strop__bf16_from_f32(a[i * k + t])) *
                           (double)strop__bf16_to_f32(((uint16_t *)q.v)[t * n + j]);
          ref += p;
          mag += fabs(p);
        }
        ck_assert_msg(fabs((double)c[i * n + j] - ref) <= 1e-6 * (mag + 1),
                      "nn [%lld x %lld x %lld] C(%lld, %lld) = %g, want %g", (long long)m,
                      (long long)n, (long long)k, (long long)i, (long long)j,
                      (double)c[i * n + j], ref);
      }
    strop__lowp_free(&q);
    free(a);
    free(w);
    free(c);
    strop__free_aligned(abf);
  }
}
END_TEST

/* The weight's panels packed vectorised (16 x 16 transposes of B [n, k]'s pairs; two rows of
 * B [k, n] interleaved) give the element-wise packing's products bit for bit (strop__bf16_impl
 * 2 packs element by element): n not a multiple of 32 or 16, k odd, below 32, not a multiple
 * of 32, a multiple; written (beta 0) and added (beta 1), one thread and two. */
START_TEST(bf16_pack_matches_scalar) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {{1, 1, 1},      {3, 5, 7},      {9, 17, 33},  {8, 32, 32},
                                      {11, 47, 63},   {16, 64, 96},   {5, 33, 301}, {20, 100, 64},
                                      {13, 70, 1027}, {40, 100, 301}, /* these two threads */
                                      {5, 40, 4500}};                 /* k in two runs of pairs */
  const int threads = strop_get_num_threads();
  for (int th = 1; th <= 2; th++) {
    ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
      const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
      float *a = malloc((size_t)(m * k) * sizeof *a), *w = malloc((size_t)(n * k) * sizeof *w);
      float *c[2] = {malloc((size_t)(m * n) * sizeof(float)),
                     malloc((size_t)(m * n) * sizeof(float))};
      void *abf = strop__malloc_aligned(strop__bf16_gemm_scratch_max(m, n, k));
      for (int64_t i = 0; i < m * k; i++) a[i] = (float)sin(0.37 * (double)i + 0.2);
      for (int64_t i = 0; i < n * k; i++) w[i] = (float)cos(0.71 * (double)i) * 3.0f;
      for (int kn = 0; kn < 2; kn++) {
        /* kn 0: W [n, k] (the forward); 1: the values as B [k, n] (dX = dY W) */
        strop__lowp q;
        ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_BF16, w, kn ? k : n, kn ? n : k, 0, 0),
                         0);
        for (int beta = 0; beta < 2; beta++) {
          for (int impl = 0; impl < 2; impl++) {
            strop__bf16_impl = impl ? 2 : 0;
            for (int64_t i = 0; i < m * n; i++) c[impl][i] = 0.25f * (float)(i % 7);
            if (kn) strop__bf16_gemm_nn(m, n, k, a, k, &q, (float)beta, c[impl], n, abf);
            else strop__bf16_gemm_nt(m, n, k, a, k, &q, (float)beta, c[impl], n, abf);
          }
          strop__bf16_impl = 0;
          ck_assert_msg(memcmp(c[0], c[1], (size_t)(m * n) * sizeof(float)) == 0,
                        "%s [%lld x %lld x %lld] beta %d threads %d: packings differ",
                        kn ? "nn" : "nt", (long long)m, (long long)n, (long long)k, beta, th);
        }
        strop__lowp_free(&q);
      }
      free(a);
      free(w);
      free(c[0]);
      free(c[1]);
      strop__free_aligned(abf);
    }
  }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* A long k (the LM head's input gradient runs k = 50257): the bits of strop__lowp_gemv, which
 * reads the weight as stored (m <= 4; on vdpbf16ps), and B [k, n] (the input gradient) gives those of the same
 * values stored [n, k]; one thread and two. */
START_TEST(bf16_long_k_one_pass) {
  if (!strop__bf16_dot_enabled() || !__builtin_cpu_supports("avx512vl")) return;
  static const int64_t shapes[][3] = {{3, 40, 4097}, {4, 33, 8193}, {1, 5, 6000}, {13, 70, 4500}};
  const int threads = strop_get_num_threads();
  for (int th = 1; th <= 2; th++) {
    ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
      const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
      float *w = malloc((size_t)(n * k) * sizeof *w), *wt = malloc((size_t)(n * k) * sizeof *wt);
      float *a = malloc((size_t)(m * k) * sizeof *a);
      float *c[3] = {malloc((size_t)(m * n) * sizeof(float)),
                     malloc((size_t)(m * n) * sizeof(float)),
                     malloc((size_t)(m * n) * sizeof(float))};
      for (int64_t i = 0; i < n * k; i++) w[i] = (float)cos(0.31 * (double)i) * 2.0f;
      for (int64_t j = 0; j < n; j++) /* wt [k, n] = w^T */
        for (int64_t t = 0; t < k; t++) wt[t * n + j] = w[j * k + t];
      for (int64_t i = 0; i < m * k; i++) a[i] = (float)sin(0.13 * (double)i + 0.4);
      strop__lowp q, qt;
      ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_BF16, w, n, k, 0, 0), 0);
      ck_assert_int_eq(strop__lowp_make(&qt, STROP__LOWP_BF16, wt, k, n, 0, 0), 0);
      void *abf = strop__malloc_aligned(strop__bf16_gemm_scratch_max(m, n, k));
      for (int beta = 0; beta < 2; beta++) {
        for (int v = 0; v < 3; v++)
          for (int64_t i = 0; i < m * n; i++) c[v][i] = 0.5f - 0.125f * (float)(i % 5);
        strop__bf16_gemm_nt(m, n, k, a, k, &q, (float)beta, c[0], n, abf);
        strop__bf16_gemm_nn(m, n, k, a, k, &qt, (float)beta, c[1], n, abf);
        ck_assert_msg(!memcmp(c[0], c[1], (size_t)(m * n) * sizeof(float)),
                      "[%lld x %lld x %lld] beta %d threads %d: B [k, n] differs from [n, k]",
                      (long long)m, (long long)n, (long long)k, beta, th);
        if (m <= 4 && !beta && !strop__bf16_amx_runs()) { /* y = x W^T, no bias (on the AMX
                                                            * tiles gemv declines) */
          ck_assert_int_eq(strop__lowp_gemv(a, &q, NULL, c[2], m, k, n, 0), 0);
          ck_assert_msg(!memcmp(c[0], c[2], (size_t)(m * n) * sizeof(float)),
                        "[%lld x %lld x %lld] threads %d: differs from the one-pass gemv",
                        (long long)m, (long long)n, (long long)k, th);
        }
      }
      strop__lowp_free(&q);
      strop__lowp_free(&qt);
      strop__free_aligned(abf);
      free(w);
      free(wt);
      free(a);
      for (int v = 0; v < 3; v++) free(c[v]);
    }
  }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* An int8 weight on vdpbf16ps is expanded to BF16 as its panels are packed: each value the BF16
 * nearest its FP32 value (float)q * scale. So its products are bit for bit those of the BF16
 * weight made from the int8 weight's FP32 values (strop__lowp_expand, then rounded), forward
 * (_nt) and input gradient (_nn), both layouts, per channel and groups of 32, 7, 24 and 100
 * inputs, shapes with edges, written and added, one thread and two; and the element-wise
 * packing (strop__bf16_impl 2) gives the same bits. */
START_TEST(int8_dot_equals_bf16_of_values) {
  if (!strop__bf16_dot_enabled()) return; /* the fallback: int8_exact, int8_backward_exact */
  static const int64_t shapes[][3] = {{1, 1, 1},     {5, 7, 45},    {9, 33, 70},   {8, 64, 64},
                                      {17, 65, 100}, {13, 70, 301}, {40, 100, 257}};
  static const int64_t groups[] = {0, 32, 7, 24, 100};
  const int threads = strop_get_num_threads();
  int cases = 0;
  for (int th = 1; th <= 2; th++) {
    ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
      for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++)
        for (int layout = 0; layout < 2; layout++) {
          const int64_t m = shapes[sh][0], out = shapes[sh][1], in = shapes[sh][2];
          const int64_t rows = layout ? in : out, cols = layout ? out : in, big = m * (in + out);
          float *w = malloc((size_t)(rows * cols) * sizeof *w);
          float *wv = malloc((size_t)(rows * cols) * sizeof *wv);
          float *x = malloc((size_t)big * sizeof *x);
          float *y[3] = {malloc((size_t)big * sizeof(float)), malloc((size_t)big * sizeof(float)),
                         malloc((size_t)big * sizeof(float))};
          for (int64_t i = 0; i < rows * cols; i++)
            w[i] = (float)(cos(0.7 * (double)i + 0.1) * (1 + 3 * (i % 11 == 0)));
          for (int64_t i = 0; i < big; i++) x[i] = (float)sin(0.3 * (double)i);
          strop__lowp q8, qb;
          ck_assert_int_eq(
              strop__lowp_make(&q8, STROP__LOWP_INT8, w, rows, cols, layout, groups[gi]), 0);
          strop__lowp_expand(&q8, wv);
          ck_assert_int_eq(strop__lowp_make(&qb, STROP__LOWP_BF16, wv, rows, cols, layout, 0), 0);
          for (int bwd = 0; bwd < 2; bwd++)
            for (int add = 0; add < 2; add++) {
              const int64_t n = bwd ? m * in : m * out;
              for (int v = 0; v < 3; v++)
                for (int64_t i = 0; i < n; i++) y[v][i] = 0.25f * (float)(i % 7);
              for (int v = 0; v < 3; v++) {
                const strop__lowp *q = v == 1 ? &qb : &q8;
                strop__bf16_impl = v == 2 ? 2 : 0; /* 2: packed element by element */
                if (bwd)
                  ck_assert_int_eq(
                      strop__linear_backward_lowp(q, x, y[v], m, in, out, layout, !add), 0);
                else
                  ck_assert_int_eq(
                      strop__linear_forward_lowp(x, q, add ? x : NULL, y[v], m, in, out, layout),
                      0);
                strop__bf16_impl = 0;
              }
              for (int v = 1; v < 3; v++)
                ck_assert_msg(!memcmp(y[0], y[v], (size_t)n * sizeof(float)),
                              "%s %s [%lld x %lld x %lld] group %lld layout %d threads %d: "
                              "int8 differs from %s",
                              bwd ? "dx" : "y", add ? "added" : "written", (long long)m,
                              (long long)out, (long long)in, (long long)groups[gi], layout, th,
                              v == 1 ? "the BF16 of its values" : "the element-wise packing");
              cases++;
            }
          strop__lowp_free(&q8);
          strop__lowp_free(&qb);
          free(w), free(wv), free(x);
          for (int v = 0; v < 3; v++) free(y[v]);
        }
  }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
  ck_assert_int_gt(cases, 500);
}
END_TEST

/* An int8 weight stored as B [k, n] with one scale per output channel — [in, out] for the
 * forward (_nt), [out, in] for the input gradient (_nn) — packs a group of panels a row pair
 * across them (strop__int8_sweep 1) or a panel at a time (0): the same bits, written and
 * added, 1 and 2 threads; m of one row, of a few and of more than a tile; n past one group
 * and (k 40: 64 panels of 2.5 KB a group) past 64 panels, not a multiple of 32; odd k. */
START_TEST(int8_sweep_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {{1, 2200, 40}, {5, 300, 77}, {37, 70, 768}, {3, 33, 1}};
  const int threads = strop_get_num_threads();
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
    for (int nn = 0; nn < 2; nn++) /* 0: _nt on W [in, out]; 1: _nn on W [out, in] */
      for (int th = 1; th <= 2; th++) {
        const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
        ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
        float *w = malloc((size_t)(n * k) * sizeof *w), *a = malloc((size_t)(m * k) * sizeof *a);
        float *c[2] = {malloc((size_t)(m * n) * sizeof(float)),
                       malloc((size_t)(m * n) * sizeof(float))};
        for (int64_t i = 0; i < n * k; i++) w[i] = (float)cos(0.37 * (double)i) * 1.5f;
        for (int64_t i = 0; i < m * k; i++) a[i] = (float)sin(0.11 * (double)i + 0.2);
        strop__lowp q;
        /* B [k, n] in memory: W [in, out] = [k, n] for _nt, W [out, in] = [k, n] for _nn */
        ck_assert_int_eq(strop__lowp_make(&q, STROP__LOWP_INT8, w, k, n, !nn, 0), 0);
        void *work = strop__malloc_aligned(strop__bf16_gemm_scratch_max(m, n, k));
        for (int beta = 0; beta < 2; beta++) {
          for (int v = 0; v < 2; v++) {
            for (int64_t i = 0; i < m * n; i++) c[v][i] = 0.25f * (float)(i % 3);
            strop__int8_sweep = v;
            (nn ? strop__bf16_gemm_nn : strop__bf16_gemm_nt)(m, n, k, a, k, &q, (float)beta, c[v],
                                                             n, work);
          }
          strop__int8_sweep = 1;
          ck_assert_msg(!memcmp(c[0], c[1], (size_t)(m * n) * sizeof(float)),
                        "m %lld n %lld k %lld %s beta %d threads %d", (long long)m, (long long)n,
                        (long long)k, nn ? "_nn" : "_nt", beta, th);
        }
        strop__free_aligned(work);
        strop__lowp_free(&q);
        free(w);
        free(a);
        free(c[0]);
        free(c[1]);
      }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* strop__kn_slices (the default): on the AMX tiles a weight read as rows of B [k, n] — int8
 * with per-channel scales (_nt on W [in, out], _nn on W [out, in]), BF16 used in place (_nn on
 * W [out, in]) — runs k in slices across groups of column blocks, C's sums carried; the same
 * bits as whole k (strop__kn_slices 0), and rows 5 .. 5 + m - 1 alone the bits they have inside
 * a batch of 40. C added or not, 1 and 2 threads; k past one slice (777: four slices, the last
 * partial, odd), n past a group of 16 column blocks and not a multiple of 32; 1, 3, 16 and 35
 * rows. Where the tiles do not run both settings take the same path and the rows are still
 * compared with the batch's. */
START_TEST(kn_slices_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {
      {1, 2200, 777}, {3, 70, 40}, {16, 900, 300}, {1, 33, 1}, {35, 600, 777}};
  enum { MB = 40 };
  const int threads = strop_get_num_threads();
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
    for (int kind = 0; kind < 3; kind++) /* int8 _nt on W [in, out], int8 _nn, BF16 _nn */
      for (int th = 1; th <= 2; th++) {
        const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
        const int nn = kind > 0;
        ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
        float *w = malloc((size_t)(n * k) * sizeof *w), *a = malloc((size_t)(MB * k) * sizeof *a);
        float *c[3] = {malloc((size_t)(MB * n) * sizeof(float)),
                       malloc((size_t)(MB * n) * sizeof(float)),
                       malloc((size_t)(MB * n) * sizeof(float))};
        for (int64_t i = 0; i < n * k; i++) w[i] = (float)cos(0.37 * (double)i) * 1.5f;
        for (int64_t i = 0; i < MB * k; i++) a[i] = (float)sin(0.11 * (double)i + 0.2);
        strop__lowp q;
        /* B [k, n] in memory: int8 W [in, out] = [k, n] for _nt, W [out, in] = [k, n] for _nn */
        ck_assert_int_eq(strop__lowp_make(&q, kind == 2 ? STROP__LOWP_BF16 : STROP__LOWP_INT8, w,
                                          k, n, !nn, 0),
                         0);
        const size_t sb = strop__bf16_gemm_scratch(&q, nn, MB, n, k),
                     sm = strop__bf16_gemm_scratch(&q, nn, m, n, k);
        ck_assert_uint_ge(strop__bf16_gemm_scratch_max(MB, n, k), sb);
        void *work = strop__malloc_aligned(sb > sm ? sb : sm);
        void (*gemm)(int64_t, int64_t, int64_t, const float *, int64_t, const strop__lowp *,
                     float, float *, int64_t, void *) = nn ? strop__bf16_gemm_nn
                                                           : strop__bf16_gemm_nt;
        for (int beta = 0; beta < 2; beta++) {
          for (int v = 0; v < 3; v++)
            for (int64_t i = 0; i < MB * n; i++) c[v][i] = 0.25f * (float)(i % 3);
          /* the batch's rows 5 .. 5 + m - 1, then the same rows alone, both ways */
          gemm(MB, n, k, a, k, &q, (float)beta, c[0], n, work);
          for (int v = 0; v < 2; v++) {
            strop__kn_slices = v;
            gemm(m, n, k, a + 5 * k, k, &q, (float)beta, c[1 + v] + 5 * n, n, work);
          }
          strop__kn_slices = 1;
          for (int v = 1; v < 3; v++)
            ck_assert_msg(!memcmp(c[0] + 5 * n, c[v] + 5 * n, (size_t)(m * n) * sizeof(float)),
                          "m %lld n %lld k %lld kind %d beta %d threads %d slices %d",
                          (long long)m, (long long)n, (long long)k, kind, beta, th, v - 1);
        }
        strop__free_aligned(work);
        strop__lowp_free(&q);
        free(w);
        free(a);
        for (int v = 0; v < 3; v++) free(c[v]);
      }
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* A linear layer's bias added as each tile is stored (strop__bf16_gemm_nt_bias) gives the bits
 * of C's rows set to the bias with the product added (beta 1), and never reads C (it starts as
 * NaN): BF16 weights [out, in] (in panels) and [in, out], int8 per channel both ways (int8
 * [in, out] runs in slices of k on the AMX tiles, its sums stored after the last), edges in m,
 * n and k, on the AMX tiles and on vdpbf16ps, one thread and two. */
START_TEST(bias_cols_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {{1, 1, 1},      {5, 7, 45},    {33, 47, 63},
                                      {40, 100, 301}, {64, 96, 800}, {35, 600, 777}};
  const int threads = strop_get_num_threads(), amx = strop__bf16_amx;
  for (int th = 1; th <= 2; th++)
    for (int tiles = 0; tiles < 2; tiles++) {
      ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
      strop__bf16_amx = tiles;
      for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
        for (int kind = 0; kind < 4; kind++) { /* BF16, BF16 [in, out], int8, int8 [in, out] */
          const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
          const int sc = kind & 1;
          float *w = malloc((size_t)(n * k) * sizeof *w),
                *a = malloc((size_t)(m * k) * sizeof *a);
          float *b = malloc((size_t)n * sizeof *b);
          float *c[2] = {malloc((size_t)(m * n) * sizeof(float)),
                         malloc((size_t)(m * n) * sizeof(float))};
          for (int64_t i = 0; i < n * k; i++) w[i] = (float)cos(0.37 * (double)i) * 1.5f;
          for (int64_t i = 0; i < m * k; i++) a[i] = (float)sin(0.11 * (double)i + 0.2);
          for (int64_t j = 0; j < n; j++)
            b[j] = j % 5 == 0 ? -0.0f
                              : (float)(sin(1.7 * (double)j) * pow(10.0, (double)(j % 4)));
          strop__lowp q;
          ck_assert_int_eq(strop__lowp_make(&q, kind < 2 ? STROP__LOWP_BF16 : STROP__LOWP_INT8, w,
                                            sc ? k : n, sc ? n : k, sc, 0),
                           0);
          void *work = strop__malloc_aligned(strop__bf16_gemm_scratch(&q, 0, m, n, k));
          for (int64_t i = 0; i < m * n; i++) {
            c[0][i] = NAN;
            c[1][i] = b[i % n];
          }
          strop__bf16_gemm_nt_bias(m, n, k, a, k, &q, b, c[0], n, work);
          strop__bf16_gemm_nt(m, n, k, a, k, &q, 1.0f, c[1], n, work);
          ck_assert_msg(!memcmp(c[0], c[1], (size_t)(m * n) * sizeof(float)),
                        "[%lld x %lld x %lld] kind %d tiles %d threads %d: the bias added as "
                        "the tiles are stored differs from C's rows set to it",
                        (long long)m, (long long)n, (long long)k, kind, tiles, th);
          strop__free_aligned(work);
          strop__lowp_free(&q);
          free(w);
          free(a);
          free(b);
          free(c[0]);
          free(c[1]);
        }
    }
  strop__bf16_amx = amx;
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* A weight gradient's operands given in BF16 (strop__bf16_gemm_kn_h): A [k, m] rounded by
 * strop__bf16_round_n (rows padded past m, as the input gradient's scratch holds dy) and B [k, n]
 * held by strop__bf16_compact_par — values that round to zero among them, held as the marker —
 * give strop__bf16_gemm_f32(1, 0)'s bits on the FP32 values, each alone and both, written and
 * added, the finite check's answer too; edges in m, n and k, on the AMX tiles and vdpbf16ps,
 * one thread and two. */
START_TEST(gemm_kn_held_same_bits) {
  if (!strop__bf16_dot_enabled()) return;
  static const int64_t shapes[][3] = {
      {1, 1, 1}, {5, 7, 3}, {33, 47, 64}, {40, 100, 301}, {96, 64, 192}};
  const int threads = strop_get_num_threads(), amx = strop__bf16_amx;
  for (int th = 1; th <= 2; th++)
    for (int tiles = 0; tiles < 2; tiles++) {
      ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
      strop__bf16_amx = tiles;
      for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
        const int64_t m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2], lah = m + 7;
        float *a = malloc((size_t)(k * m) * sizeof *a), *b = malloc((size_t)(k * n) * sizeof *b);
        uint16_t *ah = malloc((size_t)(k * lah) * sizeof *ah);
        uint16_t *bh = malloc((size_t)(k * n) * sizeof *bh);
        float *c[2] = {malloc((size_t)(m * n) * sizeof(float)),
                       malloc((size_t)(m * n) * sizeof(float))};
        for (int64_t i = 0; i < k * m; i++) a[i] = (float)sin(0.37 * (double)i + 0.2);
        for (int64_t i = 0; i < k * n; i++) /* every 9th value too small for BF16, both signs */
          b[i] = i % 9 == 4 ? (i % 2 ? -1e-41f : 3e-42f) : (float)cos(0.71 * (double)i) * 3.0f;
        for (int64_t t = 0; t < k; t++) {
          strop__bf16_round_n(a + t * m, ah + t * lah, (size_t)m);
          for (int64_t i = m; i < lah; i++) ah[t * lah + i] = 0x7fc0; /* never read */
        }
        strop__bf16_compact_par(b, bh, (size_t)(k * n));
        int markers = 0;
        for (int64_t i = 0; i < k * n; i++) markers += (bh[i] & 0x7fff) == STROP__BF16_TINY;
        ck_assert(k * n < 9 || markers > 0);
        void *work = strop__malloc_aligned(strop__bf16_gemm_f32_scratch(m, n, k));
        for (int beta = 0; beta < 2; beta++)
          for (int which = 1; which < 4; which++) { /* 1: A held, 2: B held, 3: both */
            for (int v = 0; v < 2; v++)
              for (int64_t i = 0; i < m * n; i++) c[v][i] = 0.5f - 0.125f * (float)(i % 5);
            const int f0 = strop__bf16_gemm_f32_finite(1, 0, m, n, k, a, m, b, n, (float)beta,
                                                       c[0], n, work);
            const int f1 = strop__bf16_gemm_kn_h(
                m, n, k, which & 1 ? NULL : a, which & 1 ? ah : NULL, which & 1 ? lah : m,
                which & 2 ? NULL : b, which & 2 ? bh : NULL, n, (float)beta, c[1], n, work, 1);
            ck_assert_int_eq(f0, f1);
            ck_assert_msg(!memcmp(c[0], c[1], (size_t)(m * n) * sizeof(float)),
                          "[%lld x %lld x %lld] held %d beta %d tiles %d threads %d: differs "
                          "from the FP32 operands'",
                          (long long)m, (long long)n, (long long)k, which, beta, tiles, th);
          }
        strop__free_aligned(work);
        free(a);
        free(b);
        free(ah);
        free(bh);
        free(c[0]);
        free(c[1]);
      }
    }
  strop__bf16_amx = amx;
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
}
END_TEST

/* The int8 product on vdpbf16ps against the FP32 product of the dequantised weight (what the
 * fallback computes, exactly): x (dy) and each weight rounded to BF16 (relative 2^-9 each), so
 * every element within 2^-8 of sum |x w| (plus FP32 summation error); per channel and groups,
 * both layouts, forward and input gradient; and on the forced fallback (strop__bf16_impl 1) the
 * FP32 product's bits. */
START_TEST(int8_dot_tolerance) {
  enum { M = 11, OUT = 45, IN = 70 };
  static const int64_t groups[] = {0, 16, 9};
  for (size_t gi = 0; gi < 3; gi++)
    for (int layout = 0; layout < 2; layout++)
      for (int bwd = 0; bwd < 2; bwd++) {
        const int64_t rows = layout ? IN : OUT, cols = layout ? OUT : IN;
        float w[IN * OUT], wv[IN * OUT], x[M * (IN + OUT)], got[M * (IN + OUT)],
            want[M * (IN + OUT)];
        for (int i = 0; i < IN * OUT; i++) w[i] = (float)(cos(0.37 * i) * (i % 13 ? 1 : 4));
        for (int i = 0; i < M * (IN + OUT); i++) x[i] = (float)sin(0.21 * i + 0.3);
        strop__lowp q;
        ck_assert_int_eq(
            strop__lowp_make(&q, STROP__LOWP_INT8, w, rows, cols, layout, groups[gi]), 0);
        strop__lowp_expand(&q, wv);
        const int64_t n = bwd ? M * IN : M * OUT, k = bwd ? OUT : IN;
        for (int path = 0; path < 2; path++) { /* 0: vdpbf16ps where it runs, 1: the fallback */
          strop__bf16_impl = path;
          if (bwd)
            ck_assert_int_eq(strop__linear_backward_lowp(&q, x, got, M, IN, OUT, layout, 1), 0);
          else
            ck_assert_int_eq(strop__linear_forward_lowp(x, &q, NULL, got, M, IN, OUT, layout), 0);
          strop__bf16_impl = 0;
          if (bwd)
            (void)strop__linear_backward(NULL, wv, x, want, NULL, NULL, M, IN, OUT,
                                         STROP__LB_ASSIGN_DX | (layout ? STROP__LB_W_IN_OUT : 0));
          else strop__linear_forward_ex(x, wv, NULL, want, M, IN, OUT, layout);
          if (path == 1 || !strop__bf16_dot_enabled()) {
            ck_assert_msg(!memcmp(got, want, (size_t)n * sizeof(float)),
                          "fallback: group %lld layout %d %s not the FP32 product's bits",
                          (long long)groups[gi], layout, bwd ? "dx" : "y");
            continue;
          }
          double worst = 0.0;
          for (int64_t i = 0; i < n; i++) {
            const int64_t r = i / (n / M), c = i % (n / M);
            double mag = 0.0;
            for (int64_t t = 0; t < k; t++) {
              const int64_t o = bwd ? t : c, in_ = bwd ? c : t;
              mag += fabs((double)x[r * k + t] * wv[layout ? in_ * OUT + o : o * IN + in_]);
            }
            const double e = fabs((double)got[i] - want[i]);
            ck_assert_msg(e <= (1.0 / 256 + 1e-6) * mag + 1e-6,
                          "group %lld layout %d %s(%lld, %lld) %g, fp32 %g, sum |x w| %g",
                          (long long)groups[gi], layout, bwd ? "dx" : "y", (long long)r,
                          (long long)c, (double)got[i], (double)want[i], mag);
            worst = fmax(worst, e);
          }
          ck_assert(worst > 0.0); /* it did run the BF16 product */
        }
        strop__lowp_free(&q);
      }
}
END_TEST

/* A few rows (a decoded token) through a held weight (lib/ops/gemv.c: strop__lowp_gemv, which
 * strop__linear_forward_lowp runs for m <= 4): the weight read as stored and widened in
 * registers gives the general path's bits exactly — the FP32 product of the widened weight,
 * or the vdpbf16ps kernel's sums where that runs — for BF16 and int8 (per channel, and groups
 * of 32, 100 and 7 inputs), both layouts, odd sizes, with and without a bias, one thread or
 * two; nothing written past y. Not its case (returns -1, y untouched): 5 rows, a layout that
 * is not the weight's, and an FP32 product the general path leaves to OpenBLAS's AVX-512
 * kernels (a short k where OpenBLAS has them: a Zen 4's Cooperlake kernels). */
START_TEST(gemv_equals_general_path) {
  if (!strop__gemm_own_available() || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl")) {
    printf("gemv_equals_general_path: no AVX-512 here, skipped\n");
    return;
  }
  static const int64_t outs[] = {1, 17, 33, 100, 1100}, ins[] = {1, 15, 45, 64, 257, 300};
  static const struct {
    int dtype, bf16_impl;
    int64_t group;
  } kinds[] = {{STROP__LOWP_BF16, 0, 0},  {STROP__LOWP_BF16, 1, 0},   {STROP__LOWP_INT8, 0, 0},
               {STROP__LOWP_INT8, 0, 32}, {STROP__LOWP_INT8, 0, 100}, {STROP__LOWP_INT8, 0, 7},
               {STROP__LOWP_INT8, 1, 0},  {STROP__LOWP_INT8, 1, 7}}; /* int8's fallback too */
  enum { GUARD = 20 };
  int cases = 0;
  for (size_t kd = 0; kd < sizeof kinds / sizeof *kinds; kd++)
    for (size_t oi = 0; oi < sizeof outs / sizeof *outs; oi++)
      for (size_t ii = 0; ii < sizeof ins / sizeof *ins; ii++)
        for (int layout = 0; layout < 2; layout++) {
          const int64_t out = outs[oi], in = ins[ii];
          const int64_t rows = layout ? in : out, cols = layout ? out : in;
          float *w = malloc((size_t)(rows * cols) * sizeof *w);
          float *x = malloc((size_t)(4 * in) * sizeof *x), *b = malloc((size_t)out * sizeof *b);
          float *y1 = malloc((size_t)(5 * out + GUARD) * sizeof *y1);
          float *y2 = malloc((size_t)(5 * out + GUARD) * sizeof *y2);
          for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)cos(0.7 * (double)i + 0.1);
          for (int64_t i = 0; i < 4 * in; i++) x[i] = (float)sin(0.3 * (double)i);
          for (int64_t i = 0; i < out; i++) b[i] = 0.25f * (float)(i % 5) - 0.5f;
          strop__lowp q;
          ck_assert_int_eq(
              strop__lowp_make(&q, kinds[kd].dtype, w, rows, cols, layout, kinds[kd].group), 0);
          strop__bf16_impl = kinds[kd].bf16_impl;
          for (int64_t m = 1; m <= 4; m++)
            for (int bias = 0; bias < 2; bias++)
              for (int th = 1; th <= 2; th++) {
                ck_assert_int_eq(strop_set_num_threads(th), STROP_OK);
                for (int64_t i = 0; i < m * out + GUARD; i++) y1[i] = y2[i] = 7.0f;
                strop__gemv_impl = 1; /* the general path */
                ck_assert_int_eq(
                    strop__linear_forward_lowp(x, &q, bias ? b : NULL, y1, m, in, out, layout),
                    0);
                strop__gemv_impl = 0;
                /* it declines only where the general path hands the widened weight's FP32
                 * product to OpenBLAS's own AVX-512 kernels (other bits): a short k, which
                 * strop__gemm_use_own leaves to OpenBLAS on a CPU it has such kernels for */
                /* BF16 and int8 on vdpbf16ps, not where the general path's sums are the AMX
                 * tiles' */
                const int takes = strop__bf16_dot_enabled()
                                      ? !strop__bf16_amx_runs()
                                      : strop__gemv_pick(
                                            0, m, strop__gemm_use_own(0, !layout, m, out, in));
                const int r = strop__lowp_gemv(x, &q, bias ? b : NULL, y2, m, in, out, layout);
                ck_assert_msg(r == (takes ? 0 : -1),
                              "dtype %d group %lld bf16_impl %d out %lld in %lld layout %d m "
                              "%lld: returned %d",
                              kinds[kd].dtype, (long long)kinds[kd].group, kinds[kd].bf16_impl,
                              (long long)out, (long long)in, layout, (long long)m, r);
                if (!takes) {
                  for (int64_t i = 0; i < m * out + GUARD; i++)
                    ck_assert_msg(y2[i] == 7.0f, "y written by a declined product");
                  memcpy(y2, y1, (size_t)(m * out + GUARD) * sizeof *y1); /* as if taken */
                  continue;
                }
                ck_assert_msg(!memcmp(y1, y2, (size_t)(m * out + GUARD) * sizeof *y1),
                              "dtype %d group %lld bf16_impl %d out %lld in %lld layout %d m "
                              "%lld bias %d threads %d: not the general path's bits",
                              kinds[kd].dtype, (long long)kinds[kd].group, kinds[kd].bf16_impl,
                              (long long)out, (long long)in, layout, (long long)m, bias, th);
                cases++;
              }
          ck_assert_int_eq(strop__lowp_gemv(x, &q, NULL, y2, 5, in, out, layout), -1);
          ck_assert_int_eq(strop__lowp_gemv(x, &q, NULL, y2, 1, in, out, !layout), -1);
          ck_assert_msg(!memcmp(y1, y2, (size_t)(4 * out + GUARD) * sizeof *y1), "y written");
          strop__bf16_impl = 0;
          strop__lowp_free(&q);
          free(w), free(x), free(b), free(y1), free(y2);
        }
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
  ck_assert_int_gt(cases, 1000);
}
END_TEST

/* ---- training ---- */

typedef struct run {
  float loss[80];
  float *adapter; /* fc1.lora_A.weight after the run */
  size_t n_adapter;
} run;

/* steps of Adam on a fixed teacher's labels; the model's frozen dtype as given */
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
  const int64_t xd[3] = {N, T, D}, yd[1] = {N};
  for (int s = 0; s < steps; s++) {
    inputs(x, N * T * D, 0.1 * (s % 8));
    for (int i = 0; i < N; i++) { /* the label: which quarter the first features' sum is in */
      double acc = 0;
      for (int k = 0; k < 2 * D; k++) acc += x[(size_t)i * T * D + (size_t)k];
      y[i] = (float)(acc < -3 ? 0 : acc < 0 ? 1 : acc < 3 ? 2 : 3);
    }
    strop_tensor *tx = NULL, *ty = NULL;
    OK(strop_tensor_wrap(x, N * T * D, 3, xd, &tx));
    OK(strop_tensor_wrap(y, N, 1, yd, &ty));
    OK(strop_trainer_step(tr, tx, ty, &out.loss[s]));
    strop_tensor_free(tx);
    strop_tensor_free(ty);
  }
  strop_tensor *a = NULL;
  OK(strop_model_tensor_view(m, "fc1.lora_A.weight", &a));
  out.n_adapter = (size_t)strop_tensor_numel(a);
  out.adapter = malloc(out.n_adapter * sizeof(float));
  memcpy(out.adapter, strop_tensor_data(a), out.n_adapter * sizeof(float));
  strop_tensor_free(a);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  return out;
}

/* The gradient reaches fc1's adapter through fc2's frozen BF16 (or int8) weight: on the
 * fallback, losses and adapters are bit for bit those of the FP32 model on rounded weights. */
static void backward_exact(int dtype) {
  strop_model *m = lora_model(3), *r = NULL;
  OK(strop_model_clone(m, &r));
  OK(strop_model_set_frozen_dtype(m, dtype));
  round_like(r, "fc1.weight", dtype, 0);
  round_like(r, "fc2.weight", dtype, 0);
  strop__bf16_impl = 1;
  run a = train(m, 6, 1e-2), b = train(r, 6, 1e-2);
  strop__bf16_impl = 0;
  ck_assert_mem_eq(a.loss, b.loss, 6 * sizeof(float));
  ck_assert_uint_eq(a.n_adapter, b.n_adapter);
  ck_assert_mem_eq(a.adapter, b.adapter, a.n_adapter * sizeof(float));
  /* and the adapter below did learn (lora_B starts at zero, lora_A moves from step 2) */
  strop_model *fresh = lora_model(3);
  strop_tensor *a0 = NULL;
  OK(strop_model_tensor_view(fresh, "fc1.lora_A.weight", &a0));
  ck_assert_int_ne(memcmp(strop_tensor_data(a0), a.adapter, a.n_adapter * sizeof(float)), 0);
  strop_tensor_free(a0);
  strop_model_free(fresh);
  free(a.adapter);
  free(b.adapter);
  strop_model_free(m);
  strop_model_free(r);
}

START_TEST(bf16_backward_exact) { backward_exact(STROP_DTYPE_BF16); }
END_TEST
START_TEST(int8_backward_exact) { backward_exact(STROP_DTYPE_INT8); }
END_TEST

/* A LoRA fine-tune with the base in BF16 (vdpbf16ps where the CPU has it) or int8 follows the
 * FP32 base's loss curve: every step within 0.02 of the FP32 loss (measured: 0.0016), and it
 * learns. */
static void finetune_close(int dtype) {
  enum { STEPS = 60 };
  strop_model *f = lora_model(11), *q = NULL;
  OK(strop_model_clone(f, &q));
  OK(strop_model_set_frozen_dtype(q, dtype));
  run a = train(f, STEPS, 5e-3), b = train(q, STEPS, 5e-3);
  double worst = 0;
  for (int s = 0; s < STEPS; s++) {
    const double d = fabs((double)a.loss[s] - (double)b.loss[s]);
    ck_assert_msg(d <= 0.02, "step %d: fp32 loss %g, %s loss %g", s, (double)a.loss[s],
                  dtype == STROP_DTYPE_BF16 ? "bf16" : "int8", (double)b.loss[s]);
    if (d > worst) worst = d;
  }
  if (getenv("STROP_LOWP_VERBOSE"))
    fprintf(stderr, "dtype %d: worst |loss diff| %g; fp32 %g -> %g, held %g -> %g\n", dtype,
            worst, (double)a.loss[0], (double)a.loss[STEPS - 1], (double)b.loss[0],
            (double)b.loss[STEPS - 1]);
  double first = 0, last = 0;
  for (int s = 0; s < 8; s++) first += b.loss[s], last += b.loss[STEPS - 8 + s];
  ck_assert_msg(last < 0.8 * first, "no learning: %g -> %g", first / 8, last / 8);
  free(a.adapter);
  free(b.adapter);
  strop_model_free(f);
  strop_model_free(q);
}

START_TEST(bf16_finetune) { finetune_close(STROP_DTYPE_BF16); }
END_TEST
START_TEST(int8_finetune) { finetune_close(STROP_DTYPE_INT8); }
END_TEST

/* ---- storage, memory, round trips ---- */

START_TEST(memory_halves) {
  strop_model *m = text_model(5);
  OK(strop_model_freeze(m, "fc*"));
  size_t w32 = 0, w16 = 0, w8 = 0, g32 = 0, g16 = 0;
  OK(strop_model_memory_estimate(m, 4, 2, &w32, &g32, NULL, NULL));
  OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_BF16));
  OK(strop_model_memory_estimate(m, 4, 2, &w16, &g16, NULL, NULL));
  const size_t frozen = 64 * 32 + 32 * 64; /* fc1 and fc2 weights; their biases stay FP32 */
  ck_assert_uint_eq(w32 - w16, frozen * 2);
  ck_assert_uint_eq(g32, g16);
  OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_INT8));
  OK(strop_model_memory_estimate(m, 4, 2, &w8, NULL, NULL, NULL));
  ck_assert_uint_eq(w32 - w8, frozen * 3 - (64 + 32) * sizeof(float));
  strop_model_free(m);
}
END_TEST

/* strop_model_set_frozen_int8_group: set before the dtype, the weights quantise per group;
 * changed while int8 is held, they are quantised again (from the held values); a clone, a
 * weight frozen later and a load take the model's group; memory counts the scales. */
START_TEST(int8_group_storage) {
  strop_model *m = text_model(5), *r = NULL;
  OK(strop_model_freeze(m, "fc1.*"));
  ck_assert_int_eq(strop_model_frozen_int8_group(m), 0);
  ck_assert_int_eq(strop_model_frozen_int8_group(NULL), -1);
  OK(strop_model_clone(m, &r));
  size_t w0 = 0, w1 = 0, w2 = 0;
  OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_INT8));
  OK(strop_model_memory_estimate(m, 4, 2, &w0, NULL, NULL, NULL));
  OK(strop_model_set_frozen_int8_group(m, 8)); /* fc1 [64, 32]: 4 scales per channel */
  ck_assert_int_eq(strop_model_frozen_int8_group(m), 8);
  OK(strop_model_memory_estimate(m, 4, 2, &w1, NULL, NULL, NULL));
  ck_assert_uint_eq(w1 - w0, 64 * 3 * sizeof(float));
  /* quantised again from the per-channel values: the reference does the same two steps */
  round_like_g(r, "fc1.weight", STROP_DTYPE_INT8, 0, 0);
  round_like_g(r, "fc1.weight", STROP_DTYPE_INT8, 0, 8);
  float x[2 * T * D];
  inputs(x, sizeof x / sizeof *x, 0.3);
  strop__bf16_impl = 1;
  strop_tensor *a = forward(m, x, 2), *b = forward(r, x, 2);
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 2 * CLASSES * sizeof(float));
  strop_tensor_free(a);
  strop_tensor_free(b);
  /* a clone keeps the group; fc2 frozen later takes it */
  strop_model *c = NULL;
  OK(strop_model_clone(m, &c));
  ck_assert_int_eq(strop_model_frozen_int8_group(c), 8);
  OK(strop_model_freeze(c, "fc2.*"));
  OK(strop_model_memory_estimate(c, 4, 2, &w2, NULL, NULL, NULL));
  ck_assert_uint_eq(w1 - w2, 32 * 64 * 3 - 32 * 8 * sizeof(float));
  strop_model_free(c);
  /* a load into the held weight quantises with the group: the same bits as set_tensor */
  char path[] = "/tmp/strop_lowp_groupXXXXXX";
  const int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  close(fd);
  OK(strop_model_save_weights(r, path));
  strop_model *l = text_model(9);
  OK(strop_model_freeze(l, "fc1.*"));
  OK(strop_model_set_frozen_int8_group(l, 8));
  OK(strop_model_set_frozen_dtype(l, STROP_DTYPE_INT8));
  OK(strop_model_load_weights(l, path, STROP_LOAD_STRICT, NULL));
  unlink(path);
  a = forward(l, x, 2);
  b = forward(m, x, 2);
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 2 * CLASSES * sizeof(float));
  strop__bf16_impl = 0;
  strop_tensor_free(a);
  strop_tensor_free(b);
  strop_model_free(l);
  /* errors leave the model and its group as they were */
  ck_assert_int_eq(strop_model_set_frozen_int8_group(NULL, 8), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_set_frozen_int8_group(m, 4), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "got 4"));
  ck_assert_int_eq(strop_model_set_frozen_int8_group(m, 65537), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_set_frozen_int8_group(m, -8), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_frozen_int8_group(m), 8);
  strop_model *u = NULL;
  OK(strop_model_create(2, IN, &u));
  OK(strop_model_add(u, "fc", "linear", "out_features=3", NULL));
  ck_assert_int_eq(strop_model_set_frozen_int8_group(u, 32), STROP_E_STATE);
  ck_assert_str_ne(strop_last_error(), "");
  strop_model_free(u);
  /* a pre-trained load refuses a bad group before it reads anything */
  strop_pretrained_options po;
  strop_pretrained_options_init(&po);
  ck_assert_int_eq(po.int8_group, 0);
  po.int8_group = 3;
  strop_model *pm = NULL;
  ck_assert_int_eq(strop_model_load_pretrained("/nonexistent", "resnet18", &po, &pm, NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "int8_group"));
  strop_model_free(m);
  strop_model_free(r);
}
END_TEST

/* Unfreezing widens back to FP32 (the held values); freezing later converts; F32 undoes. */
START_TEST(freeze_unfreeze) {
  strop_model *m = text_model(5), *r = NULL;
  OK(strop_model_clone(m, &r));
  /* nothing frozen: the choice is recorded, nothing converted */
  size_t w0 = 0, w1 = 0;
  OK(strop_model_memory_estimate(m, 1, 0, &w0, NULL, NULL, NULL));
  OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_BF16));
  OK(strop_model_memory_estimate(m, 1, 0, &w1, NULL, NULL, NULL));
  ck_assert_uint_eq(w0, w1);
  strop_tensor *t = NULL;
  OK(strop_model_tensor_view(m, "fc1.weight", &t));
  strop_tensor_free(t);
  /* freezing converts; a view is refused, naming the weight and the way out */
  OK(strop_model_freeze(m, "fc1.*"));
  ck_assert_int_eq(strop_model_tensor_view(m, "fc1.weight", &t), STROP_E_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'fc1.weight' is frozen and held in bf16"));
  OK(strop_model_tensor_view(m, "fc2.weight", &t)); /* still trainable: FP32 */
  strop_tensor_free(t);
  OK(strop_model_unfreeze(m, "fc1.*"));
  round_like(r, "fc1.weight", STROP__LOWP_BF16, 0);
  strop_tensor *a = NULL, *b = NULL;
  OK(strop_model_tensor_view(m, "fc1.weight", &a));
  OK(strop_model_tensor_view(r, "fc1.weight", &b));
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 64 * 32 * sizeof(float));
  strop_tensor_free(a);
  strop_tensor_free(b);
  /* set_tensor into a held weight rounds; F32 brings it back as values */
  OK(strop_model_freeze(m, "fc1.*"));
  float v[64 * 32];
  for (int i = 0; i < 64 * 32; i++) v[i] = 1.0f + 0x1p-12f * (float)(i % 7);
  OK(strop_model_set_tensor(m, "fc1.weight", v, 64 * 32));
  OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_F32));
  OK(strop_model_tensor_view(m, "fc1.weight", &a));
  for (int i = 0; i < 64 * 32; i++) ck_assert_float_eq(strop_tensor_data(a)[i], 1.0f);
  strop_tensor_free(a);
  strop_model_free(m);
  strop_model_free(r);
}
END_TEST

/* Saving writes FP32 (the held values); loading into a held weight rounds as it reads. */
START_TEST(save_load) {
  char path[] = "/tmp/strop_lowp_XXXXXX.safetensors";
  int fd = mkstemps(path, 12);
  ck_assert_int_ge(fd, 0);
  close(fd);
  strop_model *m = text_model(4), *r = NULL, *l = NULL;
  OK(strop_model_freeze(m, "fc2.*"));
  OK(strop_model_clone(m, &r));
  OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_BF16));
  OK(strop_model_save_weights(m, path));
  round_like(r, "fc2.weight", STROP__LOWP_BF16, 0);
  l = text_model(99);
  OK(strop_model_load_weights(l, path, 0, NULL));
  strop_tensor *a = NULL, *b = NULL;
  OK(strop_model_tensor_view(l, "fc2.weight", &a));
  OK(strop_model_tensor_view(r, "fc2.weight", &b));
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 32 * 64 * sizeof(float));
  strop_tensor_free(a);
  strop_tensor_free(b);
  /* into a model that holds fc2 in BF16: the same forward as m */
  strop_model *h = text_model(98);
  OK(strop_model_freeze(h, "fc2.*"));
  OK(strop_model_set_frozen_dtype(h, STROP_DTYPE_BF16));
  OK(strop_model_load_weights(h, path, 0, NULL));
  float x[2 * T * D];
  inputs(x, sizeof x / sizeof *x, 2.0);
  strop_tensor *ya = forward(m, x, 2), *yb = forward(h, x, 2);
  ck_assert_mem_eq(strop_tensor_data(ya), strop_tensor_data(yb), 2 * CLASSES * sizeof(float));
  strop_tensor_free(ya);
  strop_tensor_free(yb);
  strop_model_free(h);
  remove(path);
  strop_model_free(m);
  strop_model_free(r);
  strop_model_free(l);
}
END_TEST

/* LoRA added on a weight already held in BF16 keeps it so; merging widens it first. */
START_TEST(lora_on_held_base) {
  strop_model *m = text_model(8);
  OK(strop_model_freeze(m, "fc*"));
  OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_BF16));
  size_t w0 = 0;
  OK(strop_model_memory_estimate(m, 1, 0, &w0, NULL, NULL, NULL));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, "fc2", 2, 4.0f, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  strop_tensor *t = NULL;
  ck_assert_int_eq(strop_model_tensor_view(m, "fc2.weight", &t), STROP_E_UNSUPPORTED);
  float x[T * D];
  inputs(x, sizeof x / sizeof *x, 0.5);
  strop__bf16_impl = 1; /* the fallback: the same bits as the widened FP32 weights */
  strop_tensor *before = forward(m, x, 1);
  OK(strop_model_lora_merge(m));
  ck_assert_int_eq(strop_model_frozen_dtype(m), STROP_DTYPE_F32);
  strop_tensor *after = forward(m, x, 1); /* lora_B is zero: the merge adds nothing */
  strop__bf16_impl = 0;
  ck_assert_mem_eq(strop_tensor_data(before), strop_tensor_data(after), CLASSES * sizeof(float));
  strop_tensor_free(before);
  strop_tensor_free(after);
  strop_model_free(m);
}
END_TEST

/* Tied weights stay float32 (the embedding reads the tensor as float32), either way round;
 * tying to a weight already held is refused. */
START_TEST(tied_weights_stay_f32) {
  for (int way = 0; way < 2; way++) {
    strop_model *m = NULL;
    const int64_t in[1] = {5};
    OK(strop_model_create(1, in, &m));
    OK(strop_model_add(m, "wte", "embedding", "num_embeddings=6 embedding_dim=8", NULL));
    OK(strop_model_add(m, "lm_head", "linear", "out_features=6 bias=false", NULL));
    OK(way ? strop_model_tie(m, "wte.weight", "lm_head.weight")
           : strop_model_tie(m, "lm_head.weight", "wte.weight"));
    OK(strop_model_finalize(m, 3));
    OK(strop_model_freeze(m, "*"));
    size_t w0 = 0, w1 = 0;
    OK(strop_model_memory_estimate(m, 1, 0, &w0, NULL, NULL, NULL));
    OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_BF16));
    OK(strop_model_memory_estimate(m, 1, 0, &w1, NULL, NULL, NULL));
    ck_assert_uint_eq(w0, w1);
    float ids[2 * 5] = {0, 1, 2, 3, 4, 5, 4, 3, 2, 1};
    strop_tensor *x = NULL, *y = NULL;
    OK(strop_tensor_wrap(ids, 10, 2, (const int64_t[]){2, 5}, &x));
    OK(strop_model_forward(m, x, &y));
    strop_tensor_free(x);
    strop_tensor_free(y);
    strop_model_free(m);
  }
  /* a tie to a weight held in BF16 is refused, the model unchanged */
  strop_model *m = NULL;
  const int64_t in[1] = {8};
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "a", "linear", "out_features=8 bias=false", NULL));
  OK(strop_model_add(m, "b", "linear", "out_features=8 bias=false", NULL));
  OK(strop_model_finalize(m, 3));
  OK(strop_model_freeze(m, "a"));
  OK(strop_model_set_frozen_dtype(m, STROP_DTYPE_BF16));
  const int64_t n = strop_model_num_tensors(m);
  ck_assert_int_eq(strop_model_tie(m, "b.weight", "a.weight"), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'a.weight' is frozen and held in bf16"));
  ck_assert_int_eq(strop_model_num_tensors(m), n);
  strop_model_free(m);
}
END_TEST

/* ---- a Llama-family decoder: the gated MLP's weights are held too ---- */

/* Drawn fresh from its config.json (STROP_LOAD_FRESH, every parameter frozen): 2 layers, width
 * 32, 4 heads over 2 key/value heads, a gated SiLU MLP of 48, 64 words, 10 positions. */
enum { LV = 64, LT = 10, LN = 2 };
static strop_model *llama(uint64_t seed) {
  char dir[] = "/tmp/strop_lowp_llamaXXXXXX", path[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fprintf(f,
          "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
          "\"vocab_size\": %d, \"hidden_size\": 32, \"intermediate_size\": 48, "
          "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
          "\"max_position_embeddings\": 64, \"initializer_range\": 0.1}",
          LV);
  fclose(f);
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.flags = STROP_LOAD_FRESH | STROP_LOAD_FROZEN;
  o.max_length = LT;
  o.seed = seed;
  strop_model *m = NULL;
  OK(strop_model_load_pretrained(dir, NULL, &o, &m, NULL));
  unlink(path);
  rmdir(dir);
  return m;
}

/* LoRA (rank 4) on every q and v projection, seeded: the adapters are the same in two models */
static void llama_lora(strop_model *m) {
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_set_seed(s, 21));
  OK(strop_surgery_lora(s, "*.self_attn.[qv]_proj", 4, 8.0f, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
}

/* r's weights take the values m holds in BF16 / int8 (the FP32 model on the same values) */
static void hold_like(strop_model *r, const strop_model *m) {
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (!p->lowp.dtype) continue;
    float *v = malloc(p->numel * sizeof *v);
    strop__lowp_expand(&p->lowp, v);
    OK(strop_model_set_tensor(r, p->name, v, p->numel));
    free(v);
  }
}

static void llama_tokens(float *ids, float *next, int n, int phase) {
  for (int i = 0; i < n * LT; i++) ids[i] = (float)((i * 7 + 3 + phase * 5) % LV);
  for (int i = 0; i < n * LT; i++) next[i] = (i + 1) % LT ? ids[i + 1] : -100.0f;
}

static strop_tensor *llama_forward(strop_model *m, const float *ids, int n) {
  strop_tensor *tx = NULL, *y = NULL;
  const int64_t xd[2] = {n, LT};
  OK(strop_tensor_wrap((float *)ids, (size_t)(n * LT), 2, xd, &tx));
  OK(strop_model_forward(m, tx, &y));
  strop_tensor_free(tx);
  return y;
}

/* Adam steps on next-token targets: the losses, and a layer-0 adapter after them (its gradient
 * comes back through layer 1 and layer 0's gated MLPs and the LM head) */
static run llama_train(strop_model *m, int steps) {
  run out;
  memset(&out, 0, sizeof out);
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  OK(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt));
  OK(strop_optimizer_set_double(opt, STROP_OPT_LR, 1e-2));
  OK(strop_trainer_create(m, opt, &tr));
  enum { N = 3 };
  float ids[N * LT], next[N * LT];
  const int64_t xd[2] = {N, LT};
  for (int s = 0; s < steps; s++) {
    llama_tokens(ids, next, N, 0); /* one batch: the loss goes down as it fits it */
    strop_tensor *tx = NULL, *ty = NULL;
    OK(strop_tensor_wrap(ids, N * LT, 2, xd, &tx));
    OK(strop_tensor_wrap(next, N * LT, 2, xd, &ty));
    OK(strop_trainer_step(tr, tx, ty, &out.loss[s]));
    strop_tensor_free(tx);
    strop_tensor_free(ty);
  }
  strop_tensor *a = NULL;
  OK(strop_model_tensor_view(m, "model.layers.0.self_attn.q_proj.lora_A.weight", &a));
  out.n_adapter = (size_t)strop_tensor_numel(a);
  out.adapter = malloc(out.n_adapter * sizeof(float));
  memcpy(out.adapter, strop_tensor_data(a), out.n_adapter * sizeof(float));
  strop_tensor_free(a);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  return out;
}

/* Every frozen projection of the decoder is held in the frozen dtype, the gated MLP's gate, up
 * and down too: memory_estimate counts them as held. On the exact fallback the logits and a
 * LoRA fine-tune (losses, adapters after 4 AdamW steps, the gradient coming back through the
 * held MLPs) are bit for bit those of the FP32 model on the same values. */
START_TEST(llama_held_exact) {
  const int dtype = _i ? STROP_DTYPE_INT8 : STROP_DTYPE_BF16;
  strop_model *m = llama(4), *r = NULL;
  OK(strop_model_clone(m, &r));
  size_t w32 = 0, wl = 0;
  OK(strop_model_memory_estimate(m, 1, 0, &w32, NULL, NULL, NULL));
  OK(strop_model_set_frozen_dtype(m, dtype));
  OK(strop_model_memory_estimate(m, 1, 0, &wl, NULL, NULL, NULL));
  static const char *const parts[] = {"gate_proj", "up_proj", "down_proj"};
  for (int l = 0; l < LN; l++)
    for (int k = 0; k < 3; k++) {
      char name[96];
      snprintf(name, sizeof name, "model.layers.%d.mlp.%s.weight", l, parts[k]);
      const strop__param *p = strop__model_param_find(m, name);
      ck_assert_ptr_nonnull(p);
      ck_assert_msg(p->lowp.dtype == dtype, "%s held as %d", name, p->lowp.dtype);
      ck_assert_ptr_null(p->data);
    }
  /* q 32x32, k and v 16x32, o 32x32, gate and up 48x32, down 32x48 per layer, lm_head 64x32;
   * the embedding and the norms stay FP32; int8 adds a scale per output channel */
  const size_t values = LN * (32 * 32 * 2 + 16 * 32 * 2 + 48 * 32 * 2 + 32 * 48) + LV * 32;
  const size_t channels = LN * (32 + 16 + 16 + 32 + 48 + 48 + 32) + LV;
  ck_assert_uint_eq(
      w32 - wl, dtype == STROP_DTYPE_BF16 ? values * 2 : values * 3 - channels * sizeof(float));
  hold_like(r, m);
  float ids[2 * LT], next[2 * LT];
  llama_tokens(ids, next, 2, 0);
  strop__bf16_impl = 1;
  strop_tensor *a = llama_forward(m, ids, 2), *b = llama_forward(r, ids, 2);
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 2 * LT * LV * sizeof(float));
  strop_tensor_free(a);
  strop_tensor_free(b);
  llama_lora(m);
  llama_lora(r);
  run x = llama_train(m, 4), y = llama_train(r, 4);
  strop__bf16_impl = 0;
  ck_assert_mem_eq(x.loss, y.loss, 4 * sizeof(float));
  ck_assert_uint_eq(x.n_adapter, y.n_adapter);
  ck_assert_mem_eq(x.adapter, y.adapter, x.n_adapter * sizeof(float));
  ck_assert_float_lt(x.loss[3], x.loss[0]); /* and it trained */
  free(x.adapter);
  free(y.adapter);
  strop_model_free(m);
  strop_model_free(r);
}
END_TEST

/* vdpbf16ps (where the CPU has it): the logits within 1% of their largest magnitude of the FP32
 * model on the same BF16 values (the inputs of every product rounded to BF16 too). And the
 * LoRA fine-tune with a BF16 or an int8 base (vdpbf16ps or the fallback) follows the FP32
 * base's losses within 0.02 at every step. */
START_TEST(llama_held_tolerance) {
  const int dtype = _i ? STROP_DTYPE_INT8 : STROP_DTYPE_BF16;
  strop_model *f = llama(6), *q = NULL;
  OK(strop_model_clone(f, &q));
  OK(strop_model_set_frozen_dtype(q, dtype));
  if (dtype == STROP_DTYPE_BF16 && strop__bf16_dot_enabled()) {
    strop_model *r = NULL;
    OK(strop_model_clone(f, &r));
    hold_like(r, q);
    float ids[2 * LT], next[2 * LT];
    llama_tokens(ids, next, 2, 1);
    strop_tensor *a = llama_forward(q, ids, 2), *b = llama_forward(r, ids, 2);
    const float *pa = strop_tensor_data(a), *pb = strop_tensor_data(b);
    float scale = 0.0f, err = 0.0f;
    for (int i = 0; i < 2 * LT * LV; i++) {
      scale = fmaxf(scale, fabsf(pb[i]));
      err = fmaxf(err, fabsf(pa[i] - pb[i]));
    }
    ck_assert_float_gt(err, 0.0f); /* it did run the BF16 product */
    ck_assert_msg(err <= 0.01f * scale, "max |diff| %g, logits' scale %g", err, scale);
    if (getenv("STROP_LOWP_VERBOSE"))
      fprintf(stderr, "llama bf16 logits: max |diff| %g of %g\n", err, scale);
    strop_tensor_free(a);
    strop_tensor_free(b);
    strop_model_free(r);
  }
  llama_lora(f);
  llama_lora(q);
  enum { STEPS = 12 };
  run a = llama_train(f, STEPS), b = llama_train(q, STEPS);
  double worst = 0;
  for (int s = 0; s < STEPS; s++) {
    const double d = fabs((double)a.loss[s] - (double)b.loss[s]);
    ck_assert_msg(d <= 0.02, "step %d: fp32 loss %g, %s loss %g", s, (double)a.loss[s],
                  dtype == STROP_DTYPE_BF16 ? "bf16" : "int8", (double)b.loss[s]);
    if (d > worst) worst = d;
  }
  if (getenv("STROP_LOWP_VERBOSE"))
    fprintf(stderr, "llama dtype %d: worst |loss diff| %g; fp32 %g -> %g\n", dtype, worst,
            (double)a.loss[0], (double)a.loss[STEPS - 1]);
  ck_assert_float_lt(b.loss[STEPS - 1], b.loss[0]);
  free(a.adapter);
  free(b.adapter);
  strop_model_free(f);
  strop_model_free(q);
}
END_TEST

/* ---- errors ---- */

START_TEST(errors) {
  ck_assert_int_eq(strop_model_set_frozen_dtype(NULL, STROP_DTYPE_BF16), STROP_E_INVALID_ARG);
  ck_assert_str_ne(strop_last_error(), "");
  ck_assert_int_eq(strop_model_frozen_dtype(NULL), -1);
  strop_model *m = text_model(1);
  OK(strop_model_freeze(m, "fc1.*"));
  ck_assert_int_eq(strop_model_set_frozen_dtype(m, 3), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "got 3"));
  ck_assert_int_eq(strop_model_set_frozen_dtype(m, -1), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_frozen_dtype(m), STROP_DTYPE_F32);
  strop_tensor *t = NULL;
  OK(strop_model_tensor_view(m, "fc1.weight", &t)); /* unchanged: still FP32 */
  strop_tensor_free(t);
  strop_model *u = NULL;
  OK(strop_model_create(2, IN, &u));
  OK(strop_model_add(u, "fc", "linear", "out_features=3", NULL));
  ck_assert_int_eq(strop_model_set_frozen_dtype(u, STROP_DTYPE_BF16), STROP_E_STATE);
  ck_assert_str_ne(strop_last_error(), "");
  strop_model_free(u);
  strop_model_free(m);
}
END_TEST

/* Each failing allocation while converting leaves the model as it was. */
static strop_model *g_m;
static float g_orig[64 * 32];

/* Regrouping held int8 weights: a failure leaves the group (and the weights) as they were. */
static int op_regroup(void *ctx) {
  (void)ctx;
  int st = strop_model_set_frozen_int8_group(g_m, 16);
  if (st) ck_assert_int_eq(strop_model_frozen_int8_group(g_m), 0);
  else ck_assert_int_eq(strop_model_frozen_int8_group(g_m), 16);
  return st;
}

static void regroup_back(void *ctx) {
  (void)ctx;
  OK(strop_model_set_frozen_dtype(g_m, STROP_DTYPE_F32));
  OK(strop_model_set_frozen_int8_group(g_m, 0));
  OK(strop_model_set_tensor(g_m, "fc1.weight", g_orig, 64 * 32));
  OK(strop_model_set_frozen_dtype(g_m, STROP_DTYPE_INT8));
}

static int op_convert(void *ctx) {
  const int dtype = *(const int *)ctx;
  int st = strop_model_set_frozen_dtype(g_m, dtype);
  if (st) {
    ck_assert_int_eq(strop_model_frozen_dtype(g_m), STROP_DTYPE_F32);
    strop_tensor *t = NULL; /* (only the n-th allocation fails: this one succeeds) */
    OK(strop_model_tensor_view(g_m, "fc1.weight", &t));
    ck_assert_mem_eq(strop_tensor_data(t), g_orig, sizeof g_orig);
    strop_tensor_free(t);
  }
  return st;
}

static void back_to_f32(void *ctx) {
  (void)ctx;
  OK(strop_model_set_frozen_dtype(g_m, STROP_DTYPE_F32));
  OK(strop_model_set_tensor(g_m, "fc1.weight", g_orig, 64 * 32));
}

/* The decoder's conversion (gated MLPs included): a failure leaves every weight as it was. */
static float *g_gate;
static int op_convert_llama(void *ctx) {
  const int dtype = *(const int *)ctx;
  int st = strop_model_set_frozen_dtype(g_m, dtype);
  if (st) {
    ck_assert_int_eq(strop_model_frozen_dtype(g_m), STROP_DTYPE_F32);
    const strop__param *p = strop__model_param_find(g_m, "model.layers.1.mlp.gate_proj.weight");
    ck_assert_int_eq(p->lowp.dtype, STROP_DTYPE_F32);
    ck_assert_mem_eq(p->data, g_gate, p->numel * sizeof(float));
  }
  return st;
}

static void llama_back_to_f32(void *ctx) {
  (void)ctx;
  OK(strop_model_set_frozen_dtype(g_m, STROP_DTYPE_F32));
}

START_TEST(alloc_sweep_convert) {
  for (int dtype = 1; dtype <= 2; dtype++) {
    g_m = text_model(2);
    OK(strop_model_freeze(g_m, "fc*"));
    strop_tensor *t = NULL;
    OK(strop_model_tensor_view(g_m, "fc1.weight", &t));
    memcpy(g_orig, strop_tensor_data(t), sizeof g_orig);
    strop_tensor_free(t);
    ck_assert_int_ge(strop_test_alloc_sweep(op_convert, back_to_f32, &dtype), 2);
    strop_model_free(g_m);
  }
  g_m = text_model(2);
  OK(strop_model_freeze(g_m, "fc*"));
  strop_tensor *t = NULL;
  OK(strop_model_tensor_view(g_m, "fc1.weight", &t));
  memcpy(g_orig, strop_tensor_data(t), sizeof g_orig);
  strop_tensor_free(t);
  OK(strop_model_set_frozen_dtype(g_m, STROP_DTYPE_INT8));
  ck_assert_int_ge(strop_test_alloc_sweep(op_regroup, regroup_back, NULL), 2);
  strop_model_free(g_m);
  for (int dtype = 1; dtype <= 2; dtype++) {
    g_m = llama(3);
    const strop__param *p = strop__model_param_find(g_m, "model.layers.1.mlp.gate_proj.weight");
    g_gate = malloc(p->numel * sizeof *g_gate);
    memcpy(g_gate, p->data, p->numel * sizeof *g_gate);
    /* 2 layers of 7 projections and the LM head: one failure at least per weight */
    ck_assert_int_ge(strop_test_alloc_sweep(op_convert_llama, llama_back_to_f32, &dtype), 15);
    free(g_gate);
    strop_model_free(g_m);
  }
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("lowp");
  TCase *c = tcase_create("convert");
  tcase_add_test(c, bf16_rounding);
  tcase_add_test(c, int8_quantisation);
  tcase_add_test(c, int8_group_quantisation);
  suite_add_tcase(s, c);
  c = tcase_create("forward");
  tcase_add_test(c, bf16_fallback_exact);
  tcase_add_test(c, int8_exact);
  tcase_add_test(c, int8_group_exact);
  tcase_add_loop_test(c, bf16_dot_tolerance, 0, 2);
  tcase_add_test(c, bf16_kernel_edges);
  tcase_add_test(c, bf16_compact_keeps_sign);
  tcase_add_test(c, bf16_pack_matches_scalar);
  tcase_add_test(c, bf16_long_k_one_pass);
  tcase_add_test(c, gemv_equals_general_path);
  tcase_add_test(c, int8_dot_equals_bf16_of_values);
  tcase_add_test(c, int8_dot_tolerance);
  tcase_add_test(c, int8_sweep_same_bits);
  tcase_add_test(c, kn_slices_same_bits);
  tcase_add_test(c, bias_cols_same_bits);
  tcase_add_test(c, gemm_kn_held_same_bits);
  tcase_add_test(c, bf16_backward_tolerance);
  suite_add_tcase(s, c);
  c = tcase_create("train");
  tcase_add_test(c, bf16_backward_exact);
  tcase_add_test(c, int8_backward_exact);
  tcase_add_test(c, bf16_finetune);
  tcase_add_test(c, int8_finetune);
  suite_add_tcase(s, c);
  c = tcase_create("storage");
  tcase_add_test(c, memory_halves);
  tcase_add_test(c, int8_group_storage);
  tcase_add_test(c, freeze_unfreeze);
  tcase_add_test(c, save_load);
  tcase_add_test(c, lora_on_held_base);
  tcase_add_test(c, tied_weights_stay_f32);
  suite_add_tcase(s, c);
  c = tcase_create("llama");
  tcase_add_loop_test(c, llama_held_exact, 0, 2);
  tcase_add_loop_test(c, llama_held_tolerance, 0, 2);
  suite_add_tcase(s, c);
  c = tcase_create("errors");
  tcase_add_test(c, errors);
  tcase_add_test(c, alloc_sweep_convert);
  suite_add_tcase(s, c);
  return s;
}

int main(void) { return strop_test_run(suite()); }
