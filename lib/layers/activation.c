/* strop — activation layers: relu, leaky_relu, gelu, silu, tanh, sigmoid (elementwise) and
 * softmax, log_softmax (along one dimension). Kernels are in ops/dense.c. */
#include <string.h>

#include "layers/layer.h"
#include "ops/dense.h"

enum { ACT_RELU, ACT_LEAKY, ACT_GELU, ACT_SILU, ACT_TANH, ACT_SIGMOID, ACT_SOFTMAX, ACT_LOGSOFTMAX };

typedef struct act_cfg {
  float negative_slope; /* leaky_relu */
  int approximate;      /* gelu: 0 none, 1 tanh */
  int64_t dim;          /* softmax: as given, PyTorch's numbering (0 = batch, -1 = last) */
  int axis;             /* softmax: resolved per-sample axis (0-based), set by infer */
} act_cfg;

static const char *const gelu_modes[] = {"none", "tanh", NULL};

static strop_status none_parse(void *cfg, strop__opts *o) {
  (void)cfg;
  (void)o;
  return STROP_OK;
}
static void none_write(const void *cfg, strop__optbuf *b) {
  (void)cfg;
  (void)b;
}

static strop_status leaky_parse(void *cfg, strop__opts *o) {
  act_cfg *c = cfg;
  c->negative_slope = 0.01f;
  return strop__opt_float(o, "negative_slope", -1e30, 1e30, &c->negative_slope);
}
static void leaky_write(const void *cfg, strop__optbuf *b) {
  strop__optbuf_float(b, "negative_slope", ((const act_cfg *)cfg)->negative_slope);
}

static strop_status gelu_parse(void *cfg, strop__opts *o) {
  act_cfg *c = cfg;
  c->approximate = 0;
  return strop__opt_enum(o, "approximate", gelu_modes, &c->approximate);
}
static void gelu_write(const void *cfg, strop__optbuf *b) {
  strop__optbuf_str(b, "approximate", gelu_modes[((const act_cfg *)cfg)->approximate]);
}

static strop_status softmax_parse(void *cfg, strop__opts *o) {
  act_cfg *c = cfg;
  c->dim = -1;
  return strop__opt_int(o, "dim", -(STROP_MAX_RANK + 1), STROP_MAX_RANK, &c->dim);
}
static void softmax_write(const void *cfg, strop__optbuf *b) {
  strop__optbuf_int(b, "dim", ((const act_cfg *)cfg)->dim);
}

static strop_status same_infer(strop__node *n) {
  n->out_shape = n->in_shapes[0];
  return STROP_OK;
}

/* dim counts the batch dimension as 0, as in PyTorch; softmax over the batch is refused */
static strop_status softmax_infer(strop__node *n) {
  act_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  int64_t full = s->rank + 1, d = c->dim < 0 ? c->dim + full : c->dim;
  char buf[96];
  if (d < 1 || d >= full)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (%s): dim %lld is out of range for input [N, %s] (dim counts "
                      "the batch as 0; use 1..%lld or -1..-%lld)",
                      n->name, n->vt->type, (long long)c->dim,
                      strop__shape_str(s, buf, sizeof buf), (long long)(full - 1),
                      (long long)(full - 1));
  c->axis = (int)(d - 1);
  n->out_shape = *s;
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

static strop_status act_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                strop__act *out) {
  (void)x;
  const act_cfg *c = n->cfg;
  size_t cnt = act_numel(&in[0]);
  const float *a = in[0].data;
  float *y = out->data;
  int64_t o, d, k;
  switch (kind_of(n)) {
    case ACT_RELU: strop__relu_forward(a, y, cnt); break;
    case ACT_LEAKY: strop__leaky_relu_forward(a, y, cnt, c->negative_slope); break;
    case ACT_GELU: strop__gelu_forward(a, y, cnt, c->approximate); break;
    case ACT_SILU: strop__silu_forward(a, y, cnt); break;
    case ACT_TANH: strop__tanh_forward(a, y, cnt); break;
    case ACT_SIGMOID: strop__sigmoid_forward(a, y, cnt); break;
    case ACT_SOFTMAX:
      softmax_geom(c, &in[0], &o, &d, &k);
      strop__softmax_forward(a, y, o, d, k);
      break;
    case ACT_LOGSOFTMAX:
      softmax_geom(c, &in[0], &o, &d, &k);
      strop__log_softmax_forward(a, y, o, d, k);
      break;
    default: return strop__err(STROP_E_INTERNAL, "layer '%s': unknown activation", n->name);
  }
  return STROP_OK;
}

static strop_status act_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 const strop__act *out, const float *dout, float *const *din) {
  const act_cfg *c = n->cfg;
  float *dx = din[0];
  if (!dx) return STROP_OK;
  size_t cnt = act_numel(&in[0]);
  const float *a = in[0].data, *y = out->data;
  int64_t o, d, k;
  const int kind = kind_of(n);
  if (x->din_assign) {
    if (kind == ACT_RELU) {
      strop__relu_backward_assign(y, dout, dx, cnt);
      return STROP_OK;
    }
    memset(dx, 0, cnt * sizeof(float));
  }
  switch (kind) {
    case ACT_RELU: strop__relu_backward(a, y, dout, dx, cnt); break;
    case ACT_LEAKY: strop__leaky_relu_backward(a, y, dout, dx, cnt, c->negative_slope); break;
    case ACT_GELU: strop__gelu_backward(a, y, dout, dx, cnt, c->approximate); break;
    case ACT_SILU: strop__silu_backward(a, y, dout, dx, cnt); break;
    case ACT_TANH: strop__tanh_backward(a, y, dout, dx, cnt); break;
    case ACT_SIGMOID: strop__sigmoid_backward(a, y, dout, dx, cnt); break;
    case ACT_SOFTMAX:
      softmax_geom(c, &in[0], &o, &d, &k);
      strop__softmax_backward(y, dout, dx, o, d, k);
      break;
    case ACT_LOGSOFTMAX:
      softmax_geom(c, &in[0], &o, &d, &k);
      strop__log_softmax_backward(y, dout, dx, o, d, k);
      break;
    default: return strop__err(STROP_E_INTERNAL, "layer '%s': unknown activation", n->name);
  }
  return STROP_OK;
}

#define ACT_VT(NAME, PARSE, WRITE, INFER)                                                      \
  const strop__layer_vtable strop__layer_##NAME = {                                           \
      .type = #NAME,                                                                          \
      .cfg_size = sizeof(act_cfg),                                                            \
      .n_inputs = 1,                                                                          \
      .flags = STROP__LAYER_ASSIGNS_DIN,                                                      \
      .parse = PARSE,                                                                         \
      .write = WRITE,                                                                         \
      .infer = INFER,                                                                         \
      .init = NULL,                                                                           \
      .forward = act_forward,                                                                 \
      .backward = act_backward,                                                               \
  };

ACT_VT(relu, none_parse, none_write, same_infer)
ACT_VT(leaky_relu, leaky_parse, leaky_write, same_infer)
ACT_VT(gelu, gelu_parse, gelu_write, same_infer)
ACT_VT(silu, none_parse, none_write, same_infer)
ACT_VT(tanh, none_parse, none_write, same_infer)
ACT_VT(sigmoid, none_parse, none_write, same_infer)
ACT_VT(softmax, softmax_parse, softmax_write, softmax_infer)
ACT_VT(log_softmax, softmax_parse, softmax_write, softmax_infer)

/* the vtable's address tells the kind, so one forward/backward serves all eight */
static int kind_of(const strop__node *n) {
  const strop__layer_vtable *v = n->vt;
  if (v == &strop__layer_relu) return ACT_RELU;
  if (v == &strop__layer_leaky_relu) return ACT_LEAKY;
  if (v == &strop__layer_gelu) return ACT_GELU;
  if (v == &strop__layer_silu) return ACT_SILU;
  if (v == &strop__layer_tanh) return ACT_TANH;
  if (v == &strop__layer_sigmoid) return ACT_SIGMOID;
  if (v == &strop__layer_softmax) return ACT_SOFTMAX;
  if (v == &strop__layer_log_softmax) return ACT_LOGSOFTMAX;
  return -1;
}
