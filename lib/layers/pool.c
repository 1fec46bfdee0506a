/* SPDX-License-Identifier: MIT */
/* strop — pooling layers on [N, C, H, W]: maxpool2d and avgpool2d (torch.nn.MaxPool2d /
 * AvgPool2d, floor mode), adaptive_avgpool2d (torch.nn.AdaptiveAvgPool2d) and global_avgpool
 * [N, C, H, W] -> [N, C]. Math in ops/pool.c. */
#include "layers/fuse.h"
#include "layers/layer.h"
#include "ops/conv.h"
#include "ops/pool.h"

typedef struct pool_cfg {
  int64_t kernel[2], stride[2], padding[2], dilation[2]; /* stride 0: "none", the kernel's */
  int ceil_mode;                                         /* only false is supported */
  int count_include_pad;                                 /* avgpool only */
  int64_t st[2]; /* the stride in use ("none" resolved to the kernel's) */
} pool_cfg;

static const double NONE_V[] = {0, 0, 0};

#define POOL_COMMON(stride_doc)                                              \
  {.name = "kernel_size",                                                    \
   .type = STROP__OT_INTS,                                                   \
   .off = offsetof(pool_cfg, kernel),                                        \
   .lo = 1,                                                                  \
   .hi = 1 << 16,                                                            \
   .n = 2,                                                                   \
   .example = "2",                                                           \
   .doc = "window height and width (one value: both)"},                      \
      {.name = "stride",                                                     \
       .type = STROP__OT_INTS,                                               \
       .off = offsetof(pool_cfg, stride),                                    \
       .dflt = "none",                                                       \
       .lo = 1,                                                              \
       .hi = 1 << 16,                                                        \
       .n = 2,                                                               \
       .words = strop__word_none,                                            \
       .word_values = NONE_V,                                                \
       .doc = stride_doc},                                                   \
      STROP__OPT_INTS(pool_cfg, padding, "padding", "[0, 0]", 2, 0, 1 << 16, \
                      "implicit padding on each side, at most half the window")

static const strop__optdef MAX_OPTIONS[] = {
    POOL_COMMON("step between windows; none: kernel_size"),
    STROP__OPT_INTS(pool_cfg, dilation, "dilation", "[1, 1]", 2, 1, 1 << 16,
                    "spacing between window elements"),
    STROP__OPT_BOOL(pool_cfg, ceil_mode, "ceil_mode", "false", "only false is supported"),
    {NULL}};

static const strop__optdef AVG_OPTIONS[] = {
    POOL_COMMON("step between windows; none: kernel_size"),
    STROP__OPT_BOOL(pool_cfg, ceil_mode, "ceil_mode", "false", "only false is supported"),
    STROP__OPT_BOOL(pool_cfg, count_include_pad, "count_include_pad", "true",
                    "padded zeros count in the average"),
    {NULL}};

static strop_status pool_check(void *cfg, strop__opts *o) {
  pool_cfg *c = cfg;
  if (c->ceil_mode)
    return strop__err(STROP_E_UNSUPPORTED,
                      "layer '%s' (%s): option 'ceil_mode': ceil_mode=true is not supported",
                      o->layer ? o->layer : "?", o->type ? o->type : "?");
  if (!c->dilation[0]) c->dilation[0] = c->dilation[1] = 1; /* avgpool has none */
  for (int i = 0; i < 2; i++) c->st[i] = c->stride[i] ? c->stride[i] : c->kernel[i];
  for (int i = 0; i < 2; i++)
    if (c->padding[i] > c->kernel[i] / 2)
      return strop__opt_error(o, "padding",
                              "padding %lld must be at most half of kernel_size %lld",
                              (long long)c->padding[i], (long long)c->kernel[i]);
  return STROP_OK;
}

/* [C, H, W] -> [C, OH, OW] for any H and W the window fits */
static strop_status pool_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  const pool_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank != 3)
    return strop__shape_error(n, "input must be [C, H, W] per sample, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  const int64_t oh = strop__conv_out_len(s->d[1], c->kernel[0], c->st[0], c->padding[0],
                                         c->dilation[0]);
  const int64_t ow = strop__conv_out_len(s->d[2], c->kernel[1], c->st[1], c->padding[1],
                                         c->dilation[1]);
  if (oh <= 0 || ow <= 0 || s->d[1] <= 0 || s->d[2] <= 0)
    return strop__shape_error(
        n,
        "kernel_size %lldx%lld (dilation %lldx%lld) is larger than the "
        "padded input %lldx%lld (input shape %s)",
        (long long)c->kernel[0], (long long)c->kernel[1], (long long)c->dilation[0],
        (long long)c->dilation[1], (long long)(s->d[1] + 2 * c->padding[0]),
        (long long)(s->d[2] + 2 * c->padding[1]), strop__shape_str(s, buf, sizeof buf));
  out->rank = 3;
  out->d[0] = s->d[0];
  out->d[1] = oh;
  out->d[2] = ow;
  return STROP_OK;
}

static strop__pool2d_dims pool_dims(const pool_cfg *c, const strop__act *a) {
  strop__pool2d_dims d = {a->n,
                          a->shape.d[0],
                          a->shape.d[1],
                          a->shape.d[2],
                          c->kernel[0],
                          c->kernel[1],
                          c->st[0],
                          c->st[1],
                          c->padding[0],
                          c->padding[1],
                          c->dilation[0],
                          c->dilation[1],
                          0,
                          0};
  d.oh = strop__conv_out_len(d.h, d.kh, d.sh, d.ph, d.dh);
  d.ow = strop__conv_out_len(d.w, d.kw, d.sw, d.pw, d.dw);
  return d;
}

int strop__layer_maxpool_window(const strop__node *n, strop__pool2d_dims *d) {
  if (!(n->vt->flags & STROP__LAYER_EPILOGUE_MAXPOOL)) return 0;
  strop__act a = {NULL, 0, n->in_shapes[0]};
  *d = pool_dims(n->cfg, &a);
  return 1;
}

static strop_status maxpool_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    strop__act *out) {
  strop__pool2d_dims d = pool_dims(n->cfg, &in[0]);
  size_t cnt = (size_t)(d.n * d.c * d.oh * d.ow);
  int32_t *arg = strop__arena_alloc(x->arena, cnt * sizeof(int32_t));
  if (!arg)
    return strop__err(STROP_E_NOMEM, "layer '%s' (maxpool2d): out of memory for the argmax",
                      n->name);
  strop__maxpool2d_forward(&d, in[0].data, out->data, arg);
  n->saved = arg;
  return STROP_OK;
}

static strop_status maxpool_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                     const strop__act *out, const float *dout,
                                     float *const *din) {
  (void)out;
  if (!din[0]) return STROP_OK;
  if (!n->saved)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (maxpool2d): backward without forward",
                      n->name);
  strop__pool2d_dims d = pool_dims(n->cfg, &in[0]);
  if (x->din_assign) strop__maxpool2d_backward_assign(&d, dout, n->saved, din[0]);
  else strop__maxpool2d_backward(&d, dout, n->saved, din[0]);
  return STROP_OK;
}

static strop_status avgpool_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    strop__act *out) {
  (void)x;
  const pool_cfg *c = n->cfg;
  strop__pool2d_dims d = pool_dims(c, &in[0]);
  strop__avgpool2d_forward(&d, in[0].data, out->data, c->count_include_pad);
  return STROP_OK;
}

static strop_status avgpool_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                     const strop__act *out, const float *dout,
                                     float *const *din) {
  (void)x;
  (void)out;
  if (!din[0]) return STROP_OK;
  const pool_cfg *c = n->cfg;
  strop__pool2d_dims d = pool_dims(c, &in[0]);
  strop__avgpool2d_backward(&d, dout, din[0], c->count_include_pad);
  return STROP_OK;
}

/* ---- adaptive average pool ---- */

typedef struct adapt_cfg {
  int64_t size[2]; /* output_size */
} adapt_cfg;

static const strop__optdef ADAPT_OPTIONS[] = {
    {.name = "output_size",
     .type = STROP__OT_INTS,
     .off = offsetof(adapt_cfg, size),
     .lo = 1,
     .hi = 1 << 16,
     .n = 2,
     .example = "1",
     .doc = "output height and width (one value: both); 1 keeps the [C, 1, 1] shape"},
    {NULL}};

/* [C, H, W] -> [C, oh, ow] for any H, W >= 1 (windows may repeat input cells when the output
 * is larger, as in PyTorch) */
static strop_status adapt_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  const adapt_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank != 3 || s->d[1] <= 0 || s->d[2] <= 0)
    return strop__shape_error(n, "input must be [C, H, W] per sample with H, W > 0, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  out->rank = 3;
  out->d[0] = s->d[0];
  out->d[1] = c->size[0];
  out->d[2] = c->size[1];
  return STROP_OK;
}

static strop__pool2d_dims adapt_dims(const adapt_cfg *c, const strop__act *a) {
  strop__pool2d_dims d = {0};
  d.n = a->n;
  d.c = a->shape.d[0];
  d.h = a->shape.d[1];
  d.w = a->shape.d[2];
  d.oh = c->size[0];
  d.ow = c->size[1];
  return d;
}

static strop_status adapt_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                  strop__act *out) {
  (void)x;
  strop__pool2d_dims d = adapt_dims(n->cfg, &in[0]);
  if (d.oh == 1 && d.ow == 1) /* the global mean, the common case (squeeze-excitation) */
    strop__global_avgpool_forward(d.n, d.c, d.h * d.w, in[0].data, out->data);
  else strop__adaptive_avgpool2d_forward(&d, in[0].data, out->data);
  return STROP_OK;
}

static strop_status adapt_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                   const strop__act *out, const float *dout, float *const *din) {
  (void)x;
  (void)out;
  if (!din[0]) return STROP_OK;
  strop__pool2d_dims d = adapt_dims(n->cfg, &in[0]);
  if (d.oh == 1 && d.ow == 1) strop__global_avgpool_backward(d.n, d.c, d.h * d.w, dout, din[0]);
  else strop__adaptive_avgpool2d_backward(&d, dout, din[0]);
  return STROP_OK;
}

/* ---- global average pool ---- */

static strop_status gap_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank != 3 || s->d[1] * s->d[2] <= 0)
    return strop__shape_error(n, "input must be [C, H, W] per sample with H, W > 0, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  out->rank = 1;
  out->d[0] = s->d[0];
  return STROP_OK;
}

static strop_status gap_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                strop__act *out) {
  (void)n;
  (void)x;
  const strop__shape *s = &in[0].shape;
  strop__global_avgpool_forward(in[0].n, s->d[0], s->d[1] * s->d[2], in[0].data, out->data);
  return STROP_OK;
}

static strop_status gap_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 const strop__act *out, const float *dout, float *const *din) {
  (void)n;
  (void)x;
  (void)out;
  if (!din[0]) return STROP_OK;
  const strop__shape *s = &in[0].shape;
  strop__global_avgpool_backward(in[0].n, s->d[0], s->d[1] * s->d[2], dout, din[0]);
  return STROP_OK;
}

const strop__layer_vtable strop__layer_maxpool2d = {
    .type = "maxpool2d",
    .doc = "max over windows of [C, H, W] (torch.nn.MaxPool2d, floor mode)",
    .cfg_size = sizeof(pool_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_ASSIGNS_DIN | STROP__LAYER_EPILOGUE_MAXPOOL | STROP__LAYER_IN_UNREAD,
    .options = MAX_OPTIONS,
    .check = pool_check,
    .shape = pool_shape,
    .infer = strop__node_infer_shape,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
};

const strop__layer_vtable strop__layer_avgpool2d = {
    .type = "avgpool2d",
    .doc = "mean over windows of [C, H, W] (torch.nn.AvgPool2d, floor mode)",
    .cfg_size = sizeof(pool_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_IN_UNREAD,
    .options = AVG_OPTIONS,
    .check = pool_check,
    .shape = pool_shape,
    .infer = strop__node_infer_shape,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};

const strop__layer_vtable strop__layer_global_avgpool = {
    .type = "global_avgpool",
    .doc = "mean over H and W: [C, H, W] -> [C] (nn.AdaptiveAvgPool2d(1) then flatten)",
    .cfg_size = 1,
    .n_inputs = 1,
    .flags = STROP__LAYER_IN_UNREAD,
    .shape = gap_shape,
    .infer = strop__node_infer_shape,
    .forward = gap_forward,
    .backward = gap_backward,
};

const strop__layer_vtable strop__layer_adaptive_avgpool2d = {
    .type = "adaptive_avgpool2d",
    .doc = "mean over output_size windows of [C, H, W], uneven where H or W does not divide: "
           "[C, H, W] -> [C, oh, ow] (torch.nn.AdaptiveAvgPool2d)",
    .cfg_size = sizeof(adapt_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_IN_UNREAD,
    .options = ADAPT_OPTIONS,
    .shape = adapt_shape,
    .infer = strop__node_infer_shape,
    .forward = adapt_forward,
    .backward = adapt_backward,
};
