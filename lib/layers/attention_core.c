/* SPDX-License-Identifier: MIT */
/* strop — attention: scaled dot-product attention of already-projected queries, keys and
 * values (torch.nn.functional.scaled_dot_product_attention), so each projection is an ordinary
 * linear node with the checkpoint's own name (Llama's q_proj, BERT's self.query, GPT-2's packed
 * c_attn) that LoRA, freezing and surgery reach like any other. Grouped-query attention, rotary
 * position embeddings, causal and padding masks, dropout on the weights. */
#include <math.h>
#include <string.h>

#include "layers/layer.h"
#include "ops/attention.h"

typedef struct attn_cfg {
  int64_t num_heads;
  int64_t num_kv_heads; /* 0 ("auto") until inferred: num_heads */
  int64_t head_dim;     /* 0 ("auto") until inferred from the query width */
  int causal;
  float dropout;
  float scale; /* 0: "auto", 1 / sqrt(head_dim) */
  int rope;    /* ROPE_* */
  float rope_theta;
  float rope_factor; /* linear rope scaling: positions divided by it */
  int64_t rope_dim;  /* 0 ("auto"): the whole head is rotated */
} attn_cfg;

enum { ROPE_NONE, ROPE_HALF };
static const char *const ROPES[] = {"none", "rotate_half", NULL};

static const char *const AUTO_WORD[] = {"auto", NULL};
static const double AUTO_ZERO[] = {0.0};

static const strop__optdef OPTIONS[] = {
    {.name = "num_heads",
     .type = STROP__OT_INT,
     .off = offsetof(attn_cfg, num_heads),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "2",
     .doc = "query heads"},
    STROP__OPT_AUTO_INT(attn_cfg, num_kv_heads, "num_kv_heads",
                        "key/value heads (grouped-query attention: num_heads is a multiple of "
                        "it, Llama's num_key_value_heads); auto: num_heads"),
    STROP__OPT_AUTO_INT(attn_cfg, head_dim, "head_dim",
                        "width of a head; auto: the query width / num_heads"),
    STROP__OPT_BOOL(attn_cfg, causal, "causal", "false",
                    "mask future positions (a decoder's self-attention)"),
    STROP__OPT_FLOAT(attn_cfg, dropout, "dropout", "0", 0, 1, STROP__OF_HI_OPEN,
                     "dropout on the attention weights in train mode"),
    {.name = "scale",
     .type = STROP__OT_FLOAT,
     .off = offsetof(attn_cfg, scale),
     .dflt = "auto",
     .lo = 0,
     .hi = 1e9,
     .words = AUTO_WORD,
     .word_values = AUTO_ZERO,
     .doc = "the scores' scale; auto: 1 / sqrt(head_dim)"},
    STROP__OPT_ENUM(attn_cfg, rope, "rope", "none", ROPES,
                    "rotary position embeddings on queries and keys: rotate_half is Llama's "
                    "(GPT-NeoX's) convention"),
    STROP__OPT_FLOAT(attn_cfg, rope_theta, "rope_theta", "10000", 1, 1e12, 0,
                     "the rotary base (Llama's rope_theta)"),
    STROP__OPT_FLOAT(attn_cfg, rope_factor, "rope_factor", "1", 0, 1e6, STROP__OF_LO_OPEN,
                     "linear rope scaling: positions are divided by it (rope_scaling "
                     "{type: linear, factor})"),
    STROP__OPT_AUTO_INT(attn_cfg, rope_dim, "rope_dim",
                        "leading values of each head that rotate (partial rotary); auto: all"),
    {NULL}};

static strop_status attn_check(void *cfg, strop__opts *o) {
  attn_cfg *c = cfg;
  if (c->num_kv_heads && c->num_heads % c->num_kv_heads)
    return strop__opt_error(o, "num_kv_heads",
                            "num_heads %lld is not a multiple of "
                            "num_kv_heads %lld",
                            (long long)c->num_heads, (long long)c->num_kv_heads);
  if (c->rope_dim && c->rope_dim % 2)
    return strop__opt_error(o, "rope_dim", "must be even, got %lld", (long long)c->rope_dim);
  return STROP_OK;
}

/* The geometry the inputs give: heads, kv heads, head width. */
typedef struct geom {
  int64_t h, kvh, hd;
} geom;

static strop_status attn_geom(const strop__node *n, const strop__shape *in, int n_in, geom *g) {
  const attn_cfg *c = n->cfg;
  char a[96], b[96], d[96];
  g->h = c->num_heads;
  g->kvh = c->num_kv_heads ? c->num_kv_heads : c->num_heads;
  if (n_in != 1 && n_in != 3)
    return strop__shape_error(n, "takes 1 input (q, k and v packed) or 3 (q, k, v), got %d",
                              n_in);
  for (int i = 0; i < n_in; i++)
    if (in[i].rank != 2 || in[i].d[0] != in[0].d[0])
      return strop__shape_error(n, "inputs must be [T, width] per sample with one T, got %s%s%s",
                                strop__shape_str(&in[0], a, sizeof a), n_in > 1 ? " and " : "",
                                n_in > 1 ? strop__shape_str(&in[i], b, sizeof b) : "");
  const int64_t units = n_in == 1 ? g->h + 2 * g->kvh : g->h;
  g->hd = c->head_dim ? c->head_dim : in[0].d[1] / units;
  if (g->hd < 1 || in[0].d[1] != units * g->hd)
    return strop__shape_error(n, "%s %s is not %lld heads of %s%lld",
                              n_in == 1 ? "the packed "
                                          "q|k|v input"
                                        : "the query input",
                              strop__shape_str(&in[0], a, sizeof a), (long long)units,
                              c->head_dim ? "" : "equal width ",
                              (long long)(g->hd < 1 ? 1 : g->hd));
  if (n_in == 3 && (in[1].d[1] != g->kvh * g->hd || in[2].d[1] != g->kvh * g->hd))
    return strop__shape_error(n,
                              "keys %s and values %s must be %lld heads of %lld (the query's "
                              "%s has %lld heads)",
                              strop__shape_str(&in[1], a, sizeof a),
                              strop__shape_str(&in[2], b, sizeof b), (long long)g->kvh,
                              (long long)g->hd, strop__shape_str(&in[0], d, sizeof d),
                              (long long)g->h);
  if (c->rope && (c->rope_dim > g->hd || (!c->rope_dim && g->hd % 2)))
    return strop__shape_error(n, "rotary embeddings need an even rope_dim within head_dim %lld",
                              (long long)g->hd);
  return STROP_OK;
}

/* [T, q width] (and k, v) -> [T, heads * head_dim] */
static strop_status attn_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  geom g;
  strop_status st = attn_geom(n, in, n->n_in, &g);
  if (st) return st;
  out->rank = 2;
  out->d[0] = in[0].d[0];
  out->d[1] = g.h * g.hd;
  return STROP_OK;
}

static strop_status attn_infer(strop__node *n) {
  attn_cfg *c = n->cfg;
  strop_status st = attn_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  geom g;
  (void)attn_geom(n, n->in_shapes, n->n_in, &g);
  c->num_kv_heads = g.kvh;
  return STROP_OK;
}

/* What the forward keeps for the backward: views of the inputs (with rotary embeddings the
 * kernels rotate q and k as they load them, from dm's tables: no rotated copy is kept), the
 * weights or the rows' statistics; dm holds dropout's seed (its mask is computed again). */
typedef struct attn_saved {
  strop__sdpa_dims dm;
  float *p;
} attn_saved;

static strop_status oom(const strop__node *n) {
  return strop__err(STROP_E_NOMEM, "layer '%s' (attention): out of memory", n->name);
}

/* Views of q, k, v in the inputs and their row strides. */
static void views(const strop__act *in, int n_in, const geom *g, const float **q, const float **k,
                  const float **v, int64_t ld[3]) {
  if (n_in == 1) {
    const int64_t w = (g->h + 2 * g->kvh) * g->hd;
    *q = in[0].data;
    *k = in[0].data + g->h * g->hd;
    *v = *k + g->kvh * g->hd;
    ld[0] = ld[1] = ld[2] = w;
  } else {
    *q = in[0].data;
    *k = in[1].data;
    *v = in[2].data;
    ld[0] = g->h * g->hd;
    ld[1] = ld[2] = g->kvh * g->hd;
  }
}

strop__kv_cache *strop__decode_cache(const strop__decode *d, const strop__node *n) {
  for (int i = 0; d && i < d->n_kv; i++)
    if (d->kv[i].node == n) return &d->kv[i];
  return NULL;
}

/* attn_decode for sequences left-padded to a common length (d->start): each sequence runs on
 * its own, from its first token — rows of padding are neither cached nor attended to (their
 * outputs are 0), and positions (rotary angles, causality) count from the sequence's start —
 * so each sequence computes what it computes alone. */
static strop_status attn_decode_rows(strop__node *n, const strop__exec *x, const geom *g,
                                     const float *q, const float *k, const float *v,
                                     const int64_t ld[3], int64_t nb, int64_t t,
                                     strop__kv_cache *kc, int64_t rot, float *out) {
  const attn_cfg *c = n->cfg;
  const strop__decode *d = x->decode;
  const int64_t w = g->kvh * g->hd, pos = d->pos, cap = d->cap, ldo = g->h * g->hd;
  strop__sdpa_dims dm = {.n = 1,
                         .heads = g->h,
                         .kv_heads = g->kvh,
                         .head_dim = g->hd,
                         .ldq = ld[0],
                         .ldk = w,
                         .ldv = w,
                         .causal = c->causal,
                         .scale = c->scale > 0 ? c->scale : (float)(1.0 / sqrt((double)g->hd)),
                         .chunks = 1,
                         .rot = rot};
  dm.t = t;
  const size_t half = (size_t)(t * (rot / 2));
  float *scratch = strop__arena_alloc(x->arena,
                                      strop__sdpa_cached_scratch(&dm, pos) * sizeof(float));
  float *cs = rot ? strop__arena_alloc(x->arena, 2 * half * sizeof *cs + 1) : NULL;
  if (!scratch || (rot && !cs)) return oom(n);
  memset(out, 0, (size_t)(nb * t * ldo) * sizeof *out);
  for (int64_t b = 0; b < nb; b++) {
    const int64_t s = d->start[b], i0 = s > pos ? s - pos : 0, tt = t - i0;
    if (tt <= 0) continue;            /* padding only */
    const int64_t rel = pos + i0 - s; /* the sequence's own position of row i0 */
    const float *qb = q + (b * t + i0) * ld[0], *ks = k + (b * t + i0) * ld[1],
                *vs = v + (b * t + i0) * ld[2];
    float *kd = kc->k + (b * cap + pos + i0) * w, *vd = kc->v + (b * cap + pos + i0) * w;
    const size_t hf = (size_t)(tt * (rot / 2));
    if (rot) { /* the queries rotate as the kernel loads them, the keys as they are cached */
      strop__rope_tables_from(rel, tt, rot, c->rope_theta, c->rope_factor, cs, cs + hf);
      dm.rope_cos = cs;
      dm.rope_sin = cs + hf;
      memset(kd, 0, (size_t)(tt * w) * sizeof *kd); /* rope_apply adds */
      strop__rope_apply(ks, ld[1], kd, w, 1, tt, g->kvh, g->hd, rot, cs, cs + hf, 0);
    }
    for (int64_t i = 0; i < tt; i++) {
      if (!rot) memcpy(kd + i * w, ks + i * ld[1], (size_t)w * sizeof *kd);
      memcpy(vd + i * w, vs + i * ld[2], (size_t)w * sizeof *vd);
    }
    dm.t = tt;
    strop__sdpa_cached(&dm, rel, cap, qb, kc->k + (b * cap + s) * w, kc->v + (b * cap + s) * w,
                       scratch, out + (b * t + i0) * ldo);
  }
  n->saved = NULL;
  return STROP_OK;
}

/* An incremental decoding step: the t new rows' keys (rotated at their absolute positions)
 * and values go into the node's cache at [pos, pos + t), and the new queries attend to the
 * whole cached sequence. Keeps nothing for a backward (decoding is eval only). */
static strop_status attn_decode(strop__node *n, const strop__exec *x, const geom *g,
                                const float *q, const float *k, const float *v,
                                const int64_t ld[3], int64_t nb, int64_t t, float *out) {
  const attn_cfg *c = n->cfg;
  const strop__decode *d = x->decode;
  strop__kv_cache *kc = strop__decode_cache(d, n);
  const int64_t w = g->kvh * g->hd, pos = d->pos, cap = d->cap;
  if (!kc)
    return strop__err(STROP_E_INTERNAL,
                      "layer '%s' (attention): no key/value cache for an "
                      "incremental step",
                      n->name);
  if (pos < 0 || pos + t > cap)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (attention): positions %lld to %lld do not fit "
                      "the key/value cache of %lld positions",
                      n->name, (long long)pos, (long long)(pos + t - 1), (long long)cap);
  if (!kc->k) {
    const size_t cells = (size_t)(nb * cap * w);
    kc->k = strop__calloc(cells, sizeof(float));
    kc->v = strop__calloc(cells, sizeof(float));
    if (!kc->k || !kc->v) {
      strop__free(kc->k);
      strop__free(kc->v);
      kc->k = kc->v = NULL;
      return oom(n);
    }
    kc->batch = nb;
    kc->width = w;
  } else if (kc->batch != nb || kc->width != w) {
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (attention): a step of %lld sequences of %lld "
                      "key values per position, the cache holds %lld of %lld",
                      n->name, (long long)nb, (long long)w, (long long)kc->batch,
                      (long long)kc->width);
  }
  const int64_t rot = c->rope ? (c->rope_dim ? c->rope_dim : g->hd) : 0;
  if (d->start) return attn_decode_rows(n, x, g, q, k, v, ld, nb, t, kc, rot, out);
  const size_t half = (size_t)(t * (rot / 2));
  float *cs = NULL;
  if (rot) { /* the keys rotate as they are cached, the queries as the kernel loads them */
    cs = strop__arena_alloc(x->arena, 2 * half * sizeof *cs + 1);
    if (!cs) return oom(n);
    strop__rope_tables_from(pos, t, rot, c->rope_theta, c->rope_factor, cs, cs + half);
  }
  for (int64_t b = 0; b < nb; b++) {
    float *kd = kc->k + (b * cap + pos) * w, *vd = kc->v + (b * cap + pos) * w;
    const float *ks = k + b * t * ld[1], *vs = v + b * t * ld[2];
    if (rot) {
      memset(kd, 0, (size_t)(t * w) * sizeof *kd); /* rope_apply adds */
      strop__rope_apply(ks, ld[1], kd, w, 1, t, g->kvh, g->hd, rot, cs, cs + half, 0);
    }
    for (int64_t i = 0; i < t; i++) {
      if (!rot) memcpy(kd + i * w, ks + i * ld[1], (size_t)w * sizeof *kd);
      memcpy(vd + i * w, vs + i * ld[2], (size_t)w * sizeof *vd);
    }
  }
  strop__sdpa_dims dm = {.n = nb,
                         .t = t,
                         .heads = g->h,
                         .kv_heads = g->kvh,
                         .head_dim = g->hd,
                         .ldq = ld[0],
                         .ldk = w,
                         .ldv = w,
                         .causal = c->causal,
                         .scale = c->scale > 0 ? c->scale : (float)(1.0 / sqrt((double)g->hd)),
                         .chunks = strop__par_chunks(x->nthreads, nb, 1),
                         .rot = rot,
                         .rope_cos = cs,
                         .rope_sin = cs ? cs + half : NULL};
  float *scratch = strop__arena_alloc(x->arena,
                                      strop__sdpa_cached_scratch(&dm, pos) * sizeof(float));
  if (!scratch) return oom(n);
  strop__sdpa_cached(&dm, pos, cap, q, kc->k, kc->v, scratch, out);
  n->saved = NULL;
  return STROP_OK;
}

static strop_status attn_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 strop__act *out) {
  const attn_cfg *c = n->cfg;
  geom g;
  strop__shape shp[3];
  for (int i = 0; i < n->n_in; i++) shp[i] = in[i].shape;
  strop_status st = attn_geom(n, shp, n->n_in, &g);
  if (st) return st;
  const int64_t nb = in[0].n, t = in[0].shape.d[0];
  attn_saved *sv = strop__arena_alloc(x->arena, sizeof *sv);
  if (!sv) return oom(n);
  memset(sv, 0, sizeof *sv);
  int64_t ld[3];
  const float *q, *k, *v;
  views(in, n->n_in, &g, &q, &k, &v, ld);
  if (x->decode) return attn_decode(n, x, &g, q, k, v, ld, nb, t, out->data);
  const int tiled = strop__sdpa_pick_tiled(t, g.hd, c->causal, x->attention);
  sv->dm = (strop__sdpa_dims){
      .n = nb,
      .t = t,
      .heads = g.h,
      .kv_heads = g.kvh,
      .head_dim = g.hd,
      .ldq = ld[0],
      .ldk = ld[1],
      .ldv = ld[2],
      .causal = c->causal,
      .dropout = x->training ? c->dropout : 0.0f, /* the seed: drawn below */
      .drop_row0 = x->rows_before,
      .scale = c->scale > 0 ? c->scale : (float)(1.0 / sqrt((double)g.hd)),
      /* the tiled core splits (sample, kv head) items: one sample splits too */
      .chunks = strop__par_chunks(x->nthreads, strop__sdpa_split_heads && tiled ? nb * g.kvh : nb,
                                  1),
      .tiled = tiled,
      /* the model's compute dtype: the products in BF16, the softmax in FP32 */
      .bf16 = x->compute_dtype == STROP__LOWP_BF16};
  sv->dm.pad_mask = strop__exec_mask(n, x, t, &st);
  if (st) return st;
  if (c->rope) { /* the kernels rotate q and k as they load them: only the tables are kept */
    sv->dm.rot = c->rope_dim ? c->rope_dim : g.hd;
    const size_t half = (size_t)(t * (sv->dm.rot / 2));
    float *cs = strop__arena_alloc(x->arena, 2 * half * sizeof *cs + 1);
    if (!cs) return oom(n);
    strop__rope_tables(t, sv->dm.rot, c->rope_theta, c->rope_factor, cs, cs + half);
    sv->dm.rope_cos = cs;
    sv->dm.rope_sin = cs + half;
  }
  sv->p = strop__arena_alloc(x->arena, strop__sdpa_saved_floats(&sv->dm) * sizeof *sv->p);
  float *scratch = strop__arena_alloc(x->arena,
                                      strop__sdpa_forward_scratch(&sv->dm) * sizeof(float));
  if (!sv->p || !scratch) return oom(n);
  /* dropout: one seed per forward, the same number of draws whatever the batch or the rank */
  if (sv->dm.dropout > 0.0f) sv->dm.drop_seed = strop__sdpa_draw_seed(x->rng);
  strop__sdpa_forward(&sv->dm, q, k, v, sv->p, scratch, out->data);
  n->saved = sv;
  return STROP_OK;
}

static strop_status attn_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                  const strop__act *out, const float *dout, float *const *din) {
  const attn_saved *sv = n->saved;
  if (!sv)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (attention): backward without forward",
                      n->name);
  const strop__sdpa_dims *dm = &sv->dm;
  geom g = {dm->heads, dm->kv_heads, dm->head_dim};
  float *scratch = strop__arena_alloc(x->arena, strop__sdpa_backward_scratch(dm) * sizeof(float));
  if (!scratch) return oom(n);
  /* the gradients' places in the inputs' gradients (the graph zeroed them: add) */
  float *dq = NULL, *dk = NULL, *dv = NULL;
  if (n->n_in == 1) {
    if (din[0]) {
      dq = din[0];
      dk = din[0] + g.h * g.hd;
      dv = dk + g.kvh * g.hd;
    }
  } else {
    dq = din[0];
    dk = din[1];
    dv = din[2];
  }
  /* q, k and v from the inputs as the backward is given them (the graph may hand over values
   * widened from BF16: attn_bf16_input), at the forward's strides */
  const float *q, *k, *v;
  int64_t ld[3];
  views(in, n->n_in, &g, &q, &k, &v, ld);
  /* with rotary embeddings the kernel takes dq and dk back through the rotation itself */
  strop__sdpa_backward(dm, q, k, v, sv->p, out->data, dout, scratch, dq, dk, dv, 1);
  return STROP_OK;
}

/* With the products in BF16 (sdpa_dims.bf16) and no rotary embeddings, q, k and v are read only
 * by the products, which round them (ops/attention.c's mm): scores, dctx V^T, dS K and dS^T Q.
 * Rotated, they are read in FP32 by the rotation first. */
static int attn_bf16_input(const strop__node *n, const strop__exec *x, int slot) {
  (void)slot;
  const attn_cfg *c = n->cfg;
  return x->compute_dtype == STROP__LOWP_BF16 && !c->rope;
}

const strop__layer_vtable strop__layer_attention = {
    .type = "attention",
    .doc = "scaled dot-product attention of projected queries, keys and values, [T, q] (+ [T, "
           "k], [T, v], or one packed [T, q|k|v]) -> [T, heads * head_dim] "
           "(torch.nn.functional.scaled_dot_product_attention): grouped-query heads, rotary "
           "embeddings, causal and padding masks",
    .cfg_size = sizeof(attn_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_STOCHASTIC | STROP__LAYER_ANY_INPUTS,
    .options = OPTIONS,
    .check = attn_check,
    .shape = attn_shape,
    .infer = attn_infer,
    .forward = attn_forward,
    .backward = attn_backward,
    .bf16_input = attn_bf16_input,
};
