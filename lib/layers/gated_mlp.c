/* SPDX-License-Identifier: MIT */
/* strop — gated_mlp: the gated feed-forward of Llama-family decoders,
 * down_proj(act(gate_proj(x)) * up_proj(x)), as one fused layer with the checkpoint's names
 * ("<node>.gate_proj.weight" ...), and LoRA adapters on any of its three projections as PEFT
 * names them ("<node>.up_proj.lora_A.weight"). The product lives inside the layer, so no
 * elementwise multiplication node is needed, and the activations kept for the backward are the
 * two projections only. Frozen, the three weights may be held in BF16 or int8 (the model's
 * frozen dtype) and run through linear's lowp products. */
#include <string.h>

#include "layers/init.h"
#include "layers/layer.h"
#include "layers/lora.h"
#include "ops/dense.h"
#include "ops/lora.h"

typedef struct gmlp_cfg {
  int64_t hidden;       /* D: 0 ("auto") until inferred */
  int64_t intermediate; /* F */
  int bias;
  int activation;    /* ACTS */
  int64_t lora_r[3]; /* gate, up, down; 0: no adapter */
  float lora_alpha[3];
  int lora_merged;
} gmlp_cfg;

enum { ACT_SILU, ACT_GELU, ACT_GELU_TANH };
static const char *const ACTS[] = {"silu", "gelu", "gelu_tanh", NULL};
static const char *const PARTS[] = {"gate_proj", "up_proj", "down_proj", NULL};

/* slots: projection i has weight 2i and bias 2i + 1, its adapter A 6 + 2i and B 7 + 2i */
#define SLOT_W(i) (2 * (i))
#define SLOT_B(i) (2 * (i) + 1)
#define SLOT_A(i) (6 + 2 * (i))
#define SLOT_LB(i) (7 + 2 * (i))

static const strop__paramdef PARAMS[] = {
    {"gate_proj.weight", 0, "[intermediate_size, hidden]"},
    {"gate_proj.bias", 0, "[intermediate_size], when bias is true"},
    {"up_proj.weight", 0, "[intermediate_size, hidden]"},
    {"up_proj.bias", 0, "[intermediate_size], when bias is true"},
    {"down_proj.weight", 0, "[hidden, intermediate_size]"},
    {"down_proj.bias", 0, "[hidden], when bias is true"},
    {"gate_proj.lora_A.weight", STROP__PD_ADAPTER, "[r, hidden], when lora_r[0] > 0"},
    {"gate_proj.lora_B.weight", STROP__PD_ADAPTER, "[intermediate_size, r]"},
    {"up_proj.lora_A.weight", STROP__PD_ADAPTER, "[r, hidden], when lora_r[1] > 0"},
    {"up_proj.lora_B.weight", STROP__PD_ADAPTER, "[intermediate_size, r]"},
    {"down_proj.lora_A.weight", STROP__PD_ADAPTER, "[r, intermediate_size], when lora_r[2] > 0"},
    {"down_proj.lora_B.weight", STROP__PD_ADAPTER, "[hidden, r]"},
    {NULL}};

static const strop__optdef OPTIONS[] = {
    STROP__OPT_AUTO_INT(gmlp_cfg, hidden, "hidden_size",
                        "width D of the input and output; auto: inferred"),
    {.name = "intermediate_size",
     .type = STROP__OT_INT,
     .off = offsetof(gmlp_cfg, intermediate),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "16",
     .doc = "width of the gate and up projections"},
    STROP__OPT_BOOL(gmlp_cfg, bias, "bias", "false", "the projections have biases (mlp_bias)"),
    STROP__OPT_ENUM(gmlp_cfg, activation, "activation", "silu", ACTS,
                    "the gate's activation: silu (SwiGLU, Llama), gelu (exact), gelu_tanh "
                    "(GeGLU as Gemma has it)"),
    {.name = "lora_r",
     .type = STROP__OT_INTS,
     .off = offsetof(gmlp_cfg, lora_r),
     .dflt = "[0, 0, 0]",
     .lo = 0,
     .hi = INT32_MAX,
     .n = 3,
     .doc = "LoRA rank per projection [gate, up, down]; 0: no adapter (set by surgery)"},
    {.name = "lora_alpha",
     .type = STROP__OT_FLOATS,
     .off = offsetof(gmlp_cfg, lora_alpha),
     .dflt = "[8, 8, 8]",
     .lo = 0,
     .hi = 1e9,
     .n = 3,
     .doc = "LoRA alpha per projection; the adapter's scale is alpha / r"},
    STROP__OPT_BOOL(gmlp_cfg, lora_merged, "lora_merged", "false",
                    "the adapters are folded into the projection weights"),
    {NULL}};

/* in and out features of projection i */
static void dims_of(const gmlp_cfg *c, int i, int64_t *in, int64_t *out) {
  *in = i == 2 ? c->intermediate : c->hidden;
  *out = i == 2 ? c->hidden : c->intermediate;
}

static int has_lora(const gmlp_cfg *c) { return c->lora_r[0] || c->lora_r[1] || c->lora_r[2]; }

/* [*, D] -> [*, D] */
static strop_status gmlp_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  const gmlp_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank < 1)
    return strop__shape_error(n, "input must have at least one dimension per sample, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  if (c->hidden && s->d[s->rank - 1] != c->hidden)
    return strop__shape_error(n, "hidden_size is %lld but the input %s has %lld features",
                              (long long)c->hidden, strop__shape_str(s, buf, sizeof buf),
                              (long long)s->d[s->rank - 1]);
  *out = *s;
  return STROP_OK;
}

static strop_status gmlp_infer(strop__node *n) {
  gmlp_cfg *c = n->cfg;
  strop_status st = gmlp_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  c->hidden = n->in_shapes[0].d[n->in_shapes[0].rank - 1];
  for (int i = 0; i < 3 && !st; i++) {
    int64_t in, out;
    dims_of(c, i, &in, &out);
    const int64_t wd[2] = {out, in};
    st = strop__node_declare(n, SLOT_W(i), 2, wd);
    /* frozen, the weight may be held in BF16 or int8 ([out, in]: a scale per row) */
    if (!st) n->params[n->slot[SLOT_W(i)] - 1].lowp_ok = 1;
    if (!st && c->bias) st = strop__node_declare(n, SLOT_B(i), 1, &out);
  }
  for (int i = 0; i < 3 && !st; i++) {
    if (!c->lora_r[i]) continue;
    int64_t in, out;
    dims_of(c, i, &in, &out);
    const int64_t ad[2] = {c->lora_r[i], in}, bd[2] = {out, c->lora_r[i]};
    st = strop__node_declare(n, SLOT_A(i), 2, ad);
    if (!st) st = strop__node_declare(n, SLOT_LB(i), 2, bd);
  }
  /* with adapters the base projections are frozen, as in PEFT */
  if (!st && has_lora(c))
    for (int i = 0; i < n->n_params; i++)
      if (!n->params[i].is_adapter) n->params[i].trainable = 0;
  return st;
}

static float lora_scale(const gmlp_cfg *c, int i) {
  return c->lora_r[i] ? c->lora_alpha[i] / (float)c->lora_r[i] : 0.0f;
}

static void gmlp_init_adapters(strop__node *n, int mask, strop__rng *rng) {
  const gmlp_cfg *c = n->cfg;
  for (int i = 0; i < 3; i++) {
    if (!(mask & (1 << i))) continue;
    int64_t in, out;
    dims_of(c, i, &in, &out);
    strop__lora_init_pair(strop__node_p(n, SLOT_A(i)), strop__node_p(n, SLOT_LB(i)), in, rng);
  }
}

/* nn.Linear's default for each projection */
static void gmlp_init(strop__node *n, strop__rng *rng) {
  const gmlp_cfg *c = n->cfg;
  for (int i = 0; i < 3; i++) {
    int64_t in, out;
    dims_of(c, i, &in, &out);
    strop__param *w = strop__node_p(n, SLOT_W(i)), *b = strop__node_p(n, SLOT_B(i));
    if (w) strop__init_pytorch_linear_default(w->data, w->numel, in, rng);
    if (b) strop__init_pytorch_linear_default(b->data, b->numel, in, rng);
  }
  gmlp_init_adapters(n, 7, rng);
}

static void gmlp_lora_set(void *cfg, int part, int64_t r, float alpha) {
  gmlp_cfg *c = cfg;
  c->lora_r[part] = r;
  c->lora_alpha[part] = alpha;
}

static int64_t gmlp_lora_rank(const strop__node *n, int part, float *alpha, float *dropout) {
  const gmlp_cfg *c = n->cfg;
  if (alpha) *alpha = c->lora_alpha[part];
  if (dropout) *dropout = 0.0f;
  return c->lora_r[part];
}

static int gmlp_lora_merged(const strop__node *n) {
  return ((const gmlp_cfg *)n->cfg)->lora_merged;
}

static void gmlp_lora_set_merged(strop__node *n, int merge) {
  gmlp_cfg *c = n->cfg;
  merge = merge ? 1 : 0;
  if (c->lora_merged == merge || !has_lora(c)) return;
  for (int i = 0; i < 3; i++) {
    strop__param *w = strop__node_p(n, SLOT_W(i));
    strop__param *a = strop__node_p(n, SLOT_A(i)), *b = strop__node_p(n, SLOT_LB(i));
    if (!c->lora_r[i] || !w || !a || !b || !w->data || !a->data || !b->data) continue;
    int64_t in, out;
    dims_of(c, i, &in, &out);
    const float s = lora_scale(c, i);
    strop__lora_merge(w->data, a->data, b->data, in, c->lora_r[i], out, merge ? s : -s);
    w->version++;
  }
  c->lora_merged = merge;
}

/* The weights the step runs with: an active adapter's projection uses W + scale B A, built in
 * an arena buffer (the adapter's gradients follow from that weight's gradient); a weight held
 * in BF16 or int8 (frozen, no adapter) is NULL here and read through the lowp kernels. */
static strop_status eff_weights(strop__node *n, const strop__exec *x, const float **w,
                                float **eff, float **deff) {
  const gmlp_cfg *c = n->cfg;
  for (int i = 0; i < 3; i++) {
    strop__param *p = strop__node_p(n, SLOT_W(i));
    w[i] = p->data;
    eff[i] = NULL;
    if (deff) deff[i] = NULL;
    if (!c->lora_r[i] || c->lora_merged) continue;
    int64_t in, out;
    dims_of(c, i, &in, &out);
    const size_t bytes = (size_t)(in * out) * sizeof(float);
    eff[i] = strop__arena_alloc(x->arena, bytes);
    if (deff) deff[i] = strop__arena_calloc(x->arena, bytes);
    if (!eff[i] || (deff && !deff[i]))
      return strop__err(STROP_E_NOMEM, "layer '%s' (gated_mlp): out of memory", n->name);
    if (p->lowp.dtype) strop__lowp_expand(&p->lowp, eff[i]); /* the values it holds */
    else memcpy(eff[i], p->data, bytes);
    strop__lora_merge(eff[i], strop__node_p(n, SLOT_A(i))->data,
                      strop__node_p(n, SLOT_LB(i))->data, in, c->lora_r[i], out,
                      lora_scale(c, i));
    w[i] = eff[i];
  }
  return STROP_OK;
}

static int64_t rows_of(const strop__act *a) {
  int64_t m = a->n;
  for (int i = 0; i + 1 < a->shape.rank; i++) m *= a->shape.d[i];
  return m;
}

static const float *bias_of(const strop__node *n, int i) {
  const strop__param *b = strop__node_p(n, SLOT_B(i));
  return b ? b->data : NULL;
}

/* Projection i: y = x W^T + b on the FP32 weight w, or (w NULL) on the BF16 / int8 weight it
 * holds through the lowp kernels, as linear's: the exact fallback gives the FP32 product's bits
 * on the values held. A model computing in BF16 multiplies a plain FP32 weight (not one with an
 * adapter folded in) through its BF16 copy, as linear does (layers/compute.c). */
static strop_status proj_forward(const strop__node *n, const strop__exec *ex, int i,
                                 const float *w, const float *x, float *y, int64_t m) {
  int64_t in, out;
  dims_of(n->cfg, i, &in, &out);
  strop__param *p = strop__node_p(n, SLOT_W(i));
  if (w && w == p->data && strop__compute_bf16(ex, p)) /* the model computes in BF16 */
    return strop__linear_forward_c(n, ex, p, x, bias_of(n, i), y, m, in, out, 0);
  if (w) {
    strop__linear_forward_ex(x, w, bias_of(n, i), y, m, in, out, 0);
    return STROP_OK;
  }
  return strop__linear_forward_w(n, strop__node_p(n, SLOT_W(i)), x, bias_of(n, i), y, m, in, out,
                                 0);
}

/* Its backward given dy: dx (written with assign_dx, else added), and the weight and bias
 * gradients gw, gb (added; NULL when not wanted). A weight held in BF16 / int8 is frozen: dx
 * (and a training bias's gradient) only. */
static strop_status proj_backward(const strop__node *n, const strop__exec *ex, int i,
                                  const float *w, const float *x, const float *dy, float *dx,
                                  float *gw, float *gb, int64_t m, int assign_dx) {
  int64_t in, out;
  dims_of(n->cfg, i, &in, &out);
  strop__param *p = strop__node_p(n, SLOT_W(i));
  if (w && w == p->data && strop__compute_bf16(ex, p))
    return strop__linear_backward_c(n, ex, p, x, NULL, dy, dx, gw, gb, m, in, out,
                                    assign_dx ? STROP__LB_ASSIGN_DX : 0, NULL);
  if (w) {
    strop__linear_backward(x, w, dy, dx, gw, gb, m, in, out, assign_dx ? STROP__LB_ASSIGN_DX : 0);
    return STROP_OK;
  }
  return strop__linear_backward_w(n, strop__node_p(n, SLOT_W(i)), strop__node_p(n, SLOT_B(i)), x,
                                  dy, dx, gb, m, in, out, 0, assign_dx, 0);
}

static void act_forward(int act, const float *g, float *a, size_t cnt) {
  if (act == ACT_SILU) strop__silu_forward(g, a, cnt);
  else strop__gelu_forward(g, a, cnt, act == ACT_GELU_TANH);
}

/* n->saved: G = gate(x) and U = up(x), [m, F] each */
static strop_status gmlp_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 strop__act *out) {
  const gmlp_cfg *c = n->cfg;
  const int64_t m = rows_of(&in[0]), f = c->intermediate;
  const size_t mf = (size_t)(m * f);
  float *gu = strop__arena_alloc(x->arena, 2 * mf * sizeof(float));
  float *h = strop__arena_alloc(x->arena, mf * sizeof(float));
  if (!gu || !h)
    return strop__err(STROP_E_NOMEM, "layer '%s' (gated_mlp): out of memory", n->name);
  const float *w[3];
  float *eff[3];
  strop_status st = eff_weights(n, x, w, eff, NULL);
  if (st) return st;
  float *g = gu, *u = gu + mf;
  if ((st = proj_forward(n, x, 0, w[0], in[0].data, g, m)) ||
      (st = proj_forward(n, x, 1, w[1], in[0].data, u, m)))
    return st;
  if (c->activation == ACT_SILU) { /* Llama's: silu(G) U in one pass */
    strop__silu_gate_forward(g, u, h, mf);
  } else {
    act_forward(c->activation, g, h, mf);
    for (size_t e = 0; e < mf; e++) h[e] *= u[e];
  }
  if ((st = proj_forward(n, x, 2, w[2], h, out->data, m))) return st;
  n->saved = gu;
  return STROP_OK;
}

static strop_status gmlp_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                  const strop__act *out, const float *dout, float *const *din) {
  (void)out;
  const gmlp_cfg *c = n->cfg;
  const float *g = n->saved;
  if (!g)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (gated_mlp): backward without forward",
                      n->name);
  const int64_t m = rows_of(&in[0]), f = c->intermediate;
  const size_t mf = (size_t)(m * f);
  const float *u = g + mf;
  const int silu = c->activation == ACT_SILU;
  /* SiLU (Llama's) needs H and dH only: the gate's backward runs in one pass over them */
  float *a = silu ? NULL : strop__arena_alloc(x->arena, mf * sizeof(float));
  float *h = strop__arena_alloc(x->arena, mf * sizeof(float));
  float *dh = strop__arena_alloc(x->arena, mf * sizeof(float));
  float *dg = silu ? dh : strop__arena_calloc(x->arena, mf * sizeof(float));
  if ((!silu && !a) || !h || !dh || !dg)
    return strop__err(STROP_E_NOMEM, "layer '%s' (gated_mlp): out of memory", n->name);
  const float *w[3];
  float *eff[3], *deff[3];
  strop_status st = eff_weights(n, x, w, eff, deff);
  if (st) return st;
  float *gw[3], *gb[3];
  for (int i = 0; i < 3; i++) {
    gw[i] = deff[i] ? deff[i] : strop__node_grad(n, SLOT_W(i));
    gb[i] = strop__node_grad(n, SLOT_B(i));
  }
  /* recompute act(G) and H = act(G) U rather than keep them */
  if (silu) {
    strop__silu_gate_forward(g, u, h, mf);
  } else {
    act_forward(c->activation, g, a, mf);
    for (size_t e = 0; e < mf; e++) h[e] = a[e] * u[e];
  }
  if ((st = proj_backward(n, x, 2, w[2], h, dout, dh, gw[2], gb[2], m, 1))) return st;
  /* dU = dH act(G) (into h), d act = dH U (into dh), dG through the activation */
  if (silu) {
    strop__silu_gate_backward(g, u, dh, h, mf); /* dG over dH */
  } else {
    for (size_t e = 0; e < mf; e++) {
      h[e] = dh[e] * a[e];
      dh[e] *= u[e];
    }
    strop__gelu_backward(g, a, dh, dg, mf, c->activation == ACT_GELU_TANH);
  }
  if ((st = proj_backward(n, x, 1, w[1], in[0].data, h, din[0], gw[1], gb[1], m, 0)) ||
      (st = proj_backward(n, x, 0, w[0], in[0].data, dg, din[0], gw[0], gb[0], m, 0)))
    return st;
  for (int i = 0; i < 3; i++) {
    if (!deff[i]) continue;
    int64_t fin, fout;
    dims_of(c, i, &fin, &fout);
    float *wg = strop__node_grad(n, SLOT_W(i));
    if (wg)
      for (size_t e = 0; e < (size_t)(fin * fout); e++) wg[e] += deff[i][e];
    strop__param *pa = strop__node_p(n, SLOT_A(i)), *pb = strop__node_p(n, SLOT_LB(i));
    strop__lora_weight_grads(deff[i], pa->data, pb->data, fin, c->lora_r[i], fout,
                             lora_scale(c, i), pa->trainable ? pa->grad : NULL,
                             pb->trainable ? pb->grad : NULL);
  }
  return STROP_OK;
}

static const char *const NO_LORA[] = {"lora_r", "[0, 0, 0]", "lora_merged", "false", NULL};
static const strop__lora_ops LORA = {
    .parts = PARTS,
    .set = gmlp_lora_set,
    .rank = gmlp_lora_rank,
    .init_adapters = gmlp_init_adapters,
    .merged = gmlp_lora_merged,
    .set_merged = gmlp_lora_set_merged,
    .merged_type = "gated_mlp",
    .merged_opts = NO_LORA,
};

const strop__layer_vtable strop__layer_gated_mlp = {
    .type = "gated_mlp",
    .doc = "the gated feed-forward down_proj(act(gate_proj(x)) * up_proj(x)) of Llama-family "
           "decoders (LlamaMLP), fused, with LoRA on any of its projections",
    .cfg_size = sizeof(gmlp_cfg),
    .n_inputs = 1,
    .options = OPTIONS,
    .params = PARAMS,
    .shape = gmlp_shape,
    .infer = gmlp_infer,
    .init = gmlp_init,
    .forward = gmlp_forward,
    .backward = gmlp_backward,
    .lora = &LORA,
};
