/* SPDX-License-Identifier: MIT */
/* strop — mul: the elementwise product of two inputs with NumPy broadcasting over the
 * per-sample dimensions (torch.mul on [N, ...] tensors whose batch sizes agree), e.g. the
 * squeeze-excitation scale [C, 1, 1] times its input [C, H, W]. Math in ops/broadcast.c. */
#include "layers/layer.h"
#include "ops/broadcast.h"

typedef struct mul_cfg {
  int align; /* ALIGNS */
} mul_cfg;

static const char *const ALIGNS[] = {"right", "left", NULL};

static const strop__optdef OPTIONS[] = {
    STROP__OPT_ENUM(mul_cfg, align, "align", "right", ALIGNS,
                    "right: NumPy's broadcasting ([T, D] * [D]); left: the shorter shape gets "
                    "trailing 1s ([C, H, W] * [C] scales channels)"),
    {NULL}};

static strop_status mul_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  const mul_cfg *c = n->cfg;
  char b1[96], b2[96];
  int64_t d[STROP_MAX_RANK];
  int r = strop__bcast_init(in[0].rank, in[0].d, in[1].rank, in[1].d, c->align, d, NULL);
  if (r < 0)
    return strop__shape_error(n,
                              "inputs %s and %s do not broadcast (%s-aligned, dimension %d "
                              "differs and neither is 1)",
                              strop__shape_str(&in[0], b1, sizeof b1),
                              strop__shape_str(&in[1], b2, sizeof b2), ALIGNS[c->align], -1 - r);
  out->rank = r;
  for (int k = 0; k < r; k++) out->d[k] = d[k];
  return STROP_OK;
}

static void geometry(const strop__node *n, const strop__act *in, strop__bcast *g) {
  const mul_cfg *c = n->cfg;
  int64_t d[STROP_MAX_RANK];
  (void)strop__bcast_init(in[0].shape.rank, in[0].shape.d, in[1].shape.rank, in[1].shape.d,
                          c->align, d, g);
}

static strop_status mul_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                strop__act *out) {
  (void)x;
  strop__bcast g;
  geometry(n, in, &g);
  strop__mul_forward(&g, in[0].n, in[0].data, in[1].data, out->data);
  return STROP_OK;
}

static strop_status mul_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 const strop__act *out, const float *dout, float *const *din) {
  (void)x;
  (void)out;
  strop__bcast g;
  geometry(n, in, &g);
  strop__mul_backward(&g, in[0].n, in[0].data, in[1].data, dout, din[0], din[1]);
  return STROP_OK;
}

const strop__layer_vtable strop__layer_mul = {
    .type = "mul",
    .doc = "elementwise product of two inputs, broadcast over the per-sample dimensions "
           "(torch.mul; squeeze-excitation's scale * input)",
    .cfg_size = sizeof(mul_cfg),
    .n_inputs = 2,
    .options = OPTIONS,
    .shape = mul_shape,
    .infer = strop__node_infer_shape,
    .forward = mul_forward,
    .backward = mul_backward,
};
