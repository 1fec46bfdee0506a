/* SPDX-License-Identifier: MIT */
/* strop tests — the sequence layer family: embedding, positional_embedding, layernorm,
 * multihead_attention, mean_pool, and a 2-block pre-norm transformer classifier end to end.
 * Kernel and forward references, finite-difference gradchecks, PyTorch parity (fixtures from
 * tests/fixtures/gen_seq.py), padding masks, errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/core.h"
#include "fixture_st.h"
#include "graph/graph.h"
#include "harness.h"
#include "layers/layer.h"
#include "ops/attention.h"
#include "ops/layernorm.h"
#include "ops/ops.h"
#include "strop/strop.h"
#include "testutil.h"

/* Referencing the vtables makes a static link pull in the family's files (the registry holds
 * only weak references). */
extern const strop__layer_vtable strop__layer_embedding, strop__layer_positional_embedding,
    strop__layer_layernorm, strop__layer_multihead_attention, strop__layer_mean_pool;
static const strop__layer_vtable *const g_family[] = {
    &strop__layer_embedding, &strop__layer_positional_embedding, &strop__layer_layernorm,
    &strop__layer_multihead_attention, &strop__layer_mean_pool};

#define FIX(name) STROP_TEST_DATA "/layers/" name ".safetensors"

/* ------------------------------------------------------------------ helpers */

typedef strop_test_node node_spec;
#define must strop_test_must
#define build strop_test_build

static strop_model *build1(int rank, const int64_t *shape, const char *name, const char *type,
                           const char *opts) {
  node_spec s = {name, type, opts, NULL};
  return build(rank, shape, &s, 1, 7);
}

static strop__param *param(strop_model *m, const char *name) {
  strop__param *p = strop__model_param_find(m, name);
  ck_assert_msg(p != NULL, "no parameter %s", name);
  return p;
}

/* forward in train (1) or eval (0) mode with an optional pad mask; copies the output */
static float *fwd(strop_model *m, const float *x, int64_t n, int training, const float *mask,
                  size_t *count) {
  const strop__act *o;
  must(strop__model_forward_exec(m, x, n, training, &(strop__side){mask, NULL}, &o), "forward");
  size_t k = (size_t)n * strop__shape_numel(&o->shape);
  float *r = malloc(k * sizeof *r);
  memcpy(r, o->data, k * sizeof *r);
  strop__model_step_end(m);
  if (count) *count = k;
  return r;
}

static void expect_close(const float *got, const float *want, size_t n, double tol,
                         const char *what) {
  size_t at = 0;
  double rel = strop_test_max_rel(got, want, n, 1e-4, &at);
  ck_assert_msg(rel <= tol, "%s: [%zu] %.8g vs %.8g (rel %.3g > %.3g)", what, at, (double)got[at],
                (double)want[at], rel, tol);
}

/* A failing add/finalize: status, and the sentence names the node and contains `needle`. */
static void expect_build_error(int rank, const int64_t *shape, const char *type, const char *opts,
                               strop_status want, const char *needle) {
  strop_model *m = NULL;
  must(strop_model_create(rank, shape, &m), "create");
  strop_status st = strop_model_add(m, "seq.bad", type, opts, NULL);
  if (st == STROP_OK) st = strop_model_finalize(m, 1);
  ck_assert_msg(st == want, "%s '%s': status %d (%s), wanted %d", type, opts, st,
                strop_last_error(), want);
  ck_assert_msg(strstr(strop_last_error(), "seq.bad") != NULL, "'%s' does not name the node",
                strop_last_error());
  ck_assert_msg(strstr(strop_last_error(), needle) != NULL, "'%s' lacks '%s'", strop_last_error(),
                needle);
  strop_model_free(m);
}

/* ------------------------------------------------------------------ kernels */

START_TEST(kernel_layernorm) {
  /* [1, 2, 3, 4]: mean 2.5, var 1.25 */
  const float x[4] = {1, 2, 3, 4}, g[4] = {1, 2, 1, 1}, b[4] = {0, 0, 0, 1};
  float y[4], mean, rstd;
  strop__layernorm_forward(x, 1, 4, g, b, 0.0f, y, &mean, &rstd);
  double s = 1.0 / sqrt(1.25);
  ck_assert_float_eq_tol(mean, 2.5f, 1e-7f);
  ck_assert_float_eq_tol(y[0], (float)(-1.5 * s), 1e-6f);
  ck_assert_float_eq_tol(y[1], (float)(-1.0 * s), 1e-6f);
  ck_assert_float_eq_tol(y[3], (float)(1.5 * s + 1.0), 1e-6f);
  /* the gradient of sum(y) w.r.t. x is 0 without gamma (normalisation removes the mean) */
  float dy[4] = {1, 1, 1, 1}, dx[4] = {0}, dg[4] = {0}, db[4] = {0};
  strop__layernorm_backward(x, dy, 1, 4, NULL, &mean, &rstd, dx, dg, db);
  for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(dx[i], 0.0f, 1e-6f);
  ck_assert_float_eq_tol(dg[0], (float)(-1.5 * s), 1e-6f);
  ck_assert(db[2] == 1.0f);
}
END_TEST

/* Straightforward attention in double, as the reference for the kernel. */
static void naive_attention(int64_t n, int64_t t, int64_t d, int64_t h, const float *x,
                            const float *const w[8], int causal, const float *pad, double *y) {
  int64_t hd = d / h;
  double *q = calloc((size_t)(n * t * d), sizeof *q), *k = calloc((size_t)(n * t * d), sizeof *k);
  double *v = calloc((size_t)(n * t * d), sizeof *v), *c = calloc((size_t)(n * t * d), sizeof *c);
  double *pr[3] = {q, k, v};
  for (int m = 0; m < 3; m++)
    for (int64_t r = 0; r < n * t; r++)
      for (int64_t o = 0; o < d; o++) {
        double s = w[2 * m + 1] ? w[2 * m + 1][o] : 0.0;
        for (int64_t i = 0; i < d; i++) s += (double)w[2 * m][o * d + i] * x[r * d + i];
        pr[m][r * d + o] = s;
      }
  double sc[64];
  for (int64_t b = 0; b < n; b++)
    for (int64_t hh = 0; hh < h; hh++)
      for (int64_t i = 0; i < t; i++) {
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < t; j++) {
          int masked = (causal && j > i) || (pad && pad[b * t + j] == 0.0f);
          double s = 0.0;
          for (int64_t e = 0; e < hd; e++)
            s += q[(b * t + i) * d + hh * hd + e] * k[(b * t + j) * d + hh * hd + e];
          sc[j] = masked ? -INFINITY : s / sqrt((double)hd);
          if (sc[j] > mx) mx = sc[j];
        }
        for (int64_t j = 0; j < t; j++) sum += (sc[j] = exp(sc[j] - mx));
        for (int64_t e = 0; e < hd; e++) {
          double s = 0.0;
          for (int64_t j = 0; j < t; j++) s += sc[j] / sum * v[(b * t + j) * d + hh * hd + e];
          c[(b * t + i) * d + hh * hd + e] = s;
        }
      }
  for (int64_t r = 0; r < n * t; r++)
    for (int64_t o = 0; o < d; o++) {
      double s = w[7] ? w[7][o] : 0.0;
      for (int64_t i = 0; i < d; i++) s += (double)w[6][o * d + i] * c[r * d + i];
      y[r * d + o] = s;
    }
  free(q);
  free(k);
  free(v);
  free(c);
}

START_TEST(kernel_attention) {
  enum { N = 2, T = 5, D = 6, H = 3 };
  strop__rng g;
  strop__rng_seed(&g, 5, 1);
  float x[N * T * D], wbuf[8][D * D], y[N * T * D];
  const float *w[8];
  for (int i = 0; i < N * T * D; i++) x[i] = strop__rng_normal(&g);
  for (int m = 0; m < 8; m++) {
    for (int i = 0; i < D * D; i++) wbuf[m][i] = 0.4f * strop__rng_normal(&g);
    w[m] = wbuf[m];
  }
  const float pad[N * T] = {1, 1, 1, 0, 0, 1, 1, 1, 1, 1};
  float q[N * T * D], k[N * T * D], v[N * T * D], ctx[N * T * D], p[N * H * T * T];
  float scratch[T * T];
  double ref[N * T * D];
  for (int variant = 0; variant < 4; variant++) {
    int causal = variant & 1;
    const float *mask = variant & 2 ? pad : NULL;
    strop__mha_dims dm = {.n = N,
                          .t = T,
                          .d = D,
                          .heads = H,
                          .causal = causal,
                          .pad_mask = mask,
                          .chunks = variant & 1 ? 2 : 1};
    strop__mha_weights mw = {w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
    strop__mha_cache c = {q, k, v, ctx, p, 0};
    strop__attention_forward(&dm, x, &mw, &c, scratch, y);
    naive_attention(N, T, D, H, x, w, causal, mask, ref);
    for (int i = 0; i < N * T * D; i++)
      ck_assert_msg(fabs(y[i] - ref[i]) <= 1e-5 * fmax(1.0, fabs(ref[i])),
                    "variant %d: y[%d] %.8g vs %.8g", variant, i, (double)y[i], ref[i]);
    /* rows of the weights sum to one and are zero where masked */
    for (int r = 0; r < N * H * T; r++) {
      double s = 0.0;
      for (int j = 0; j < T; j++) s += p[r * T + j];
      ck_assert(fabs(s - 1.0) < 1e-5);
      int b = r / (H * T), i = r % T;
      for (int j = 0; j < T; j++)
        if ((causal && j > i) || (mask && mask[b * T + j] == 0.0f))
          ck_assert(p[r * T + j] == 0.0f);
    }
  }
  /* every key padded: zero weights, output = the output bias (no NaN) */
  const float none[N * T] = {0};
  strop__mha_dims dm = {.n = N, .t = T, .d = D, .heads = H, .pad_mask = none, .chunks = 1};
  strop__mha_weights mw = {w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
  strop__mha_cache c = {q, k, v, ctx, p, 0};
  strop__attention_forward(&dm, x, &mw, &c, scratch, y);
  for (int i = 0; i < N * T * D; i++) ck_assert_float_eq_tol(y[i], w[7][i % D], 1e-6f);
  ck_assert_uint_eq(strop__attention_backward_scratch(&dm), 4 * N * T * D + 2 * T * T);
}
END_TEST

/* ------------------------------------------------------------------ forward references */

START_TEST(forward_embedding) {
  const int64_t shape[1] = {4};
  strop_model *m = build1(1, shape, "tok", "embedding",
                          "num_embeddings=5 embedding_dim=3 "
                          "padding_idx=-1");
  strop__param *w = param(m, "tok.weight");
  ck_assert_int_eq(w->dims[0], 5);
  ck_assert_int_eq(w->dims[1], 3);
  /* padding_idx -1 is row 4: initialised to zeros, the rest N(0, 1) */
  for (int j = 0; j < 3; j++) ck_assert(w->data[12 + j] == 0.0f);
  ck_assert(w->data[0] != 0.0f);
  for (int i = 0; i < 15; i++) w->data[i] = (float)(10 * (i / 3) + i % 3);
  const float ids[8] = {0, 4, 2, 2, 1, 3, 0, 4};
  size_t k;
  float *y = fwd(m, ids, 2, 0, NULL, &k);
  ck_assert_uint_eq(k, 2 * 4 * 3);
  for (int t = 0; t < 8; t++)
    for (int j = 0; j < 3; j++) ck_assert(y[t * 3 + j] == (float)(10 * ids[t] + j));
  free(y);
  strop_model_free(m);
}
END_TEST

START_TEST(forward_positional) {
  const int64_t shape[2] = {3, 2};
  strop_model *m = build1(2, shape, "pos", "positional_embedding", "num_embeddings=5");
  strop__param *w = param(m, "pos.weight");
  ck_assert_int_eq(w->dims[0], 5);
  ck_assert_int_eq(w->dims[1], 2);
  for (int i = 0; i < 10; i++) w->data[i] = (float)(100 * i);
  float x[12];
  for (int i = 0; i < 12; i++) x[i] = (float)i;
  float *y = fwd(m, x, 2, 0, NULL, NULL);
  for (int i = 0; i < 12; i++) ck_assert(y[i] == (float)i + (float)(100 * (i % 6)));
  free(y);
  strop_model_free(m);
}
END_TEST

START_TEST(forward_layernorm) {
  const int64_t shape[2] = {2, 4};
  strop_model *m = build1(2, shape, "ln", "layernorm", "normalized_shape=4 eps=0");
  float x[8] = {1, 2, 3, 4, -2, 0, 0, 2};
  float *y = fwd(m, x, 1, 0, NULL, NULL);
  double s1 = 1.0 / sqrt(1.25), s2 = 1.0 / sqrt(2.0);
  const float want[8] = {(float)(-1.5 * s1),
                         (float)(-0.5 * s1),
                         (float)(0.5 * s1),
                         (float)(1.5 * s1),
                         (float)(-2 * s2),
                         0.0f,
                         0.0f,
                         (float)(2 * s2)};
  expect_close(y, want, 8, 1e-6, "layernorm");
  free(y);
  /* weight and bias: ones and zeros */
  strop__param *w = param(m, "ln.weight"), *b = param(m, "ln.bias");
  for (int i = 0; i < 4; i++) ck_assert(w->data[i] == 1.0f && b->data[i] == 0.0f);
  strop_model_free(m);
  /* normalized_shape omitted = the last dim; elementwise_affine=false declares no params */
  m = build1(2, shape, "ln", "layernorm", "elementwise_affine=false");
  ck_assert_int_eq(strop_model_num_tensors(m), 0);
  strop_model_free(m);
}
END_TEST

START_TEST(forward_attention_uniform) {
  /* q = k = 0 -> uniform weights over the allowed keys: the output is out_proj of the mean
   * of the values (causal: the running mean) */
  enum { T = 4, D = 4 };
  const int64_t shape[2] = {T, D};
  for (int causal = 0; causal < 2; causal++) {
    strop_model *m = build1(2, shape, "attn", "multihead_attention",
                            causal ? "num_heads=2 causal=true" : "num_heads=2");
    ck_assert_int_eq(strop_model_num_tensors(m), 8);
    float *wq = param(m, "attn.q_proj.weight")->data, *wk = param(m, "attn.k_proj.weight")->data;
    float *wv = param(m, "attn.v_proj.weight")->data,
          *wo = param(m, "attn.out_proj.weight")->data;
    float *bv = param(m, "attn.v_proj.bias")->data, *bo = param(m, "attn.out_proj.bias")->data;
    /* PyTorch init: biases zero */
    for (int i = 0; i < D; i++) ck_assert(bv[i] == 0.0f && bo[i] == 0.0f);
    for (int i = 0; i < D * D; i++) {
      wq[i] = wk[i] = 0.0f;
      wv[i] = wo[i] = (i % (D + 1) == 0) ? 1.0f : 0.0f; /* identity */
    }
    for (int i = 0; i < D; i++) bo[i] = 0.5f;
    float x[T * D];
    for (int i = 0; i < T * D; i++) x[i] = (float)(i * i % 7);
    float *y = fwd(m, x, 1, 0, NULL, NULL);
    for (int i = 0; i < T; i++)
      for (int j = 0; j < D; j++) {
        int lim = causal ? i + 1 : T;
        double s = 0.0;
        for (int u = 0; u < lim; u++) s += x[u * D + j];
        ck_assert_float_eq_tol(y[i * D + j], (float)(s / lim + 0.5), 1e-5f);
      }
    free(y);
    strop_model_free(m);
  }
}
END_TEST

START_TEST(forward_mean_pool) {
  const int64_t shape[2] = {3, 2};
  strop_model *m = build1(2, shape, "pool", "mean_pool", NULL);
  int64_t od[4];
  ck_assert_int_eq(strop_model_output_shape(m, od, 4), 1);
  ck_assert_int_eq(od[0], 2);
  const float x[12] = {1, 2, 3, 4, 5, 6, 0, 0, 3, 3, 9, -3};
  float *y = fwd(m, x, 2, 0, NULL, NULL);
  const float want[4] = {3, 4, 4, 0};
  expect_close(y, want, 4, 1e-7, "mean_pool");
  free(y);
  /* with a mask: sample 0 keeps t = 0, 2; sample 1 nothing (zeros, not NaN) */
  const float mask[6] = {1, 0, 1, 0, 0, 0};
  y = fwd(m, x, 2, 0, mask, NULL);
  const float want2[4] = {3, 4, 0, 0};
  expect_close(y, want2, 4, 1e-7, "mean_pool masked");
  free(y);
  strop_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------ gradcheck */

/* Finite differences in float32 with eps 1e-3: tolerance 2e-2 relative (harness default),
 * 3e-2 through attention's softmax and the transformer's depth. */
START_TEST(gradcheck_embedding) {
  const int64_t shape[1] = {5};
  strop_model *m = build1(1, shape, "tok", "embedding",
                          "num_embeddings=7 embedding_dim=4 "
                          "padding_idx=2");
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.int_inputs = 1;
  o.int_max = 7;
  o.max_per_tensor = 28;
  strop_test_gradcheck(m, 3, 11, &o);
  strop_model_free(m);
}
END_TEST

START_TEST(gradcheck_positional) {
  const int64_t shape[2] = {3, 4};
  strop_model *m = build1(2, shape, "pos", "positional_embedding", "num_embeddings=6");
  strop_test_gradcheck(m, 2, 12, NULL);
  strop_model_free(m);
}
END_TEST

START_TEST(gradcheck_layernorm) {
  const int64_t shape[3] = {2, 3, 4};
  node_spec s[2] = {{"ln", "layernorm", "normalized_shape=[3, 4] eps=1e-5", NULL},
                    {"ln1", "layernorm", "normalized_shape=4 bias=false", NULL}};
  strop_model *m = build(3, shape, s, 2, 3);
  /* non-trivial affine values */
  strop__param *w = param(m, "ln.weight"), *b = param(m, "ln.bias");
  for (size_t i = 0; i < w->numel; i++) {
    w->data[i] = 0.5f + 0.1f * (float)i;
    b->data[i] = 0.05f * (float)i;
  }
  ck_assert_ptr_null(strop__model_param_find(m, "ln1.bias"));
  strop_test_gradcheck(m, 2, 13, NULL);
  strop_model_free(m);
}
END_TEST

START_TEST(gradcheck_rmsnorm) {
  const int64_t shape[3] = {2, 3, 4};
  node_spec s[2] = {{"rn", "rmsnorm", "normalized_shape=[3, 4] eps=1e-5", NULL},
                    {"rn1", "rmsnorm", "elementwise_affine=false", NULL}};
  strop_model *m = build(3, shape, s, 2, 3);
  strop__param *w = param(m, "rn.weight");
  for (size_t i = 0; i < w->numel; i++) w->data[i] = 0.5f + 0.1f * (float)i;
  ck_assert_ptr_null(strop__model_param_find(m, "rn1.weight"));
  strop_test_gradcheck(m, 2, 15, NULL);
  strop_model_free(m);
}
END_TEST

/* y = x / rms(x) by hand: x = [3, 4] has mean square 12.5 */
START_TEST(kernel_rmsnorm) {
  const float x[2] = {3, 4}, g[2] = {2, -1};
  float y[2], rstd, dx[2] = {0, 0}, dg[2] = {0, 0};
  strop__rmsnorm_forward(x, 1, 2, g, 0.0f, y, &rstd);
  const float r = 1.0f / sqrtf(12.5f);
  ck_assert_float_eq_tol(rstd, r, 1e-7f);
  ck_assert_float_eq_tol(y[0], 3 * r * 2, 1e-6f);
  ck_assert_float_eq_tol(y[1], -4 * r, 1e-6f);
  const float dy[2] = {1, 1};
  strop__rmsnorm_backward(x, dy, 1, 2, g, &rstd, dx, dg, NULL);
  /* g = dy * gamma = [2, -1]; mean(g x) = (6 - 4) / 2 = 1; dx = r (g - x r^2) */
  ck_assert_float_eq_tol(dx[0], r * (2 - 3 * r * r), 1e-6f);
  ck_assert_float_eq_tol(dx[1], r * (-1 - 4 * r * r), 1e-6f);
  ck_assert_float_eq_tol(dg[0], 3 * r, 1e-6f);
  ck_assert_float_eq_tol(dg[1], 4 * r, 1e-6f);
}
END_TEST

/* The layer norm as it was written one row at a time (its sums in double, in column order):
 * the reference whose bits the kernel keeps whatever rows it runs side by side. */
static void ln_ref(const float *x, int64_t rows, int64_t d, const float *gamma, const float *beta,
                   float eps, float *y, float *mean, float *rstd, const float *dy, float *dx,
                   float *dgamma, float *dbeta) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * d;
    double s = 0.0, v = 0.0;
    for (int64_t j = 0; j < d; j++) s += xr[j];
    const double mu = s / (double)d;
    for (int64_t j = 0; j < d; j++) {
      const double t = (double)xr[j] - mu;
      v += t * t;
    }
    const float m = (float)mu, rs = (float)(1.0 / sqrt(v / (double)d + (double)eps));
    mean[r] = m;
    rstd[r] = rs;
    for (int64_t j = 0; j < d; j++)
      y[r * d + j] = gamma && beta ? (xr[j] - m) * rs * gamma[j] + beta[j]
                     : gamma       ? (xr[j] - m) * rs * gamma[j]
                                   : (xr[j] - m) * rs + (beta ? beta[j] : 0.0f);
  }
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * d, *dyr = dy + r * d;
    for (int64_t j = 0; j < d; j++) {
      dgamma[j] += dyr[j] * (xr[j] - mean[r]) * rstd[r];
      dbeta[j] += dyr[j];
    }
  }
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * d, *dyr = dy + r * d;
    const float m = mean[r], rs = rstd[r];
    double sg = 0.0, sgx = 0.0;
    for (int64_t j = 0; j < d; j++) {
      const double g = (double)dyr[j] * (gamma ? (double)gamma[j] : 1.0);
      sg += g;
      sgx += g * ((double)xr[j] - (double)m) * (double)rs;
    }
    const float a = (float)(sg / (double)d), b = (float)(sgx / (double)d);
    for (int64_t j = 0; j < d; j++) {
      const float g = dyr[j] * (gamma ? gamma[j] : 1.0f), xh = (xr[j] - m) * rs;
      dx[r * d + j] += rs * (g - a - xh * b);
    }
  }
}

/* Rows whose statistics run side by side (strop__rows_together 1 and 8, 1 and 2 threads, rows
 * that leave a partial group, an odd width, each affine form): the one-row reference's bits. */
START_TEST(kernel_layernorm_rows) {
  static const int64_t widths[] = {768, 77, 1};
  const int64_t rows = 29;
  const int threads = strop_get_num_threads(), keep = strop__rows_together;
  for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
    for (int affine = 0; affine < 3; affine++) {
      const int64_t d = widths[wi], nx = rows * d;
      float *x = malloc(sizeof(float) * (size_t)nx), *dy = malloc(sizeof(float) * (size_t)nx);
      float *g = malloc(sizeof(float) * (size_t)d), *b = malloc(sizeof(float) * (size_t)d);
      float *y[2], *st[2], *dx[2], *dg[2], *db[2];
      for (int64_t i = 0; i < nx; i++) {
        x[i] = 3.0f * sinf(0.37f * (float)i) + (i % 13 == 0 ? 40.0f : 0.0f) + 1e-3f * (float)i;
        dy[i] = cosf(0.19f * (float)i) * (i % 7 == 0 ? 1e3f : 1.0f);
      }
      for (int64_t j = 0; j < d; j++) g[j] = 0.5f + 0.01f * (float)(j % 97), b[j] = 0.1f * j;
      const float *gm = affine >= 1 ? g : NULL, *bm = affine == 2 ? b : NULL;
      for (int k = 0; k < 2; k++) {
        y[k] = malloc(sizeof(float) * (size_t)nx);
        dx[k] = malloc(sizeof(float) * (size_t)nx);
        st[k] = malloc(sizeof(float) * 2 * (size_t)rows);
        dg[k] = malloc(sizeof(float) * (size_t)d);
        db[k] = malloc(sizeof(float) * (size_t)d);
      }
      for (int64_t i = 0; i < nx; i++) dx[0][i] = 0.25f;
      for (int64_t j = 0; j < d; j++) dg[0][j] = -0.5f, db[0][j] = 0.75f;
      ln_ref(x, rows, d, gm, bm, 1e-5f, y[0], st[0], st[0] + rows, dy, dx[0], dg[0], db[0]);
      for (int v = 0; v < 4; v++) {
        strop__rows_together = v & 1 ? 1 : keep;
        must(strop_set_num_threads(v < 2 ? 1 : 2), "threads");
        for (int64_t i = 0; i < nx; i++) dx[1][i] = 0.25f;
        for (int64_t j = 0; j < d; j++) dg[1][j] = -0.5f, db[1][j] = 0.75f;
        strop__layernorm_forward(x, rows, d, gm, bm, 1e-5f, y[1], st[1], st[1] + rows);
        strop__layernorm_backward(x, dy, rows, d, gm, st[1], st[1] + rows, dx[1], dg[1], db[1]);
        ck_assert_msg(!memcmp(y[0], y[1], sizeof(float) * (size_t)nx) &&
                          !memcmp(st[0], st[1], sizeof(float) * 2 * (size_t)rows),
                      "d %lld affine %d variant %d: forward bits differ", (long long)d, affine,
                      v);
        ck_assert_msg(!memcmp(dx[0], dx[1], sizeof(float) * (size_t)nx) &&
                          !memcmp(dg[0], dg[1], sizeof(float) * (size_t)d) &&
                          !memcmp(db[0], db[1], sizeof(float) * (size_t)d),
                      "d %lld affine %d variant %d: backward bits differ", (long long)d, affine,
                      v);
      }
      strop__rows_together = keep;
      must(strop_set_num_threads(threads), "threads");
      for (int k = 0; k < 2; k++) free(y[k]), free(dx[k]), free(st[k]), free(dg[k]), free(db[k]);
      free(x), free(dy), free(g), free(b);
    }
}
END_TEST

/* The one-pass kernel on rows of Llama's width and of odd widths (lane tails), with and
 * without a weight, against float64; one thread and two (the rows' slices, each with its own
 * share of dgamma, shared by the threads) give the same bits; dgamma and dx are added to what
 * they held. */
START_TEST(kernel_rmsnorm_rows) {
  static const int64_t widths[] = {2048, 2053, 7};
  const int64_t rows = 37;
  const int threads = strop_get_num_threads();
  for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
    for (int affine = 0; affine < 2; affine++) {
      const int64_t d = widths[wi], nx = rows * d;
      float *x = malloc(sizeof(float) * (size_t)nx), *dy = malloc(sizeof(float) * (size_t)nx);
      float *g = malloc(sizeof(float) * (size_t)d);
      for (int64_t i = 0; i < nx; i++) {
        x[i] = 2.0f * sinf(0.37f * (float)i) + (i % 11 == 0 ? 5.0f : 0.0f);
        dy[i] = cosf(0.19f * (float)i);
      }
      for (int64_t j = 0; j < d; j++) g[j] = 0.5f + 0.01f * (float)(j % 97);
      const float *gm = affine ? g : NULL;
      float *y[2], *rs[2], *dx[2], *dg[2];
      for (int th = 0; th < 2; th++) {
        must(strop_set_num_threads(th + 1), "threads");
        y[th] = malloc(sizeof(float) * (size_t)nx);
        rs[th] = malloc(sizeof(float) * (size_t)rows);
        dx[th] = malloc(sizeof(float) * (size_t)nx);
        dg[th] = malloc(sizeof(float) * (size_t)d);
        for (int64_t i = 0; i < nx; i++) dx[th][i] = 0.25f;
        for (int64_t j = 0; j < d; j++) dg[th][j] = -0.5f;
        float *part = malloc(sizeof(float) * (strop__rmsnorm_backward_scratch(rows, d) + 1));
        strop__rmsnorm_forward(x, rows, d, gm, 1e-5f, y[th], rs[th]);
        strop__rmsnorm_backward(x, dy, rows, d, gm, rs[th], dx[th], dg[th], part);
        free(part);
      }
      must(strop_set_num_threads(threads), "threads");
      double *wdg = calloc((size_t)d, sizeof(double));
      for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d, *dr = dy + r * d;
        double ss = 0, sgx = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)xr[j] * xr[j];
        const double rstd = 1.0 / sqrt(ss / (double)d + 1e-5);
        ck_assert_msg(fabs(rs[0][r] - rstd) <= 1e-7 * rstd, "d %lld row %lld: rstd %.9g vs %.9g",
                      (long long)d, (long long)r, (double)rs[0][r], rstd);
        for (int64_t j = 0; j < d; j++) sgx += (double)dr[j] * (gm ? gm[j] : 1.0) * xr[j];
        for (int64_t j = 0; j < d; j++) {
          const double gw = gm ? gm[j] : 1.0, want = xr[j] * rstd * gw;
          const double wdx = 0.25 + rstd * (dr[j] * gw - xr[j] * rstd * rstd * sgx / (double)d);
          wdg[j] += dr[j] * xr[j] * rstd;
          ck_assert_msg(fabs(y[0][r * d + j] - want) <= 1e-6 * (1 + fabs(want)),
                        "d %lld y[%lld, %lld] %.9g vs %.9g", (long long)d, (long long)r,
                        (long long)j, (double)y[0][r * d + j], want);
          ck_assert_msg(fabs(dx[0][r * d + j] - wdx) <= 1e-6 * (1 + fabs(wdx)),
                        "d %lld dx[%lld, %lld] %.9g vs %.9g", (long long)d, (long long)r,
                        (long long)j, (double)dx[0][r * d + j], wdx);
        }
      }
      ck_assert(memcmp(y[0], y[1], sizeof(float) * (size_t)nx) == 0);
      ck_assert(memcmp(rs[0], rs[1], sizeof(float) * (size_t)rows) == 0);
      ck_assert(memcmp(dx[0], dx[1], sizeof(float) * (size_t)nx) == 0);
      ck_assert(memcmp(dg[0], dg[1], sizeof(float) * (size_t)d) == 0);
      for (int64_t j = 0; j < d; j++)
        ck_assert_msg(fabs(dg[0][j] - (wdg[j] - 0.5)) <= 2e-6 * (1 + fabs(wdg[j])),
                      "d %lld dgamma[%lld] %.9g vs %.9g", (long long)d, (long long)j,
                      (double)dg[0][j], wdg[j] - 0.5);
      for (int th = 0; th < 2; th++) free(y[th]), free(rs[th]), free(dx[th]), free(dg[th]);
      free(wdg), free(x), free(dy), free(g);
    }
}
END_TEST

START_TEST(gradcheck_attention) {
  const int64_t shape[2] = {4, 6};
  const char *variants[] = {"num_heads=2", "num_heads=3 causal=true bias=false",
                            "embed_dim=6 num_heads=2 dropout=0.3 causal=true"};
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.tol = 3e-2;
  o.max_per_tensor = 16;
  o.input_scale = 1.5f;
  for (int v = 0; v < 3; v++) {
    strop_model *m = build1(2, shape, "attn", "multihead_attention", variants[v]);
    /* biases start at zero: give them values so their gradients are exercised */
    for (int i = 0; i < strop__model_node_find(m, "attn") + 1; i++) {
      strop__node *nd = &m->nodes[i];
      for (int j = 0; j < nd->n_params; j++)
        if (strstr(nd->params[j].name, "bias"))
          for (size_t e = 0; e < nd->params[j].numel; e++)
            nd->params[j].data[e] = 0.1f * (float)((e * 7) % 5) - 0.2f;
    }
    strop_test_gradcheck(m, 2, 14 + (uint64_t)v, &o);
    strop_model_free(m);
  }
}
END_TEST

START_TEST(gradcheck_mean_pool) {
  const int64_t shape[3] = {3, 2, 2};
  strop_model *m = build1(3, shape, "pool", "mean_pool", NULL);
  int64_t od[4];
  ck_assert_int_eq(strop_model_output_shape(m, od, 4), 2);
  strop_test_gradcheck(m, 2, 15, NULL);
  strop_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------ parity */

/* 1e-5 relative where strop and torch add in the same order (gathers, elementwise sums);
 * 1e-4 where summation order differs (layernorm's statistics in double vs torch's float,
 * GEMMs of attention and the transformer). */
START_TEST(parity_embedding) {
  const int64_t shape[1] = {5};
  strop_model *m = build1(1, shape, "emb", "embedding",
                          "num_embeddings=11 embedding_dim=6 padding_idx=3");
  strop_test_parity(m, FIX("seq_embedding"), 1e-5);
  strop_model_free(m);
}
END_TEST

START_TEST(parity_positional) {
  const int64_t shape[2] = {5, 6};
  strop_model *m = build1(2, shape, "pos", "positional_embedding", "num_embeddings=8");
  strop_test_parity(m, FIX("seq_posemb"), 1e-5);
  strop_model_free(m);
}
END_TEST

/* Hugging Face's LlamaRMSNorm (tests/fixtures/gen_seq.py) */
START_TEST(parity_rmsnorm) {
  const int64_t s1[2] = {4, 6};
  strop_model *m = build1(2, s1, "rn", "rmsnorm", "eps=1e-5");
  strop_test_parity(m, FIX("seq_rmsnorm"), 1e-4);
  strop_model_free(m);
}
END_TEST

START_TEST(parity_layernorm) {
  const int64_t s1[2] = {4, 6}, s2[3] = {3, 4, 5}, s3[1] = {7};
  strop_model *m = build1(2, s1, "ln", "layernorm", "normalized_shape=6");
  strop_test_parity(m, FIX("seq_layernorm"), 1e-4);
  strop_model_free(m);
  m = build1(3, s2, "ln", "layernorm", "normalized_shape=[4,5] eps=1e-3");
  strop_test_parity(m, FIX("seq_layernorm2d"), 1e-4);
  strop_model_free(m);
  m = build1(1, s3, "ln", "layernorm", "normalized_shape=7 elementwise_affine=false");
  strop_test_parity(m, FIX("seq_layernorm_noaffine"), 1e-4);
  strop_model_free(m);
}
END_TEST

/* The fixtures carry no grad of the key bias (its gradient is 0, torch's is noise). */
static void expect_zero_grad(strop_model *m, const char *name) {
  strop__param *p = param(m, name);
  ck_assert_ptr_nonnull(p->grad);
  for (size_t e = 0; e < p->numel; e++) ck_assert(p->grad[e] == 0.0f);
}

START_TEST(parity_attention) {
  const int64_t s1[2] = {5, 8}, s2[2] = {6, 12}, s3[2] = {4, 8};
  strop_model *m = build1(2, s1, "attn", "multihead_attention", "embed_dim=8 num_heads=2");
  strop_test_parity(m, FIX("seq_mha"), 1e-4);
  expect_zero_grad(m, "attn.k_proj.bias");
  strop_model_free(m);
  m = build1(2, s2, "attn", "multihead_attention", "num_heads=3 causal=true");
  strop_test_parity(m, FIX("seq_mha_causal"), 1e-4);
  expect_zero_grad(m, "attn.k_proj.bias");
  strop_model_free(m);
  m = build1(2, s3, "attn", "multihead_attention", "num_heads=4 bias=false");
  strop_test_parity(m, FIX("seq_mha_nobias"), 1e-4);
  strop_model_free(m);
}
END_TEST

START_TEST(parity_mean_pool) {
  const int64_t shape[2] = {4, 5};
  strop_model *m = build1(2, shape, "pool", "mean_pool", NULL);
  strop_test_parity(m, FIX("seq_mean_pool"), 1e-5);
  strop_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------ padding masks */

/* Parity through the internal API, for what strop_test_parity does not cover: a "pad_mask"
 * in the fixture (passed to forward), and `normwise` gradient comparison. Loads the
 * parameters, runs forward in train mode, backward with dout, and compares the output
 * elementwise (out_tol, floor 1e-4) and the gradients (tol) either elementwise or, with normwise, as
 * max |strop - torch| / max |torch| per tensor. Returns the worst error seen. */
static double parity_fixture(strop_model *m, const char *rel, double out_tol, double tol,
                             int normwise) {
  fixture_st f;
  fx_open(&f, rel);
  size_t nin = 0, nout = 0, nmask = 0, k = 0;
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    float *v = fx_tensor(&f, p->name, &k, NULL);
    ck_assert_msg(v && k == p->numel, "%s: %s", rel, p->name);
    memcpy(p->data, v, k * sizeof(float));
    free(v);
  }
  float *in = fx_tensor(&f, "input", &nin, NULL), *out = fx_tensor(&f, "output", &nout, NULL);
  float *dout = fx_tensor(&f, "dout", NULL, NULL), *gin = fx_tensor(&f, "grad.input", &k, NULL);
  float *mask = fx_tensor(&f, "pad_mask", &nmask, NULL);
  ck_assert(in && out && dout);
  int64_t batch = (int64_t)(nin / strop__shape_numel(&m->in_shape));
  m->want_input_grad = gin != NULL;
  must(strop__model_zero_grad(m), "zero_grad");
  const strop__act *o;
  must(strop__model_forward_exec(m, in, batch, 1, &(strop__side){mask, NULL}, &o), "forward");
  size_t at = 0;
  double worst = strop_test_max_rel(o->data, out, nout, 1e-4, &at);
  ck_assert_msg(worst <= out_tol, "%s: output[%zu] %.8g vs torch %.8g (rel %.3g > %.3g)", rel, at,
                (double)o->data[at], (double)out[at], worst, out_tol);
  must(strop__model_backward(m, dout), "backward");
  for (int i = -1; i < m->n_params; i++) {
    strop__param *p = i >= 0 ? m->params[i] : NULL;
    char key[300];
    snprintf(key, sizeof key, "grad.%s", p ? p->name : "input");
    float *g = p ? fx_tensor(&f, key, &k, NULL) : gin;
    const float *mine = p ? p->grad : m->input_grad;
    size_t cnt = p ? p->numel : nin;
    if (!g && p && strstr(p->name, "k_proj.bias")) { /* exactly zero: see gen_seq.py */
      for (size_t e = 0; e < p->numel; e++) ck_assert(p->grad[e] == 0.0f);
      continue;
    }
    if (!g && !p) continue; /* token ids: no input gradient */
    ck_assert_msg(g != NULL, "%s: no %s", rel, key);
    double err;
    if (normwise) {
      double num = 0.0, den = 0.0;
      for (size_t e = 0; e < cnt; e++) {
        double d = fabs((double)mine[e] - (double)g[e]);
        if (!(d <= num)) num = d, at = e;
        den = fmax(den, fabs((double)g[e]));
      }
      err = num / fmax(den, 1e-30);
    } else {
      err = strop_test_max_rel(mine, g, cnt, 1e-4, &at);
    }
    ck_assert_msg(err <= tol, "%s: %s[%zu] %.8g vs torch %.8g (%s error %.3g > %.3g)", rel, key,
                  at, (double)mine[at], (double)g[at], normwise ? "normwise" : "relative", err,
                  tol);
    worst = fmax(worst, err);
    if (p) free(g);
  }
  strop__model_step_end(m);
  m->want_input_grad = 0;
  free(in);
  free(out);
  free(dout);
  free(gin);
  free(mask);
  fx_close(&f);
  return worst;
}

/* Attention gradients normwise to 1e-5 (see transformer_parity), outputs 1e-4 elementwise;
 * mean_pool elementwise to 1e-5. */
START_TEST(padmask_parity) {
  const int64_t s1[2] = {5, 8}, s2[2] = {4, 5};
  strop_model *m = build1(2, s1, "attn", "multihead_attention", "num_heads=2");
  parity_fixture(m, "layers/seq_mha_padmask.safetensors", 1e-4, 1e-5, 1);
  strop_model_free(m);
  m = build1(2, s1, "attn", "multihead_attention", "num_heads=2 causal=true");
  parity_fixture(m, "layers/seq_mha_causal_padmask.safetensors", 1e-4, 1e-5, 1);
  strop_model_free(m);
  m = build1(2, s2, "pool", "mean_pool", NULL);
  parity_fixture(m, "layers/seq_mean_pool_padmask.safetensors", 1e-5, 1e-5, 0);
  strop_model_free(m);
}
END_TEST

START_TEST(padmask_invariance) {
  /* attention -> mean_pool with a mask: whatever sits at padded positions changes nothing */
  const int64_t shape[2] = {5, 4};
  node_spec s[2] = {{"attn", "multihead_attention", "num_heads=2", NULL},
                    {"pool", "mean_pool", NULL, NULL}};
  strop_model *m = build(2, shape, s, 2, 9);
  float x[2 * 5 * 4];
  for (int i = 0; i < 40; i++) x[i] = sinf((float)i);
  const float mask[10] = {1, 1, 0, 1, 0, 1, 1, 1, 1, 1};
  float *y0 = fwd(m, x, 2, 1, mask, NULL);
  for (int j = 0; j < 4; j++) {
    x[2 * 4 + j] = 100.0f; /* sample 0, t = 2 */
    x[4 * 4 + j] = -50.0f; /* sample 0, t = 4 */
  }
  float *y1 = fwd(m, x, 2, 1, mask, NULL);
  expect_close(y1, y0, 8, 1e-5, "padded positions");
  free(y0);
  free(y1);
  strop_model_free(m);
}
END_TEST

START_TEST(nan_propagates) {
  const int64_t shape[2] = {3, 4};
  node_spec s[3] = {{"ln", "layernorm", NULL, NULL},
                    {"attn", "multihead_attention", "num_heads=2", NULL},
                    {"pool", "mean_pool", NULL, NULL}};
  strop_model *m = build(2, shape, s, 3, 9);
  float x[12] = {0};
  x[5] = NAN;
  float *y = fwd(m, x, 1, 0, NULL, NULL);
  ck_assert(isnan(y[0]));
  free(y);
  strop_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------ transformer */

/* embedding -> positional_embedding -> 2 x [layernorm -> multihead_attention -> dropout ->
 * add(residual) -> layernorm -> linear -> gelu -> linear -> dropout -> add(residual)] ->
 * layernorm -> mean_pool -> linear head. Names match gen_seq.py's Classifier. */
static strop_model *transformer(float drop, uint64_t seed) {
  enum { T = 6 };
  const int64_t shape[1] = {T};
  strop_model *m = NULL;
  char o_attn[64], o_drop[32], ins[96];
  snprintf(o_attn, sizeof o_attn, "num_heads=4 dropout=%g", (double)drop);
  snprintf(o_drop, sizeof o_drop, "p=%g", (double)drop);
  must(strop_model_create(1, shape, &m), "create");
  must(strop_model_add(m, "tok", "embedding", "num_embeddings=13 embedding_dim=16 padding_idx=0",
                       NULL),
       "tok");
  must(strop_model_add(m, "pos", "positional_embedding", "num_embeddings=8", NULL), "pos");
  const char *resid = "pos";
  char names[2][10][32];
  for (int b = 0; b < 2; b++) {
    const char *parts[10] = {"ln1", "attn", "drop1", "add1",  "ln2",
                             "fc1", "gelu", "fc2",   "drop2", "add2"};
    for (int i = 0; i < 10; i++) snprintf(names[b][i], 32, "blocks.%d.%s", b, parts[i]);
    must(strop_model_add(m, names[b][0], "layernorm", "normalized_shape=16", NULL), "ln1");
    must(strop_model_add(m, names[b][1], "multihead_attention", o_attn, NULL), "attn");
    must(strop_model_add(m, names[b][2], "dropout", o_drop, NULL), "drop1");
    snprintf(ins, sizeof ins, "%s,%s", resid, names[b][2]);
    must(strop_model_add(m, names[b][3], "add", NULL, ins), "add1");
    must(strop_model_add(m, names[b][4], "layernorm", NULL, NULL), "ln2");
    must(strop_model_add(m, names[b][5], "linear", "out_features=32", NULL), "fc1");
    must(strop_model_add(m, names[b][6], "gelu", NULL, NULL), "gelu");
    must(strop_model_add(m, names[b][7], "linear", "out_features=16", NULL), "fc2");
    must(strop_model_add(m, names[b][8], "dropout", o_drop, NULL), "drop2");
    snprintf(ins, sizeof ins, "%s,%s", names[b][3], names[b][8]);
    must(strop_model_add(m, names[b][9], "add", NULL, ins), "add2");
    resid = names[b][9];
  }
  must(strop_model_add(m, "ln_f", "layernorm", NULL, NULL), "ln_f");
  must(strop_model_add(m, "pool", "mean_pool", NULL, NULL), "pool");
  must(strop_model_add(m, "head", "linear", "out_features=3", NULL), "head");
  must(strop_model_finalize(m, seed), "finalize");
  return m;
}

/* End to end: the logits elementwise to 1e-4 relative; each gradient tensor to 1e-5 of its
 * largest magnitude (normwise). Elementwise relative checks are meaningless for the few
 * entries that are 1e-4 of their tensor's scale: gradients through softmax cancel, and float32
 * torch itself is 1.4e-4 away from a float64 torch there. */
START_TEST(transformer_parity) {
  strop_model *m = transformer(0.0f, 1);
  int64_t od[2];
  ck_assert_int_eq(strop_model_output_shape(m, od, 2), 1);
  ck_assert_int_eq(od[0], 3);
  /* tok, pos, 2 x (ln1 2 + attn 8 + ln2 2 + fc1 2 + fc2 2), ln_f 2, head 2 */
  ck_assert_int_eq(strop_model_num_tensors(m), 38);
  parity_fixture(m, "layers/seq_transformer.safetensors", 1e-4, 1e-5, 1);
  strop_model_free(m);
}
END_TEST

START_TEST(transformer_gradcheck) {
  strop_model *m = transformer(0.1f, 2);
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.int_inputs = 1;
  o.int_max = 13;
  o.max_per_tensor = 6;
  o.tol = 3e-2;
  strop_test_gradcheck(m, 2, 16, &o);
  strop_model_free(m);
}
END_TEST

START_TEST(transformer_warm_step_no_alloc) {
  /* after the first step, forward + backward of the seq layers (dropout on, pad mask set)
   * allocate nothing from the heap: all scratch comes from the step arena */
  strop_model *m = transformer(0.1f, 3);
  float ids[2 * 6] = {1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 9, 10};
  const float mask[2 * 6] = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1};
  float dout[2 * 3] = {1, -1, 0.5f, 0.25f, 2, -3};
  must(strop__model_zero_grad(m), "zero_grad");
  int64_t before = 0;
  for (int step = 0; step < 3; step++) {
    if (step == 2) before = strop__alloc_count();
    const strop__act *o;
    must(strop__model_forward_exec(m, ids, 2, 1, &(strop__side){mask, NULL}, &o), "forward");
    must(strop__model_backward(m, dout), "backward");
    strop__model_step_end(m);
  }
  ck_assert_int_eq(strop__alloc_count() - before, 0);
  strop_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------ errors */

START_TEST(errors_options) {
  const int64_t t1[1] = {4}, td[2] = {4, 6}, t3[3] = {2, 4, 6};
  expect_build_error(1, t1, "embedding", "embedding_dim=3", STROP_E_INVALID_ARG,
                     "num_embeddings");
  expect_build_error(1, t1, "embedding", "num_embeddings=0 embedding_dim=3", STROP_E_INVALID_ARG,
                     "num_embeddings");
  expect_build_error(1, t1, "embedding", "num_embeddings=5 embedding_dim=3 padding_idx=5",
                     STROP_E_INVALID_ARG, "padding_idx");
  expect_build_error(1, t1, "embedding", "num_embeddings=5 embedding_dim=3 padding_idx=-6",
                     STROP_E_INVALID_ARG, "padding_idx");
  expect_build_error(2, td, "positional_embedding", "num_embeddings=3", STROP_E_SHAPE,
                     "sequence length 4 exceeds num_embeddings 3");
  expect_build_error(2, td, "positional_embedding", "num_embeddings=8 embedding_dim=5",
                     STROP_E_SHAPE, "embedding_dim is 5");
  expect_build_error(1, t1, "positional_embedding", "num_embeddings=8", STROP_E_SHAPE, "[T, D]");
  expect_build_error(2, td, "positional_embedding", NULL, STROP_E_INVALID_ARG, "num_embeddings");
  expect_build_error(2, td, "layernorm", "normalized_shape=5", STROP_E_SHAPE,
                     "normalized_shape [5] does not match");
  expect_build_error(3, t3, "layernorm", "normalized_shape=[2,4,6,1]", STROP_E_SHAPE,
                     "does not match");
  expect_build_error(2, td, "layernorm", "eps=-1", STROP_E_INVALID_ARG, "eps");
  expect_build_error(2, td, "multihead_attention", "num_heads=0", STROP_E_INVALID_ARG,
                     "num_heads");
  expect_build_error(2, td, "multihead_attention", "num_heads=4", STROP_E_SHAPE,
                     "embed_dim 6 is not divisible by num_heads 4");
  expect_build_error(2, td, "multihead_attention", "embed_dim=8 num_heads=3", STROP_E_INVALID_ARG,
                     "not divisible");
  expect_build_error(2, td, "multihead_attention", "embed_dim=8 num_heads=2", STROP_E_SHAPE,
                     "embed_dim is 8");
  expect_build_error(2, td, "multihead_attention", NULL, STROP_E_INVALID_ARG, "num_heads");
  expect_build_error(2, td, "multihead_attention", "num_heads=2 dropout=1.5", STROP_E_INVALID_ARG,
                     "dropout");
  expect_build_error(3, t3, "multihead_attention", "num_heads=2", STROP_E_SHAPE,
                     "[T, embed_dim]");
  expect_build_error(1, t1, "mean_pool", NULL, STROP_E_SHAPE, "[T, D");
}
END_TEST

START_TEST(errors_token_ids) {
  const int64_t shape[1] = {3};
  strop_model *m = build1(1, shape, "tok", "embedding", "num_embeddings=5 embedding_dim=2");
  const float bad[3][6] = {{0, 1, 2, 3, 5, 0}, {0, -1, 2, 3, 4, 0}, {0, 1, 2.5f, 3, 4, 0}};
  const char *want[3] = {"token id 5 at sample 1, position 1",
                         "token id -1 at sample 0, position 1",
                         "token id 2.5 at sample 0, position 2"};
  for (int c = 0; c < 3; c++) {
    const strop__act *o;
    strop_status st = strop__model_forward_exec(m, bad[c], 2, 0, NULL, &o);
    ck_assert_int_eq(st, STROP_E_INVALID_ARG);
    ck_assert_msg(strstr(strop_last_error(), "'tok'") && strstr(strop_last_error(), want[c]),
                  "%s", strop_last_error());
  }
  /* NaN ids too, through the public forward */
  float nan_ids[3] = {0, NAN, 1};
  int64_t dims[2] = {1, 3};
  strop_tensor *in = NULL, *out = NULL;
  must(strop_tensor_from_data(nan_ids, 3, 2, dims, &in), "tensor");
  ck_assert_int_eq(strop_model_forward(m, in, &out), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(out);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "tok"));
  /* the model still works afterwards */
  float ok_ids[3] = {4, 0, 1};
  strop_tensor_free(in);
  must(strop_tensor_from_data(ok_ids, 3, 2, dims, &in), "tensor");
  must(strop_model_forward(m, in, &out), "forward after error");
  strop_tensor_free(in);
  strop_tensor_free(out);
  strop_model_free(m);
}
END_TEST

START_TEST(options_roundtrip) {
  /* write() emits every option, including inferred ones */
  const int64_t shape[2] = {4, 6};
  strop_model *m = build1(2, shape, "attn", "multihead_attention", "num_heads=3 causal=1");
  strop__opts b = {0};
  must(strop__node_write_opts(&m->nodes[0], &b), "write");
  int seen = 0;
  for (int i = 0; i < b.n; i++) {
    if (!strcmp(b.v[i].key, "embed_dim")) seen += !strcmp(b.v[i].val, "6");
    if (!strcmp(b.v[i].key, "num_heads")) seen += !strcmp(b.v[i].val, "3");
    if (!strcmp(b.v[i].key, "causal")) seen += !strcmp(b.v[i].val, "true");
  }
  ck_assert_int_eq(seen, 3);
  strop__opts_free(&b);
  strop_model_free(m);
  ck_assert_ptr_eq(strop__layer_find("mean_pool"), g_family[4]);
  for (size_t i = 0; i < sizeof g_family / sizeof g_family[0]; i++)
    ck_assert_ptr_eq(strop__layer_find(g_family[i]->type), g_family[i]);
}
END_TEST

/* positions=types: each token takes row offset + its type; no types: type 0 */
START_TEST(forward_positional_types) {
  const int64_t shape[2] = {3, 2};
  for (int offset = 0; offset < 2; offset++) {
    char opts[96];
    snprintf(opts, sizeof opts, "num_embeddings=4 positions=types offset=%d", offset);
    strop_model *m = build1(2, shape, "tt", "positional_embedding", opts);
    strop__param *w = param(m, "tt.weight");
    for (int i = 0; i < 8; i++) w->data[i] = (float)(100 * i);
    float x[12];
    for (int i = 0; i < 12; i++) x[i] = (float)i;
    const float types[6] = {0, 1, 2, 2, 0, 1};
    const strop__act *o;
    must(strop__model_forward_exec(m, x, 2, 0, &(strop__side){NULL, types}, &o), "types");
    for (int i = 0; i < 12; i++) {
      const int row = offset + (int)types[i / 2];
      ck_assert_msg(o->data[i] == (float)i + w->data[row * 2 + i % 2], "[%d] %g", i,
                    (double)o->data[i]);
    }
    strop__model_step_end(m);
    float *y = fwd(m, x, 2, 0, NULL, NULL); /* no types: every token takes row offset */
    for (int i = 0; i < 12; i++) ck_assert(y[i] == (float)i + w->data[offset * 2 + i % 2]);
    free(y);
    strop_model_free(m);
  }
}
END_TEST

START_TEST(gradcheck_positional_types) {
  const int64_t shape[2] = {5, 4};
  strop_model *m = build1(2, shape, "tt", "positional_embedding",
                          "num_embeddings=4 positions=types offset=1");
  const float types[3 * 5] = {0, 0, 1, 1, 2, 2, 1, 0, 0, 0, 1, 1, 1, 1, 1};
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.types = types;
  strop_test_gradcheck(m, 3, 12, &o);
  /* the rows the types use get gradients (row 0, below the offset, none): the backward's
   * scatter-add by type, summed over the tokens of each type */
  const strop__param *w = strop__model_param_find(m, "tt.weight");
  for (int j = 0; j < 4; j++) ck_assert(w->grad[j] == 0.0f);
  for (int r = 1; r < 4; r++) {
    double sum = 0;
    for (int j = 0; j < 4; j++) sum += fabs(w->grad[r * 4 + j]);
    ck_assert_msg(sum > 0, "row %d got no gradient", r);
  }
  strop_model_free(m);
}
END_TEST

/* a type past the table, a fraction, a negative: errors naming the layer, the value and where;
 * through the public forward also a shape error and a bad side size; the model still works */
START_TEST(errors_token_types) {
  const int64_t shape[2] = {3, 2};
  strop_model *m = build1(2, shape, "bert.tt", "positional_embedding",
                          "num_embeddings=2 positions=types");
  const float x[6] = {1, 2, 3, 4, 5, 6};
  const float bad[3][3] = {{0, 2, 1}, {0, 1, 0.5f}, {-1, 0, 0}};
  const char *want[3] = {"token type 2 at sample 0, position 1: row 2 is not in the table's 2",
                         "token type 0.5 at sample 0, position 2",
                         "token type -1 at sample 0, position 0"};
  const strop__param *w = strop__model_param_find(m, "bert.tt.weight");
  float before[4];
  memcpy(before, w->data, sizeof before);
  for (int c = 0; c < 3; c++) {
    const strop__act *o;
    strop_status st = strop__model_forward_exec(m, x, 1, 1, &(strop__side){NULL, bad[c]}, &o);
    ck_assert_int_eq(st, STROP_E_INVALID_ARG);
    ck_assert_msg(strstr(strop_last_error(), "'bert.tt'") && strstr(strop_last_error(), want[c]),
                  "%s", strop_last_error());
  }
  int64_t xd[3] = {1, 3, 2}, td[2] = {1, 3}, wrong[2] = {1, 2};
  strop_tensor *in = NULL, *tt = NULL, *tw = NULL, *out = NULL;
  must(strop_tensor_from_data(x, 6, 3, xd, &in), "in");
  must(strop_tensor_from_data(bad[0], 3, 2, td, &tt), "types");
  must(strop_tensor_from_data(bad[0], 2, 2, wrong, &tw), "types");
  strop_side_inputs side;
  strop_side_inputs_init(&side);
  side.token_types = tt;
  ck_assert_int_eq(strop_model_forward_ext(m, in, &side, &out), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(out);
  ck_assert(strstr(strop_last_error(), "strop_model_forward_ext") &&
            strstr(strop_last_error(), "'bert.tt'") && strstr(strop_last_error(), "type 2"));
  side.token_types = tw;
  ck_assert_int_eq(strop_model_forward_ext(m, in, &side, &out), STROP_E_SHAPE);
  ck_assert(strstr(strop_last_error(), "token types have shape [1, 2]"));
  side.size = 4;
  ck_assert_int_eq(strop_model_forward_ext(m, in, &side, &out), STROP_E_INVALID_ARG);
  ck_assert(strstr(strop_last_error(), "side->size"));
  ck_assert_int_eq(strop_model_forward_ext(m, in, NULL, NULL), STROP_E_INVALID_ARG);
  ck_assert(memcmp(before, w->data, sizeof before) == 0);
  /* still works, with good types and without */
  float good[3] = {1, 0, 1};
  memcpy(strop_tensor_data(tt), good, sizeof good);
  strop_side_inputs_init(&side);
  side.token_types = tt;
  must(strop_model_forward_ext(m, in, &side, &out), "good types");
  ck_assert(strop_tensor_data(out)[0] == x[0] + w->data[2]);
  strop_tensor_free(out);
  must(strop_model_forward_ext(m, in, NULL, &out), "no side");
  ck_assert(strop_tensor_data(out)[0] == x[0] + w->data[0]);
  strop_tensor_free(out);
  strop_tensor_free(in);
  strop_tensor_free(tt);
  strop_tensor_free(tw);
  strop_model_free(m);
}
END_TEST

/* ---- a residual add fused with the rmsnorm after it ---- */

/* The fused kernels (strop__add_rmsnorm_forward / _backward) against the two apart: the sum
 * of three inputs in order, strop__rmsnorm_forward of it; strop__rmsnorm_backward into a copy
 * of the sum's other gradient ds, then that added to each input's gradient. The same bits, at
 * Llama's width and odd ones, with and without a weight, with ds or without (zeros), without
 * dy (ds alone flows back), an input that needs no gradient, one thread and two. */
START_TEST(kernel_add_rmsnorm_rows) {
  static const int64_t widths[] = {2048, 2053, 7};
  const int64_t rows = 37;
  const int threads = strop_get_num_threads();
  for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
    for (int variant = 0; variant < 4; variant++)
      for (int th = 1; th <= 2; th++) {
        must(strop_set_num_threads(th), "threads");
        const int64_t d = widths[wi];
        const size_t nx = (size_t)(rows * d);
        const int affine = variant != 1, with_ds = variant != 2, with_dy = variant != 3;
        float *buf = malloc(sizeof(float) * nx * 16);
        float *x[3] = {buf, buf + nx, buf + 2 * nx}, *dy = buf + 3 * nx, *ds = buf + 4 * nx;
        float *s[2] = {buf + 5 * nx, buf + 6 * nx}, *y[2] = {buf + 7 * nx, buf + 8 * nx};
        float *dx[2][3] = {{buf + 9 * nx, NULL, buf + 10 * nx},
                           {buf + 11 * nx, NULL, buf + 12 * nx}};
        float *g = buf + 13 * nx;
        float *gm = malloc(sizeof(float) * (size_t)d), *dg[2], *rs[2];
        for (int k = 0; k < 2; k++) {
          dg[k] = malloc(sizeof(float) * (size_t)d);
          rs[k] = malloc(sizeof(float) * (size_t)rows);
          for (int64_t j = 0; j < d; j++) dg[k][j] = -0.5f;
          for (size_t e = 0; e < nx; e++) dx[k][0][e] = dx[k][2][e] = 0.25f;
        }
        for (size_t e = 0; e < nx; e++) {
          x[0][e] = 2.0f * sinf(0.37f * (float)e) + (e % 11 == 0 ? 5.0f : 0.0f);
          x[1][e] = cosf(0.23f * (float)e);
          x[2][e] = 0.5f * sinf(0.05f * (float)e + 1.0f);
          dy[e] = cosf(0.19f * (float)e);
          ds[e] = 0.3f * sinf(0.13f * (float)e);
        }
        for (int64_t j = 0; j < d; j++) gm[j] = 0.5f + 0.01f * (float)(j % 97);
        const float *w = affine ? gm : NULL, *dsv = with_ds ? ds : NULL,
                    *dyv = with_dy ? dy : NULL;
        /* fused */
        const float *xs[3] = {x[0], x[1], x[2]};
        float *part = malloc(sizeof(float) * (strop__add_rmsnorm_backward_scratch(rows, d) + 1));
        strop__add_rmsnorm_forward(xs, 3, rows, d, w, 1e-5f, s[0], y[0], rs[0]);
        strop__add_rmsnorm_backward(s[0], dyv, dsv, rows, d, w, rs[0], dx[0], 3, dg[0], part);
        free(part);
        /* apart */
        for (size_t e = 0; e < nx; e++) s[1][e] = x[0][e] + x[1][e];
        for (size_t e = 0; e < nx; e++) s[1][e] += x[2][e];
        strop__rmsnorm_forward(s[1], rows, d, w, 1e-5f, y[1], rs[1]);
        for (size_t e = 0; e < nx; e++) g[e] = with_ds ? 0.0f + ds[e] : 0.0f;
        part = malloc(sizeof(float) * (strop__rmsnorm_backward_scratch(rows, d) + 1));
        if (with_dy) strop__rmsnorm_backward(s[1], dy, rows, d, w, rs[1], g, dg[1], part);
        free(part);
        for (size_t e = 0; e < nx; e++) dx[1][0][e] += g[e];
        for (size_t e = 0; e < nx; e++) dx[1][2][e] += g[e];
        ck_assert(memcmp(s[0], s[1], sizeof(float) * nx) == 0);
        ck_assert(memcmp(y[0], y[1], sizeof(float) * nx) == 0);
        ck_assert(memcmp(rs[0], rs[1], sizeof(float) * (size_t)rows) == 0);
        ck_assert_msg(memcmp(dx[0][0], dx[1][0], sizeof(float) * nx) == 0,
                      "d %lld variant %d threads %d: dx differs", (long long)d, variant, th);
        ck_assert(memcmp(dx[0][2], dx[1][2], sizeof(float) * nx) == 0);
        ck_assert(memcmp(dg[0], dg[1], sizeof(float) * (size_t)d) == 0);
        for (int k = 0; k < 2; k++) free(dg[k]), free(rs[k]);
        free(gm), free(buf);
      }
  must(strop_set_num_threads(threads), "threads");
}
END_TEST

/* One training step (zeroed gradients, forward, backward from dout): the output and every
 * gradient (parameters', then the input's) into out and grads. */
static void step_grads(strop_model *m, const float *x, const float *dout, int64_t n, float *out,
                       float *grads, size_t *n_grads) {
  const strop__act *o;
  must(strop__model_zero_grad(m), "zero_grad");
  must(strop__model_forward_exec(m, x, n, 1, NULL, &o), "forward");
  memcpy(out, o->data, sizeof(float) * (size_t)n * strop__shape_numel(&o->shape));
  must(strop__model_backward(m, dout), "backward");
  size_t k = 0;
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->grad) {
      memcpy(grads + k, m->params[i]->grad, sizeof(float) * m->params[i]->numel);
      k += m->params[i]->numel;
    }
  const size_t in = m->input_grad ? (size_t)n * strop__shape_numel(&m->in_shape) : 0;
  if (in) memcpy(grads + k, m->input_grad, sizeof(float) * in);
  *n_grads = k + in;
  strop__model_step_end(m);
}

static int absorbed(const strop_model *m) {
  int k = 0;
  for (int i = 0; i < m->n_nodes; i++) k += m->nodes[i].fused < 0;
  return k;
}

/* Two Llama-shaped blocks (x + attn(norm(x)), then s + mlp(norm(s))), where each residual sum
 * is read by an rmsnorm and by the next sum: the add computes the norm in the same pass and,
 * in the backward, hands the norm's input gradient and the next sum's to its inputs at once.
 * Outputs, every parameter gradient and the input gradient are the unfused graph's bit for
 * bit: norms trained or frozen (or the whole trunk frozen), on the planned arena and the free
 * list, with and without checkpointed blocks (a chain stays inside its block), at 1 and 3
 * threads; a sum of three inputs, a norm without weight, and a norm whose output nothing reads
 * (its backward gets the next sum's gradient only). Eval mode fuses too, same bits. */
START_TEST(add_rmsnorm_fused_matches_unfused) {
  const int64_t shape[2] = {6, 40};
  static const node_spec nodes[] = {
      {"in", "linear", "out_features=40", NULL},
      {"h.0.n1", "rmsnorm", "eps=1e-5", NULL},
      {"h.0.a", "linear", "out_features=40", NULL},
      {"h.0.s1", "add", "", "in,h.0.a"},
      {"h.0.n2", "rmsnorm", "eps=1e-5", NULL},
      {"h.0.f", "linear", "out_features=40", NULL},
      {"h.0.g", "linear", "out_features=40", "h.0.n2"},
      {"h.0.s2", "add", "", "h.0.s1,h.0.f,h.0.g"},
      {"h.1.n1", "rmsnorm", "eps=1e-5", NULL},
      {"h.1.a", "linear", "out_features=40", NULL},
      {"h.1.s1", "add", "", "h.0.s2,h.1.a"},
      {"h.1.n2", "rmsnorm", "elementwise_affine=false", NULL},
      {"h.1.f", "linear", "out_features=40", NULL},
      {"h.1.s2", "add", "", "h.1.s1,h.1.f"},
      {"dead", "rmsnorm", "", NULL},
      {"out", "linear", "out_features=40", "h.1.s2"},
  };
  enum { N = 3, IN = N * 6 * 40, G = 20000 };
  static float x[IN], dout[IN], out[2][IN], grads[2][G];
  for (int i = 0; i < IN; i++) {
    x[i] = sinf(0.37f * (float)i) + (i % 13 == 0 ? 3.0f : 0.0f);
    dout[i] = cosf(0.11f * (float)i);
  }
  const int threads = strop_get_num_threads();
  for (int frozen = 0; frozen < 3; frozen++)
    for (int ckpt = 0; ckpt < 2; ckpt++)
      for (int plan = 0; plan < 2; plan++)
        for (int t = 1; t <= 3; t += 2) {
          strop_model *m = build(2, shape, nodes, (int)(sizeof nodes / sizeof nodes[0]), 21);
          m->want_input_grad = frozen < 2;      /* 2: the blocks need no backward */
          for (int i = 0; i < m->n_params; i++) /* norm weights away from 1 */
            if (strstr(m->params[i]->name, ".n"))
              for (size_t e = 0; e < m->params[i]->numel; e++)
                m->params[i]->data[e] = 0.6f + 0.03f * (float)(e % 17);
          if (frozen == 1) must(strop_model_freeze(m, "h.*.n*"), "freeze norms");
          if (frozen == 2) {
            must(strop_model_freeze(m, "*"), "freeze");
            must(strop_model_unfreeze(m, "out"), "unfreeze");
          }
          if (ckpt) must(strop_model_set_checkpointing(m, "h.*"), "checkpointing");
          strop__memory_plan = plan;
          must(strop_set_num_threads(t), "threads");
          size_t ng[2];
          for (int r = 0; r < 2; r++) {
            m->no_fusion = r;
            step_grads(m, x, dout, N, out[r], grads[r], &ng[r]);
            ck_assert_uint_le(ng[r], G);
            const strop__act *o;
            must(strop__model_forward_exec(m, x, N, 1, NULL, &o), "forward");
            ck_assert_int_eq(absorbed(m), r ? 0 : ckpt && frozen < 2 ? 2 : 4);
            strop__model_step_end(m);
          }
          ck_assert_uint_eq(ng[0], ng[1]);
          ck_assert_msg(memcmp(out[0], out[1], sizeof(float) * IN) == 0,
                        "frozen %d ckpt %d plan %d threads %d: outputs differ", frozen, ckpt,
                        plan, t);
          for (size_t i = 0; i < ng[0]; i++)
            ck_assert_msg(memcmp(&grads[0][i], &grads[1][i], sizeof(float)) == 0,
                          "frozen %d ckpt %d plan %d threads %d: gradient %zu: fused %.9g, "
                          "unfused %.9g",
                          frozen, ckpt, plan, t, i, (double)grads[0][i], (double)grads[1][i]);
          /* eval mode: fused as well, the same bits */
          float *e[2];
          for (int r = 0; r < 2; r++) {
            m->no_fusion = r;
            e[r] = fwd(m, x, N, 0, NULL, NULL);
          }
          ck_assert(memcmp(e[0], e[1], sizeof(float) * IN) == 0);
          ck_assert(memcmp(e[0], out[0], sizeof(float) * IN) == 0);
          free(e[0]), free(e[1]);
          strop__memory_plan = -1;
          strop_model_free(m);
        }
  must(strop_set_num_threads(threads), "threads");
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("layers_seq");
  TCase *tc = tcase_create("kernels");
  tcase_add_test(tc, kernel_layernorm);
  tcase_add_test(tc, kernel_rmsnorm);
  tcase_add_test(tc, kernel_layernorm_rows);
  tcase_add_test(tc, kernel_rmsnorm_rows);
  tcase_add_test(tc, kernel_add_rmsnorm_rows);
  tcase_add_test(tc, kernel_attention);
  suite_add_tcase(s, tc);
  tc = tcase_create("forward");
  tcase_add_test(tc, forward_embedding);
  tcase_add_test(tc, forward_positional);
  tcase_add_test(tc, forward_positional_types);
  tcase_add_test(tc, forward_layernorm);
  tcase_add_test(tc, forward_attention_uniform);
  tcase_add_test(tc, forward_mean_pool);
  tcase_add_test(tc, nan_propagates);
  suite_add_tcase(s, tc);
  tc = tcase_create("gradcheck");
  tcase_add_test(tc, gradcheck_embedding);
  tcase_add_test(tc, gradcheck_positional);
  tcase_add_test(tc, gradcheck_positional_types);
  tcase_add_test(tc, gradcheck_layernorm);
  tcase_add_test(tc, gradcheck_rmsnorm);
  tcase_add_test(tc, gradcheck_attention);
  tcase_add_test(tc, gradcheck_mean_pool);
  suite_add_tcase(s, tc);
  tc = tcase_create("parity");
  tcase_add_test(tc, parity_embedding);
  tcase_add_test(tc, parity_positional);
  tcase_add_test(tc, parity_layernorm);
  tcase_add_test(tc, parity_rmsnorm);
  tcase_add_test(tc, parity_attention);
  tcase_add_test(tc, parity_mean_pool);
  suite_add_tcase(s, tc);
  tc = tcase_create("padmask");
  tcase_add_test(tc, padmask_parity);
  tcase_add_test(tc, padmask_invariance);
  suite_add_tcase(s, tc);
  tc = tcase_create("transformer");
  tcase_add_test(tc, transformer_parity);
  tcase_add_test(tc, transformer_gradcheck);
  tcase_add_test(tc, transformer_warm_step_no_alloc);
  tcase_add_test(tc, add_rmsnorm_fused_matches_unfused);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, errors_options);
  tcase_add_test(tc, errors_token_ids);
  tcase_add_test(tc, errors_token_types);
  tcase_add_test(tc, options_roundtrip);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return strop_test_run(suite()); }
