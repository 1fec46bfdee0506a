/* SPDX-License-Identifier: MIT */
/* strop — multi-head self-attention (torch.nn.MultiheadAttention with batch_first=True and
 * query = key = value) on [N, T, D], with q/k/v projections stored separately
 * ("<node>.q_proj.weight" ...) or packed as torch stores them ("<node>.in_proj_weight"
 * [3D, D]), the output projection "<node>.out_proj", an optional causal mask and the graph's
 * padding mask; and optional LoRA adapters on any of the four projections
 * ("<node>.q_proj.lora_A.weight", on the packed rows of q when packed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/init.h"
#include "layers/layer.h"
#include "layers/lora.h"
#include "ops/attention.h"
#include "ops/lora.h"

typedef struct mha_cfg {
  int64_t embed_dim; /* 0 until inferred */
  int64_t num_heads;
  int bias;
  float dropout;
  int causal;
  /* LoRA per projection (q, k, v, out): rank (0 = none) and alpha; merged = B A folded into
   * the base weights. The adapter path runs through W' = W + (alpha / r) B A, which equals
   * PEFT's x W^T + (alpha / r) (x A^T) B^T without adapter dropout. */
  int64_t lora_r[4];
  float lora_alpha[4];
  int lora_merged;
  int packed; /* q, k, v in one in_proj_weight [3D, D] / in_proj_bias [3D] */
} mha_cfg;

static const char *const PROJ_NAMES[] = {"q_proj", "k_proj", "v_proj", "out_proj", NULL};

static int has_lora(const mha_cfg *c) {
  return c->lora_r[0] || c->lora_r[1] || c->lora_r[2] || c->lora_r[3];
}

/* parameter slots: the packed in_proj weight and bias; projection i has weight 2 + 2i and bias
 * 3 + 2i (q, k, v when separate; out always), its adapter A 10 + 2i and B 11 + 2i */
#define SLOT_IN_W 0
#define SLOT_IN_B 1
#define SLOT_W(i) (2 + 2 * (i))
#define SLOT_B(i) (3 + 2 * (i))
#define SLOT_A(i) (10 + 2 * (i))
#define SLOT_LB(i) (11 + 2 * (i))

static const strop__paramdef PARAMS[] = {
    {"in_proj_weight", 0, "[3 embed_dim, embed_dim]: q, k, v stacked, when packed"},
    {"in_proj_bias", 0, "[3 embed_dim], when packed and bias is true"},
    {"q_proj.weight", 0, "[embed_dim, embed_dim]"},
    {"q_proj.bias", 0, "[embed_dim], when bias is true"},
    {"k_proj.weight", 0, "[embed_dim, embed_dim]"},
    {"k_proj.bias", 0, "[embed_dim]"},
    {"v_proj.weight", 0, "[embed_dim, embed_dim]"},
    {"v_proj.bias", 0, "[embed_dim]"},
    {"out_proj.weight", 0, "[embed_dim, embed_dim]"},
    {"out_proj.bias", 0, "[embed_dim]"},
    {"q_proj.lora_A.weight", STROP__PD_ADAPTER, "[r, embed_dim], when lora_r[0] > 0"},
    {"q_proj.lora_B.weight", STROP__PD_ADAPTER, "[embed_dim, r]"},
    {"k_proj.lora_A.weight", STROP__PD_ADAPTER, "[r, embed_dim], when lora_r[1] > 0"},
    {"k_proj.lora_B.weight", STROP__PD_ADAPTER, "[embed_dim, r]"},
    {"v_proj.lora_A.weight", STROP__PD_ADAPTER, "[r, embed_dim], when lora_r[2] > 0"},
    {"v_proj.lora_B.weight", STROP__PD_ADAPTER, "[embed_dim, r]"},
    {"out_proj.lora_A.weight", STROP__PD_ADAPTER, "[r, embed_dim], when lora_r[3] > 0"},
    {"out_proj.lora_B.weight", STROP__PD_ADAPTER, "[embed_dim, r]"},
    {NULL}};

static const strop__optdef OPTIONS[] = {
    STROP__OPT_AUTO_INT(mha_cfg, embed_dim, "embed_dim",
                        "model width D of the [T, D] input; auto: inferred"),
    {.name = "num_heads",
     .type = STROP__OT_INT,
     .off = offsetof(mha_cfg, num_heads),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "2",
     .doc = "attention heads; must divide embed_dim"},
    STROP__OPT_BOOL(mha_cfg, bias, "bias", "true", "the projections have biases"),
    STROP__OPT_FLOAT(mha_cfg, dropout, "dropout", "0", 0, 1, 0,
                     "dropout on the attention weights in train mode"),
    STROP__OPT_BOOL(mha_cfg, causal, "causal", "false",
                    "mask future positions (a decoder's self-attention)"),
    STROP__OPT_INTS(mha_cfg, lora_r, "lora_r", "[0, 0, 0, 0]", 4, 0, INT32_MAX,
                    "LoRA rank per projection [q, k, v, out]; 0: no adapter (set by surgery)"),
    {.name = "lora_alpha",
     .type = STROP__OT_FLOATS,
     .off = offsetof(mha_cfg, lora_alpha),
     .dflt = "[8, 8, 8, 8]",
     .lo = 0,
     .hi = 1e9,
     .n = 4,
     .doc = "LoRA alpha per projection; the adapter's scale is alpha / r"},
    STROP__OPT_BOOL(mha_cfg, lora_merged, "lora_merged", "false",
                    "the adapters are folded into the projection weights"),
    STROP__OPT_BOOL(mha_cfg, packed, "packed", "false",
                    "q, k, v stored as one in_proj_weight [3 D, D] and in_proj_bias "
                    "(torch.nn.MultiheadAttention's layout); false: q_proj, k_proj, v_proj"),
    {NULL}};

static strop_status mha_check(void *cfg, strop__opts *o) {
  mha_cfg *c = cfg;
  if (c->embed_dim && c->embed_dim % c->num_heads != 0)
    return strop__opt_error(o, "num_heads", "embed_dim %lld is not divisible by num_heads %lld",
                            (long long)c->embed_dim, (long long)c->num_heads);
  return STROP_OK;
}

/* [T, D] -> [T, D] for any T, D = embed_dim */
static strop_status mha_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  const mha_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank != 2)
    return strop__shape_error(n, "input must be [T, embed_dim] per sample, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  if (c->embed_dim && c->embed_dim != s->d[1])
    return strop__shape_error(n, "embed_dim is %lld but the input %s has %lld features",
                              (long long)c->embed_dim, strop__shape_str(s, buf, sizeof buf),
                              (long long)s->d[1]);
  if (s->d[1] % c->num_heads != 0)
    return strop__shape_error(n, "embed_dim %lld is not divisible by num_heads %lld",
                              (long long)s->d[1], (long long)c->num_heads);
  *out = *s;
  return STROP_OK;
}

static strop_status mha_infer(strop__node *n) {
  mha_cfg *c = n->cfg;
  strop_status st = mha_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  c->embed_dim = n->in_shapes[0].d[1];
  int64_t wd[2] = {c->embed_dim, c->embed_dim}, pd[2] = {3 * c->embed_dim, c->embed_dim};
  if (c->packed) {
    st = strop__node_declare(n, SLOT_IN_W, 2, pd);
    if (!st && c->bias) st = strop__node_declare(n, SLOT_IN_B, 1, pd);
  }
  for (int i = c->packed ? 3 : 0; i < 4 && st == STROP_OK; i++) {
    st = strop__node_declare(n, SLOT_W(i), 2, wd);
    if (!st && c->bias) st = strop__node_declare(n, SLOT_B(i), 1, wd);
  }
  for (int i = 0; i < 4 && st == STROP_OK; i++) {
    if (!c->lora_r[i]) continue;
    int64_t ad[2] = {c->lora_r[i], c->embed_dim}, bd[2] = {c->embed_dim, c->lora_r[i]};
    st = strop__node_declare(n, SLOT_A(i), 2, ad);
    if (!st) st = strop__node_declare(n, SLOT_LB(i), 2, bd);
  }
  /* with adapters the base projections are frozen, as in PEFT: only A and B train */
  if (!st && has_lora(c))
    for (int i = 0; i < n->n_params; i++)
      if (!n->params[i].is_adapter) n->params[i].trainable = 0;
  return st;
}

/* Projection i's weight (bias 0) or bias (1): its parameter, and in *off where its rows
 * start in it (q, k, v are thirds of in_proj when packed). */
static strop__param *proj_param(const strop__node *n, int i, int bias, size_t *off) {
  const mha_cfg *c = n->cfg;
  const size_t part = (size_t)(bias ? c->embed_dim : c->embed_dim * c->embed_dim);
  if (c->packed && i < 3) {
    *off = (size_t)i * part;
    return strop__node_p(n, bias ? SLOT_IN_B : SLOT_IN_W);
  }
  *off = 0;
  return strop__node_p(n, bias ? SLOT_B(i) : SLOT_W(i));
}

static float *proj_data(const strop__node *n, int i, int bias) {
  size_t off;
  strop__param *p = proj_param(n, i, bias, &off);
  return p && p->data ? p->data + off : NULL;
}

/* its gradient when trainable, else NULL */
static float *proj_grad(const strop__node *n, int i, int bias) {
  size_t off;
  strop__param *p = proj_param(n, i, bias, &off);
  return p && p->trainable && p->grad ? p->grad + off : NULL;
}

static strop__param *adapter(const strop__node *n, int proj, int b) {
  return strop__node_p(n, b ? SLOT_LB(proj) : SLOT_A(proj));
}

static float lora_scale(const mha_cfg *c, int proj) {
  return c->lora_r[proj] ? c->lora_alpha[proj] / (float)c->lora_r[proj] : 0.0f;
}

static void mha_lora_init_adapters(strop__node *n, int mask, strop__rng *rng) {
  const mha_cfg *c = n->cfg;
  for (int i = 0; i < 4; i++) {
    strop__param *a = adapter(n, i, 0), *b = adapter(n, i, 1);
    if (!(mask & (1 << i)) || !a || !b) continue;
    strop__lora_init_pair(a, b, c->embed_dim, rng);
  }
}

static void mha_lora_set(void *cfg, int proj, int64_t r, float alpha) {
  mha_cfg *c = cfg;
  c->lora_r[proj] = r;
  c->lora_alpha[proj] = alpha;
}

static int64_t mha_lora_rank(const strop__node *n, int proj, float *alpha, float *dropout) {
  const mha_cfg *c = n->cfg;
  if (alpha) *alpha = c->lora_alpha[proj];
  if (dropout) *dropout = 0.0f; /* adapter dropout is not supported on projections */
  return c->lora_r[proj];
}

static int mha_lora_merged(const strop__node *n) {
  return ((const mha_cfg *)n->cfg)->lora_merged;
}

static void mha_lora_set_merged(strop__node *n, int merge) {
  mha_cfg *c = n->cfg;
  merge = merge ? 1 : 0;
  if (c->lora_merged == merge || !has_lora(c)) return;
  for (int i = 0; i < 4; i++) {
    size_t off;
    strop__param *w = proj_param(n, i, 0, &off);
    strop__param *a = adapter(n, i, 0), *b = adapter(n, i, 1);
    if (!c->lora_r[i] || !w || !a || !b || !w->data || !a->data || !b->data) continue;
    float s = lora_scale(c, i);
    strop__lora_merge(w->data + off, a->data, b->data, c->embed_dim, c->lora_r[i], c->embed_dim,
                      merge ? s : -s);
    w->version++;
  }
  c->lora_merged = merge;
}

/* PyTorch: in_proj_weight [3D, D] gets xavier_uniform (so each of q/k/v gets the bound of a
 * [3D, D] matrix), in_proj_bias and out_proj.bias zeros, out_proj.weight nn.Linear's default. */
static void mha_init(strop__node *n, strop__rng *rng) {
  const mha_cfg *c = n->cfg;
  const int64_t d = c->embed_dim;
  for (int i = 0; i < 10; i++) {
    strop__param *p = strop__node_p(n, i);
    if (!p) continue;
    if (i % 2) strop__init_zeros(p->data, p->numel);
    else if (i != SLOT_W(3)) strop__init_xavier_uniform(p->data, p->numel, d, 3 * d, 1.0, rng);
    else strop__init_pytorch_linear_default(p->data, p->numel, d, rng);
  }
  mha_lora_init_adapters(n, 15, rng);
}

static void mha_dims(const strop__node *n, const strop__exec *x, const strop__act *in,
                     strop__mha_dims *dm) {
  const mha_cfg *c = n->cfg;
  dm->n = in[0].n;
  dm->t = in[0].shape.d[0];
  dm->d = c->embed_dim;
  dm->heads = c->num_heads;
  dm->causal = c->causal;
  dm->pad_mask = x->pad_mask;
  dm->dropout = x->training ? c->dropout : 0.0f; /* the seed: the forward draws it */
  dm->drop_row0 = x->rows_before;
  dm->chunks = strop__par_chunks(x->nthreads, dm->n, 1);
  dm->tiled = strop__sdpa_pick_tiled(dm->t, dm->d / dm->heads, dm->causal, x->attention);
  dm->bf16 = x->compute_dtype == STROP__LOWP_BF16; /* the core's products; softmax in FP32 */
}

/* The weights the kernels run with. An active (unmerged) adapter's projection runs with
 * W' = W + scale B A, built in eff[proj] (arena, d*d floats each, NULL when not needed). */
static void mha_weights(strop__node *n, float *const *eff, strop__mha_weights *w) {
  const mha_cfg *c = n->cfg;
  const float *p[8];
  for (int i = 0; i < 8; i++) p[i] = proj_data(n, i / 2, i % 2);
  for (int i = 0; eff && i < 4; i++) {
    if (!eff[i]) continue;
    const size_t dd = (size_t)(c->embed_dim * c->embed_dim);
    memcpy(eff[i], p[2 * i], dd * sizeof(float));
    strop__lora_merge(eff[i], adapter(n, i, 0)->data, adapter(n, i, 1)->data, c->embed_dim,
                      c->lora_r[i], c->embed_dim, lora_scale(c, i));
    p[2 * i] = eff[i];
  }
  *w = (strop__mha_weights){p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]};
}

/* Arena buffers of d*d floats for each active adapter (eff[i] NULL otherwise); 0 on OOM. */
static int lora_buffers(const strop__node *n, const strop__exec *x, float **eff, int zero) {
  const mha_cfg *c = n->cfg;
  const size_t bytes = (size_t)(c->embed_dim * c->embed_dim) * sizeof(float);
  for (int i = 0; i < 4; i++) {
    eff[i] = NULL;
    if (!c->lora_r[i] || c->lora_merged) continue;
    eff[i] = zero ? strop__arena_calloc(x->arena, bytes) : strop__arena_alloc(x->arena, bytes);
    if (!eff[i]) return 0;
  }
  return 1;
}

static strop_status mha_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                strop__act *out) {
  strop__mha_dims dm;
  mha_dims(n, x, in, &dm);
  strop_status st;
  dm.pad_mask = strop__exec_mask(n, x, dm.t, &st);
  if (st) return st;
  const size_t act = (size_t)(dm.n * dm.t * dm.d), att = (size_t)(dm.n * dm.heads * dm.t * dm.t);
  /* the weights, or tiled only each row's max and inverse sum */
  const size_t saved = dm.tiled ? (size_t)(2 * dm.n * dm.heads * dm.t) : att;
  strop__mha_cache *cache = strop__arena_alloc(x->arena, sizeof *cache);
  float *buf = strop__arena_alloc(x->arena, (4 * act + saved) * sizeof(float));
  float *scratch = strop__arena_alloc(x->arena,
                                      strop__attention_forward_scratch(&dm) * sizeof(float));
  if (!cache || !buf || !scratch)
    return strop__err(STROP_E_NOMEM, "layer '%s' (multihead_attention): out of memory", n->name);
  /* dropout: one seed per forward, the same number of draws whatever the batch or the rank */
  if (dm.dropout > 0.0f) dm.drop_seed = strop__sdpa_draw_seed(x->rng);
  *cache = (strop__mha_cache){buf,           buf + act,     buf + 2 * act,
                              buf + 3 * act, buf + 4 * act, dm.drop_seed};
  n->saved = cache;
  float *eff[4];
  if (!lora_buffers(n, x, eff, 0))
    return strop__err(STROP_E_NOMEM, "layer '%s' (multihead_attention): out of memory", n->name);
  strop__mha_weights w;
  mha_weights(n, eff, &w);
  strop__attention_forward(&dm, in[0].data, &w, cache, scratch, out->data);
  return STROP_OK;
}

static strop_status mha_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 const strop__act *out, const float *dout, float *const *din) {
  (void)out;
  const strop__mha_cache *cache = n->saved;
  if (!cache)
    return strop__err(STROP_E_INTERNAL,
                      "layer '%s' (multihead_attention): backward without forward", n->name);
  strop__mha_dims dm;
  mha_dims(n, x, in, &dm);
  dm.drop_seed = cache->drop_seed;
  float *scratch = strop__arena_alloc(x->arena,
                                      strop__attention_backward_scratch(&dm) * sizeof(float));
  if (!scratch)
    return strop__err(STROP_E_NOMEM, "layer '%s' (multihead_attention): out of memory", n->name);
  /* W' rebuilt (D^2 r flops, less bookkeeping than keeping the forward's copies) and, for
   * each active adapter, dW' in a zeroed buffer: dA and dB follow from it, and dW = dW' */
  const mha_cfg *c = n->cfg;
  float *eff[4], *deff[4];
  if (!lora_buffers(n, x, eff, 0) || !lora_buffers(n, x, deff, 1))
    return strop__err(STROP_E_NOMEM, "layer '%s' (multihead_attention): out of memory", n->name);
  strop__mha_weights w;
  mha_weights(n, eff, &w);
  float *g[8];
  for (int i = 0; i < 8; i++) g[i] = proj_grad(n, i / 2, i % 2);
  for (int i = 0; i < 4; i++)
    if (deff[i]) g[2 * i] = deff[i];
  strop__mha_grads gr = {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]};
  strop__attention_backward(&dm, in[0].data, &w, cache, dout, scratch, din[0], &gr);
  for (int i = 0; i < 4; i++) {
    if (!deff[i]) continue;
    const size_t dd = (size_t)(c->embed_dim * c->embed_dim);
    float *wg = proj_grad(n, i, 0);
    if (wg)
      for (size_t e = 0; e < dd; e++) wg[e] += deff[i][e];
    strop__param *a = adapter(n, i, 0), *b = adapter(n, i, 1);
    strop__lora_weight_grads(deff[i], a->data, b->data, c->embed_dim, c->lora_r[i], c->embed_dim,
                             lora_scale(c, i), a->trainable ? a->grad : NULL,
                             b->trainable ? b->grad : NULL);
  }
  return STROP_OK;
}

/* adapters live on the projections; merged for good (export) they go: lora_r all 0 */
static const char *const NO_LORA[] = {"lora_r", "[0, 0, 0, 0]", "lora_merged", "false", NULL};
static const strop__lora_ops LORA = {
    .parts = PROJ_NAMES,
    .set = mha_lora_set,
    .rank = mha_lora_rank,
    .init_adapters = mha_lora_init_adapters,
    .merged = mha_lora_merged,
    .set_merged = mha_lora_set_merged,
    .merged_type = "multihead_attention",
    .merged_opts = NO_LORA,
};

const strop__layer_vtable strop__layer_multihead_attention = {
    .type = "multihead_attention",
    .doc = "multi-head self-attention on [T, D] with its q/k/v/out projections, q/k/v packed "
           "or separate (torch.nn.MultiheadAttention, batch_first, query = key = value)",
    .cfg_size = sizeof(mha_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_STOCHASTIC,
    .options = OPTIONS,
    .params = PARAMS,
    .check = mha_check,
    .shape = mha_shape,
    .infer = mha_infer,
    .init = mha_init,
    .forward = mha_forward,
    .backward = mha_backward,
    .lora = &LORA,
};
