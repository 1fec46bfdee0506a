/* SPDX-License-Identifier: MIT */
/* strop — transformer_block, a composite: it expands when added into ordinary named nodes
 * "<name>.ln1", "<name>.attn", ... of a pre-norm encoder block, so every part can be frozen,
 * replaced or given LoRA adapters like any other node. */
#include <stdio.h>

#include "layers/layer.h"

typedef struct tb_cfg {
  int64_t embed_dim, num_heads, dim_feedforward; /* dim_feedforward 0: "auto", 4 embed_dim */
  float dropout, eps;
  int activation; /* ACTS */
  int norm_first;
  int causal;
} tb_cfg;

static const char *const ACTS[] = {"gelu", "relu", NULL};

static const strop__optdef OPTIONS[] = {
    {.name = "embed_dim",
     .type = STROP__OT_INT,
     .off = offsetof(tb_cfg, embed_dim),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "8",
     .doc = "model width D of the [T, D] input"},
    {.name = "num_heads",
     .type = STROP__OT_INT,
     .off = offsetof(tb_cfg, num_heads),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "2",
     .doc = "attention heads; must divide embed_dim"},
    STROP__OPT_AUTO_INT(tb_cfg, dim_feedforward, "dim_feedforward",
                        "width of the feed-forward layer; auto: 4 embed_dim"),
    STROP__OPT_FLOAT(tb_cfg, dropout, "dropout", "0", 0, 1, STROP__OF_HI_OPEN,
                     "dropout after attention, inside and after the feed-forward"),
    STROP__OPT_ENUM(tb_cfg, activation, "activation", "gelu", ACTS,
                    "the feed-forward's activation"),
    STROP__OPT_BOOL(tb_cfg, norm_first, "norm_first", "true",
                    "layer norm before attention and feed-forward (only true is supported)"),
    STROP__OPT_BOOL(tb_cfg, causal, "causal", "false", "mask future positions"),
    STROP__OPT_FLOAT(tb_cfg, eps, "layer_norm_eps", "1e-05", 0, 1, 0, "the layer norms' eps"),
    {NULL}};

static strop_status tb_check(void *cfg, strop__opts *o) {
  tb_cfg *c = cfg;
  if (c->embed_dim % c->num_heads != 0)
    return strop__opt_error(o, "num_heads", "embed_dim %lld is not divisible by num_heads %lld",
                            (long long)c->embed_dim, (long long)c->num_heads);
  if (!c->norm_first)
    return strop__err(STROP_E_UNSUPPORTED,
                      "layer '%s' (transformer_block): norm_first=false "
                      "(post-norm) is not supported; build the block node by node",
                      o->layer ? o->layer : "?");
  return STROP_OK;
}

/* Pre-norm encoder block, nn.TransformerEncoderLayer(norm_first=True, batch_first=True):
 *   x + drop1(attn(ln1(x)));  then  h + drop2(ff2(drop_ff(act(ff1(ln2(h)))))) */
static strop_status tb_expand(const void *cfg, strop__expander *e) {
  const tb_cfg *c = cfg;
  const int64_t ff = c->dim_feedforward ? c->dim_feedforward : 4 * c->embed_dim;
  char sd[32], sh[32], sf[32], sp[40], se[40];
  snprintf(sd, sizeof sd, "%lld", (long long)c->embed_dim);
  snprintf(sh, sizeof sh, "%lld", (long long)c->num_heads);
  snprintf(sf, sizeof sf, "%lld", (long long)ff);
  snprintf(sp, sizeof sp, "%.9g", (double)c->dropout);
  snprintf(se, sizeof se, "%.9g", (double)c->eps);
  const int dropping = c->dropout > 0.0f;
  const char *ln_kv[] = {"normalized_shape", sd, "eps", se};
  const char *attn_kv[] = {"embed_dim", sd, "num_heads", sh,
                           "dropout",   sp, "causal",    c->causal ? "true" : "false"};
  const char *p_kv[] = {"p", sp};
  const char *ff1_kv[] = {"in_features", sd, "out_features", sf};
  const char *ff2_kv[] = {"in_features", sf, "out_features", sd};
  const char *in_x[] = {STROP__EXPAND_INPUT};
  const char *add1[2] = {STROP__EXPAND_INPUT, dropping ? "drop1" : "attn"};
  const char *add2[2] = {"add1", dropping ? "drop2" : "ff2"};
  strop_status st;
  if ((st = e->add(e, "ln1", "layernorm", ln_kv, 2, in_x, 1))) return st;
  if ((st = e->add(e, "attn", "multihead_attention", attn_kv, 4, NULL, 0))) return st;
  if (dropping && (st = e->add(e, "drop1", "dropout", p_kv, 1, NULL, 0))) return st;
  if ((st = e->add(e, "add1", "add", NULL, 0, add1, 2))) return st;
  if ((st = e->add(e, "ln2", "layernorm", ln_kv, 2, NULL, 0))) return st;
  if ((st = e->add(e, "ff1", "linear", ff1_kv, 2, NULL, 0))) return st;
  if ((st = e->add(e, "act", ACTS[c->activation], NULL, 0, NULL, 0))) return st;
  if (dropping && (st = e->add(e, "drop_ff", "dropout", p_kv, 1, NULL, 0))) return st;
  if ((st = e->add(e, "ff2", "linear", ff2_kv, 2, NULL, 0))) return st;
  if (dropping && (st = e->add(e, "drop2", "dropout", p_kv, 1, NULL, 0))) return st;
  return e->add(e, "add2", "add", NULL, 0, add2, 2);
}

const strop__layer_vtable strop__layer_transformer_block = {
    .type = "transformer_block",
    .doc = "a pre-norm transformer encoder block, expanded into its parts ln1, attn, add1, ln2, "
           "ff1, act, ff2, add2 (torch.nn.TransformerEncoderLayer, norm_first, batch_first)",
    .cfg_size = sizeof(tb_cfg),
    .n_inputs = 1,
    .options = OPTIONS,
    .check = tb_check,
    .expand = tb_expand,
};

/* ---- torch.nn.TransformerEncoderLayer and torch.nn.TransformerEncoder with torch's own
 * module names, so their state_dicts load as they are: self_attn (packed in_proj_weight),
 * linear1, linear2, norm1, norm2; layers.N. and norm for the encoder. ---- */

typedef struct tel_cfg {
  int64_t d_model, nhead, dim_feedforward, num_layers;
  float dropout, eps;
  int activation; /* TEL_ACTS */
  int norm_first;
  int bias;
  int causal;
  int norm; /* transformer_encoder: a final LayerNorm named "norm" */
} tel_cfg;

static const char *const TEL_ACTS[] = {"relu", "gelu", NULL};

#define TEL_COMMON                                                                               \
  {.name = "d_model",                                                                            \
   .type = STROP__OT_INT,                                                                        \
   .off = offsetof(tel_cfg, d_model),                                                            \
   .lo = 1,                                                                                      \
   .hi = INT32_MAX,                                                                              \
   .example = "8",                                                                               \
   .doc = "model width D of the [T, D] input"},                                                  \
      {.name = "nhead",                                                                          \
       .type = STROP__OT_INT,                                                                    \
       .off = offsetof(tel_cfg, nhead),                                                          \
       .lo = 1,                                                                                  \
       .hi = INT32_MAX,                                                                          \
       .example = "2",                                                                           \
       .doc = "attention heads; must divide d_model"},                                           \
      STROP__OPT_INT(tel_cfg, dim_feedforward, "dim_feedforward", "2048", 1, INT32_MAX,          \
                     "width of the feed-forward layer (torch's default 2048)"),                  \
      STROP__OPT_FLOAT(tel_cfg, dropout, "dropout", "0.1", 0, 1, STROP__OF_HI_OPEN,              \
                       "dropout on the attention weights, after attention, inside and after "    \
                       "the feed-forward (torch's default 0.1)"),                                \
      STROP__OPT_ENUM(tel_cfg, activation, "activation", "relu", TEL_ACTS,                       \
                      "the feed-forward's activation"),                                          \
      STROP__OPT_FLOAT(tel_cfg, eps, "layer_norm_eps", "1e-05", 0, 1, 0, "the norms' eps"),      \
      STROP__OPT_BOOL(tel_cfg, norm_first, "norm_first", "false",                                \
                      "true: pre-norm (norm before attention and feed-forward); false: "         \
                      "post-norm, torch's default"),                                             \
      STROP__OPT_BOOL(tel_cfg, bias, "bias", "true", "the linear layers and norms have biases"), \
      STROP__OPT_BOOL(tel_cfg, causal, "causal", "false",                                        \
                      "mask future positions (is_causal with a square subsequent mask)")

static const strop__optdef TEL_OPTIONS[] = {TEL_COMMON, {NULL}};

static const strop__optdef TE_OPTIONS[] = {
    {.name = "num_layers",
     .type = STROP__OT_INT,
     .off = offsetof(tel_cfg, num_layers),
     .lo = 1,
     /* a bound no encoder comes near (100000 layers, a million nodes with their weights, were
      * accepted before) */
     .hi = 1024,
     .example = "2",
     .doc = "encoder layers, named layers.0, layers.1, ..."},
    TEL_COMMON,
    STROP__OPT_BOOL(tel_cfg, norm, "norm", "false",
                    "a final LayerNorm named norm (nn.TransformerEncoder's norm argument)"),
    {NULL}};

static strop_status tel_check(void *cfg, strop__opts *o) {
  const tel_cfg *c = cfg;
  if (c->d_model % c->nhead != 0)
    return strop__opt_error(o, "nhead", "d_model %lld is not divisible by nhead %lld",
                            (long long)c->d_model, (long long)c->nhead);
  return STROP_OK;
}

/* The name of the part an encoder layer's output is: norm2 after, add2 before (norm_first). */
static const char *tel_out(const tel_cfg *c) { return c->norm_first ? "add2" : "norm2"; }

/* One nn.TransformerEncoderLayer, its parts prefixed by pre ("" or "layers.3.") reading in
 * (STROP__EXPAND_INPUT or a part's name). */
static strop_status tel_parts(const tel_cfg *c, strop__expander *e, const char *pre,
                              const char *in) {
  char sd[32], sh[32], sf[32], sp[40], se[40], nm[16][96], ins[4][96];
  snprintf(sd, sizeof sd, "%lld", (long long)c->d_model);
  snprintf(sh, sizeof sh, "%lld", (long long)c->nhead);
  snprintf(sf, sizeof sf, "%lld", (long long)c->dim_feedforward);
  snprintf(sp, sizeof sp, "%.9g", (double)c->dropout);
  snprintf(se, sizeof se, "%.9g", (double)c->eps);
  static const char *const parts[] = {"norm1",   "self_attn", "dropout1",   "add1",
                                      "norm2",   "linear1",   "activation", "dropout",
                                      "linear2", "dropout2",  "add2"};
  enum { NORM1, ATTN, DROP1, ADD1, NORM2, LIN1, ACT, DROP, LIN2, DROP2, ADD2 };
  for (int i = 0; i < 11; i++) snprintf(nm[i], sizeof nm[i], "%s%s", pre, parts[i]);
  const int dropping = c->dropout > 0.0f;
  const char *b = c->bias ? "true" : "false";
  const char *ln_kv[] = {"normalized_shape",   sd,     "eps",  se,
                         "elementwise_affine", "true", "bias", b};
  const char *attn_kv[] = {"embed_dim", sd, "num_heads", sh,
                           "dropout",   sp, "causal",    c->causal ? "true" : "false",
                           "bias",      b,  "packed",    "true"};
  const char *p_kv[] = {"p", sp};
  const char *ff1_kv[] = {"in_features", sd, "out_features", sf, "bias", b};
  const char *ff2_kv[] = {"in_features", sf, "out_features", sd, "bias", b};
  strop_status st;
  /* the attention branch: pre-norm reads norm1(x), post-norm x */
  const char *x = in;
  const char *a_in = x;
  if (c->norm_first) {
    if ((st = e->add(e, nm[NORM1], "layernorm", ln_kv, 4, &x, 1))) return st;
    a_in = nm[NORM1];
  }
  if ((st = e->add(e, nm[ATTN], "multihead_attention", attn_kv, 6, &a_in, 1))) return st;
  if (dropping && (st = e->add(e, nm[DROP1], "dropout", p_kv, 1, NULL, 0))) return st;
  snprintf(ins[0], sizeof ins[0], "%s", x);
  snprintf(ins[1], sizeof ins[1], "%s", dropping ? nm[DROP1] : nm[ATTN]);
  const char *add1[2] = {ins[0], ins[1]};
  if ((st = e->add(e, nm[ADD1], "add", NULL, 0, add1, 2))) return st;
  /* h: add1 (pre-norm) or norm1(add1) (post-norm); the feed-forward reads norm2(h) or h */
  const char *h = nm[ADD1];
  if (!c->norm_first) {
    if ((st = e->add(e, nm[NORM1], "layernorm", ln_kv, 4, NULL, 0))) return st;
    h = nm[NORM1];
  } else if ((st = e->add(e, nm[NORM2], "layernorm", ln_kv, 4, NULL, 0))) {
    return st;
  }
  if ((st = e->add(e, nm[LIN1], "linear", ff1_kv, 3, NULL, 0))) return st;
  if ((st = e->add(e, nm[ACT], TEL_ACTS[c->activation], NULL, 0, NULL, 0))) return st;
  if (dropping && (st = e->add(e, nm[DROP], "dropout", p_kv, 1, NULL, 0))) return st;
  if ((st = e->add(e, nm[LIN2], "linear", ff2_kv, 3, NULL, 0))) return st;
  if (dropping && (st = e->add(e, nm[DROP2], "dropout", p_kv, 1, NULL, 0))) return st;
  snprintf(ins[2], sizeof ins[2], "%s", h);
  snprintf(ins[3], sizeof ins[3], "%s", dropping ? nm[DROP2] : nm[LIN2]);
  const char *add2[2] = {ins[2], ins[3]};
  if ((st = e->add(e, nm[ADD2], "add", NULL, 0, add2, 2))) return st;
  if (!c->norm_first && (st = e->add(e, nm[NORM2], "layernorm", ln_kv, 4, NULL, 0))) return st;
  return STROP_OK;
}

static strop_status tel_expand(const void *cfg, strop__expander *e) {
  return tel_parts(cfg, e, "", STROP__EXPAND_INPUT);
}

static strop_status te_expand(const void *cfg, strop__expander *e) {
  const tel_cfg *c = cfg;
  char pre[64], prev[96];
  snprintf(prev, sizeof prev, "%s", STROP__EXPAND_INPUT);
  for (int64_t i = 0; i < c->num_layers; i++) {
    snprintf(pre, sizeof pre, "layers.%lld.", (long long)i);
    strop_status st = tel_parts(c, e, pre, prev);
    if (st) return st;
    snprintf(prev, sizeof prev, "%s%s", pre, tel_out(c));
  }
  if (!c->norm) return STROP_OK;
  char sd[32], se[40];
  snprintf(sd, sizeof sd, "%lld", (long long)c->d_model);
  snprintf(se, sizeof se, "%.9g", (double)c->eps);
  const char *ln_kv[] = {"normalized_shape", sd, "eps", se, "bias", c->bias ? "true" : "false"};
  const char *in = prev;
  return e->add(e, "norm", "layernorm", ln_kv, 3, &in, 1);
}

const strop__layer_vtable strop__layer_transformer_encoder_layer = {
    .type = "transformer_encoder_layer",
    .doc = "torch.nn.TransformerEncoderLayer (batch_first) with torch's names, expanded into "
           "self_attn (packed in_proj_weight), linear1, linear2, norm1, norm2 and their "
           "dropouts and adds; post-norm (torch's default) or norm_first",
    .cfg_size = sizeof(tel_cfg),
    .n_inputs = 1,
    .options = TEL_OPTIONS,
    .check = tel_check,
    .expand = tel_expand,
};

const strop__layer_vtable strop__layer_transformer_encoder = {
    .type = "transformer_encoder",
    .doc = "torch.nn.TransformerEncoder: num_layers encoder layers named layers.N. (as "
           "transformer_encoder_layer) and an optional final LayerNorm named norm",
    .cfg_size = sizeof(tel_cfg),
    .n_inputs = 1,
    .options = TE_OPTIONS,
    .check = tel_check,
    .expand = te_expand,
};
