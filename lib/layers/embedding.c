/* SPDX-License-Identifier: MIT */
/* strop — token embedding (torch.nn.Embedding: ids stored as floats [N, *] -> [N, *, D]), the
 * same with a LoRA adapter (PEFT's lora.Embedding) and a learned positional embedding (input
 * [N, T, D] + weight[:T], or a row per token type). */
#include <math.h>

#include "layers/init.h"
#include "layers/layer.h"
#include "ops/lora.h"

static float *grad_of(strop__param *p) { return p && p->trainable ? p->grad : NULL; }

/* ------------------------------------------------------------------ embedding */

#define NO_PADDING INT64_MIN

typedef struct embedding_cfg {
  int64_t num_embeddings;
  int64_t embedding_dim;
  int64_t padding_idx; /* normalised to [0, num_embeddings) in parse; NO_PADDING when absent */
} embedding_cfg;

enum { W }; /* parameter slot */

static const double NONE_V[] = {(double)NO_PADDING, (double)NO_PADDING, (double)NO_PADDING};

/* the embedding's options; lora_embedding's cfg starts with an embedding_cfg, so the offsets
 * hold for both */
#define EMB_OPTION_DEFS                                                                        \
  {.name = "num_embeddings",                                                                   \
   .type = STROP__OT_INT,                                                                      \
   .off = offsetof(embedding_cfg, num_embeddings),                                             \
   .lo = 1,                                                                                    \
   .hi = INT32_MAX,                                                                            \
   .example = "10",                                                                            \
   .doc = "vocabulary size"},                                                                  \
      {.name = "embedding_dim",                                                                \
       .type = STROP__OT_INT,                                                                  \
       .off = offsetof(embedding_cfg, embedding_dim),                                          \
       .lo = 1,                                                                                \
       .hi = INT32_MAX,                                                                        \
       .example = "4",                                                                         \
       .doc = "width of each vector"},                                                         \
  {                                                                                            \
    .name = "padding_idx", .type = STROP__OT_INT, .off = offsetof(embedding_cfg, padding_idx), \
    .dflt = "none", .lo = INT32_MIN, .hi = INT32_MAX, .words = strop__word_none,               \
    .word_values = NONE_V,                                                                     \
    .doc = "an id whose vector gets no gradient (negative: from the end); none: no such id"    \
  }

static const strop__optdef EMB_OPTIONS[] = {EMB_OPTION_DEFS, {NULL}};

static const strop__paramdef EMB_PARAMS[] = {
    [W] = {"weight", 0, "[num_embeddings, embedding_dim]"},
    {NULL}};

static strop_status embedding_check(void *cfg, strop__opts *o) {
  embedding_cfg *c = cfg;
  if (c->padding_idx != NO_PADDING) {
    /* PyTorch accepts -num_embeddings <= padding_idx < num_embeddings, negatives from the end */
    if (c->padding_idx < -c->num_embeddings || c->padding_idx >= c->num_embeddings)
      return strop__opt_error(o, "padding_idx", "must be in [%lld, %lld), got %lld",
                              (long long)-c->num_embeddings, (long long)c->num_embeddings,
                              (long long)c->padding_idx);
    if (c->padding_idx < 0) c->padding_idx += c->num_embeddings;
  }
  return STROP_OK;
}

/* ids [*] -> vectors [*, embedding_dim] */
static strop_status embedding_shape(const strop__node *n, const strop__shape *in,
                                    strop__shape *out) {
  const embedding_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank + 1 > STROP_MAX_RANK)
    return strop__shape_error(n, "input %s has too many dimensions to add one",
                              strop__shape_str(s, buf, sizeof buf));
  *out = *s;
  out->d[s->rank] = c->embedding_dim;
  out->rank = s->rank + 1;
  return STROP_OK;
}

static strop_status embedding_infer(strop__node *n) {
  const embedding_cfg *c = n->cfg;
  strop_status st = embedding_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  int64_t wd[2] = {c->num_embeddings, c->embedding_dim};
  return strop__node_declare(n, W, 2, wd);
}

static void embedding_init(strop__node *n, strop__rng *rng) {
  const embedding_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W);
  strop__init_normal(w->data, w->numel, 0.0f, 1.0f, rng);
  if (c->padding_idx != NO_PADDING)
    strop__init_zeros(w->data + c->padding_idx * c->embedding_dim, (size_t)c->embedding_dim);
}

static strop_status embedding_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                      strop__act *out) {
  (void)x;
  const embedding_cfg *c = n->cfg;
  const float *w = strop__node_p(n, W)->data;
  const int64_t per = (int64_t)strop__shape_numel(&in[0].shape), d = c->embedding_dim;
  const int64_t total = in[0].n * per;
  const float *ids = in[0].data;
  for (int64_t i = 0; i < total; i++) {
    float f = ids[i];
    /* the comparison also rejects NaN; floorf rejects fractions */
    if (!(f >= 0.0f && f < (float)c->num_embeddings) || f != floorf(f))
      return strop__err(STROP_E_INVALID_ARG,
                        "layer '%s' (embedding): token id %g at sample %lld, position %lld is "
                        "not an integer in [0, %lld)",
                        n->name, (double)f, (long long)(i / per), (long long)(i % per),
                        (long long)c->num_embeddings);
  }
  float *y = out->data;
  for (int64_t i = 0; i < total; i++) {
    const float *row = w + (int64_t)ids[i] * d;
    float *yr = y + i * d;
    for (int64_t j = 0; j < d; j++) yr[j] = row[j];
  }
  return STROP_OK;
}

static strop_status embedding_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                       const strop__act *out, const float *dout,
                                       float *const *din) {
  (void)x;
  (void)out;
  (void)din; /* token ids have no gradient */
  const embedding_cfg *c = n->cfg;
  float *gw = grad_of(strop__node_p(n, W));
  if (!gw) return STROP_OK;
  const int64_t per = (int64_t)strop__shape_numel(&in[0].shape), d = c->embedding_dim;
  const int64_t total = in[0].n * per;
  for (int64_t i = 0; i < total; i++) {
    int64_t id = (int64_t)in[0].data[i]; /* validated by the forward */
    if (id == c->padding_idx) continue;
    float *gr = gw + id * d;
    const float *dr = dout + i * d;
    for (int64_t j = 0; j < d; j++) gr[j] += dr[j];
  }
  return STROP_OK;
}

/* LoRA turns an embedding node into a lora_embedding of the same options (surgery), when named
 * exactly: a pattern keeps meaning the linear layers and projections it matched before
 * embeddings took adapters. */
static const strop__lora_ops EMB_LORA = {.adapter_type = "lora_embedding", .exact_only = 1};

const strop__layer_vtable strop__layer_embedding = {
    .type = "embedding",
    .doc = "token ids (stored as floats) [*] -> vectors [*, embedding_dim] (torch.nn.Embedding)",
    .cfg_size = sizeof(embedding_cfg),
    .n_inputs = 1,
    .flags = 0,
    .options = EMB_OPTIONS,
    .params = EMB_PARAMS,
    .check = embedding_check,
    .shape = embedding_shape,
    .infer = embedding_infer,
    .init = embedding_init,
    .forward = embedding_forward,
    .backward = embedding_backward,
    .lora = &EMB_LORA,
};

/* ------------------------------------------------------------------ lora_embedding */

/* PEFT's lora.Embedding: y[i] = weight[id_i] + (alpha / r) B A[:, id_i], the base table frozen,
 * A [r, num_embeddings] and B [embedding_dim, r] trained (A zero and B N(0, 1) at the start, as
 * PEFT draws them, so the first forward equals the base's). PEFT applies no dropout on this
 * path (an embedding's input is ids): the option is kept for the adapter file only. */
typedef struct lora_emb_cfg {
  embedding_cfg e; /* first: the embedding's functions read it */
  int64_t r;
  float alpha;
  float dropout;
  int merged;
} lora_emb_cfg;

enum { LA = 1, LB }; /* parameter slots after W */

static const strop__optdef LEMB_OPTIONS[] = {
    EMB_OPTION_DEFS,
    STROP__OPT_INT(lora_emb_cfg, r, "r", "8", 1, INT32_MAX, "the adapter's rank"),
    STROP__OPT_FLOAT(lora_emb_cfg, alpha, "alpha", "8", 0, 1e9, 0,
                     "scale alpha / r of the adapter's output (PEFT's lora_alpha)"),
    STROP__OPT_FLOAT(lora_emb_cfg, dropout, "dropout", "0", 0, 1, STROP__OF_HI_OPEN,
                     "PEFT's lora_dropout, written to the adapter file; not applied: PEFT "
                     "applies none to an embedding's adapter, whose input is ids"),
    STROP__OPT_BOOL(lora_emb_cfg, merged, "merged", "false",
                    "(B A)^T is folded into weight and the adapter path is skipped"),
    {NULL}};

static const strop__paramdef LEMB_PARAMS[] = {
    [W] = {"weight", STROP__PD_FROZEN, "[num_embeddings, embedding_dim], frozen"},
    [LA] = {"lora_embedding_A", STROP__PD_ADAPTER, "[r, num_embeddings] (PEFT's name)"},
    [LB] = {"lora_embedding_B", STROP__PD_ADAPTER, "[embedding_dim, r] (PEFT's name)"},
    {NULL}};

static float lemb_scale(const lora_emb_cfg *c) {
  return c->r > 0 ? c->alpha / (float)c->r : 0.0f;
}

static strop_status lemb_infer(strop__node *n) {
  const lora_emb_cfg *c = n->cfg;
  strop_status st = embedding_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  int64_t wd[2] = {c->e.num_embeddings, c->e.embedding_dim};
  int64_t ad[2] = {c->r, c->e.num_embeddings}, bd[2] = {c->e.embedding_dim, c->r};
  st = strop__node_declare(n, W, 2, wd);
  if (!st) st = strop__node_declare(n, LA, 2, ad);
  if (!st) st = strop__node_declare(n, LB, 2, bd);
  return st;
}

static void lemb_init_adapters(strop__node *n, int mask, strop__rng *rng) {
  strop__param *a = strop__node_p(n, LA), *b = strop__node_p(n, LB);
  if (!(mask & 1)) return;
  if (a && a->data) strop__init_zeros(a->data, a->numel);
  if (b && b->data) strop__init_normal(b->data, b->numel, 0.0f, 1.0f, rng);
}

static void lemb_init(strop__node *n, strop__rng *rng) {
  embedding_init(n, rng);
  lemb_init_adapters(n, 1, rng);
}

static strop_status lemb_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 strop__act *out) {
  const lora_emb_cfg *c = n->cfg;
  n->saved = NULL;
  strop_status st = embedding_forward(n, x, in, out); /* checks the ids */
  if (st || c->merged) return st;
  const int64_t total = in[0].n * (int64_t)strop__shape_numel(&in[0].shape);
  float *t = strop__arena_alloc(x->arena, (size_t)total * (size_t)c->r * sizeof(float) + 1);
  if (!t) return strop__err(STROP_E_NOMEM, "layer '%s' (lora_embedding): out of memory", n->name);
  strop__lora_embedding_forward(in[0].data, strop__node_p(n, LA)->data,
                                strop__node_p(n, LB)->data, t, out->data, total,
                                c->e.num_embeddings, c->r, c->e.embedding_dim, lemb_scale(c));
  n->saved = t;
  return STROP_OK;
}

static strop_status lemb_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                  const strop__act *out, const float *dout, float *const *din) {
  const lora_emb_cfg *c = n->cfg;
  strop_status st = embedding_backward(n, x, in, out, dout, din); /* a base that trains */
  const float *t = n->saved;
  if (st || c->merged || !t) return st;
  float *da = grad_of(strop__node_p(n, LA)), *db = grad_of(strop__node_p(n, LB));
  const int64_t total = in[0].n * (int64_t)strop__shape_numel(&in[0].shape);
  float *dt = NULL;
  if (da &&
      !(dt = strop__arena_alloc(x->arena, (size_t)total * (size_t)c->r * sizeof(float) + 1)))
    return strop__err(STROP_E_NOMEM, "layer '%s' (lora_embedding): out of memory", n->name);
  strop__lora_embedding_backward(in[0].data, strop__node_p(n, LB)->data, t, dout, dt, da, db,
                                 total, c->e.num_embeddings, c->r, c->e.embedding_dim,
                                 lemb_scale(c),
                                 c->e.padding_idx == NO_PADDING ? -1 : c->e.padding_idx);
  return STROP_OK;
}

/* the table [num_embeddings, embedding_dim] is a weight stored [in, out]: += scale (B A)^T */
static void lemb_set_merged(strop__node *n, int merge) {
  lora_emb_cfg *c = n->cfg;
  merge = merge ? 1 : 0;
  if (c->merged == merge) return;
  strop__param *w = strop__node_p(n, W), *a = strop__node_p(n, LA), *b = strop__node_p(n, LB);
  if (!w || !a || !b || !w->data || !a->data || !b->data) return;
  const float s = lemb_scale(c);
  strop__lora_merge_t(w->data, a->data, b->data, c->e.num_embeddings, c->r, c->e.embedding_dim,
                      merge ? s : -s);
  w->version++;
  c->merged = merge;
}

static int64_t lemb_rank(const strop__node *n, int part, float *alpha, float *dropout) {
  const lora_emb_cfg *c = n->cfg;
  if (part != 0) return 0;
  if (alpha) *alpha = c->alpha;
  if (dropout) *dropout = c->dropout;
  return c->r;
}

static int lemb_merged(const strop__node *n) { return ((const lora_emb_cfg *)n->cfg)->merged; }

static const char *const LEMB_TENSORS[] = {"lora_embedding_A", "lora_embedding_B", NULL};

/* merged for good (export): a plain embedding of the base options */
static const strop__lora_ops LEMB_LORA = {
    .rank = lemb_rank,
    .init_adapters = lemb_init_adapters,
    .merged = lemb_merged,
    .set_merged = lemb_set_merged,
    .merged_type = "embedding",
    .tensors = LEMB_TENSORS,
};

const strop__layer_vtable strop__layer_lora_embedding = {
    .type = "lora_embedding",
    .doc = "a frozen embedding plus a trainable low-rank adapter, weight[id] + (alpha / r) B "
           "A[:, id] (PEFT's lora.Embedding)",
    .cfg_size = sizeof(lora_emb_cfg),
    .n_inputs = 1,
    .flags = 0,
    .options = LEMB_OPTIONS,
    .params = LEMB_PARAMS,
    .check = embedding_check,
    .shape = embedding_shape,
    .infer = lemb_infer,
    .init = lemb_init,
    .forward = lemb_forward,
    .backward = lemb_backward,
    .lora = &LEMB_LORA,
};

/* ------------------------------------------------------------------ positional_embedding */

typedef struct posemb_cfg {
  int64_t num_embeddings; /* the longest sequence (max_len) */
  int64_t embedding_dim;  /* 0 until inferred */
  int positions;          /* POS_*: which row each position takes */
  int64_t offset;         /* row of the first position (RoBERTa: padding_idx + 1) */
  int leading_one;        /* weight stored [1, num_embeddings, D] (torchvision's ViT) */
  int bare_name;          /* the weight is named as the node ("encoder.pos_embedding") */
  int interpolate;        /* INTERP_*: another sequence length resizes the grid */
  int64_t prefix;         /* rows before the grid (a class token's) */
} posemb_cfg;

enum { POS_ARANGE, POS_MASK, POS_CONSTANT, POS_TYPES };
static const char *const POS_MODES[] = {"arange", "mask", "constant", "types", NULL};
enum { INTERP_NONE, INTERP_BICUBIC };
static const char *const INTERPS[] = {"none", "bicubic", NULL};

static const strop__optdef POS_OPTIONS[] = {
    {.name = "num_embeddings",
     .type = STROP__OT_INT,
     .off = offsetof(posemb_cfg, num_embeddings),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "16",
     .doc = "the longest sequence (max_len)"},
    STROP__OPT_AUTO_INT(posemb_cfg, embedding_dim, "embedding_dim",
                        "width D of the [T, D] input; auto: inferred"),
    STROP__OPT_ENUM(posemb_cfg, positions, "positions", "arange", POS_MODES,
                    "arange: position t takes row offset + t; mask: the k-th token of the "
                    "batch's padding mask takes row offset + k, padding row max(offset - 1, 0) "
                    "(left padding then gives each token the position it has alone); constant: "
                    "every position takes row offset; types: each token takes row offset + its "
                    "token type, the batch's token_type_ids (type 0 when the batch has none: "
                    "BERT's token_type_embeddings)"),
    STROP__OPT_INT(posemb_cfg, offset, "offset", "0", 0, INT32_MAX,
                   "row of the first position (RoBERTa: padding_idx + 1)"),
    STROP__OPT_BOOL(posemb_cfg, leading_one, "leading_one", "false",
                    "weight stored [1, num_embeddings, D] (torchvision's encoder.pos_embedding)"),
    STROP__OPT_BOOL(posemb_cfg, bare_name, "bare_name", "false",
                    "the weight is named as the node itself (torchvision's "
                    "encoder.pos_embedding) rather than <node>.weight"),
    STROP__OPT_ENUM(posemb_cfg, interpolate, "interpolate", "none", INTERPS,
                    "bicubic: a sequence of prefix + g^2 positions other than num_embeddings "
                    "resizes the square grid of rows after the prefix to g x g (torchvision's "
                    "interpolate_embeddings: bicubic, align_corners), so a ViT runs at any image "
                    "size with its checkpoint's table"),
    STROP__OPT_INT(posemb_cfg, prefix, "prefix", "1", 0, INT32_MAX,
                   "with interpolate: rows before the grid (the class token's)"),
    {NULL}};

enum { W_BARE = 1 };
static const strop__paramdef POS_PARAMS[] = {
    [W] = {"weight", 0, "[num_embeddings, embedding_dim] ([1, ...] with leading_one)"},
    [W_BARE] = {"", 0, "the same, named as the node, with bare_name"},
    {NULL}};

static strop__param *posemb_w(const strop__node *n) {
  strop__param *p = strop__node_p(n, W);
  return p ? p : strop__node_p(n, W_BARE);
}

/* the side of a square grid of cnt rows, or 0 */
static int64_t grid_side(int64_t cnt) {
  int64_t g = (int64_t)llround(sqrt((double)cnt));
  return cnt > 0 && g * g == cnt ? g : 0;
}

/* 1 when a sequence of t positions runs through the bicubic grid resize */
static int posemb_resized(const posemb_cfg *c, int64_t t) {
  return c->interpolate == INTERP_BICUBIC && t != c->num_embeddings;
}

/* [T, D] -> [T, D] for offset + T up to num_embeddings (any prefix + g^2 with interpolate) */
static strop_status posemb_shape(const strop__node *n, const strop__shape *in,
                                 strop__shape *out) {
  const posemb_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank != 2)
    return strop__shape_error(n, "input must be [T, D] per sample, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  if (posemb_resized(c, s->d[0])) {
    if (!grid_side(c->num_embeddings - c->prefix) || !grid_side(s->d[0] - c->prefix))
      return strop__shape_error(n,
                                "bicubic interpolation needs square grids after %lld prefix "
                                "rows: num_embeddings %lld, sequence %lld",
                                (long long)c->prefix, (long long)c->num_embeddings,
                                (long long)s->d[0]);
  } else if (c->positions == POS_CONSTANT || c->positions == POS_TYPES
                 ? c->offset >= c->num_embeddings
                 : s->d[0] + c->offset > c->num_embeddings) {
    return strop__shape_error(n, "sequence length %lld%s exceeds num_embeddings %lld",
                              (long long)s->d[0], c->offset ? " after the offset" : "",
                              (long long)c->num_embeddings);
  }
  if (c->embedding_dim && c->embedding_dim != s->d[1])
    return strop__shape_error(n, "embedding_dim is %lld but the input %s has %lld features",
                              (long long)c->embedding_dim, strop__shape_str(s, buf, sizeof buf),
                              (long long)s->d[1]);
  *out = *s;
  return STROP_OK;
}

static strop_status posemb_infer(strop__node *n) {
  posemb_cfg *c = n->cfg;
  strop_status st = posemb_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  c->embedding_dim = n->in_shapes[0].d[1];
  int64_t wd[3] = {1, c->num_embeddings, c->embedding_dim};
  const int slot = c->bare_name ? W_BARE : W;
  return c->leading_one ? strop__node_declare(n, slot, 3, wd)
                        : strop__node_declare(n, slot, 2, wd + 1);
}

static void posemb_init(strop__node *n, strop__rng *rng) {
  strop__param *w = posemb_w(n);
  strop__init_normal(w->data, w->numel, 0.0f, 1.0f, rng); /* nn.Embedding's N(0, 1) */
}

/* The row position t of sample b takes (mask and types: the sample's, or NULL). */
static int64_t posemb_row(const posemb_cfg *c, const float *mask, const float *types, int64_t t,
                          int64_t *count) {
  if (c->positions == POS_CONSTANT) return c->offset;
  if (c->positions == POS_TYPES) return c->offset + (types ? (int64_t)types[t] : 0);
  if (!mask) return c->offset + t;
  if (mask[t] == 0.0f) return c->offset > 0 ? c->offset - 1 : 0;
  return c->offset + (*count)++;
}

/* PyTorch's bicubic taps (A = -0.75, align_corners) of output coordinate o of `out` from an
 * input of `in`: four clamped indices and weights */
static void cubic_taps(int64_t o, int64_t in, int64_t out, int64_t idx[4], double wt[4]) {
  const double scale = out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0;
  const double real = scale * (double)o;
  const int64_t i0 = (int64_t)floor(real);
  const double t = real - (double)i0, a = -0.75;
  /* cubic_convolution2(t + 1), cubic_convolution1(t), (1 - t), cubic_convolution2(2 - t) */
  const double x0 = t + 1, x1 = t, x2 = 1 - t, x3 = 2 - t;
  wt[0] = ((a * x0 - 5 * a) * x0 + 8 * a) * x0 - 4 * a;
  wt[1] = ((a + 2) * x1 - (a + 3)) * x1 * x1 + 1;
  wt[2] = ((a + 2) * x2 - (a + 3)) * x2 * x2 + 1;
  wt[3] = ((a * x3 - 5 * a) * x3 + 8 * a) * x3 - 4 * a;
  for (int k = 0; k < 4; k++) {
    int64_t v = i0 - 1 + k;
    idx[k] = v < 0 ? 0 : v >= in ? in - 1 : v;
  }
}

/* table [t, d] from the weight w [num, d]: the prefix rows, then the grid resized. With
 * adjoint = 1, the other way: dw += the resize's transpose applied to dtable. */
static void posemb_resize(const posemb_cfg *c, int64_t t, int64_t d, const float *w, float *table,
                          int adjoint, const float *dtable, float *dw) {
  const int64_t p = c->prefix, gi = grid_side(c->num_embeddings - p), go = grid_side(t - p);
  for (int64_t r = 0; r < p; r++)
    for (int64_t j = 0; j < d; j++) {
      if (adjoint) dw[r * d + j] += dtable[r * d + j];
      else table[r * d + j] = w[r * d + j];
    }
  for (int64_t oy = 0; oy < go; oy++) {
    int64_t iy[4], ix[4];
    double wy[4], wx[4];
    cubic_taps(oy, gi, go, iy, wy);
    for (int64_t ox = 0; ox < go; ox++) {
      cubic_taps(ox, gi, go, ix, wx);
      const int64_t orow = p + oy * go + ox;
      if (!adjoint)
        for (int64_t j = 0; j < d; j++) table[orow * d + j] = 0.0f;
      for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
          const float k = (float)(wy[a] * wx[b]);
          const int64_t irow = p + iy[a] * gi + ix[b];
          if (adjoint)
            for (int64_t j = 0; j < d; j++) dw[irow * d + j] += k * dtable[orow * d + j];
          else
            for (int64_t j = 0; j < d; j++) table[orow * d + j] += k * w[irow * d + j];
        }
    }
  }
}

static strop_status posemb_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                   strop__act *out) {
  const posemb_cfg *c = n->cfg;
  const float *w = posemb_w(n)->data;
  const int64_t t_len = in[0].shape.d[0], d = in[0].shape.d[1], per = t_len * d;
  strop_status st = STROP_OK;
  /* a decoding step has no padding (its rows continue unpadded sequences) */
  const float *mask = c->positions == POS_MASK && !x->decode ? strop__exec_mask(n, x, t_len, &st)
                                                             : NULL;
  if (st) return st;
  const float *types = c->positions == POS_TYPES ? strop__exec_types(n, x, t_len, &st) : NULL;
  if (st) return st;
  /* a type past the table is the caller's error, never a read out of bounds */
  for (int64_t i = 0; types && i < in[0].n * t_len; i++) {
    const float v = types[i];
    if (!(v >= 0.0f && (double)v + (double)c->offset < (double)c->num_embeddings) ||
        v != floorf(v))
      return strop__err(STROP_E_INVALID_ARG,
                        "layer '%s' (positional_embedding): token type %g at sample %lld, "
                        "position %lld: row %s%g is not in the table's %lld rows (types must "
                        "be integers in [0, %lld))",
                        n->name, (double)v, (long long)(i / t_len), (long long)(i % t_len),
                        c->offset ? "offset + " : "", (double)v + (double)c->offset,
                        (long long)c->num_embeddings, (long long)(c->num_embeddings - c->offset));
  }
  if (posemb_resized(c, t_len)) {
    float *table = strop__arena_alloc(x->arena, (size_t)per * sizeof *table);
    if (!table)
      return strop__err(STROP_E_NOMEM, "layer '%s' (positional_embedding): out of memory",
                        n->name);
    posemb_resize(c, t_len, d, w, table, 0, NULL, NULL);
    for (int64_t b = 0; b < in[0].n; b++)
      for (int64_t j = 0; j < per; j++)
        out->data[b * per + j] = in[0].data[b * per + j] + table[j];
    return STROP_OK;
  }
  /* incremental decoding: the rows are positions [pos, pos + T) of longer sequences, counted
   * from each sequence's start when they are left-padded (rows of padding take position 0) */
  const strop__decode *dec = x->decode;
  for (int64_t b = 0; b < in[0].n; b++) {
    const int64_t t0 = dec ? dec->pos - (dec->start ? dec->start[b] : 0) : 0;
    const float *xi = in[0].data + b * per;
    float *yi = out->data + b * per;
    int64_t count = t0;
    for (int64_t t = 0; t < t_len; t++) {
      const int64_t at = t0 + t < 0 ? 0 : t0 + t;
      const float *wr = w + posemb_row(c, mask ? mask + b * t_len : NULL,
                                       types ? types + b * t_len : NULL, at, &count) *
                                d;
      for (int64_t j = 0; j < d; j++) yi[t * d + j] = xi[t * d + j] + wr[j];
    }
  }
  return STROP_OK;
}

static strop_status posemb_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    const strop__act *out, const float *dout, float *const *din) {
  (void)out;
  const posemb_cfg *c = n->cfg;
  float *gw = grad_of(posemb_w(n));
  const int64_t t_len = in[0].shape.d[0], d = in[0].shape.d[1], per = t_len * d;
  strop_status st = STROP_OK;
  const float *mask = c->positions == POS_MASK ? strop__exec_mask(n, x, t_len, &st) : NULL;
  if (st) return st;
  const float *types = c->positions == POS_TYPES ? strop__exec_types(n, x, t_len, &st) : NULL;
  if (st) return st;
  float *dtable = NULL;
  if (gw && posemb_resized(c, t_len)) {
    dtable = strop__arena_calloc(x->arena, (size_t)per * sizeof *dtable);
    if (!dtable)
      return strop__err(STROP_E_NOMEM, "layer '%s' (positional_embedding): out of memory",
                        n->name);
  }
  for (int64_t b = 0; b < in[0].n; b++) {
    const float *dr = dout + b * per;
    if (din[0]) {
      float *dx = din[0] + b * per;
      for (int64_t j = 0; j < per; j++) dx[j] += dr[j];
    }
    if (!gw) continue;
    if (dtable) {
      for (int64_t j = 0; j < per; j++) dtable[j] += dr[j];
      continue;
    }
    int64_t count = 0;
    for (int64_t t = 0; t < t_len; t++) {
      /* (types were checked by the forward) each row used gets its tokens' gradient */
      float *gr = gw + posemb_row(c, mask ? mask + b * t_len : NULL,
                                  types ? types + b * t_len : NULL, t, &count) *
                           d;
      for (int64_t j = 0; j < d; j++) gr[j] += dr[t * d + j];
    }
  }
  if (dtable) posemb_resize(c, t_len, d, NULL, NULL, 1, dtable, gw);
  return STROP_OK;
}

const strop__layer_vtable strop__layer_positional_embedding = {
    .type = "positional_embedding",
    .doc = "adds a learned position vector: [T, D] + weight[offset:offset + T] (GPT-2's wpe, "
           "BERT's position_embeddings), positions counted over the padding mask if asked, or "
           "a row per token type (BERT's token_type_embeddings)",
    .cfg_size = sizeof(posemb_cfg),
    .n_inputs = 1,
    .flags = 0,
    .options = POS_OPTIONS,
    .params = POS_PARAMS,
    .shape = posemb_shape,
    .infer = posemb_infer,
    .init = posemb_init,
    .forward = posemb_forward,
    .backward = posemb_backward,
};
