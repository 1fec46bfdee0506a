/* SPDX-License-Identifier: MIT */
/* strop — inverted dropout (torch.nn.Dropout): in train mode zero each value with probability
 * p and scale the rest by 1/(1-p); identity in eval mode. The mask comes from the model's RNG
 * and is kept in the step arena for backward. */
#include <string.h>

#include "layers/layer.h"
#include "ops/dense.h"

typedef struct dropout_cfg {
  float p;
} dropout_cfg;

static const strop__optdef OPTIONS[] = {
    STROP__OPT_FLOAT(dropout_cfg, p, "p", "0.5", 0, 1, 0,
                     "probability of zeroing a value in train mode"),
    {NULL}};

static strop_status dropout_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    strop__act *out) {
  const dropout_cfg *c = n->cfg;
  size_t cnt = (size_t)in[0].n * strop__shape_numel(&in[0].shape);
  n->saved = NULL; /* no mask: backward passes the gradient through */
  if (!x->training || c->p <= 0.0f) {
    if (out->data != in[0].data) memcpy(out->data, in[0].data, cnt * sizeof(float));
    return STROP_OK;
  }
  uint8_t *mask = strop__arena_alloc(x->arena, cnt ? cnt : 1);
  if (!mask) return STROP__NOMEM("dropout forward");
  const uint64_t per_row = in[0].n > 0 ? cnt / (size_t)in[0].n : 0;
  strop__exec_skip_rows(x, x->rows_before, per_row);
  strop__dropout_forward(in[0].data, out->data, mask, cnt, c->p, x->rng);
  strop__exec_skip_rows(x, x->rows_after, per_row);
  n->saved = mask;
  return STROP_OK;
}

static strop_status dropout_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                     const strop__act *out, const float *dout,
                                     float *const *din) {
  (void)x;
  (void)out;
  const dropout_cfg *c = n->cfg;
  float *dx = din[0];
  if (!dx) return STROP_OK;
  size_t cnt = (size_t)in[0].n * strop__shape_numel(&in[0].shape);
  if (n->saved) {
    strop__dropout_backward(n->saved, dout, dx, cnt, c->p);
  } else {
    for (size_t i = 0; i < cnt; i++) dx[i] += dout[i];
  }
  return STROP_OK;
}

const strop__layer_vtable strop__layer_dropout = {
    .type = "dropout",
    .doc = "inverted dropout in train mode, identity in eval mode (torch.nn.Dropout)",
    .cfg_size = sizeof(dropout_cfg),
    .n_inputs = 1,
    /* the backward reads the mask only: neither its input nor its output is kept for it */
    .flags = STROP__LAYER_STOCHASTIC | STROP__LAYER_EVAL_IDENTITY | STROP__LAYER_IN_PLACE |
             STROP__LAYER_OUT_UNREAD,
    .options = OPTIONS,
    .shape = strop__shape_same,
    .infer = strop__node_infer_shape,
    .init = NULL,
    .forward = dropout_forward,
    .backward = dropout_backward,
};
