/* strop — composite pseudo-types: a type name that strop__model_add_opts expands, at add
 * time and atomically, into ordinary named sub-nodes (transformer_block for now). */
#include <stdio.h>
#include <string.h>

#include "graph/graph.h"

/* The sub-nodes are built in a scratch model (inputs are only names until finalize, so they
 * may point into the real model) and moved over only when all of them were accepted. */
typedef struct sub {
  strop_model *m; /* scratch */
  const char *block;
  char name[256];
} sub;

static strop_status sub_add(sub *s, const char *part, const char *type, const char *const *kv,
                            int n_kv, const char *in0, const char *in1) {
  strop__opts o;
  memset(&o, 0, sizeof o);
  strop_status st = STROP_OK;
  for (int i = 0; i + 1 < n_kv * 2 && !st; i += 2) st = strop__opts_add(&o, kv[i], kv[i + 1], 0, 0);
  snprintf(s->name, sizeof s->name, "%s.%s", s->block, part);
  const char *ins[2] = {in0, in1};
  int n_in = in1 ? 2 : in0 ? 1 : 0;
  if (!st) st = strop__model_add_opts(s->m, s->name, type, &o, ins, n_in);
  strop__opts_free(&o);
  return st;
}

static const char *const ACTS[] = {"gelu", "relu", NULL};

/* Pre-norm encoder block, nn.TransformerEncoderLayer(norm_first=True, batch_first=True):
 *   x + drop1(attn(ln1(x)));  then  h + drop2(ff2(drop_ff(act(ff1(ln2(h)))))) */
static strop_status transformer_block(strop_model *m, const char *name, strop__opts *o,
                                      const char *in, strop_model *scratch) {
  int64_t d = 0, heads = 0, ff = 0;
  float drop = 0.0f, eps = 1e-5f;
  int act = 0, norm_first = 1, causal = 0;
  strop_status st;
  if ((st = strop__opt_require(o, "embed_dim")) ||
      (st = strop__opt_int(o, "embed_dim", 1, INT32_MAX, &d)) ||
      (st = strop__opt_require(o, "num_heads")) ||
      (st = strop__opt_int(o, "num_heads", 1, INT32_MAX, &heads)) ||
      (st = strop__opt_int(o, "dim_feedforward", 1, INT32_MAX, &ff)) ||
      (st = strop__opt_float(o, "dropout", 0.0, 1.0, &drop)) ||
      (st = strop__opt_enum(o, "activation", ACTS, &act)) ||
      (st = strop__opt_bool(o, "norm_first", &norm_first)) ||
      (st = strop__opt_bool(o, "causal", &causal)) ||
      (st = strop__opt_float(o, "layer_norm_eps", 0.0, 1.0, &eps)))
    return st;
  for (int i = 0; i < o->n; i++)
    if (!o->v[i].used)
      return strop__opt_error(o, o->v[i].key, "unknown option (expected one of: embed_dim, "
                              "num_heads, dim_feedforward, dropout, activation, norm_first, "
                              "causal, layer_norm_eps)");
  if (d % heads != 0)
    return strop__opt_error(o, "num_heads", "embed_dim %lld is not divisible by num_heads %lld",
                            (long long)d, (long long)heads);
  if (drop >= 1.0f)
    return strop__opt_error(o, "dropout", "must be below 1, got %g", (double)drop);
  if (!norm_first)
    return strop__err(STROP_E_UNSUPPORTED, "strop_model_add: layer '%s' (transformer_block): "
                      "norm_first=false (post-norm) is not supported; build the block node by "
                      "node", name);
  if (ff == 0) ff = 4 * d;
  (void)m;
  char sd[32], sh[32], sf[32], sp[40], se[40];
  snprintf(sd, sizeof sd, "%lld", (long long)d);
  snprintf(sh, sizeof sh, "%lld", (long long)heads);
  snprintf(sf, sizeof sf, "%lld", (long long)ff);
  snprintf(sp, sizeof sp, "%.9g", (double)drop);
  snprintf(se, sizeof se, "%.9g", (double)eps);
  const int dropping = drop > 0.0f;
  char add1[256], add2_in[256];
  sub s = {scratch, name, ""};
  const char *ln_kv[] = {"normalized_shape", sd, "eps", se};
  const char *attn_kv[] = {"embed_dim", sd, "num_heads", sh, "dropout", sp,
                           "causal", causal ? "true" : "false"};
  const char *p_kv[] = {"p", sp};
  const char *ff1_kv[] = {"in_features", sd, "out_features", sf};
  const char *ff2_kv[] = {"in_features", sf, "out_features", sd};
  if ((st = sub_add(&s, "ln1", "layernorm", ln_kv, 2, in, NULL))) return st;
  if ((st = sub_add(&s, "attn", "multihead_attention", attn_kv, 4, NULL, NULL))) return st;
  if (dropping && (st = sub_add(&s, "drop1", "dropout", p_kv, 1, NULL, NULL))) return st;
  snprintf(add2_in, sizeof add2_in, "%s", s.name);
  if ((st = sub_add(&s, "add1", "add", NULL, 0, in, add2_in))) return st;
  snprintf(add1, sizeof add1, "%s", s.name);
  if ((st = sub_add(&s, "ln2", "layernorm", ln_kv, 2, NULL, NULL))) return st;
  if ((st = sub_add(&s, "ff1", "linear", ff1_kv, 2, NULL, NULL))) return st;
  if ((st = sub_add(&s, "act", ACTS[act], NULL, 0, NULL, NULL))) return st;
  if (dropping && (st = sub_add(&s, "drop_ff", "dropout", p_kv, 1, NULL, NULL))) return st;
  if ((st = sub_add(&s, "ff2", "linear", ff2_kv, 2, NULL, NULL))) return st;
  if (dropping && (st = sub_add(&s, "drop2", "dropout", p_kv, 1, NULL, NULL))) return st;
  snprintf(add2_in, sizeof add2_in, "%s", s.name);
  return sub_add(&s, "add2", "add", NULL, 0, add1, add2_in);
}

typedef strop_status (*expand_fn)(strop_model *m, const char *name, strop__opts *o,
                                  const char *in, strop_model *scratch);
static const struct {
  const char *type;
  expand_fn fn;
} COMPOSITES[] = {{"transformer_block", transformer_block}};

int strop__composite_find(const char *type) {
  for (size_t i = 0; type && i < sizeof COMPOSITES / sizeof COMPOSITES[0]; i++)
    if (strcmp(COMPOSITES[i].type, type) == 0) return (int)i;
  return -1;
}

strop_status strop__composite_add(strop_model *m, const char *name, int which, strop__opts *o,
                                  const char *const *inputs, int n_inputs) {
  static const char fn[] = "strop_model_add";
  const char *type = COMPOSITES[which].type;
  if (!name || !*name)
    return strop__err(STROP_E_INVALID_ARG, "%s: bad node name '%s'", fn, name ? name : "(null)");
  if (n_inputs > 1 || n_inputs < 0 || (n_inputs && (!inputs || !inputs[0] || !*inputs[0])))
    return strop__err(STROP_E_INVALID_ARG, "%s: layer '%s' (%s) takes 1 input, got %d", fn, name,
                      type, n_inputs);
  if (m->finalized)
    return strop__err(STROP_E_STATE, "%s: model is finalized; use a surgery plan to edit it", fn);
  o->layer = name;
  o->type = type;
  for (int i = 0; i < o->n; i++) o->v[i].used = 0;
  const char *in = n_inputs ? inputs[0] : (m->n_nodes ? m->nodes[m->n_nodes - 1].name : "input");
  strop_model *scratch = NULL;
  strop_status st = strop_model_create(m->in_shape.rank, m->in_shape.d, &scratch);
  if (st) return st;
  st = COMPOSITES[which].fn(m, name, o, in, scratch);
  /* sub-node names must be new in the real model too */
  for (int i = 0; !st && i < scratch->n_nodes; i++)
    if (strop__model_node_find(m, scratch->nodes[i].name) >= 0)
      st = strop__err(STROP_E_INVALID_ARG, "%s: layer '%s' (%s): a node named '%s' already "
                      "exists", fn, name, type, scratch->nodes[i].name);
  if (!st && m->n_nodes + scratch->n_nodes > m->cap_nodes) {
    int cap = m->cap_nodes ? m->cap_nodes : 16;
    while (cap < m->n_nodes + scratch->n_nodes) cap *= 2;
    strop__node *v = strop__realloc(m->nodes, (size_t)cap * sizeof *v);
    if (!v) {
      st = STROP__NOMEM(fn);
    } else {
      m->nodes = v;
      m->cap_nodes = cap;
    }
  }
  if (!st) {
    memcpy(m->nodes + m->n_nodes, scratch->nodes, (size_t)scratch->n_nodes * sizeof *m->nodes);
    m->n_nodes += scratch->n_nodes;
    scratch->n_nodes = 0; /* moved: the scratch model no longer owns them */
  }
  strop_model_free(scratch);
  return st;
}
