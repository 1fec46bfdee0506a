/* SPDX-License-Identifier: MIT */
/* strop tests — attention as checkpoints have it: the `attention` core (grouped-query heads,
 * rotary embeddings with Llama's rotate_half convention, linear rope scaling, packed q|k|v
 * input, causal and padding masks) against a float64 reference written from the published
 * formulas, finite-difference gradients; multihead_attention's packed storage (torch's
 * in_proj_weight) equal to the separate one, with LoRA; lora_linear on a Conv1D [in, out]
 * weight (PEFT's fan_in_fan_out). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "harness.h"
#include "ops/attention.h"
#include "ops/dense.h"
#include "ops/lowp.h"
#include "strop/strop.h"
#include "testutil.h"

static strop_model *build(int rank, const int64_t *shape, const strop_test_node *nodes, int n) {
  return strop_test_build(rank, shape, nodes, n, 3);
}

static float *param(strop_model *m, const char *name) {
  strop__param *p = strop__model_param_find(m, name);
  ck_assert_msg(p != NULL, "no parameter %s", name);
  return p->data;
}

/* ---- a float64 reference: heads, GQA, rotate_half rope, masks ---- */
typedef struct ref_cfg {
  int64_t t, h, kvh, hd, rot;
  double theta, factor;
  int causal;
} ref_cfg;

static void ref_rope(const ref_cfg *c, double *v, int64_t pos) {
  const int64_t half = c->rot / 2;
  for (int64_t i = 0; i < half; i++) {
    const double a = (pos / c->factor) / pow(c->theta, (double)(2 * i) / (double)c->rot);
    const double x1 = v[i], x2 = v[i + half];
    v[i] = x1 * cos(a) - x2 * sin(a);
    v[i + half] = x2 * cos(a) + x1 * sin(a);
  }
}

/* one sample: q [t, h*hd], k, v [t, kvh*hd] -> out [t, h*hd] */
static void ref_attention(const ref_cfg *c, const float *q, const float *k, const float *v,
                          const float *mask, double *out) {
  const int64_t t = c->t, hd = c->hd, group = c->h / c->kvh;
  double *qr = malloc(sizeof(double) * (size_t)(t * hd)),
         *kr = malloc(sizeof(double) * (size_t)(t * hd));
  double *s = malloc(sizeof(double) * (size_t)t);
  for (int64_t h = 0; h < c->h; h++) {
    const int64_t g = h / group;
    for (int64_t p = 0; p < t; p++) {
      for (int64_t i = 0; i < hd; i++) {
        qr[p * hd + i] = q[p * c->h * hd + h * hd + i];
        kr[p * hd + i] = k[p * c->kvh * hd + g * hd + i];
      }
      if (c->rot) {
        ref_rope(c, qr + p * hd, p);
        ref_rope(c, kr + p * hd, p);
      }
    }
    for (int64_t i = 0; i < t; i++) {
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < t; j++) {
        int ok = (!c->causal || j <= i) && (!mask || mask[j] != 0.0f);
        double d = 0;
        for (int64_t e = 0; e < hd; e++) d += qr[i * hd + e] * kr[j * hd + e];
        s[j] = ok ? d / sqrt((double)hd) : -INFINITY;
        if (s[j] > mx) mx = s[j];
      }
      for (int64_t j = 0; j < t; j++) sum += s[j] = isinf(s[j]) ? 0.0 : exp(s[j] - mx);
      for (int64_t e = 0; e < hd; e++) {
        double acc = 0;
        for (int64_t j = 0; j < t; j++) acc += s[j] / sum * v[j * c->kvh * hd + g * hd + e];
        out[i * c->h * hd + h * hd + e] = acc;
      }
    }
  }
  free(qr);
  free(kr);
  free(s);
}

/* The core on packed (1 input) and separate (3 inputs) q, k, v against the reference. */
static void check_core(int packed, const char *opts, const ref_cfg *rc, int with_mask) {
  const int64_t t = rc->t, qw = rc->h * rc->hd, kw = rc->kvh * rc->hd, w = qw + 2 * kw;
  const int64_t shape[2] = {t, w};
  char qo[64], ko[64];
  snprintf(qo, sizeof qo, "shape=[%lld, %lld]", (long long)t, (long long)qw);
  snprintf(ko, sizeof ko, "shape=[%lld, %lld]", (long long)t, (long long)kw);
  /* separate inputs: three linear maps of the input picking q, k, v (identity blocks) */
  strop_test_node sep[4] = {{"q", "linear", NULL, "input"},
                            {"k", "linear", NULL, "input"},
                            {"v", "linear", NULL, "input"},
                            {"attn", "attention", opts, "q,k,v"}};
  char oq[64], ok[64];
  snprintf(oq, sizeof oq, "out_features=%lld bias=false", (long long)qw);
  snprintf(ok, sizeof ok, "out_features=%lld bias=false", (long long)kw);
  sep[0].opts = oq;
  sep[1].opts = ok;
  sep[2].opts = ok;
  strop_test_node pk[1] = {{"attn", "attention", opts, NULL}};
  strop_model *m = packed ? build(2, shape, pk, 1) : build(2, shape, sep, 4);
  if (!packed) {
    float *wq = param(m, "q.weight"), *wk = param(m, "k.weight"), *wv = param(m, "v.weight");
    memset(wq, 0, sizeof(float) * (size_t)(qw * w));
    memset(wk, 0, sizeof(float) * (size_t)(kw * w));
    memset(wv, 0, sizeof(float) * (size_t)(kw * w));
    for (int64_t i = 0; i < qw; i++) wq[i * w + i] = 1;
    for (int64_t i = 0; i < kw; i++) wk[i * w + qw + i] = 1;
    for (int64_t i = 0; i < kw; i++) wv[i * w + qw + kw + i] = 1;
  }
  const int64_t nb = 2;
  float *x = malloc(sizeof(float) * (size_t)(nb * t * w));
  for (int64_t i = 0; i < nb * t * w; i++) x[i] = sinf(0.37f * (float)i) * 1.3f;
  float mask[2 * 16];
  for (int64_t i = 0; i < nb * t; i++) mask[i] = (i % t == 1 || i == 2 * t - 1) ? 0.0f : 1.0f;
  const strop__act *o;
  strop_test_must(
      strop__model_forward_exec(m, x, nb, 0, &(strop__side){with_mask ? mask : NULL, NULL}, &o),
      "forward");
  double *want = malloc(sizeof(double) * (size_t)(t * qw));
  float *qs = malloc(sizeof(float) * (size_t)(t * qw)),
        *ks = malloc(sizeof(float) * (size_t)(t * kw)),
        *vs = malloc(sizeof(float) * (size_t)(t * kw));
  for (int64_t b = 0; b < nb; b++) {
    for (int64_t p = 0; p < t; p++) {
      const float *row = x + (b * t + p) * w;
      memcpy(qs + p * qw, row, sizeof(float) * (size_t)qw);
      memcpy(ks + p * kw, row + qw, sizeof(float) * (size_t)kw);
      memcpy(vs + p * kw, row + qw + kw, sizeof(float) * (size_t)kw);
    }
    ref_attention(rc, qs, ks, vs, with_mask ? mask + b * t : NULL, want);
    for (int64_t i = 0; i < t * qw; i++) {
      const float got = o->data[b * t * qw + i];
      ck_assert_msg(fabs(got - want[i]) < 2e-5 * (1 + fabs(want[i])),
                    "%s %s: sample %lld [%lld]: %.8g vs reference %.8g",
                    packed ? "packed" : "separate", opts, (long long)b, (long long)i, (double)got,
                    want[i]);
    }
  }
  strop__model_step_end(m);
  free(qs);
  free(ks);
  free(vs);
  free(want);
  free(x);
  strop_model_free(m);
}

START_TEST(core_matches_reference) {
  static const struct {
    const char *opts;
    ref_cfg rc;
  } cases[] = {
      {"num_heads=2", {6, 2, 2, 4, 0, 1e4, 1, 0}},
      {"num_heads=4 num_kv_heads=2 causal=true", {7, 4, 2, 3, 0, 1e4, 1, 1}},
      {"num_heads=2 rope=rotate_half", {5, 2, 2, 4, 4, 1e4, 1, 0}},
      {"num_heads=4 num_kv_heads=1 rope=rotate_half rope_theta=500000 rope_factor=4 causal=true",
       {9, 4, 1, 6, 6, 5e5, 4, 1}},
      {"num_heads=2 num_kv_heads=2 rope=rotate_half rope_dim=2", {5, 2, 2, 4, 2, 1e4, 1, 0}},
  };
  /* _i = 1: the tiled core in blocks of 2 queries x 3 keys (several per row, ragged ends) */
  const int bq = strop__sdpa_block_q, bk = strop__sdpa_block_k;
  if (_i) strop__sdpa_block_q = 2, strop__sdpa_block_k = 3;
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    for (int packed = 0; packed < 2; packed++)
      for (int mask = 0; mask < 2; mask++) check_core(packed, cases[k].opts, &cases[k].rc, mask);
  strop__sdpa_block_q = bq, strop__sdpa_block_k = bk;
}
END_TEST

/* Finite differences through projections into the core: every option at once; dropout on the
 * materialised core and (with blocks of 2 x 3, causal) on the tiled one. */
START_TEST(core_gradcheck) {
  const int64_t shape[2] = {5, 6};
  static const char *const variants[] = {
      "num_heads=4 num_kv_heads=2 rope=rotate_half causal=true",
      "num_heads=2 rope=rotate_half rope_factor=2 rope_dim=2",
      "num_heads=2 num_kv_heads=1 dropout=0.3 scale=0.7",
      "num_heads=4 num_kv_heads=2 dropout=0.2 causal=true rope=rotate_half",
  };
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.tol = 3e-2;
  o.max_per_tensor = 16;
  const int bq = strop__sdpa_block_q, bk = strop__sdpa_block_k;
  if (_i) strop__sdpa_block_q = 2, strop__sdpa_block_k = 3; /* the tiled core, many blocks */
  for (int v = 0; v < 4; v++) {
    const int gqa = v != 1;
    strop_test_node sep[5] = {{"q", "linear", "out_features=8", "input"},
                              {"k", "linear", gqa ? "out_features=4" : "out_features=8", "input"},
                              {"v", "linear", gqa ? "out_features=4" : "out_features=8", "input"},
                              {"attn", "attention", variants[v], "q,k,v"},
                              {"o", "linear", "out_features=6", NULL}};
    strop_model *m = build(2, shape, sep, 5);
    strop_test_gradcheck(m, 2, 20 + (uint64_t)v, &o);
    strop_model_free(m);
    /* packed: one linear gives q|k|v */
    strop_test_node pk[3] = {{"qkv", "linear", gqa ? "out_features=16" : "out_features=24", NULL},
                             {"attn", "attention", variants[v], NULL},
                             {"o", "linear", "out_features=6", NULL}};
    m = build(2, shape, pk, 3);
    strop_test_gradcheck(m, 2, 30 + (uint64_t)v, &o);
    strop_model_free(m);
  }
  strop__sdpa_block_q = bq, strop__sdpa_block_k = bk;
}
END_TEST

/* multihead_attention = linear q, k, v + attention + linear out with the same weights. */
START_TEST(mha_equals_core) {
  const int64_t shape[2] = {6, 8};
  strop_test_node a[1] = {{"attn", "multihead_attention", "num_heads=2 causal=true", NULL}};
  strop_test_node b[5] = {{"q", "linear", "out_features=8", "input"},
                          {"k", "linear", "out_features=8", "input"},
                          {"v", "linear", "out_features=8", "input"},
                          {"core", "attention", "num_heads=2 causal=true", "q,k,v"},
                          {"o", "linear", "out_features=8", NULL}};
  strop_model *ma = build(2, shape, a, 1), *mb = build(2, shape, b, 5);
  static const char *const pairs[][2] = {
      {"attn.q_proj.weight", "q.weight"},   {"attn.q_proj.bias", "q.bias"},
      {"attn.k_proj.weight", "k.weight"},   {"attn.k_proj.bias", "k.bias"},
      {"attn.v_proj.weight", "v.weight"},   {"attn.v_proj.bias", "v.bias"},
      {"attn.out_proj.weight", "o.weight"}, {"attn.out_proj.bias", "o.bias"}};
  for (int i = 0; i < 8; i++) {
    strop__param *p = strop__model_param_find(ma, pairs[i][0]);
    for (size_t e = 0; e < p->numel; e++) p->data[e] = 0.2f * sinf((float)(e * 3 + i));
    memcpy(param(mb, pairs[i][1]), p->data, p->numel * sizeof(float));
  }
  float x[2 * 6 * 8];
  for (int i = 0; i < 96; i++) x[i] = cosf(0.3f * (float)i);
  const float mask[12] = {1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1};
  const strop__act *oa, *ob;
  strop_test_must(strop__model_forward_exec(ma, x, 2, 0, &(strop__side){mask, NULL}, &oa), "mha");
  strop_test_must(strop__model_forward_exec(mb, x, 2, 0, &(strop__side){mask, NULL}, &ob),
                  "core");
  for (int i = 0; i < 96; i++)
    ck_assert_msg(fabsf(oa->data[i] - ob->data[i]) < 1e-5f, "[%d] %g vs %g", i,
                  (double)oa->data[i], (double)ob->data[i]);
  strop_model_free(ma);
  strop_model_free(mb);
}
END_TEST

/* Dropout acts in training only: in eval a layer with dropout gives what it gives without,
 * also where the weights are materialised because they are small (t = 6, heads of 4; this
 * once applied dropout in eval, as the materialised path took a dropout mask whenever it ran). */
START_TEST(no_dropout_in_eval) {
  ck_assert_int_eq(strop__sdpa_pick_tiled(6, 4, 0, 0), 0);
  static const char *const types[2][2] = {{"multihead_attention", "num_heads=2"},
                                          {"attention", "num_heads=2"}};
  for (int ty = 0; ty < 2; ty++) {
    const int64_t shape[2] = {6, ty ? 24 : 8}; /* the core: packed q|k|v, 2 heads of 4 each */
    char with[64];
    snprintf(with, sizeof with, "%s dropout=0.5", types[ty][1]);
    strop_test_node a[1] = {{"attn", types[ty][0], types[ty][1], NULL}};
    strop_test_node b[1] = {{"attn", types[ty][0], with, NULL}};
    strop_model *ma = build(2, shape, a, 1), *mb = build(2, shape, b, 1);
    for (int i = 0; i < ma->n_params; i++) {
      strop__param *p = ma->params[i];
      for (size_t e = 0; e < p->numel; e++) p->data[e] = 0.2f * sinf((float)(e * 3 + i));
      memcpy(param(mb, p->name), p->data, p->numel * sizeof(float));
    }
    float x[2 * 6 * 24];
    for (int i = 0; i < 2 * 6 * 24; i++) x[i] = cosf(0.3f * (float)i);
    const strop__act *oa, *ob;
    strop_test_must(strop__model_forward_exec(ma, x, 2, 0, NULL, &oa), "without");
    strop_test_must(strop__model_forward_exec(mb, x, 2, 0, NULL, &ob), "with");
    for (int i = 0; i < 96; i++)
      ck_assert_msg(oa->data[i] == ob->data[i], "%s [%d] %g vs %g", types[ty][0], i,
                    (double)oa->data[i], (double)ob->data[i]);
    strop_model_free(ma);
    strop_model_free(mb);
  }
}
END_TEST

/* torch's packed in_proj_weight: the same function as the separate projections, the same
 * gradients (in their rows), the same LoRA adapters on q and v, merged and unmerged. */
START_TEST(mha_packed_equals_separate) {
  const int64_t shape[2] = {5, 6};
  strop_test_node s[2] = {{"attn", "multihead_attention", "num_heads=3", NULL},
                          {"pool", "mean_pool", NULL, NULL}};
  strop_test_node p[2] = {{"attn", "multihead_attention", "num_heads=3 packed=true", NULL},
                          {"pool", "mean_pool", NULL, NULL}};
  strop_model *ms = build(2, shape, s, 2), *mp = build(2, shape, p, 2);
  ck_assert_int_eq(strop_model_num_tensors(mp), 4);
  char name[64];
  strop_model_tensor_name(mp, 0, name, sizeof name);
  ck_assert_str_eq(name, "attn.in_proj_weight");
  strop_model_tensor_name(mp, 1, name, sizeof name);
  ck_assert_str_eq(name, "attn.in_proj_bias");
  /* the same initialisation stream: torch's xavier over [3D, D] either way */
  float *inw = param(mp, "attn.in_proj_weight"), *inb = param(mp, "attn.in_proj_bias");
  static const char *const proj[3] = {"q_proj", "k_proj", "v_proj"};
  for (int i = 0; i < 3; i++) {
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "attn.%s.weight", proj[i]);
    snprintf(bn, sizeof bn, "attn.%s.bias", proj[i]);
    ck_assert(memcmp(inw + i * 36, param(ms, wn), 36 * sizeof(float)) == 0);
    for (int e = 0; e < 6; e++) inb[i * 6 + e] = 0.05f * (float)(e - i);
    memcpy(param(ms, bn), inb + i * 6, 6 * sizeof(float));
  }
  memcpy(param(mp, "attn.out_proj.weight"), param(ms, "attn.out_proj.weight"),
         36 * sizeof(float));
  for (int round = 0; round < 2; round++) {
    if (round == 1) { /* LoRA on q and v of both */
      strop_model *both[2] = {ms, mp};
      for (int k = 0; k < 2; k++) {
        strop_surgery *sg = NULL;
        strop_test_must(strop_surgery_create(both[k], &sg), "surgery");
        strop_test_must(strop_surgery_set_seed(sg, 9), "seed");
        strop_test_must(strop_surgery_lora(sg, "attn.[qv]_proj", 2, 4.0f, 0.0f), "lora");
        strop_test_must(strop_surgery_apply(sg), "apply");
        strop_surgery_free(sg);
        for (int i = 0; i < 2; i++) {
          snprintf(name, sizeof name, "attn.%s.lora_B.weight", i ? "v_proj" : "q_proj");
          float *bw = param(both[k], name);
          for (int e = 0; e < 12; e++) bw[e] = 0.1f * (float)(e % 5) - 0.2f;
        }
      }
      ck_assert(memcmp(param(ms, "attn.q_proj.lora_A.weight"),
                       param(mp, "attn.q_proj.lora_A.weight"), 12 * sizeof(float)) == 0);
    }
    float x[2 * 5 * 6];
    for (int i = 0; i < 60; i++) x[i] = sinf(0.7f * (float)i);
    float dout[12];
    for (int i = 0; i < 12; i++) dout[i] = 0.3f * (float)(i % 4) - 0.4f;
    const strop__act *os, *op;
    strop_model *pair[2] = {ms, mp};
    float outs[2][12];
    for (int k = 0; k < 2; k++) {
      strop_test_must(strop__model_zero_grad(pair[k]), "zero");
      strop_test_must(strop__model_forward_exec(pair[k], x, 2, 1, NULL, k ? &op : &os),
                      "forward");
      memcpy(outs[k], (k ? op : os)->data, sizeof outs[k]);
      strop_test_must(strop__model_backward(pair[k], dout), "backward");
      strop__model_step_end(pair[k]);
    }
    for (int i = 0; i < 12; i++) ck_assert(fabsf(outs[0][i] - outs[1][i]) < 1e-6f);
    for (int i = 0; i < 3 && round == 0; i++) {
      char wn[64];
      snprintf(wn, sizeof wn, "attn.%s.weight", proj[i]);
      const float *gs = strop__model_param_find(ms, wn)->grad;
      const float *gp = strop__model_param_find(mp, "attn.in_proj_weight")->grad + i * 36;
      for (int e = 0; e < 36; e++) ck_assert(fabsf(gs[e] - gp[e]) < 1e-6f);
    }
    if (round == 1) {
      const float *ga = strop__model_param_find(ms, "attn.v_proj.lora_A.weight")->grad;
      const float *gb = strop__model_param_find(mp, "attn.v_proj.lora_A.weight")->grad;
      for (int e = 0; e < 12; e++) ck_assert(fabsf(ga[e] - gb[e]) < 1e-6f);
      /* merged: the packed rows of q and v change, the function does not */
      strop_test_must(strop_model_lora_merge(mp), "merge");
      strop_test_must(strop__model_forward_exec(mp, x, 2, 0, NULL, &op), "merged");
      strop_test_must(strop__model_forward_exec(ms, x, 2, 0, NULL, &os), "separate");
      for (int i = 0; i < 12; i++) ck_assert(fabsf(os->data[i] - op->data[i]) < 1e-5f);
      strop__model_step_end(mp);
      strop__model_step_end(ms);
    }
  }
  strop_model_free(ms);
  strop_model_free(mp);
}
END_TEST

/* GPT-2's Conv1D weight [in, out] under LoRA (PEFT's fan_in_fan_out): the same adapter names
 * and function as on nn.Linear's [out, in]; merge folds B A into the transposed weight. */
START_TEST(lora_on_conv1d_layout) {
  const int64_t shape[1] = {6};
  strop_test_node a[1] = {{"c_attn", "linear", "out_features=9", NULL}};
  strop_test_node b[1] = {{"c_attn", "linear", "out_features=9 weight_layout=in_out", NULL}};
  strop_model *ma = build(1, shape, a, 1), *mb = build(1, shape, b, 1);
  float *wb = param(mb, "c_attn.weight"), wa[54];
  memcpy(wa, param(ma, "c_attn.weight"), sizeof wa);
  for (int o = 0; o < 9; o++)
    for (int i = 0; i < 6; i++) wb[i * 9 + o] = wa[o * 6 + i];
  memcpy(param(mb, "c_attn.bias"), param(ma, "c_attn.bias"), 9 * sizeof(float));
  strop_model *both[2] = {ma, mb};
  for (int k = 0; k < 2; k++) {
    strop_surgery *sg = NULL;
    strop_test_must(strop_surgery_create(both[k], &sg), "surgery");
    strop_test_must(strop_surgery_set_seed(sg, 4), "seed");
    strop_test_must(strop_surgery_lora(sg, "c_attn", 3, 6.0f, 0.0f), "lora");
    strop_test_must(strop_surgery_apply(sg), "apply");
    strop_surgery_free(sg);
    float *lb = param(both[k], "c_attn.lora_B.weight");
    for (int e = 0; e < 27; e++) lb[e] = 0.05f * (float)(e % 7) - 0.1f;
  }
  ck_assert_int_eq(strop_model_param_count(mb, 1), 3 * 6 + 9 * 3);
  char opts[256];
  strop_model_node_options(mb, 0, opts, sizeof opts);
  ck_assert_msg(strstr(opts, "weight_layout=in_out"), "%s", opts);
  float x[3 * 6], dout[3 * 9];
  for (int i = 0; i < 18; i++) x[i] = sinf((float)i);
  for (int i = 0; i < 27; i++) dout[i] = cosf((float)i);
  float outs[2][27], ga[2][18];
  for (int k = 0; k < 2; k++) {
    const strop__act *o;
    strop_test_must(strop__model_zero_grad(both[k]), "zero");
    strop_test_must(strop__model_forward_exec(both[k], x, 3, 1, NULL, &o), "forward");
    memcpy(outs[k], o->data, sizeof outs[k]);
    strop_test_must(strop__model_backward(both[k], dout), "backward");
    memcpy(ga[k], strop__model_param_find(both[k], "c_attn.lora_A.weight")->grad, sizeof ga[k]);
    strop__model_step_end(both[k]);
  }
  for (int i = 0; i < 27; i++) ck_assert(fabsf(outs[0][i] - outs[1][i]) < 1e-5f);
  for (int i = 0; i < 18; i++) ck_assert(fabsf(ga[0][i] - ga[1][i]) < 1e-5f);
  strop_test_must(strop_model_lora_merge(mb), "merge");
  const strop__act *o;
  strop_test_must(strop__model_forward_exec(mb, x, 3, 0, NULL, &o), "merged");
  for (int i = 0; i < 27; i++) ck_assert(fabsf(outs[0][i] - o->data[i]) < 1e-5f);
  strop__model_step_end(mb);
  strop_test_must(strop_model_lora_unmerge(mb), "unmerge");
  for (int o2 = 0; o2 < 9; o2++)
    for (int i = 0; i < 6; i++)
      ck_assert(fabsf(param(mb, "c_attn.weight")[i * 9 + o2] - wa[o2 * 6 + i]) < 1e-5f);
  strop_model_free(ma);
  strop_model_free(mb);
}
END_TEST

/* gated_mlp: finite differences, and the fused layer equals the same math written with
 * separate linear nodes (down(silu(gate(x)) * up(x)) computed here by hand). */
START_TEST(gated_mlp_gradcheck_and_lora) {
  const int64_t shape[2] = {3, 6};
  static const char *const variants[] = {"intermediate_size=10",
                                         "intermediate_size=8 bias=true activation=gelu",
                                         "intermediate_size=8 activation=gelu_tanh"};
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.tol = 3e-2;
  o.max_per_tensor = 16;
  for (int v = 0; v < 3; v++) {
    strop_test_node nodes[1] = {{"mlp", "gated_mlp", variants[v], NULL}};
    strop_model *m = build(2, shape, nodes, 1);
    strop_test_gradcheck(m, 2, 40 + (uint64_t)v, &o);
    strop_model_free(m);
  }
  /* forward against the formula */
  strop_test_node nodes[1] = {{"mlp", "gated_mlp", "intermediate_size=5", NULL}};
  strop_model *m = build(2, shape, nodes, 1);
  float x[18];
  for (int i = 0; i < 18; i++) x[i] = sinf(0.9f * (float)i);
  const float *wg = param(m, "mlp.gate_proj.weight"), *wu = param(m, "mlp.up_proj.weight"),
              *wd = param(m, "mlp.down_proj.weight");
  const strop__act *out;
  strop_test_must(strop__model_forward_exec(m, x, 1, 0, NULL, &out), "forward");
  for (int r = 0; r < 3; r++) {
    double h[5];
    for (int f = 0; f < 5; f++) {
      double g = 0, u = 0;
      for (int i = 0; i < 6; i++) {
        g += wg[f * 6 + i] * x[r * 6 + i];
        u += wu[f * 6 + i] * x[r * 6 + i];
      }
      h[f] = g / (1 + exp(-g)) * u;
    }
    for (int j = 0; j < 6; j++) {
      double y = 0;
      for (int f = 0; f < 5; f++) y += wd[j * 5 + f] * h[f];
      ck_assert_msg(fabs(out->data[r * 6 + j] - y) < 1e-5, "[%d, %d] %g vs %g", r, j,
                    (double)out->data[r * 6 + j], y);
    }
  }
  strop__model_step_end(m);
  /* LoRA on up_proj and down_proj by name, as PEFT targets them; merged, the same function */
  strop_surgery *sg = NULL;
  strop_test_must(strop_surgery_create(m, &sg), "surgery");
  strop_test_must(strop_surgery_lora(sg, "mlp.up_proj", 2, 4.0f, 0.0f), "lora up");
  strop_test_must(strop_surgery_lora(sg, "*.down_proj", 3, 6.0f, 0.0f), "lora down");
  strop_test_must(strop_surgery_apply(sg), "apply");
  strop_surgery_free(sg);
  ck_assert_int_eq(strop_model_param_count(m, 1), 2 * 6 + 5 * 2 + 3 * 5 + 6 * 3);
  float *bu = param(m, "mlp.up_proj.lora_B.weight"),
        *bd = param(m, "mlp.down_proj.lora_B.weight");
  for (int e = 0; e < 10; e++) bu[e] = 0.1f * (float)(e % 3) - 0.1f;
  for (int e = 0; e < 18; e++) bd[e] = 0.05f * (float)(e % 4) - 0.07f;
  strop_test_gradcheck(m, 2, 50, &o);
  float before[18];
  strop_test_must(strop__model_forward_exec(m, x, 1, 0, NULL, &out), "adapted");
  memcpy(before, out->data, sizeof before);
  strop__model_step_end(m);
  strop_test_must(strop_model_lora_merge(m), "merge");
  strop_test_must(strop__model_forward_exec(m, x, 1, 0, NULL, &out), "merged");
  for (int i = 0; i < 18; i++) ck_assert(fabsf(before[i] - out->data[i]) < 1e-5f);
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

/* ---- the tiled core (online softmax) against the materialised one and float64 ---- */

/* Float64 attention of one configuration and its gradients for the upstream gradient dc:
 * q [n t, h hd], k, v [n t, kvh hd] (dense rows), out [n t, h hd]; with dm->dropout the
 * weights strop__sdpa_drop_keeps drops are 0, the others scaled by 1 / (1 - p). */
static void ref_sdpa(const strop__sdpa_dims *dm, const float *q, const float *k, const float *v,
                     const float *dc, double *out, double *dq, double *dk, double *dv) {
  const int64_t n = dm->n, t = dm->t, h = dm->heads, hd = dm->head_dim;
  const int64_t group = h / dm->kv_heads, kw = dm->kv_heads * hd, qw = h * hd;
  double *P = malloc(sizeof(double) * (size_t)(t * t)), *dP = malloc(sizeof(double) * (size_t)t);
  memset(dq, 0, sizeof(double) * (size_t)(n * t * qw));
  memset(dk, 0, sizeof(double) * (size_t)(n * t * kw));
  memset(dv, 0, sizeof(double) * (size_t)(n * t * kw));
  for (int64_t b = 0; b < n; b++)
    for (int64_t hh = 0; hh < h; hh++) {
      const int64_t g = hh / group;
      const float *pad = dm->pad_mask ? dm->pad_mask + b * t : NULL;
#define QV(i, e) ((double)q[(b * t + (i)) * qw + hh * hd + (e)])
#define KV(j, e) ((double)k[(b * t + (j)) * kw + g * hd + (e)])
#define VV(j, e) ((double)v[(b * t + (j)) * kw + g * hd + (e)])
#define DC(i, e) ((double)dc[(b * t + (i)) * qw + hh * hd + (e)])
      for (int64_t i = 0; i < t; i++) {
        double mx = -INFINITY, sum = 0;
        double *pr = P + i * t;
        /* dropout's scale of weight j: 1 without it */
#define DS(j)                                                                 \
  (dm->dropout > 0 ? (strop__sdpa_drop_keeps(dm, dm->drop_row0 + b, hh, i, j) \
                          ? 1.0 / (1.0 - (double)dm->dropout)                 \
                          : 0.0)                                              \
                   : 1.0)
        for (int64_t j = 0; j < t; j++) {
          const int ok = (!dm->causal || j <= i) && (!pad || pad[j] != 0.0f);
          double d = 0;
          for (int64_t e = 0; e < hd; e++) d += QV(i, e) * KV(j, e);
          pr[j] = ok ? d * dm->scale : -INFINITY;
          if (pr[j] > mx) mx = pr[j];
        }
        for (int64_t j = 0; j < t; j++) sum += pr[j] = isinf(pr[j]) ? 0.0 : exp(pr[j] - mx);
        for (int64_t j = 0; j < t; j++) pr[j] = sum > 0 ? pr[j] / sum : 0.0;
        for (int64_t e = 0; e < hd; e++) {
          double acc = 0;
          for (int64_t j = 0; j < t; j++) acc += pr[j] * DS(j) * VV(j, e);
          out[(b * t + i) * qw + hh * hd + e] = acc;
        }
        /* dP = dc V^T, dS = P (dP - sum P dP) */
        double dot = 0;
        for (int64_t j = 0; j < t; j++) {
          double d = 0;
          for (int64_t e = 0; e < hd; e++) d += DC(i, e) * VV(j, e);
          dP[j] = d * DS(j);
          dot += pr[j] * dP[j];
        }
        for (int64_t j = 0; j < t; j++) {
          const double ds = pr[j] * (dP[j] - dot) * dm->scale;
          for (int64_t e = 0; e < hd; e++) {
            dq[(b * t + i) * qw + hh * hd + e] += ds * KV(j, e);
            dk[(b * t + j) * kw + g * hd + e] += ds * QV(i, e);
            dv[(b * t + j) * kw + g * hd + e] += pr[j] * DS(j) * DC(i, e);
          }
        }
      }
#undef QV
#undef KV
#undef VV
#undef DC
#undef DS
    }
  free(P);
  free(dP);
}

/* Largest |got - want| over the largest |want| (the error against the tensor's scale). */
static double err_scaled(const float *got, const double *want, size_t n) {
  double e = 0, s = 1e-30;
  for (size_t i = 0; i < n; i++) {
    e = fmax(e, fabs((double)got[i] - want[i]));
    s = fmax(s, fabs(want[i]));
  }
  return e / s;
}

/* The tiled core equals the materialised one and a float64 reference: forward and every
 * gradient within 1e-5 of each tensor's largest value (the materialised path's own error
 * here is of the same order), causal and padding masks, grouped-query heads, sequences of
 * several blocks with ragged ends (blocks of 8 x 16 and the default 64 x 128), 1 and 3
 * chunks, dropout (the reference drops what strop__sdpa_drop_keeps says, both cores apply that
 * mask; a data-parallel rank's offset drop_row0); a row whose keys are all padding gets zeros;
 * the scratch is one block per chunk. */
START_TEST(tiled_matches_materialised) {
  const int bq = strop__sdpa_block_q, bk = strop__sdpa_block_k;
  static const struct {
    int64_t n, t, h, kvh, hd;
    int causal, pad, blk_q, blk_k, chunks;
    float drop;
  } C[] = {
      {2, 37, 4, 2, 8, 0, 0, 8, 16, 1, 0},       {2, 37, 4, 2, 8, 1, 0, 8, 16, 3, 0},
      {3, 29, 2, 1, 16, 1, 1, 8, 16, 3, 0},      {2, 40, 2, 2, 8, 0, 1, 16, 8, 1, 0},
      {2, 150, 2, 1, 16, 1, 1, 64, 128, 2, 0},   {1, 200, 2, 2, 8, 0, 0, 64, 128, 1, 0},
      {2, 37, 4, 2, 8, 0, 0, 8, 16, 1, 0.3f},    {2, 37, 4, 2, 8, 1, 0, 8, 16, 3, 0.1f},
      {3, 29, 2, 1, 16, 1, 1, 8, 16, 3, 0.5f},   {2, 150, 2, 1, 16, 1, 1, 64, 128, 2, 0.2f},
      {1, 200, 2, 2, 8, 0, 0, 64, 128, 1, 0.1f},
  };
  for (size_t ci = 0; ci < sizeof C / sizeof C[0]; ci++) {
    strop__sdpa_block_q = C[ci].blk_q;
    strop__sdpa_block_k = C[ci].blk_k;
    const int64_t n = C[ci].n, t = C[ci].t, h = C[ci].h, kvh = C[ci].kvh, hd = C[ci].hd;
    const int64_t qn = n * t * h * hd, kn = n * t * kvh * hd;
    float *q = malloc(sizeof(float) * (size_t)qn), *k = malloc(sizeof(float) * (size_t)kn);
    float *v = malloc(sizeof(float) * (size_t)kn), *dc = malloc(sizeof(float) * (size_t)qn);
    float *pad = malloc(sizeof(float) * (size_t)(n * t));
    for (int64_t i = 0; i < qn; i++) q[i] = 1.5f * sinf(0.37f * (float)i + (float)ci);
    for (int64_t i = 0; i < kn; i++) k[i] = 1.5f * cosf(0.23f * (float)i);
    for (int64_t i = 0; i < kn; i++) v[i] = sinf(0.11f * (float)i + 1.0f);
    for (int64_t i = 0; i < qn; i++) dc[i] = cosf(0.07f * (float)i);
    for (int64_t i = 0; i < n * t; i++) pad[i] = (i % 7 == 3 || i % t >= t - 5) ? 0.0f : 1.0f;
    if (C[ci].pad && !C[ci].causal)
      for (int64_t i = 0; i < t; i++) pad[i] = 0.0f; /* sample 0: every key padding */
    double *want = malloc(sizeof(double) * (size_t)qn), *wq = malloc(sizeof(double) * (size_t)qn);
    double *wk = malloc(sizeof(double) * (size_t)kn), *wv = malloc(sizeof(double) * (size_t)kn);
    float *out[2], *gq[2], *gk[2], *gv[2];
    size_t fs[2], bs[2];
    for (int tiled = 0; tiled < 2; tiled++) {
      strop__sdpa_dims dm = {.n = n,
                             .t = t,
                             .heads = h,
                             .kv_heads = kvh,
                             .head_dim = hd,
                             .ldq = h * hd,
                             .ldk = kvh * hd,
                             .ldv = kvh * hd,
                             .causal = C[ci].causal,
                             .pad_mask = C[ci].pad ? pad : NULL,
                             .dropout = C[ci].drop,
                             .drop_seed = 0x5eed0000u + ci,
                             .drop_row0 = (int64_t)ci,
                             .scale = (float)(1.0 / sqrt((double)hd)),
                             .chunks = C[ci].chunks,
                             .tiled = tiled};
      if (!tiled) ref_sdpa(&dm, q, k, v, dc, want, wq, wk, wv);
      fs[tiled] = strop__sdpa_forward_scratch(&dm);
      bs[tiled] = strop__sdpa_backward_scratch(&dm);
      float *p = malloc(sizeof(float) * strop__sdpa_saved_floats(&dm));
      float *scr = malloc(sizeof(float) * (fs[tiled] > bs[tiled] ? fs[tiled] : bs[tiled]));
      out[tiled] = malloc(sizeof(float) * (size_t)qn);
      gq[tiled] = malloc(sizeof(float) * (size_t)qn);
      gk[tiled] = malloc(sizeof(float) * (size_t)kn);
      gv[tiled] = malloc(sizeof(float) * (size_t)kn);
      strop__sdpa_forward(&dm, q, k, v, p, scr, out[tiled]);
      strop__sdpa_backward(&dm, q, k, v, p, out[tiled], dc, scr, gq[tiled], gk[tiled], gv[tiled],
                           0);
      free(p);
      free(scr);
    }
    const char *what[4] = {"out", "dq", "dk", "dv"};
    for (int tiled = 0; tiled < 2; tiled++) {
      const double e[4] = {
          err_scaled(out[tiled], want, (size_t)qn), err_scaled(gq[tiled], wq, (size_t)qn),
          err_scaled(gk[tiled], wk, (size_t)kn), err_scaled(gv[tiled], wv, (size_t)kn)};
      for (int w = 0; w < 4; w++)
        ck_assert_msg(e[w] <= 1e-5, "case %zu %s: %s off float64 by %.3g of its scale", ci,
                      tiled ? "tiled" : "materialised", what[w], e[w]);
    }
    if (C[ci].pad && !C[ci].causal)
      for (int64_t i = 0; i < t * h * hd; i++) ck_assert(out[1][i] == 0.0f);
    /* one block (and a few rows; with dropout a block and a row more) per chunk, whatever t is */
    const size_t blk = (size_t)(C[ci].blk_q < t ? C[ci].blk_q : t) *
                       (size_t)(C[ci].blk_k < t ? C[ci].blk_k : t);
    const size_t drow = C[ci].drop > 0 ? (size_t)C[ci].blk_k : 0, dblk = C[ci].drop > 0 ? blk : 0;
    ck_assert_uint_le(fs[1], (size_t)C[ci].chunks * (blk + 2 * (size_t)C[ci].blk_q + drow));
    ck_assert_uint_le(bs[1],
                      (size_t)C[ci].chunks * (2 * blk + (size_t)C[ci].blk_q + dblk + drow));
    for (int tiled = 0; tiled < 2; tiled++) {
      free(out[tiled]);
      free(gq[tiled]);
      free(gk[tiled]);
      free(gv[tiled]);
    }
    free(q), free(k), free(v), free(dc), free(pad), free(want), free(wq), free(wk), free(wv);
  }
  /* the scratch does not grow with t once t is a block wide; the saved rows grow with t */
  strop__sdpa_block_q = bq;
  strop__sdpa_block_k = bk;
  strop__sdpa_dims d = {
      .n = 1, .heads = 12, .kv_heads = 12, .head_dim = 64, .chunks = 2, .tiled = 1};
  d.t = 128;
  const size_t f128 = strop__sdpa_forward_scratch(&d), b128 = strop__sdpa_backward_scratch(&d);
  d.t = 2048;
  ck_assert_uint_eq(strop__sdpa_forward_scratch(&d), f128);
  ck_assert_uint_eq(strop__sdpa_backward_scratch(&d), b128);
  ck_assert_uint_eq(strop__sdpa_saved_floats(&d), 2 * 12 * 2048);
  d.tiled = 0;
  ck_assert_uint_eq(strop__sdpa_backward_scratch(&d), 2 * 2 * 2048 * 2048);
}
END_TEST

/* The tiled core splits (sample, kv head) items over its chunks: one sample of grouped-query
 * heads (TinyLlama's step: a batch of one) in 2, 3 and 5 chunks — more chunks than samples,
 * and than kv heads — gives bit for bit the output and gradients of 1 chunk (the heads one
 * after the other, as the split by samples ran them), with rotary embeddings, dropout, a
 * causal mask, BF16 products; the gradients written over what the buffers held (each item
 * clears its own columns) and added to it. */
START_TEST(tiled_items_split_bits) {
  const int bq = strop__sdpa_block_q, bk = strop__sdpa_block_k;
  strop__sdpa_block_q = 16, strop__sdpa_block_k = 32;
  static const struct {
    int64_t n, h, kvh;
    int rot, bf16;
    float drop;
  } C[] = {{1, 8, 2, 1, 0, 0.0f},
           {1, 6, 3, 0, 1, 0.2f},
           {2, 4, 4, 2, 0, 0.1f},
           {1, 4, 1, 0, 0, 0.0f},
           {3, 4, 2, 1, 1, 0.0f}};
  const int64_t t = 45, hd = 8;
  for (size_t ci = 0; ci < sizeof C / sizeof C[0]; ci++) {
    const int64_t n = C[ci].n, h = C[ci].h, kvh = C[ci].kvh;
    const int64_t qn = n * t * h * hd, kn = n * t * kvh * hd, half = hd / 2;
    float *q = malloc(sizeof(float) * (size_t)qn), *k = malloc(sizeof(float) * (size_t)kn);
    float *v = malloc(sizeof(float) * (size_t)kn), *dc = malloc(sizeof(float) * (size_t)qn);
    float *cs = malloc(sizeof(float) * (size_t)(2 * t * half));
    for (int64_t i = 0; i < qn; i++) q[i] = 1.5f * sinf(0.37f * (float)i + (float)ci);
    for (int64_t i = 0; i < kn; i++) k[i] = 1.5f * cosf(0.23f * (float)i);
    for (int64_t i = 0; i < kn; i++) v[i] = sinf(0.11f * (float)i + 1.0f);
    for (int64_t i = 0; i < qn; i++) dc[i] = cosf(0.07f * (float)i);
    strop__rope_tables(t, hd, 10000.0, 1.0, cs, cs + t * half);
    static const int chunks[] = {1, 2, 3, 5};
    float *got[4][2][4];
    for (int c = 0; c < 4; c++)
      for (int acc = 0; acc < 2; acc++) {
        strop__sdpa_dims dm = {.n = n,
                               .t = t,
                               .heads = h,
                               .kv_heads = kvh,
                               .head_dim = hd,
                               .ldq = h * hd,
                               .ldk = kvh * hd,
                               .ldv = kvh * hd,
                               .causal = 1,
                               .dropout = C[ci].drop,
                               .drop_seed = 99,
                               .scale = 0.35f,
                               .chunks = chunks[c],
                               .tiled = 1,
                               .rot = C[ci].rot ? hd : 0,
                               .rope_cos = C[ci].rot ? cs : NULL,
                               .rope_sin = C[ci].rot ? cs + t * half : NULL,
                               .bf16 = C[ci].bf16};
        const size_t fs = strop__sdpa_forward_scratch(&dm),
                     bs = strop__sdpa_backward_scratch(&dm);
        float *p = malloc(sizeof(float) * strop__sdpa_saved_floats(&dm));
        float *scr = malloc(sizeof(float) * (fs > bs ? fs : bs));
        const int64_t len[4] = {qn, qn, kn, kn};
        for (int e = 0; e < 4; e++) {
          got[c][acc][e] = malloc(sizeof(float) * (size_t)len[e]);
          for (int64_t i = 0; i < len[e]; i++)
            got[c][acc][e][i] = 0.5f + 0.001f * (float)(i % 97);
        }
        strop__sdpa_forward(&dm, q, k, v, p, scr, got[c][acc][0]);
        strop__sdpa_backward(&dm, q, k, v, p, got[c][acc][0], dc, scr, got[c][acc][1],
                             got[c][acc][2], got[c][acc][3], acc);
        free(p);
        free(scr);
        for (int e = 0; e < 4; e++)
          ck_assert_msg(!memcmp(got[c][acc][e], got[0][acc][e], sizeof(float) * (size_t)len[e]),
                        "case %zu: %d chunks, accumulate %d: tensor %d differs from 1 chunk's",
                        ci, chunks[c], acc, e);
      }
    /* written: what the buffers held is gone (the written and the added gradients differ) */
    for (int e = 1; e < 4; e++)
      ck_assert(memcmp(got[0][0][e], got[0][1][e], sizeof(float) * (size_t)(e == 1 ? qn : kn)));
    for (int c = 0; c < 4; c++)
      for (int acc = 0; acc < 2; acc++)
        for (int e = 0; e < 4; e++) free(got[c][acc][e]);
    free(q), free(k), free(v), free(dc), free(cs);
  }
  strop__sdpa_block_q = bq, strop__sdpa_block_k = bk;
}
END_TEST

/* Dropout's mask is a function of the weight's place: it drops a fraction p of the weights
 * (within 4 standard deviations over 24576 of them, for p = 0.1, 0.5, 0.9), none at p = 0 and
 * all at p = 1 (the output is then 0), another seed gives another mask; and a sample gets the
 * same output alone, at its global index drop_row0, as inside the whole batch (a
 * data-parallel rank's rows) — bit for bit on both cores, with 1 and 2 chunks. */
START_TEST(dropout_mask_by_place) {
  strop__sdpa_dims dm = {.n = 2, .t = 64, .heads = 3, .kv_heads = 3, .head_dim = 8};
  const float ps[3] = {0.1f, 0.5f, 0.9f};
  for (int pi = 0; pi < 3; pi++) {
    dm.dropout = ps[pi];
    dm.drop_seed = 42;
    int64_t kept = 0, all = 0, differ = 0;
    for (int64_t b = 0; b < dm.n; b++)
      for (int64_t h = 0; h < dm.heads; h++)
        for (int64_t i = 0; i < dm.t; i++)
          for (int64_t j = 0; j < dm.t; j++) {
            const int k = strop__sdpa_drop_keeps(&dm, b, h, i, j);
            kept += k, all++;
            dm.drop_seed = 43;
            differ += k != strop__sdpa_drop_keeps(&dm, b, h, i, j);
            dm.drop_seed = 42;
          }
    const double p = ps[pi], frac = 1.0 - (double)kept / (double)all;
    ck_assert_msg(fabs(frac - p) <= 4.0 * sqrt(p * (1 - p) / (double)all),
                  "p %.1f: dropped %.4f of %lld weights", p, frac, (long long)all);
    ck_assert_int_gt(differ, all / 20);
  }
  dm.dropout = 0.0f;
  ck_assert(strop__sdpa_drop_keeps(&dm, 0, 0, 0, 0));
  dm.dropout = 1.0f;
  int none = 1;
  for (int64_t j = 0; j < dm.t; j++) none &= !strop__sdpa_drop_keeps(&dm, 1, 2, 3, j);
  ck_assert(none);

  /* a sample alone at its global index = the same sample inside the batch */
  const int bq = strop__sdpa_block_q, bk = strop__sdpa_block_k;
  strop__sdpa_block_q = 16, strop__sdpa_block_k = 32;
  const int64_t n = 3, t = 50, h = 2, hd = 8, w = h * hd, rows = n * t * w;
  float *q = malloc(sizeof(float) * (size_t)rows), *k = malloc(sizeof(float) * (size_t)rows);
  float *v = malloc(sizeof(float) * (size_t)rows), *dc = malloc(sizeof(float) * (size_t)rows);
  for (int64_t i = 0; i < rows; i++) {
    q[i] = sinf(0.3f * (float)i), k[i] = cosf(0.17f * (float)i);
    v[i] = sinf(0.05f * (float)i + 2.0f), dc[i] = cosf(0.09f * (float)i);
  }
  for (int tiled = 0; tiled < 2; tiled++)
    for (int chunks = 1; chunks <= 2; chunks++)
      for (int pi = 0; pi < 2; pi++) {
        float *got[2][4];
        for (int alone = 0; alone < 2; alone++) {
          const int64_t off = alone ? 2 * t * w : 0, nn = alone ? 1 : n;
          strop__sdpa_dims d = {.n = nn,
                                .t = t,
                                .heads = h,
                                .kv_heads = h,
                                .head_dim = hd,
                                .ldq = w,
                                .ldk = w,
                                .ldv = w,
                                .causal = tiled,
                                .dropout = pi ? 1.0f : 0.25f,
                                .drop_seed = 7,
                                .drop_row0 = alone ? 2 : 0,
                                .scale = 0.35f,
                                .chunks = chunks,
                                .tiled = tiled};
          const size_t fs = strop__sdpa_forward_scratch(&d),
                       bs = strop__sdpa_backward_scratch(&d);
          float *pw = malloc(sizeof(float) * strop__sdpa_saved_floats(&d));
          float *scr = malloc(sizeof(float) * (fs > bs ? fs : bs));
          for (int e = 0; e < 4; e++)
            got[alone][e] = malloc(sizeof(float) * (size_t)(nn * t * w));
          strop__sdpa_forward(&d, q + off, k + off, v + off, pw, scr, got[alone][0]);
          strop__sdpa_backward(&d, q + off, k + off, v + off, pw, got[alone][0], dc + off, scr,
                               got[alone][1], got[alone][2], got[alone][3], 0);
          free(pw);
          free(scr);
        }
        for (int e = 0; e < 4; e++) {
          ck_assert_msg(
              !memcmp(got[1][e], got[0][e] + 2 * t * w, sizeof(float) * (size_t)(t * w)),
              "tiled %d chunks %d p %d: tensor %d of sample 2 differs alone", tiled, chunks, pi,
              e);
          if (pi) /* everything dropped: no output, no gradient */
            for (int64_t i = 0; i < n * t * w; i++) ck_assert(got[0][e][i] == 0.0f);
          for (int a = 0; a < 2; a++) free(got[a][e]);
        }
      }
  strop__sdpa_block_q = bq, strop__sdpa_block_k = bk;
  free(q), free(k), free(v), free(dc);
}
END_TEST

/* The core with its products in BF16 (dm.bf16: the model's compute dtype), tiled and
 * materialised: forward and every gradient within 5e-2 of each tensor's largest value of the
 * float64 reference and of the FP32 core, and not the FP32 core's values (the BF16 products
 * ran). Measured 3e-3 to 3.9e-2: the largest with heads of 64 and scores up to about 18, where
 * BF16's relative 2^-9 on q and k moves a score by about 0.03 (3% on its weight), and where the
 * gradients sum terms of both signs; the FP32 core is within 1e-5. vdpbf16ps (where the CPU has
 * it) and the forced fallback (the FP32 products of the rounded operands) within 1e-3 of each
 * other (measured 9e-5: they round the same values and differ by the order of FP32 sums, and
 * what that does to the next product's rounding);
 * causal and padding masks, grouped-query heads, ragged blocks, 1 and 3 chunks, rotary
 * embeddings (against the FP32 core). With dm.bf16 0 the scratch is what it was. */
START_TEST(bf16_core_close) {
  const int bq0 = strop__sdpa_block_q, bk0 = strop__sdpa_block_k;
  static const struct {
    int64_t n, t, h, kvh, hd;
    int causal, pad, blk_q, blk_k, chunks, tiled, rot;
  } C[] = {
      {2, 37, 4, 2, 8, 0, 0, 8, 16, 1, 1, 0},     {2, 37, 4, 2, 8, 1, 0, 8, 16, 3, 0, 0},
      {3, 29, 2, 1, 16, 1, 1, 8, 16, 3, 1, 0},    {2, 40, 2, 2, 8, 0, 1, 16, 8, 1, 0, 0},
      {2, 150, 2, 1, 16, 1, 1, 64, 128, 2, 1, 0}, {1, 70, 2, 2, 64, 0, 1, 64, 128, 1, 0, 0},
      {1, 200, 2, 2, 40, 1, 0, 64, 128, 1, 1, 0}, {2, 45, 2, 1, 16, 1, 0, 16, 32, 2, 1, 8},
      {2, 45, 2, 1, 16, 1, 1, 16, 32, 2, 0, 16},
  };
  double worst[3] = {0, 0, 0};
  for (size_t ci = 0; ci < sizeof C / sizeof C[0]; ci++) {
    strop__sdpa_block_q = C[ci].blk_q;
    strop__sdpa_block_k = C[ci].blk_k;
    const int64_t n = C[ci].n, t = C[ci].t, h = C[ci].h, kvh = C[ci].kvh, hd = C[ci].hd;
    const int64_t qn = n * t * h * hd, kn = n * t * kvh * hd, rot = C[ci].rot;
    float *q = malloc(sizeof(float) * (size_t)qn), *k = malloc(sizeof(float) * (size_t)kn);
    float *v = malloc(sizeof(float) * (size_t)kn), *dc = malloc(sizeof(float) * (size_t)qn);
    float *pad = malloc(sizeof(float) * (size_t)(n * t));
    float *cs = malloc(sizeof(float) * (size_t)(t * (rot ? rot : 2)));
    for (int64_t i = 0; i < qn; i++) q[i] = 1.5f * sinf(0.37f * (float)i + (float)ci);
    for (int64_t i = 0; i < kn; i++) k[i] = 1.5f * cosf(0.23f * (float)i);
    for (int64_t i = 0; i < kn; i++) v[i] = sinf(0.11f * (float)i + 1.0f);
    for (int64_t i = 0; i < qn; i++) dc[i] = cosf(0.07f * (float)i);
    for (int64_t i = 0; i < n * t; i++) pad[i] = (i % 7 == 3 || i % t >= t - 5) ? 0.0f : 1.0f;
    if (rot) strop__rope_tables(t, rot, 10000.0, 1.0, cs, cs + t * (rot / 2));
    double *want = malloc(sizeof(double) * (size_t)qn), *wq = malloc(sizeof(double) * (size_t)qn);
    double *wk = malloc(sizeof(double) * (size_t)kn), *wv = malloc(sizeof(double) * (size_t)kn);
    /* runs: 0 FP32, 1 BF16 on vdpbf16ps (or, without it, the fallback), 2 the forced fallback */
    float *r[3][4];
    for (int run = 0; run < 3; run++) {
      strop__sdpa_dims dm = {.n = n,
                             .t = t,
                             .heads = h,
                             .kv_heads = kvh,
                             .head_dim = hd,
                             .ldq = h * hd,
                             .ldk = kvh * hd,
                             .ldv = kvh * hd,
                             .causal = C[ci].causal,
                             .pad_mask = C[ci].pad ? pad : NULL,
                             .scale = (float)(1.0 / sqrt((double)hd)),
                             .chunks = C[ci].chunks,
                             .tiled = C[ci].tiled,
                             .rot = rot,
                             .rope_cos = rot ? cs : NULL,
                             .rope_sin = rot ? cs + t * (rot / 2) : NULL,
                             .bf16 = run > 0};
      if (run == 0 && !rot) ref_sdpa(&dm, q, k, v, dc, want, wq, wk, wv);
      if (run == 0) { /* FP32: the scratch without dm.bf16 is as it was */
        dm.bf16 = 1;
        ck_assert_uint_gt(strop__sdpa_forward_scratch(&dm), 0);
        const size_t fb = strop__sdpa_forward_scratch(&dm),
                     bb = strop__sdpa_backward_scratch(&dm);
        dm.bf16 = 0;
        ck_assert_uint_lt(strop__sdpa_forward_scratch(&dm), fb);
        ck_assert_uint_lt(strop__sdpa_backward_scratch(&dm), bb);
      }
      strop__bf16_impl = run == 2;
      const size_t fs = strop__sdpa_forward_scratch(&dm), bs = strop__sdpa_backward_scratch(&dm);
      float *p = malloc(sizeof(float) * strop__sdpa_saved_floats(&dm));
      float *scr = malloc(sizeof(float) * (fs > bs ? fs : bs) + 64);
      float *sa = (float *)(void *)((char *)scr + 4); /* any alignment of the scratch */
      for (int w = 0; w < 4; w++) r[run][w] = malloc(sizeof(float) * (size_t)(w < 2 ? qn : kn));
      strop__sdpa_forward(&dm, q, k, v, p, sa, r[run][0]);
      strop__sdpa_backward(&dm, q, k, v, p, r[run][0], dc, sa, r[run][1], r[run][2], r[run][3],
                           0);
      strop__bf16_impl = 0;
      free(p);
      free(scr);
    }
    const char *what[4] = {"out", "dq", "dk", "dv"};
    const size_t cnt[4] = {(size_t)qn, (size_t)qn, (size_t)kn, (size_t)kn};
    double *ref[4] = {want, wq, wk, wv};
    for (int w = 0; w < 4; w++) {
      double *f32 = malloc(sizeof(double) * cnt[w]);
      for (size_t i = 0; i < cnt[w]; i++) f32[i] = r[0][w][i];
      for (int run = 1; run < 3; run++) {
        const double ef = err_scaled(r[run][w], f32, cnt[w]);
        const double er = rot ? ef : err_scaled(r[run][w], ref[w], cnt[w]);
        worst[0] = fmax(worst[0], fmax(ef, er));
        ck_assert_msg(ef <= 5e-2 && er <= 5e-2,
                      "case %zu run %d: %s off FP32 by %.3g, off float64 by %.3g of its scale",
                      ci, run, what[w], ef, er);
        ck_assert_msg(ef > 1e-6, "case %zu run %d: %s has the FP32 values", ci, run, what[w]);
      }
      for (size_t i = 0; i < cnt[w]; i++) f32[i] = r[2][w][i];
      const double ed = err_scaled(r[1][w], f32, cnt[w]);
      worst[1] = fmax(worst[1], ed);
      ck_assert_msg(ed <= 1e-3, "case %zu: %s of vdpbf16ps off the fallback by %.3g", ci, what[w],
                    ed);
      free(f32);
    }
    for (int run = 0; run < 3; run++)
      for (int w = 0; w < 4; w++) free(r[run][w]);
    free(q), free(k), free(v), free(dc), free(pad), free(cs), free(want), free(wq), free(wk);
    free(wv);
  }
  fprintf(stderr,
          "bf16_core_close: worst %.3g of scale off FP32 / float64, %.3g dot vs fallback\n",
          worst[0], worst[1]);
  strop__sdpa_block_q = bq0;
  strop__sdpa_block_k = bk0;
}
END_TEST

/* Rotary embeddings at the kernels' load (dm->rot) against the rotated copies the layer used
 * to make: q and k rotated by strop__rope_apply, the core run on the copies, dq and dk turned
 * back by strop__rope_apply. Materialised: every output and gradient the same bits (the same
 * products in the same order, only from the rows of one head); tiled: the forward, dq and dv
 * the same bits, dk within 1e-6 of its scale (each block of keys' gradient is turned back before
 * it is summed). q, k, v as views of one packed tensor; whole and partial rotation, GQA,
 * causal and padding masks, several blocks, 1 and 3 chunks; the cached (decoding) path: its
 * queries rotated as they are read, the same bits. */
START_TEST(rope_at_load_matches_rotated_copies) {
  const int bq = strop__sdpa_block_q, bk = strop__sdpa_block_k;
  static const struct {
    int64_t n, t, h, kvh, hd, rot;
    int causal, pad, chunks, tiled;
  } C[] = {
      {2, 37, 4, 2, 8, 8, 1, 0, 1, 1},    {3, 29, 4, 1, 16, 8, 0, 1, 3, 1},
      {2, 37, 4, 2, 8, 8, 1, 1, 3, 0},    {2, 12, 2, 2, 6, 4, 0, 0, 1, 0},
      {1, 150, 8, 2, 16, 16, 1, 0, 1, 1},
  };
  for (size_t ci = 0; ci < sizeof C / sizeof C[0]; ci++) {
    strop__sdpa_block_q = ci == 4 ? 64 : 8;
    strop__sdpa_block_k = ci == 4 ? 128 : 16;
    const int64_t n = C[ci].n, t = C[ci].t, h = C[ci].h, kvh = C[ci].kvh, hd = C[ci].hd;
    const int64_t qw = h * hd, kw = kvh * hd, w = qw + 2 * kw, rot = C[ci].rot, half = rot / 2;
    const int64_t qn = n * t * qw, kn = n * t * kw;
    float *x = malloc(sizeof(float) * (size_t)(n * t * w)),
          *dc = malloc(sizeof(float) * (size_t)qn);
    float *pad = malloc(sizeof(float) * (size_t)(n * t));
    float *cs = malloc(sizeof(float) * (size_t)(2 * t * half));
    for (int64_t i = 0; i < n * t * w; i++) x[i] = 1.5f * sinf(0.37f * (float)i + (float)ci);
    for (int64_t i = 0; i < qn; i++) dc[i] = cosf(0.07f * (float)i);
    for (int64_t i = 0; i < n * t; i++) pad[i] = (i % 7 == 3) ? 0.0f : 1.0f;
    strop__rope_tables(t, rot, 1e4, 1.0, cs, cs + t * half);
    /* the rotated copies */
    float *qr = calloc((size_t)qn, sizeof(float)), *kr = calloc((size_t)kn, sizeof(float));
    strop__rope_apply(x, w, qr, qw, n, t, h, hd, rot, cs, cs + t * half, 0);
    strop__rope_apply(x + qw, w, kr, kw, n, t, kvh, hd, rot, cs, cs + t * half, 0);
    float *out[2], *gq[2], *gk[2], *gv[2];
    for (int at_load = 0; at_load < 2; at_load++) {
      strop__sdpa_dims dm = {.n = n,
                             .t = t,
                             .heads = h,
                             .kv_heads = kvh,
                             .head_dim = hd,
                             .ldq = at_load ? w : qw,
                             .ldk = at_load ? w : kw,
                             .ldv = w,
                             .causal = C[ci].causal,
                             .pad_mask = C[ci].pad ? pad : NULL,
                             .scale = (float)(1.0 / sqrt((double)hd)),
                             .chunks = C[ci].chunks,
                             .tiled = C[ci].tiled};
      if (at_load) {
        dm.rot = rot;
        dm.rope_cos = cs;
        dm.rope_sin = cs + t * half;
      }
      const size_t fs = strop__sdpa_forward_scratch(&dm), bs = strop__sdpa_backward_scratch(&dm);
      float *p = malloc(sizeof(float) * strop__sdpa_saved_floats(&dm));
      float *scr = malloc(sizeof(float) * (fs > bs ? fs : bs));
      out[at_load] = malloc(sizeof(float) * (size_t)qn);
      gq[at_load] = calloc((size_t)(n * t * w), sizeof(float));
      gk[at_load] = calloc((size_t)(n * t * w), sizeof(float));
      gv[at_load] = calloc((size_t)(n * t * w), sizeof(float));
      const float *q = at_load ? x : qr, *k = at_load ? x + qw : kr;
      strop__sdpa_forward(&dm, q, k, x + qw + kw, p, scr, out[at_load]);
      float *dq = at_load ? gq[1] : calloc((size_t)qn, sizeof(float));
      float *dk = at_load ? gk[1] + qw : calloc((size_t)kn, sizeof(float));
      strop__sdpa_backward(&dm, q, k, x + qw + kw, p, out[at_load], dc, scr, dq, dk,
                           gv[at_load] + qw + kw, 1);
      if (!at_load) { /* turned back into the packed layout, as the layer did */
        strop__rope_apply(dq, qw, gq[0], w, n, t, h, hd, rot, cs, cs + t * half, 1);
        strop__rope_apply(dk, kw, gk[0] + qw, w, n, t, kvh, hd, rot, cs, cs + t * half, 1);
        free(dq);
        free(dk);
      }
      free(p);
      free(scr);
    }
    for (int64_t i = 0; i < qn; i++)
      ck_assert_msg(out[0][i] == out[1][i], "case %zu out[%lld] %.9g vs %.9g", ci, (long long)i,
                    (double)out[0][i], (double)out[1][i]);
    double dks = 1e-30, dke = 0;
    for (int64_t i = 0; i < n * t * w; i++) {
      ck_assert_msg(gq[0][i] == gq[1][i], "case %zu dq[%lld] %.9g vs %.9g", ci, (long long)i,
                    (double)gq[0][i], (double)gq[1][i]);
      ck_assert_msg(gv[0][i] == gv[1][i], "case %zu dv[%lld]", ci, (long long)i);
      if (!C[ci].tiled)
        ck_assert_msg(gk[0][i] == gk[1][i], "case %zu dk[%lld] %.9g vs %.9g", ci, (long long)i,
                      (double)gk[0][i], (double)gk[1][i]);
      dks = fmax(dks, fabs(gk[0][i]));
      dke = fmax(dke, fabs((double)gk[0][i] - gk[1][i]));
    }
    ck_assert_msg(dke <= 1e-6 * dks, "case %zu: dk off by %.3g of its scale", ci, dke / dks);
    /* the cached path, all rows at once from position 0: queries rotated as they are read
     * against keys stored rotated */
    if (!C[ci].pad) {
      strop__sdpa_dims dm = {.n = n,
                             .t = t,
                             .heads = h,
                             .kv_heads = kvh,
                             .head_dim = hd,
                             .ldq = qw,
                             .ldk = kw,
                             .ldv = w,
                             .causal = C[ci].causal,
                             .scale = (float)(1.0 / sqrt((double)hd)),
                             .chunks = C[ci].chunks};
      float *c0 = malloc(sizeof(float) * (size_t)qn), *c1 = malloc(sizeof(float) * (size_t)qn);
      strop__sdpa_dims dr = dm;
      dr.rot = rot, dr.rope_cos = cs, dr.rope_sin = cs + t * half, dr.ldq = w;
      float *scr = malloc(sizeof(float) * strop__sdpa_cached_scratch(&dr, 0));
      /* sample b's keys at b * cap rows: cap = t */
      strop__sdpa_cached(&dm, 0, t, qr, kr, x + qw + kw, scr, c0);
      strop__sdpa_cached(&dr, 0, t, x, kr, x + qw + kw, scr, c1);
      ck_assert(memcmp(c0, c1, sizeof(float) * (size_t)qn) == 0);
      free(c0), free(c1), free(scr);
    }
    for (int a = 0; a < 2; a++) free(out[a]), free(gq[a]), free(gk[a]), free(gv[a]);
    free(x), free(dc), free(pad), free(cs), free(qr), free(kr);
  }
  strop__sdpa_block_q = bq, strop__sdpa_block_k = bk;
}
END_TEST

/* What a step of a rotary attention holds: the tables, not rotated copies of q and k (which
 * took (heads + kv_heads) t head_dim floats a sample from the forward to the backward, and as
 * much again in the backward for their gradients): strop_model_step_memory of a Llama-shaped
 * attention (GQA, causal, packed q|k|v from a trainable projection) with rotary embeddings is
 * within the tables and the kernels' few rotated rows of the same graph without. */
START_TEST(rope_keeps_no_copies) {
  const int64_t t = 512, shape[2] = {t, 32}, batch = 2;
  const int64_t h = 8, kvh = 2, hd = 32, copies = batch * t * (h + kvh) * hd * 4;
  size_t act[2];
  for (int rope = 0; rope < 2; rope++) {
    strop_test_node nodes[2] = {{"qkv", "linear", "out_features=384 bias=false", NULL},
                                {"attn", "attention",
                                 rope ? "num_heads=8 num_kv_heads=2 causal=true rope=rotate_half"
                                      : "num_heads=8 num_kv_heads=2 causal=true",
                                 NULL}};
    strop_model *m = build(2, shape, nodes, 2);
    strop_test_must(strop_model_step_memory(m, batch, NULL, 0, 2, &act[rope], NULL), "step");
    strop_model_free(m);
  }
  const size_t tables = (size_t)(t * hd) * 4; /* cos and sin, [t, hd / 2] each */
  ck_assert_msg(act[1] <= act[0] + tables + (size_t)copies / 8,
                "with rope %zu bytes, without %zu: %zu more (rotated copies take %lld)", act[1],
                act[0], act[1] - act[0], (long long)copies);
}
END_TEST

/* Tiled unless the weights are small (t <= 2 head_dim) and no causal mask lets the tiled path
 * skip blocks: the small transformer's t = 64 heads of 32 and BERT's 128 of 64 keep the
 * weights, GPT-2's causal 128 of 64 and every longer sequence run tiled. */
START_TEST(tiled_picked_where_it_pays) {
  ck_assert_int_eq(strop__sdpa_pick_tiled(64, 32, 0, 0), 0);
  ck_assert_int_eq(strop__sdpa_pick_tiled(64, 32, 1, 0), 0); /* one block of queries */
  ck_assert_int_eq(strop__sdpa_pick_tiled(128, 64, 0, 0), 0);
  ck_assert_int_eq(strop__sdpa_pick_tiled(128, 64, 1, 0), 1);
  ck_assert_int_eq(strop__sdpa_pick_tiled(129, 64, 0, 0), 1);
  ck_assert_int_eq(strop__sdpa_pick_tiled(2048, 64, 0, 0), 1);
  ck_assert_int_eq(strop__sdpa_pick_tiled(8, 2, 0, 0), 1);
}
END_TEST

/* The gated MLP's one-pass SiLU product and its backward give the separate kernels' values:
 * h = silu(g) u, du = dh silu(g) bit for bit, dg equal (== : a zero's sign may differ, as
 * silu_backward adds into zeros); large, small, zero and infinite gates. */
START_TEST(silu_gate_matches_separate) {
  enum { N = 203 };
  float g[N], u[N], dh[N], h0[N], a[N], du0[N], dact[N], dg0[N], h1[N], du1[N], dg1[N];
  for (int i = 0; i < N; i++) {
    g[i] = 9.0f * sinf(0.37f * (float)i);
    u[i] = cosf(0.21f * (float)i);
    dh[i] = sinf(0.13f * (float)i + 0.5f);
  }
  g[0] = 0.0f, g[1] = -0.0f, g[2] = INFINITY, g[3] = -INFINITY, g[4] = 90.0f, g[5] = -90.0f;
  strop__silu_forward(g, a, N);
  for (int i = 0; i < N; i++) {
    h0[i] = a[i] * u[i];
    du0[i] = dh[i] * a[i];
    dact[i] = dh[i] * u[i];
    dg0[i] = 0.0f;
  }
  strop__silu_backward(g, a, dact, dg0, N);
  strop__silu_gate_forward(g, u, h1, N);
  memcpy(dg1, dh, sizeof dh);
  strop__silu_gate_backward(g, u, dg1, du1, N);
  for (int i = 0; i < N; i++) {
    ck_assert_msg(memcmp(&h0[i], &h1[i], sizeof(float)) == 0, "h[%d] %g vs %g", i, (double)h0[i],
                  (double)h1[i]);
    ck_assert_msg(memcmp(&du0[i], &du1[i], sizeof(float)) == 0, "du[%d] %g vs %g", i,
                  (double)du0[i], (double)du1[i]);
    ck_assert_msg(dg0[i] == dg1[i] || (isnan(dg0[i]) && isnan(dg1[i])), "dg[%d] %g vs %g", i,
                  (double)dg0[i], (double)dg1[i]);
  }
}
END_TEST

/* Shapes and options the core refuses, each with its own sentence. */
START_TEST(core_errors) {
  strop_model *m = NULL;
  const int64_t shape[2] = {4, 12};
  strop_test_must(strop_model_create(2, shape, &m), "create");
  ck_assert_int_eq(strop_model_add(m, "a", "attention", "num_heads=3 num_kv_heads=2", NULL),
                   STROP_E_INVALID_ARG);
  ck_assert(strstr(strop_last_error(), "num_kv_heads"));
  ck_assert_int_eq(strop_model_add(m, "a", "attention", "num_heads=2 rope_dim=3", NULL),
                   STROP_E_INVALID_ARG);
  ck_assert(strstr(strop_last_error(), "rope_dim"));
  /* 12 packed values are not 5 heads of q, k and v */
  strop_test_must(strop_model_add(m, "a", "attention", "num_heads=5", NULL), "add");
  ck_assert_int_eq(strop_model_finalize(m, 1), STROP_E_SHAPE);
  ck_assert_msg(strstr(strop_last_error(), "'a'") && strstr(strop_last_error(), "packed"), "%s",
                strop_last_error());
  strop_model_free(m);
  /* keys of another width than num_kv_heads * head_dim */
  strop_test_must(strop_model_create(2, shape, &m), "create");
  strop_test_must(strop_model_add(m, "q", "linear", "out_features=8", "input"), "q");
  strop_test_must(strop_model_add(m, "k", "linear", "out_features=6", "input"), "k");
  strop_test_must(strop_model_add(m, "a", "attention", "num_heads=2", "q,k,k"), "a");
  ck_assert_int_eq(strop_model_finalize(m, 1), STROP_E_SHAPE);
  ck_assert_msg(strstr(strop_last_error(), "keys"), "%s", strop_last_error());
  strop_model_free(m);
  /* two inputs */
  strop_test_must(strop_model_create(2, shape, &m), "create");
  strop_test_must(strop_model_add(m, "a", "attention", "num_heads=2", "input,input"), "a");
  ck_assert_int_eq(strop_model_finalize(m, 1), STROP_E_SHAPE);
  ck_assert_msg(strstr(strop_last_error(), "1 input"), "%s", strop_last_error());
  strop_model_free(m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("attention");
  TCase *tc = tcase_create("core");
  tcase_add_loop_test(tc, core_matches_reference, 0, 2);
  tcase_add_loop_test(tc, core_gradcheck, 0, 2);
  tcase_add_test(tc, mha_equals_core);
  tcase_add_test(tc, tiled_matches_materialised);
  tcase_add_test(tc, tiled_items_split_bits);
  tcase_add_test(tc, dropout_mask_by_place);
  tcase_add_test(tc, bf16_core_close);
  tcase_add_test(tc, tiled_picked_where_it_pays);
  tcase_add_test(tc, rope_at_load_matches_rotated_copies);
  tcase_add_test(tc, rope_keeps_no_copies);
  tcase_add_test(tc, no_dropout_in_eval);
  suite_add_tcase(s, tc);
  tc = tcase_create("storage");
  tcase_add_test(tc, mha_packed_equals_separate);
  tcase_add_test(tc, lora_on_conv1d_layout);
  suite_add_tcase(s, tc);
  tc = tcase_create("mlp");
  tcase_add_test(tc, gated_mlp_gradcheck_and_lora);
  tcase_add_test(tc, silu_gate_matches_separate);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, core_errors);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return strop_test_run(suite()); }
