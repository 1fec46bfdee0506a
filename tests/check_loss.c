/* SPDX-License-Identifier: MIT */
/* strop tests — loss suite: cross-entropy (class weights, label smoothing, ignore_index, [N,T,C]),
 * MSE, L1, Huber and BCE-with-logits against PyTorch fixtures, finite differences of the
 * gradient, and errors. Fixtures: tests/fixtures/gen_loss.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_st.h"
#include "ops/loss.h"
#include "ops/ops.h"
#include "ops/vmath.h"
#include "strop/strop.h"
#include "testutil.h"

/* ------------------------------------------------------------------ parity */

static void check_fixture(const char *name) {
  fixture_st f;
  char path[160];
  snprintf(path, sizeof path, "loss/%s.safetensors", name);
  fx_open(&f, path);
  strop__loss_cfg c;
  strop__loss_cfg_init(&c, (int)fx_meta(&f, "kind"));
  c.reduction = (int)fx_meta(&f, "reduction");
  c.label_smoothing = (float)fx_meta(&f, "label_smoothing");
  c.ignore_index = (int64_t)fx_meta(&f, "ignore_index");
  c.delta = (float)fx_meta(&f, "delta");
  int64_t n = (int64_t)fx_meta(&f, "n"), ps = (int64_t)fx_meta(&f, "per_sample");
  int64_t tps = (int64_t)fx_meta(&f, "target_per_sample");
  size_t np = 0, nt = 0, ng = 0, nw = 0;
  double ref_loss = 0.0;
  float *pred = fx_tensor(&f, "pred", &np, NULL);
  float *target = fx_tensor(&f, "target", &nt, NULL);
  float *gref = fx_tensor(&f, "grad.pred", &ng, NULL);
  float *lossv = fx_tensor(&f, "loss", NULL, &ref_loss);
  float *cw = fx_tensor(&f, "class_weights", &nw, NULL);
  float *pw = fx_tensor(&f, "pos_weight", &nw, NULL);
  ck_assert(pred && target && gref && lossv);
  ck_assert_uint_eq(np, (size_t)(n * ps));
  ck_assert_uint_eq(nt, (size_t)(n * tps));
  c.class_weights = cw;
  if (cw) c.n_classes = (int64_t)nw;
  c.pos_weight = pw;
  c.n_pos_weight = pw ? (int64_t)nw : 0;

  float *g = malloc(np * sizeof(float));
  double loss = 0.0;
  ck_assert_int_eq(strop__loss_eval(&c, pred, n, ps, target, tps, &loss, g), STROP_OK);
  /* sums run in double here and in float in torch: 1e-5 relative */
  double rel = fabs(loss - ref_loss) / fmax(fabs(ref_loss), 1e-6);
  ck_assert_msg(rel < 1e-5, "%s: loss %.9g vs torch %.9g", name, loss, ref_loss);
  size_t where = 0;
  double worst = strop_test_max_rel(g, gref, np, 1e-4, &where);
  ck_assert_msg(worst < 1e-5, "%s: grad[%zu] %.9g vs torch %.9g (rel %g)", name, where,
                (double)g[where], (double)gref[where], worst);
  /* the loss without a gradient is the same number */
  double loss2 = -1.0;
  ck_assert_int_eq(strop__loss_eval(&c, pred, n, ps, target, tps, &loss2, NULL), STROP_OK);
  ck_assert(loss2 == loss);
  free(g);
  free(pred);
  free(target);
  free(gref);
  free(lossv);
  free(cw);
  free(pw);
  fx_close(&f);
}

static const char *const FIXTURES[] = {
    "ce_basic",
    "ce_sum",
    "ce_weights",
    "ce_smoothing",
    "ce_weights_smoothing",
    "ce_weights_smoothing_ignore",
    "ce_weights_smoothing_ignore_sum",
    "ce_ignore_class2",
    "ce_seq",
    "mse_mean",
    "mse_sum",
    "l1_mean",
    "l1_sum",
    "huber_mean",
    "huber_delta",
    "bce_mean",
    "bce_pos_weight",
    "bce_pos_weight_sum",
};
#define N_FIXTURES ((int)(sizeof FIXTURES / sizeof FIXTURES[0]))

START_TEST(parity) { check_fixture(FIXTURES[_i]); }
END_TEST

/* ------------------------------------------------------------------ forward by hand */

START_TEST(forward_reference) {
  /* two classes, logits (0, ln 3): p = (1/4, 3/4); target 1 -> -ln(3/4) */
  float z[2] = {0.0f, logf(3.0f)}, y = 1.0f, g[3];
  strop__loss_cfg c;
  strop__loss_cfg_init(&c, STROP_LOSS_CROSS_ENTROPY);
  double l = 0.0;
  ck_assert_int_eq(strop__loss_eval(&c, z, 1, 2, &y, 1, &l, g), STROP_OK);
  ck_assert_double_eq_tol(l, -log(0.75), 1e-7);
  ck_assert_float_eq_tol(g[0], 0.25f, 1e-6f);
  ck_assert_float_eq_tol(g[1], -0.25f, 1e-6f);
  /* smoothing 0.5 over 2 classes: target distribution (1/4, 3/4) */
  c.label_smoothing = 0.5f;
  ck_assert_int_eq(strop__loss_eval(&c, z, 1, 2, &y, 1, &l, g), STROP_OK);
  ck_assert_double_eq_tol(l, -(0.25 * log(0.25) + 0.75 * log(0.75)), 1e-7);
  ck_assert_float_eq_tol(g[0], 0.0f, 1e-6f);
  /* huber: |d| = 2 > delta 1 -> 1 * (2 - 0.5) = 1.5; |d| = 0.5 -> 0.125; mean 0.8125 */
  float p[2] = {3.0f, 0.5f}, t[2] = {1.0f, 0.0f};
  strop__loss_cfg_init(&c, STROP_LOSS_HUBER);
  ck_assert_int_eq(strop__loss_eval(&c, p, 1, 2, t, 2, &l, g), STROP_OK);
  ck_assert_double_eq_tol(l, 0.8125, 1e-7);
  ck_assert_float_eq_tol(g[0], 0.5f, 1e-7f);
  ck_assert_float_eq_tol(g[1], 0.25f, 1e-7f);
  /* bce: x = 0 -> ln 2 whatever the target */
  float x0[2] = {0.0f, 0.0f}, yb[2] = {1.0f, 0.0f};
  strop__loss_cfg_init(&c, STROP_LOSS_BCE_WITH_LOGITS);
  c.reduction = STROP__LOSS_REDUCTION_SUM;
  ck_assert_int_eq(strop__loss_eval(&c, x0, 2, 1, yb, 1, &l, g), STROP_OK);
  ck_assert_double_eq_tol(l, 2.0 * log(2.0), 1e-7);
  ck_assert_float_eq_tol(g[0], -0.5f, 1e-7f);
  ck_assert_float_eq_tol(g[1], 0.5f, 1e-7f);
  /* extreme logits stay finite */
  float big[2] = {-1000.0f, 1000.0f}; /* both wrong by 1000 */
  ck_assert_int_eq(strop__loss_eval(&c, big, 2, 1, yb, 1, &l, g), STROP_OK);
  ck_assert(isfinite(l) && fabs(l - 2000.0) < 1e-3);
  strop__loss_cfg_init(&c, STROP_LOSS_CROSS_ENTROPY);
  float zb[3] = {1000.0f, -1000.0f, 0.0f}, yc = 1.0f;
  ck_assert_int_eq(strop__loss_eval(&c, zb, 1, 3, &yc, 1, &l, g), STROP_OK);
  ck_assert(isfinite(l) && fabs(l - 2000.0) < 1e-2);
}
END_TEST

START_TEST(all_ignored) {
  float z[6] = {1, 2, 3, 4, 5, 6}, y[2] = {-100.0f, -100.0f}, g[6];
  strop__loss_cfg c;
  strop__loss_cfg_init(&c, STROP_LOSS_CROSS_ENTROPY);
  double l = -1.0;
  ck_assert_int_eq(strop__loss_eval(&c, z, 2, 3, y, 1, &l, g), STROP_OK);
  ck_assert(l == 0.0);
  for (int i = 0; i < 6; i++) ck_assert(g[i] == 0.0f);
}
END_TEST

START_TEST(nan_propagates) {
  float z[3] = {NAN, 1.0f, 2.0f}, y = 1.0f, g[3];
  strop__loss_cfg c;
  strop__loss_cfg_init(&c, STROP_LOSS_CROSS_ENTROPY);
  double l = 0.0;
  ck_assert_int_eq(strop__loss_eval(&c, z, 1, 3, &y, 1, &l, g), STROP_OK);
  ck_assert(isnan(l));
  for (int k = STROP_LOSS_MSE; k <= STROP_LOSS_BCE_WITH_LOGITS; k++) {
    float t[3] = {0.0f, 1.0f, 0.0f};
    strop__loss_cfg_init(&c, k);
    ck_assert_int_eq(strop__loss_eval(&c, z, 1, 3, t, 3, &l, g), STROP_OK);
    ck_assert_msg(isnan(l) && isnan(g[0]), "%s", strop__loss_name(k));
  }
}
END_TEST

/* The cross-entropy as it was written one row at a time (its max one compare after another,
 * its sums in column order), mean reduction: the reference whose bits the kernel keeps. */
static double ce_ref(const strop__loss_cfg *c, const float *z, const float *y, int64_t rows,
                     int64_t C, float *g) {
  const float eps = c->label_smoothing, *w = c->class_weights;
  double wsum = 0.0, total = 0.0, wtotal = 0.0;
  for (int64_t j = 0; j < C; j++) wsum += w ? (double)w[j] : 1.0;
  for (int64_t r = 0; r < rows; r++) {
    const float *zr = z + r * C;
    float *gr = g + r * C;
    if ((double)y[r] == (double)c->ignore_index) {
      for (int64_t j = 0; j < C; j++) gr[j] = 0.0f;
      continue;
    }
    const int64_t yi = (int64_t)y[r];
    double m = zr[0], s = 0.0;
    for (int64_t j = 1; j < C; j++)
      if (zr[j] > m) m = zr[j];
    for (int64_t j = 0; j < C; j++) s += strop__vexp((double)zr[j] - m);
    const double lse = m + log(s), wy = w ? (double)w[yi] : 1.0;
    double row = (1.0 - eps) * wy * (lse - (double)zr[yi]);
    if (eps > 0.0f) {
      double sm = 0.0;
      for (int64_t j = 0; j < C; j++) sm += (w ? (double)w[j] : 1.0) * (lse - (double)zr[j]);
      row += (double)eps / (double)C * sm;
    }
    total += row;
    wtotal += wy;
    const double a = (1.0 - eps) * wy + (double)eps / (double)C * wsum,
                 ew = (double)eps / (double)C;
    for (int64_t j = 0; j < C; j++)
      gr[j] = (float)(strop__vexp((double)zr[j] - lse) * a - ew * (w ? (double)w[j] : 1.0));
    gr[yi] -= (float)((1.0 - eps) * wy);
  }
  const double scale = wtotal != 0.0 ? 1.0 / wtotal : 0.0;
  const float fs = (float)scale;
  for (int64_t i = 0; i < rows * C; i++) g[i] *= fs;
  return total * scale;
}

/* The loss of R rows of z (R > 11) a chunk of rows at a time, in place, as the fused LM head
 * runs it: rows 0-10, then the rest; g gets the gradient. */
static double ce_chunked(const strop__loss_cfg *c, const float *z, const float *y, int R, int C,
                         float *g) {
  strop__ce_rows st;
  ck_assert_int_eq(strop__ce_rows_begin(&st, c, R, C, y, 1), STROP_OK);
  memcpy(g, z, sizeof(float) * R * C);
  strop__ce_rows_eval(&st, 0, 11, g, 1);
  strop__ce_rows_eval(&st, 11, R - 11, g + 11 * C, 1);
  return strop__ce_rows_loss(&st);
}

/* The softmax sums of several rows side by side (strop__rows_together 8) against one row at a
 * time (1): the same loss and gradient bits, over all rows at once and a chunk of rows at a time
 * (the fused LM head's strop__ce_rows), with ignored rows and a NaN row among them, plain,
 * weighted and smoothed; R rows, on `threads` threads: from 2^18 logits on (R 301) the rows run
 * across threads, in blocks of 256 rows (301: a second, short one), and give the bits of the
 * serial reference. */
static void rows_together_case(int R, int threads, int C) {
  ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
  const int keep = strop__rows_together;
  float *z = malloc(sizeof(float) * R * C), *w = malloc(sizeof(float) * C);
  float *y = malloc(sizeof(float) * R);
  float *g[4];
  for (int k = 0; k < 4; k++) g[k] = malloc(sizeof(float) * R * C);
  uint32_t u = 777u;
  for (int i = 0; i < R * C; i++) {
    u = u * 1664525u + 1013904223u;
    z[i] = 8.0f * ((float)(u >> 8) / 16777216.0f - 0.5f) +
           (i % 101 == 0 && i / C % 5 == 0 ? 30.0f : 0.0f);
  }
  for (int r = 3; r < 7; r += 3) /* rows whose maximum is a zero, -0 first and +0 first */
    for (int j = 0; j < C; j++) {
      float *v = &z[r * C + j];
      *v = j == 10 ? (r == 3 ? -0.0f : 0.0f) : j == 20 ? (r == 3 ? 0.0f : -0.0f) : -fabsf(*v) - 1;
    }
  /* row 7: a logit 1000 below the rest, outside vexp's range (the exponentials' checked form,
   * and its group's); row 8: one 745 below its maximum, in range for the sums but not, less
   * log(s), for the gradient */
  if (C > 9) z[7 * C + 3] = -1000.0f;
  if (C > 9) {
    float mx = z[8 * C];
    for (int j = 1; j < C; j++) mx = z[8 * C + j] > mx ? z[8 * C + j] : mx;
    z[8 * C + 4] = mx - 745.0f;
  }
  for (int j = 0; j < C; j++) w[j] = 0.5f + (float)(j % 7) * 0.25f;
  for (int r = 0; r < R; r++) y[r] = r % 9 == 4 ? -100.0f : (float)((r * 37) % C);
  for (int v6 = 0; v6 < 6; v6++) { /* on AVX-512 (strop__ce_isa 0) and the clones (1) */
    const int variant = v6 % 3;
    strop__ce_isa = v6 / 3;
    /* a NaN row once (row 17, or the last of fewer rows) */
    z[(R > 17 ? 17 : R - 1) * C + (C > 5 ? 5 : 0)] = variant == 0 ? NAN : 0.5f;
    strop__loss_cfg c;
    strop__loss_cfg_init(&c, STROP_LOSS_CROSS_ENTROPY);
    if (variant == 1) c.class_weights = w;
    if (variant == 2) c.label_smoothing = 0.1f;
    double l[4];
    for (int k = 0; k < 2; k++) {
      strop__rows_together = k ? keep : 1;
      ck_assert_int_eq(strop__loss_eval(&c, z, R, C, y, 1, &l[k], g[k]), STROP_OK);
    }
    l[2] = ce_chunked(&c, z, y, R, C, g[2]);
    strop__rows_together = keep;
    l[3] = ce_ref(&c, z, y, R, C, g[3]);
    for (int k = 1; k < 4; k++) {
      ck_assert_msg(memcmp(&l[0], &l[k], sizeof l[0]) == 0,
                    "R %d C %d threads %d variant %d isa %d, %d: loss %.17g vs %.17g", R, C,
                    threads, variant, strop__ce_isa, k, l[k], l[0]);
      ck_assert_msg(memcmp(g[0], g[k], sizeof(float) * R * C) == 0,
                    "R %d C %d threads %d variant %d isa %d, %d: the gradient's bits differ", R,
                    C, threads, variant, strop__ce_isa, k);
    }
  }
  strop__ce_isa = 0;
  for (int k = 0; k < 4; k++) free(g[k]);
  free(z), free(w), free(y);
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}

START_TEST(rows_together_bits) {
  for (int threads = 1; threads <= 2; threads++) {
    rows_together_case(29, threads, 1003);
    rows_together_case(301, threads, 1003);
    rows_together_case(29, threads, 5); /* the Fashion demo's head */
    rows_together_case(21, threads, 8);
    rows_together_case(19, threads, 1);
    rows_together_case(13, threads, 37);
  }
}
END_TEST

/* strop__vexp8 (the cross-entropy's AVX-512 exponentials) gives strop__vexp's bits: every
 * 4099th float (every float with STROP_TEST_ALL_FLOATS=1: 2^32 values), a fine sweep over the
 * subnormal results and the ends of the range, random doubles, the special values; its form
 * without clamps (checked 0) the same over every float in [-745.13, 0] visited. */
START_TEST(vexp_avx512_same_bits) {
  enum { B = 4096 };
  static double x[B], got[B], fast[B];
  const char *all = getenv("STROP_TEST_ALL_FLOATS");
  const uint64_t stride = all && all[0] == '1' ? 1 : 4099;
  int nb = 0;
  uint64_t checked = 0;
  uint32_t u = 99u;
  for (int part = 0; part < 4; part++) {
    uint64_t count = part == 0   ? ((1ull << 32) + stride - 1) / stride
                     : part == 1 ? 1u << 21
                     : part == 2 ? 1u << 20
                                 : 12;
    for (uint64_t i = 0; i < count; i++) {
      double v;
      if (part == 0) {
        const uint32_t bits = (uint32_t)(i * stride);
        float f;
        memcpy(&f, &bits, sizeof f);
        v = (double)f;
      } else if (part == 1) { /* [-746, -700] and [700, 710] in steps of 2^-15 */
        v = i < (1u << 20) ? -746.0 + (double)i * 0x1p-15
                           : 700.0 + (double)(i - (1u << 20)) * 0x1p-17;
      } else if (part == 2) {
        u = u * 1664525u + 1013904223u;
        const uint32_t u2 = u * 22695477u + 1u;
        v = ((double)u / 4294967296.0 - 0.5) * 1600.0 + (double)u2 * 0x1p-60;
      } else {
        static const double sp[12] = {0.0,
                                      -0.0,
                                      1e-320,
                                      -1e-320,
                                      709.782712893384,
                                      -745.1332191019412,
                                      709.7827128933841,
                                      -745.1332191019413,
                                      (double)INFINITY,
                                      -(double)INFINITY,
                                      (double)NAN,
                                      -708.4};
        v = sp[i];
      }
      x[nb++] = v;
      if (nb == B || (i + 1 == count)) {
        strop__vexp8(x, got, nb, 1);
        strop__vexp8(x, fast, nb, 0);
        for (int k = 0; k < nb; k++) {
          const double want = strop__vexp(x[k]);
          /* one test per value, no Check call unless it fails: 2^32 of them with the variable */
          if (memcmp(&got[k], &want, sizeof want))
            ck_abort_msg("exp(%a): %a, want %a", x[k], got[k], want);
          if (x[k] >= -745.1332191019412 && x[k] <= 0.0 && memcmp(&fast[k], &want, sizeof want))
            ck_abort_msg("unchecked exp(%a): %a, want %a", x[k], fast[k], want);
        }
        checked += (uint64_t)nb;
        nb = 0;
      }
    }
  }
  ck_assert_uint_gt(checked, 1u << 20);
}
END_TEST

/* Mixed precision's cross-entropy (strop__loss_cfg.fp32_exp, what the trainer sets for a model
 * computing in BF16). strop__vexp16 against libm's exp: within 2 units in the last place over
 * the floats of [-104, 0] (every 61st; every one with STROP_TEST_ALL_FLOATS=1), 0 below. The
 * loss within 1e-6 of float64's, each gradient within (|x| + 6) 2^-23 (p a + ew + [j = y] gy) fs
 * of it (x = z - lse, p = e^x: the argument's rounding to float, the exponential's 2 ulp and the
 * single-precision multiply and subtract), plain and smoothed, whole and a chunk of rows at a
 * time, on 1 and 2 threads, rows together or one at a time (the same bits each way); a row with
 * a NaN, an infinity or a logit past double's range, and every row under class weights, take the
 * double path: the bits of fp32_exp 0. */
static double ulp_of(double v) {
  v = fabs(v);
  if (v < 0x1p-126) return 0x1p-149;
  return ldexp(1.0, ilogb(v) - 23);
}

/* float64 reference of one row of C logits with target yi and label smoothing eps: its loss
 * (1 - eps) (lse - z[yi]) + eps / C sum (lse - z[j]), and *lse = log sum e^z */
static double ref_row(const float *zr, int C, int yi, double eps, double *lse) {
  double m = zr[0], s = 0.0, sm = 0.0;
  for (int j = 1; j < C; j++) m = zr[j] > m ? zr[j] : m;
  for (int j = 0; j < C; j++) s += exp((double)zr[j] - m);
  *lse = m + log(s);
  for (int j = 0; j < C; j++) sm += *lse - (double)zr[j];
  return (1.0 - eps) * (*lse - zr[yi]) + eps / C * sm;
}

START_TEST(fp32_exp_tolerance) {
  enum { B = 4096 };
  static float x[B], got[B];
  const char *all = getenv("STROP_TEST_ALL_FLOATS");
  const uint32_t stride = all && all[0] == '1' ? 1 : 61, top = 0xC2D00000u; /* -104 */
  double worst = 0.0;
  int nb = 0;
  for (uint64_t b = 0x80000000u; b <= top; b += stride) {
    const uint32_t bits = (uint32_t)b;
    memcpy(&x[nb++], &bits, sizeof bits);
    if (nb == B || b + stride > top) {
      strop__vexp16(x, got, nb);
      for (int k = 0; k < nb; k++) {
        const double want = exp((double)x[k]), err = fabs((double)got[k] - want) / ulp_of(want);
        if (err > 2.0) ck_abort_msg("vexp16(%a) = %a, exp %a: %.2f ulp", x[k], got[k], want, err);
        worst = err > worst ? err : worst;
      }
      nb = 0;
    }
  }
  const float below[4] = {-104.5f, -1000.0f, -3e38f, -INFINITY};
  strop__vexp16(below, got, 4);
  for (int k = 0; k < 4; k++) ck_assert_msg(got[k] == 0.0f, "vexp16(%g) = %a", below[k], got[k]);
  printf("vexp16: at most %.3f ulp of exp over [-104, 0]\n", worst);

  const int R = 37, C = 1003;
  float *z = malloc(sizeof(float) * R * C), *w = malloc(sizeof(float) * C);
  float *y = malloc(sizeof(float) * R), *g[4];
  for (int k = 0; k < 4; k++) g[k] = malloc(sizeof(float) * R * C);
  uint32_t u = 4242u;
  for (int i = 0; i < R * C; i++) {
    u = u * 1664525u + 1013904223u;
    z[i] = 16.0f * ((float)(u >> 8) / 16777216.0f - 0.5f) + (i % 97 == 0 ? 25.0f : 0.0f);
  }
  z[7 * C + 3] = -1000.0f; /* outside double's range: the double path */
  for (int j = 0; j < C; j++) w[j] = 0.5f + (float)(j % 7) * 0.25f;
  for (int r = 0; r < R; r++) y[r] = r % 9 == 4 ? -100.0f : (float)((r * 37) % C);
  const int keep = strop__rows_together;
  for (int variant = 0; variant < 3; variant++) {
    z[8 * C + 5] = variant == 0 ? NAN : 0.5f;        /* a NaN row, once (its loss: NaN) */
    z[9 * C + 6] = variant == 0 ? -INFINITY : 0.25f; /* an infinite logit, once */
    strop__loss_cfg c;
    strop__loss_cfg_init(&c, STROP_LOSS_CROSS_ENTROPY);
    if (variant == 1) c.label_smoothing = 0.1f;
    if (variant == 2) c.class_weights = w;
    c.reduction = variant == 1 ? STROP__LOSS_REDUCTION_SUM : STROP__LOSS_REDUCTION_MEAN;
    double l[4];
    c.fp32_exp = 0;
    ck_assert_int_eq(strop__loss_eval(&c, z, R, C, y, 1, &l[0], g[0]), STROP_OK);
    c.fp32_exp = 1;
    for (int threads = 1; threads <= 2; threads++) {
      ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
      strop__rows_together = threads == 1 ? keep : 1;
      ck_assert_int_eq(strop__loss_eval(&c, z, R, C, y, 1, &l[1], g[1]), STROP_OK);
      l[2] = ce_chunked(&c, z, y, R, C, g[2]);
      ck_assert_msg(memcmp(&l[1], &l[2], sizeof l[1]) == 0 &&
                        memcmp(g[1], g[2], sizeof(float) * R * C) == 0,
                    "variant %d threads %d: chunked rows differ", variant, threads);
      if (threads == 1) memcpy(g[3], g[1], sizeof(float) * R * C), l[3] = l[1];
      else
        ck_assert_msg(memcmp(&l[1], &l[3], sizeof l[1]) == 0 &&
                          memcmp(g[1], g[3], sizeof(float) * R * C) == 0,
                      "variant %d: 2 threads or rows one at a time differ", variant);
    }
    strop__rows_together = keep;
    ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
    if (variant == 2) { /* class weights: the double path throughout */
      ck_assert(memcmp(&l[0], &l[1], sizeof l[0]) == 0);
      ck_assert(memcmp(g[0], g[1], sizeof(float) * R * C) == 0);
      continue;
    }
    /* float64 reference of the clean rows; the others must have the double path's bits */
    const double eps = c.label_smoothing, ew = eps / C, gy = 1.0 - eps;
    int n = 0;
    for (int r = 0; r < R; r++) n += y[r] != -100.0f;
    const double fs = variant == 1 ? 1.0 : 1.0 / n;
    double total = 0.0, differ = 0.0;
    for (int r = 0; r < R; r++) {
      const float *zr = z + r * C;
      const float *g0 = g[0] + r * C, *g1 = g[1] + r * C;
      const int nan_row = r == 8 && variant == 0, inf_row = r == 9 && variant == 0;
      if (r == 7 || nan_row || inf_row || y[r] == -100.0f) {
        ck_assert_msg(memcmp(g0, g1, sizeof(float) * C) == 0, "row %d: not the double bits", r);
        if (y[r] == -100.0f || nan_row) continue; /* nothing, or NaN: no reference */
      }
      const int yi = (int)y[r];
      double lse;
      total += ref_row(zr, C, yi, eps, &lse);
      if (r == 7 || inf_row) continue;
      for (int j = 0; j < C; j++) {
        const double xj = (double)zr[j] - lse, p = exp(xj);
        const double want = (p - ew - (j == yi ? gy : 0.0)) * fs;
        const double bound = (fabs(xj) + 6.0) * 0x1p-23 * (p + ew + (j == yi ? gy : 0.0)) * fs +
                             1e-38;
        const double d = fabs((double)g1[j] - want);
        ck_assert_msg(d <= bound, "variant %d row %d class %d: %.9g, float64 %.9g (bound %.3g)",
                      variant, r, j, (double)g1[j], want, bound);
        if (g1[j] != g0[j]) differ += 1.0;
      }
    }
    total *= fs;
    if (variant == 0)
      ck_assert_msg(isnan(l[0]) && isnan(l[1]), "a NaN row's loss: %g, %g", l[0], l[1]);
    else
      ck_assert_msg(fabs(l[1] - total) <= 1e-6 * fmax(1.0, fabs(total)),
                    "variant %d: loss %.12g, float64 %.12g", variant, l[1], total);
    if (strop__ce_fp32_available())
      ck_assert_msg(differ > 0.0, "variant %d: fp32_exp changed no gradient", variant);
    else /* the double path everywhere */
      ck_assert_msg(differ == 0.0 && memcmp(&l[0], &l[1], sizeof l[0]) == 0,
                    "variant %d: fp32_exp changed the double path", variant);
  }
  for (int k = 0; k < 4; k++) free(g[k]);
  free(z), free(w), free(y);
}
END_TEST

/* fp32_exp's rows whose logits span more than 87 (a random-weight GPT-2's do): exponentials
 * and gradient values below FLT_MIN. With strop__ce_ftz (the default) they are zero — each
 * gradient within the bound above plus FLT_MIN of float64's, and zero wherever float64's is
 * below half of FLT_MIN; with strop__ce_ftz 0 subnormal, within the bound plus 2^-140. The loss
 * within 1e-6 of float64's either way. Mean (the gradient scaled by 1/n) and summed with label
 * smoothing; the rows' spans reach both the subnormals and past them. */
START_TEST(fp32_exp_subnormals) {
  enum { R = 6, C = 1003 };
  static float z[R * C], g[R * C];
  float y[R];
  for (int r = 0; r < R; r++) {
    y[r] = (float)((r * 131) % C);
    for (int j = 0; j < C; j++) /* 0 down to -(60 + 15 r): past -87 from the second row */
      z[r * C + j] = -(float)((60.0 + 15.0 * r) * (double)((j * 37) % C) / (double)(C - 1));
  }
  const int keep = strop__ce_ftz;
  for (int variant = 0; variant < 2; variant++)
    for (int ftz = 1; ftz >= 0; ftz--) {
      strop__ce_ftz = ftz;
      strop__loss_cfg c;
      strop__loss_cfg_init(&c, STROP_LOSS_CROSS_ENTROPY);
      if (variant == 1) c.label_smoothing = 0.1f;
      c.reduction = variant == 1 ? STROP__LOSS_REDUCTION_SUM : STROP__LOSS_REDUCTION_MEAN;
      c.fp32_exp = 1;
      double l;
      ck_assert_int_eq(strop__loss_eval(&c, z, R, C, y, 1, &l, g), STROP_OK);
      const double eps = c.label_smoothing, ew = eps / C, gy = 1.0 - eps;
      const double fs = variant == 1 ? 1.0 : 1.0 / R;
      double total = 0.0;
      int tiny = 0, flushed = 0, kept = 0;
      for (int r = 0; r < R; r++) {
        const float *zr = z + r * C, *gr = g + r * C;
        const int yi = (int)y[r];
        double lse;
        total += ref_row(zr, C, yi, eps, &lse);
        for (int j = 0; j < C; j++) {
          const double xj = (double)zr[j] - lse, p = exp(xj);
          const double want = (p - ew - (j == yi ? gy : 0.0)) * fs;
          const double bound = (fabs(xj) + 6.0) * 0x1p-23 * (p + ew + (j == yi ? gy : 0.0)) * fs +
                               (ftz ? 0x1p-126 : 0x1p-140);
          ck_assert_msg(fabs((double)gr[j] - want) <= bound,
                        "ftz %d variant %d row %d class %d: %a, float64 %a (bound %.3g)", ftz,
                        variant, r, j, (double)gr[j], want, bound);
          if (fabs(want) < 0x1p-127) {
            tiny++;
            flushed += gr[j] == 0.0f;
            kept += gr[j] != 0.0f;
          }
        }
      }
      total *= fs;
      ck_assert_msg(fabs(l - total) <= 1e-6 * fmax(1.0, fabs(total)),
                    "ftz %d variant %d: loss %.12g, float64 %.12g", ftz, variant, l, total);
      if (variant == 0) { /* without smoothing the tiny values are the exponentials' own */
        ck_assert_msg(tiny > 100, "only %d values below FLT_MIN / 2", tiny);
        if (strop__ce_fp32_available() && ftz) /* (elsewhere the double path: kept) */
          ck_assert_msg(flushed == tiny, "ftz: %d of %d values below FLT_MIN / 2 kept", kept,
                        tiny);
        if (strop__ce_fp32_available() && !ftz)
          ck_assert_msg(kept > 0, "ftz 0: all %d values below FLT_MIN / 2 flushed", tiny);
      }
    }
  strop__ce_ftz = keep;
}
END_TEST

/* ------------------------------------------------------------------ finite differences */

/* Central differences of the double loss in float32 pred; tolerance 2e-3 relative with a
 * floor of 1e-3 (h = 1e-3 in float32 limits the accuracy to about 1e-4 of the loss). */
static void fd_check(strop__loss_cfg *c, int64_t n, int64_t ps, const float *target, int64_t tps,
                     float scale) {
  float *p = calloc((size_t)(n * ps), sizeof(float));
  float *g = malloc((size_t)(n * ps) * sizeof(float));
  uint32_t s = 12345u;
  for (int64_t i = 0; i < n * ps; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = scale * ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f);
  }
  double l = 0.0;
  ck_assert_int_eq(strop__loss_eval(c, p, n, ps, target, tps, &l, g), STROP_OK);
  const float h = 1e-3f;
  for (int64_t i = 0; i < n * ps; i++) {
    float keep = p[i];
    double lp, lm;
    p[i] = keep + h;
    ck_assert_int_eq(strop__loss_eval(c, p, n, ps, target, tps, &lp, NULL), STROP_OK);
    p[i] = keep - h;
    ck_assert_int_eq(strop__loss_eval(c, p, n, ps, target, tps, &lm, NULL), STROP_OK);
    float hh = (keep + h) - (keep - h);
    p[i] = keep;
    double fd = (lp - lm) / (double)hh;
    double err = fabs(fd - g[i]) / fmax(fabs(fd), 1e-3);
    ck_assert_msg(err < 2e-3, "%s: d/dpred[%lld] analytic %.7g vs fd %.7g",
                  strop__loss_name(c->kind), (long long)i, (double)g[i], fd);
  }
  free(p);
  free(g);
}

START_TEST(gradcheck) {
  strop__loss_cfg c;
  const float w[5] = {0.5f, 1.0f, 2.0f, 0.3f, 1.7f};
  const float cls[8] = {0, 4, 2, -100, 1, 3, 3, 0};
  for (int red = 0; red < 2; red++) {
    strop__loss_cfg_init(&c, STROP_LOSS_CROSS_ENTROPY);
    c.reduction = red;
    c.class_weights = w;
    c.n_classes = 5;
    c.label_smoothing = 0.2f;
    fd_check(&c, 8, 5, cls, 1, 2.0f);
    fd_check(&c, 2, 20, cls, 4, 2.0f); /* [2, 4, 5] sequence layout */
  }
  float t[24];
  for (int i = 0; i < 24; i++) t[i] = (float)((i * 7) % 5) * 0.4f - 0.8f;
  for (int k = STROP_LOSS_MSE; k <= STROP_LOSS_HUBER; k++) {
    strop__loss_cfg_init(&c, k);
    c.delta = 0.6f;
    fd_check(&c, 4, 6, t, 6, 1.5f);
  }
  float tb[24], pwv[6] = {0.5f, 1.0f, 2.0f, 3.0f, 0.2f, 1.0f};
  for (int i = 0; i < 24; i++) tb[i] = (float)(i % 3) * 0.5f;
  strop__loss_cfg_init(&c, STROP_LOSS_BCE_WITH_LOGITS);
  c.pos_weight = pwv;
  c.n_pos_weight = 6;
  fd_check(&c, 4, 6, tb, 6, 3.0f);
}
END_TEST

/* ------------------------------------------------------------------ errors */

static void expect_err(strop_status st, strop_status want, const char *needle) {
  ck_assert_int_eq(st, want);
  ck_assert_msg(strstr(strop_last_error(), needle) != NULL, "'%s' lacks '%s'", strop_last_error(),
                needle);
}

START_TEST(errors) {
  strop__loss_cfg c;
  float z[8] = {0}, g[8];
  double l = 0.0;
  strop__loss_cfg_init(&c, STROP_LOSS_CROSS_ENTROPY);
  float y_bad[2] = {1.0f, 4.0f};
  expect_err(strop__loss_eval(&c, z, 2, 4, y_bad, 1, &l, g), STROP_E_INVALID_ARG,
             "sample 1: class index 4 is not an integer in [0, 4)");
  float y_neg[2] = {-1.0f, 0.0f};
  expect_err(strop__loss_eval(&c, z, 2, 4, y_neg, 1, &l, g), STROP_E_INVALID_ARG,
             "sample 0: class index -1");
  float y_frac[2] = {0.0f, 1.5f};
  expect_err(strop__loss_eval(&c, z, 2, 4, y_frac, 1, &l, g), STROP_E_INVALID_ARG,
             "class index 1.5");
  float y_nan[2] = {NAN, 1.0f};
  expect_err(strop__loss_eval(&c, z, 2, 4, y_nan, 1, &l, g), STROP_E_INVALID_ARG, "sample 0");
  float y_huge[2] = {1e30f, 1.0f};
  expect_err(strop__loss_eval(&c, z, 2, 4, y_huge, 1, &l, g), STROP_E_INVALID_ARG, "sample 0");
  float y_seq[4] = {0, 1, 1, 9};
  expect_err(strop__loss_eval(&c, z, 2, 4, y_seq, 2, &l, g), STROP_E_INVALID_ARG,
             "sample 1, position 1: class index 9");
  c.n_classes = 3;
  expect_err(strop__loss_eval(&c, z, 2, 4, y_seq, 1, &l, g), STROP_E_INVALID_ARG, "do not split");
  c.n_classes = 0;
  c.label_smoothing = 1.5f;
  expect_err(strop__loss_eval(&c, z, 2, 4, y_seq, 1, &l, g), STROP_E_INVALID_ARG,
             "label_smoothing");
  strop__loss_cfg_init(&c, STROP_LOSS_MSE);
  expect_err(strop__loss_eval(&c, z, 2, 4, z, 3, &l, g), STROP_E_INVALID_ARG,
             "targets have 3 values per sample, predictions 4");
  expect_err(strop__loss_eval(&c, z, 0, 4, z, 4, &l, g), STROP_E_INVALID_ARG, "n 0");
  expect_err(strop__loss_eval(&c, NULL, 2, 4, z, 4, &l, g), STROP_E_INVALID_ARG, "NULL");
  c.reduction = 7;
  expect_err(strop__loss_eval(&c, z, 2, 4, z, 4, &l, g), STROP_E_INVALID_ARG, "reduction 7");
  strop__loss_cfg_init(&c, STROP_LOSS_HUBER);
  c.delta = 0.0f;
  expect_err(strop__loss_eval(&c, z, 2, 4, z, 4, &l, g), STROP_E_INVALID_ARG, "delta");
  strop__loss_cfg_init(&c, STROP_LOSS_BCE_WITH_LOGITS);
  float pw[3] = {1, 1, 1};
  c.pos_weight = pw;
  c.n_pos_weight = 3;
  expect_err(strop__loss_eval(&c, z, 2, 4, z, 4, &l, g), STROP_E_INVALID_ARG, "pos_weight");
  strop__loss_cfg_init(&c, 99);
  expect_err(strop__loss_eval(&c, z, 2, 4, z, 4, &l, g), STROP_E_INVALID_ARG, "kind 99");
  /* the loss kinds keep their numbers */
  ck_assert_int_eq(STROP_LOSS_CROSS_ENTROPY, 1);
  ck_assert_int_eq(STROP_LOSS_BCE_WITH_LOGITS, 5);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("loss");
  TCase *tc = tcase_create("parity");
  tcase_add_loop_test(tc, parity, 0, N_FIXTURES);
  suite_add_tcase(s, tc);
  tc = tcase_create("forward");
  tcase_add_test(tc, forward_reference);
  tcase_add_test(tc, all_ignored);
  tcase_add_test(tc, nan_propagates);
  tcase_add_test(tc, rows_together_bits);
  tcase_add_test(tc, vexp_avx512_same_bits);
  tcase_add_test(tc, fp32_exp_tolerance);
  tcase_add_test(tc, fp32_exp_subnormals);
  suite_add_tcase(s, tc);
  tc = tcase_create("gradcheck");
  tcase_add_test(tc, gradcheck);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, errors);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return strop_test_run(suite()); }
