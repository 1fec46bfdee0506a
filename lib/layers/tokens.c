/* SPDX-License-Identifier: MIT */
/* strop — layers that turn an image into a sequence of tokens, as vision transformers do:
 * transpose (torch.transpose of two per-sample dimensions: [D, H*W] -> [H*W, D]) and
 * class_token (a learned vector prepended to the sequence: [T, D] -> [1 + T, D], its
 * parameter named as the node, torchvision's "class_token"). */
#include <string.h>

#include "layers/layer.h"

/* ------------------------------------------------------------------ transpose */

typedef struct transpose_cfg {
  int64_t dim0, dim1; /* per-sample dimensions */
} transpose_cfg;

static const strop__optdef TRANSPOSE_OPTIONS[] = {
    STROP__OPT_INT(transpose_cfg, dim0, "dim0", "0", 0, STROP_MAX_RANK - 2,
                   "a per-sample dimension (0 is the first after the batch)"),
    STROP__OPT_INT(transpose_cfg, dim1, "dim1", "1", 0, STROP_MAX_RANK - 2,
                   "the other dimension"),
    {NULL}};

static strop_status transpose_shape(const strop__node *n, const strop__shape *in,
                                    strop__shape *out) {
  const transpose_cfg *c = n->cfg;
  char buf[96];
  if (c->dim0 >= in[0].rank || c->dim1 >= in[0].rank)
    return strop__shape_error(n, "dimensions %lld and %lld of an input %s", (long long)c->dim0,
                              (long long)c->dim1, strop__shape_str(&in[0], buf, sizeof buf));
  *out = in[0];
  out->d[c->dim0] = in[0].d[c->dim1];
  out->d[c->dim1] = in[0].d[c->dim0];
  return STROP_OK;
}

/* y = x with dims a and b swapped: the sample as [outer, A, mid, B, inner] */
static void swap_dims(const strop__shape *s, int64_t a, int64_t b, const float *x, float *y,
                      int64_t n, int add) {
  if (a > b) {
    int64_t t = a;
    a = b;
    b = t;
  }
  int64_t outer = 1, mid = 1, inner = 1;
  for (int i = 0; i < a; i++) outer *= s->d[i];
  for (int64_t i = a + 1; i < b; i++) mid *= s->d[i];
  for (int i = (int)b + 1; i < s->rank; i++) inner *= s->d[i];
  const int64_t da = s->d[a], db = s->d[b], per = outer * da * mid * db * inner;
  for (int64_t k = 0; k < n * outer; k++) {
    const float *xs = x + k * (per / outer);
    float *ys = y + k * (per / outer);
    for (int64_t i = 0; i < da; i++)
      for (int64_t m = 0; m < mid; m++)
        for (int64_t j = 0; j < db; j++) {
          const float *src = xs + ((i * mid + m) * db + j) * inner;
          float *dst = ys + ((j * mid + m) * da + i) * inner;
          for (int64_t e = 0; e < inner; e++) dst[e] = add ? dst[e] + src[e] : src[e];
        }
  }
}

static strop_status transpose_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                      strop__act *out) {
  (void)x;
  const transpose_cfg *c = n->cfg;
  swap_dims(&in[0].shape, c->dim0, c->dim1, in[0].data, out->data, in[0].n, 0);
  return STROP_OK;
}

static strop_status transpose_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                       const strop__act *out, const float *dout,
                                       float *const *din) {
  (void)x;
  (void)in;
  const transpose_cfg *c = n->cfg;
  if (din[0]) swap_dims(&out->shape, c->dim0, c->dim1, dout, din[0], out->n, 1);
  return STROP_OK;
}

const strop__layer_vtable strop__layer_transpose = {
    .type = "transpose",
    .doc = "swaps two per-sample dimensions (torch.transpose): [D, H*W] -> [H*W, D] turns a "
           "convolution's feature map into tokens",
    .cfg_size = sizeof(transpose_cfg),
    .n_inputs = 1,
    .options = TRANSPOSE_OPTIONS,
    .shape = transpose_shape,
    .infer = strop__node_infer_shape,
    .forward = transpose_forward,
    .backward = transpose_backward,
};

/* ------------------------------------------------------------------ class_token */

enum { CT_W };
static const strop__paramdef CT_PARAMS[] = {
    [CT_W] = {"", 0, "[1, 1, D], named as the node (torchvision's class_token)"},
    {NULL}};

static strop_status ct_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  char buf[96];
  if (in[0].rank != 2)
    return strop__shape_error(n, "input must be [T, D] per sample, got %s",
                              strop__shape_str(&in[0], buf, sizeof buf));
  *out = in[0];
  out->d[0] = in[0].d[0] + 1;
  return STROP_OK;
}

static strop_status ct_infer(strop__node *n) {
  strop_status st = ct_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  const int64_t dims[3] = {1, 1, n->in_shapes[0].d[1]};
  return strop__node_declare(n, CT_W, 3, dims);
}

static strop_status ct_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                               strop__act *out) {
  (void)x;
  const float *tok = strop__node_p(n, CT_W)->data;
  const int64_t d = in[0].shape.d[1], per = in[0].shape.d[0] * d;
  for (int64_t b = 0; b < in[0].n; b++) {
    float *y = out->data + b * (per + d);
    memcpy(y, tok, (size_t)d * sizeof *y);
    memcpy(y + d, in[0].data + b * per, (size_t)per * sizeof *y);
  }
  return STROP_OK;
}

static strop_status ct_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                const strop__act *out, const float *dout, float *const *din) {
  (void)x;
  (void)out;
  const int64_t d = in[0].shape.d[1], per = in[0].shape.d[0] * d;
  float *g = strop__node_grad(n, CT_W);
  for (int64_t b = 0; b < in[0].n; b++) {
    const float *dy = dout + b * (per + d);
    if (g)
      for (int64_t j = 0; j < d; j++) g[j] += dy[j];
    if (din[0])
      for (int64_t j = 0; j < per; j++) din[0][b * per + j] += dy[d + j];
  }
  return STROP_OK;
}

const strop__layer_vtable strop__layer_class_token = {
    .type = "class_token",
    .doc = "prepends a learned token to the sequence, [T, D] -> [1 + T, D]; its parameter "
           "[1, 1, D] is named as the node (torchvision ViT's class_token)",
    .cfg_size = sizeof(int),
    .n_inputs = 1,
    .params = CT_PARAMS,
    .shape = ct_shape,
    .infer = ct_infer,
    .forward = ct_forward,
    .backward = ct_backward,
};
