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
    {.name = "embed_dim", .type = STROP__OT_INT, .off = offsetof(tb_cfg, embed_dim), .lo = 1,
     .hi = INT32_MAX, .example = "8", .doc = "model width D of the [T, D] input"},
    {.name = "num_heads", .type = STROP__OT_INT, .off = offsetof(tb_cfg, num_heads), .lo = 1,
     .hi = INT32_MAX, .example = "2", .doc = "attention heads; must divide embed_dim"},
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
    return strop__err(STROP_E_UNSUPPORTED, "layer '%s' (transformer_block): norm_first=false "
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
  const char *attn_kv[] = {"embed_dim", sd, "num_heads", sh, "dropout", sp,
                           "causal", c->causal ? "true" : "false"};
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
