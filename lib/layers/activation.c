/* SPDX-License-Identifier: MIT */
/* strop — activation layers: relu, relu6, leaky_relu, gelu, silu, tanh, sigmoid (elementwise) and
 * softmax, log_softmax (along one dimension). Kernels are in ops/dense.c. */
#include <string.h>

#include "layers/fuse.h"
#include "layers/layer.h"
#include "ops/conv.h"
#include "ops/dense.h"

enum {
  ACT_RELU,
  ACT_RELU6,
  ACT_LEAKY,
  ACT_GELU,
  ACT_SILU,
  ACT_TANH,
  ACT_SIGMOID,
  ACT_HARDSWISH,
  ACT_HARDSIGMOID,
  ACT_SOFTMAX,
  ACT_LOGSOFTMAX
};

typedef struct act_cfg {
  float negative_slope; /* leaky_relu */
  int approximate;      /* gelu: 0 none, 1 tanh */
  int64_t dim;          /* softmax: as given, PyTorch's numbering (0 = batch, -1 = last) */
  int axis;             /* softmax: resolved per-sample axis (0-based), set by infer */
  /* relu, run time, from relu_fuse: the max-pool after it computed in the same pass (pool set;
   * pd its window) */
  int pool;
  strop__pool2d_dims pd;
} act_cfg;

static const char *const gelu_modes[] = {"none", "tanh", NULL};

static const strop__optdef LEAKY_OPTIONS[] = {
    STROP__OPT_FLOAT(act_cfg, negative_slope, "negative_slope", "0.01", -1e30, 1e30, 0,
                     "slope for negative inputs"),
    {NULL}};
static const strop__optdef GELU_OPTIONS[] = {
    STROP__OPT_ENUM(act_cfg, approximate, "approximate", "none", gelu_modes,
                    "none: the exact erf form; tanh: the tanh approximation"),
    {NULL}};
static const strop__optdef SOFTMAX_OPTIONS[] = {
    STROP__OPT_INT(act_cfg, dim, "dim", "-1", -(STROP_MAX_RANK + 1), STROP_MAX_RANK,
                   "the dimension, counting the batch as 0 (-1: the last)"),
    {NULL}};

/* dim counts the batch dimension as 0, as in PyTorch; softmax over the batch is refused */
static strop_status softmax_shape(const strop__node *n, const strop__shape *in,
                                  strop__shape *out) {
  const act_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  int64_t full = s->rank + 1, d = c->dim < 0 ? c->dim + full : c->dim;
  char buf[96];
  if (d < 1 || d >= full)
    return strop__shape_error(n,
                              "dim %lld is out of range for input [N, %s] (dim counts the "
                              "batch as 0; use 1..%lld or -1..-%lld)",
                              (long long)c->dim, strop__shape_str(s, buf, sizeof buf),
                              (long long)(full - 1), (long long)(full - 1));
  *out = *s;
  return STROP_OK;
}

static strop_status softmax_infer(strop__node *n) {
  act_cfg *c = n->cfg;
  strop_status st = softmax_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  const int64_t full = n->in_shapes[0].rank + 1;
  c->axis = (int)((c->dim < 0 ? c->dim + full : c->dim) - 1);
  return STROP_OK;
}

static void softmax_geom(const act_cfg *c, const strop__act *a, int64_t *outer, int64_t *d,
                         int64_t *inner) {
  int64_t o = a->n, in = 1;
  for (int i = 0; i < c->axis; i++) o *= a->shape.d[i];
  for (int i = c->axis + 1; i < a->shape.rank; i++) in *= a->shape.d[i];
  *outer = o;
  *d = a->shape.d[c->axis];
  *inner = in;
}

static size_t act_numel(const strop__act *a) {
  return (size_t)a->n * strop__shape_numel(&a->shape);
}

static int kind_of(const strop__node *n);

/* One activation call over a range: elements [lo, hi) for the elementwise kinds, rows of the
 * softmax's outer dimension for the softmaxes (each row is d * inner floats). The split across
 * threads changes no bit: every output element depends on its own inputs or its own row. */
typedef struct act_job {
  const act_cfg *c;
  int kind, backward, assign;
  const float *a, *y, *dy;
  float *out;
  int64_t d, inner; /* softmax geometry */
} act_job;

static void act_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const act_job *j = ctx;
  const int soft = j->kind == ACT_SOFTMAX || j->kind == ACT_LOGSOFTMAX;
  const int64_t off = soft ? lo * j->d * j->inner : lo, rows = hi - lo;
  const size_t cnt = (size_t)(hi - lo);
  const float *a = j->a + off, *y = j->y ? j->y + off : NULL, *dy = j->dy ? j->dy + off : NULL;
  float *o = j->out + off;
  if (!j->backward) {
    switch (j->kind) {
      case ACT_RELU: strop__relu_forward(a, o, cnt); break;
      case ACT_RELU6: strop__relu6_forward(a, o, cnt); break;
      case ACT_LEAKY: strop__leaky_relu_forward(a, o, cnt, j->c->negative_slope); break;
      case ACT_GELU: strop__gelu_forward(a, o, cnt, j->c->approximate); break;
      case ACT_SILU: strop__silu_forward(a, o, cnt); break;
      case ACT_TANH: strop__tanh_forward(a, o, cnt); break;
      case ACT_SIGMOID: strop__sigmoid_forward(a, o, cnt); break;
      case ACT_HARDSWISH: strop__hardswish_forward(a, o, cnt); break;
      case ACT_HARDSIGMOID: strop__hardsigmoid_forward(a, o, cnt); break;
      case ACT_SOFTMAX: strop__softmax_forward(a, o, rows, j->d, j->inner); break;
      default: strop__log_softmax_forward(a, o, rows, j->d, j->inner); break;
    }
    return;
  }
  if (j->assign) {
    if (j->kind == ACT_RELU) {
      strop__relu_backward_assign(y, dy, o, cnt);
      return;
    }
    if (j->kind == ACT_GELU) {
      strop__gelu_backward_assign(a, dy, o, cnt, j->c->approximate);
      return;
    }
    memset(o, 0, sizeof(float) * (size_t)(soft ? rows * j->d * j->inner : (int64_t)cnt));
  }
  switch (j->kind) {
    case ACT_RELU: strop__relu_backward(a, y, dy, o, cnt); break;
    case ACT_RELU6: strop__relu6_backward(a, y, dy, o, cnt); break;
    case ACT_LEAKY: strop__leaky_relu_backward(a, y, dy, o, cnt, j->c->negative_slope); break;
    case ACT_GELU: strop__gelu_backward(a, y, dy, o, cnt, j->c->approximate); break;
    case ACT_SILU: strop__silu_backward(a, y, dy, o, cnt); break;
    case ACT_TANH: strop__tanh_backward(a, y, dy, o, cnt); break;
    case ACT_SIGMOID: strop__sigmoid_backward(a, y, dy, o, cnt); break;
    case ACT_HARDSWISH: strop__hardswish_backward(a, y, dy, o, cnt); break;
    case ACT_HARDSIGMOID: strop__hardsigmoid_backward(a, y, dy, o, cnt); break;
    case ACT_SOFTMAX: strop__softmax_backward(y, dy, o, rows, j->d, j->inner); break;
    default: strop__log_softmax_backward(y, dy, o, rows, j->d, j->inner); break;
  }
}

/* Elements per thread below which a split does not pay for waking a worker. */
#define ACT_GRAIN 16384

static void act_run(act_job *j, const strop__act *in) {
  int64_t items = (int64_t)act_numel(in), grain = ACT_GRAIN;
  if (j->kind == ACT_SOFTMAX || j->kind == ACT_LOGSOFTMAX) {
    softmax_geom(j->c, in, &items, &j->d, &j->inner);
    int64_t row = j->d * j->inner;
    grain = row >= ACT_GRAIN ? 1 : ACT_GRAIN / (row > 0 ? row : 1);
  }
  strop__par_for(items, grain, act_range, j);
}

/* A relu whose sole reader is a max-pool computes both (strop__maxpool2d_forward_ex): the
 * relu's output is never stored, and the pair's backward reads only the pool's output and
 * winners (a window whose maximum is <= 0 passes no gradient) — the same numbers as the two
 * layers one after the other. In a ResNet's stem that is the full-size activation the relu
 * kept for its backward alone (25.7 MB at 224², batch 8), since the pool does not read its
 * input. */
static int relu_fuse(strop__node *n, strop__node *const *next, int n_next, int shared) {
  act_cfg *c = n->cfg;
  c->pool = !shared && n_next > 0 && strop__layer_maxpool_window(next[0], &c->pd);
  return c->pool;
}

/* the fused pool's window over this call's input */
static strop__pool2d_dims relu_pool_dims(const act_cfg *c, const strop__act *in) {
  strop__pool2d_dims d = c->pd;
  d.n = in->n;
  d.c = in->shape.d[0];
  d.h = in->shape.d[1];
  d.w = in->shape.d[2];
  d.oh = strop__conv_out_len(d.h, d.kh, d.sh, d.ph, d.dh);
  d.ow = strop__conv_out_len(d.w, d.kw, d.sw, d.pw, d.dw);
  return d;
}

static strop_status act_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                strop__act *out) {
  const act_cfg *c = n->cfg;
  if (c->pool && kind_of(n) == ACT_RELU) {
    const strop__pool2d_dims d = relu_pool_dims(c, &in[0]);
    const size_t cnt = (size_t)(d.n * d.c * d.oh * d.ow);
    int32_t *arg = strop__arena_alloc(x->arena, (cnt ? cnt : 1) * sizeof(int32_t));
    if (!arg)
      return strop__err(STROP_E_NOMEM, "layer '%s' (relu): out of memory for the argmax",
                        n->name);
    strop__maxpool2d_forward_ex(&d, in[0].data, out->data, arg, 1);
    n->saved = arg;
    return STROP_OK;
  }
  act_job j = {n->cfg, kind_of(n), 0, 0, in[0].data, NULL, NULL, out->data, 0, 0};
  if (j.kind < 0) return strop__err(STROP_E_INTERNAL, "layer '%s': unknown activation", n->name);
  act_run(&j, &in[0]);
  return STROP_OK;
}

static strop_status act_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 const strop__act *out, const float *dout, float *const *din) {
  if (!din[0]) return STROP_OK;
  const act_cfg *c = n->cfg;
  if (c->pool && kind_of(n) == ACT_RELU) {
    if (!n->saved)
      return strop__err(STROP_E_INTERNAL, "layer '%s' (relu): backward without forward", n->name);
    const strop__pool2d_dims d = relu_pool_dims(c, &in[0]);
    if (x->din_assign) {
      strop__maxpool2d_backward_assign_ex(&d, dout, n->saved, out->data, din[0]);
      return STROP_OK;
    }
    const size_t cnt = (size_t)(d.n * d.c * d.h * d.w); /* assigned here, then added */
    float *g = strop__arena_alloc(x->arena, (cnt ? cnt : 1) * sizeof(float));
    if (!g) return strop__err(STROP_E_NOMEM, "layer '%s' (relu): out of memory", n->name);
    strop__maxpool2d_backward_assign_ex(&d, dout, n->saved, out->data, g);
    for (size_t i = 0; i < cnt; i++) din[0][i] += g[i];
    return STROP_OK;
  }
  act_job j = {n->cfg, kind_of(n), 1, x->din_assign, in[0].data, out->data, dout, din[0], 0, 0};
  if (j.kind < 0) return strop__err(STROP_E_INTERNAL, "layer '%s': unknown activation", n->name);
  act_run(&j, &in[0]);
  return STROP_OK;
}

#define ACT_VT(NAME, DOC, FLAGS, OPTIONS, SHAPE, INFER) \
  const strop__layer_vtable strop__layer_##NAME = {     \
      .type = #NAME,                                    \
      .doc = DOC,                                       \
      .cfg_size = sizeof(act_cfg),                      \
      .n_inputs = 1,                                    \
      .flags = STROP__LAYER_ASSIGNS_DIN | (FLAGS),      \
      .options = OPTIONS,                               \
      .shape = SHAPE,                                   \
      .infer = INFER,                                   \
      .init = NULL,                                     \
      .forward = act_forward,                           \
      .backward = act_backward,                         \
  };

/* An elementwise activation keeps the shape; the softmaxes check their dim. Those whose backward
 * reads only the input (gelu, silu, leaky_relu, hardswish, hardsigmoid) say their output is
 * unread, so it is not kept for them, and that it is cheap to compute again from that input,
 * so it need not be kept for the next layer's backward either; relu, relu6, tanh, sigmoid and
 * the softmaxes read their output. */
#define ACT_CHEAP (STROP__LAYER_OUT_UNREAD | STROP__LAYER_RECOMPUTE)
#define ACT_SAME(NAME, DOC, FLAGS, OPTIONS) \
  ACT_VT(NAME, DOC, FLAGS, OPTIONS, strop__shape_same, strop__node_infer_shape)
#define ACT_SOFT(NAME, DOC) ACT_VT(NAME, DOC, 0, SOFTMAX_OPTIONS, softmax_shape, softmax_infer)

/* relu's backward reads its output only (IN_UNREAD: what its fused pool says for the pair) */
const strop__layer_vtable strop__layer_relu = {
    .type = "relu",
    .doc = "max(x, 0) (torch.nn.ReLU)",
    .cfg_size = sizeof(act_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_ASSIGNS_DIN | STROP__LAYER_EPILOGUE_RELU | STROP__LAYER_IN_PLACE |
             STROP__LAYER_IN_UNREAD,
    .options = NULL,
    .shape = strop__shape_same,
    .infer = strop__node_infer_shape,
    .init = NULL,
    .forward = act_forward,
    .backward = act_backward,
    .fuse = relu_fuse,
};
ACT_SAME(relu6, "min(max(x, 0), 6) (torch.nn.ReLU6, MobileNetV2's activation)",
         STROP__LAYER_IN_PLACE, NULL)
ACT_SAME(leaky_relu, "x, or negative_slope x below 0 (torch.nn.LeakyReLU)", ACT_CHEAP,
         LEAKY_OPTIONS)
ACT_SAME(gelu, "x Phi(x) (torch.nn.GELU)", ACT_CHEAP, GELU_OPTIONS)
ACT_SAME(silu, "x sigmoid(x) (torch.nn.SiLU)", ACT_CHEAP, NULL)
ACT_SAME(tanh, "tanh(x) (torch.nn.Tanh)", 0, NULL)
ACT_SAME(sigmoid, "1 / (1 + exp(-x)) (torch.nn.Sigmoid)", 0, NULL)
ACT_SAME(hardswish, "x relu6(x + 3) / 6 (torch.nn.Hardswish)", ACT_CHEAP, NULL)
ACT_SAME(hardsigmoid, "relu6(x + 3) / 6 (torch.nn.Hardsigmoid)", ACT_CHEAP, NULL)
ACT_SOFT(softmax, "softmax along dim (torch.nn.Softmax)")
ACT_SOFT(log_softmax, "log of softmax along dim (torch.nn.LogSoftmax)")

/* the vtable's address tells the kind, so one forward/backward serves all eight */
static int kind_of(const strop__node *n) {
  const strop__layer_vtable *v = n->vt;
  if (v == &strop__layer_relu) return ACT_RELU;
  if (v == &strop__layer_relu6) return ACT_RELU6;
  if (v == &strop__layer_leaky_relu) return ACT_LEAKY;
  if (v == &strop__layer_gelu) return ACT_GELU;
  if (v == &strop__layer_silu) return ACT_SILU;
  if (v == &strop__layer_tanh) return ACT_TANH;
  if (v == &strop__layer_sigmoid) return ACT_SIGMOID;
  if (v == &strop__layer_hardswish) return ACT_HARDSWISH;
  if (v == &strop__layer_hardsigmoid) return ACT_HARDSIGMOID;
  if (v == &strop__layer_softmax) return ACT_SOFTMAX;
  if (v == &strop__layer_log_softmax) return ACT_LOGSOFTMAX;
  return -1;
}
