/* SPDX-License-Identifier: MIT */
/* strop — shape layers that only relabel the dimensions of a sample: flatten (torch.nn.Flatten)
 * and reshape. Data is copied unchanged; the gradient is passed straight back. */
#include <string.h>

#include "layers/layer.h"

/* flatten: start_dim and end_dim count the batch dimension as 0, as in PyTorch
 * (nn.Flatten(start_dim=1, end_dim=-1)); the batch itself can not be flattened. */
typedef struct flatten_cfg {
  int64_t start_dim, end_dim;
} flatten_cfg;

typedef struct reshape_cfg {
  int64_t shape[STROP_MAX_RANK]; /* per sample; one entry may be -1 */
  int rank;
} reshape_cfg;

static const strop__optdef FLATTEN_OPTIONS[] = {
    STROP__OPT_INT(flatten_cfg, start_dim, "start_dim", "1", -(STROP_MAX_RANK + 1),
                   STROP_MAX_RANK, "first dimension merged, counting the batch as 0"),
    STROP__OPT_INT(flatten_cfg, end_dim, "end_dim", "-1", -(STROP_MAX_RANK + 1), STROP_MAX_RANK,
                   "last dimension merged (-1: the last)"),
    {NULL}};

static strop_status flatten_shape(const strop__node *n, const strop__shape *in,
                                  strop__shape *out) {
  const flatten_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  int64_t full = s->rank + 1;
  int64_t a = c->start_dim < 0 ? c->start_dim + full : c->start_dim;
  int64_t e = c->end_dim < 0 ? c->end_dim + full : c->end_dim;
  char buf[96];
  if (a < 1 || a >= full || e < 1 || e >= full || a > e)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (flatten): start_dim %lld and end_dim %lld do not select a "
                      "range of the per-sample dimensions of input [N, %s] (dims count the "
                      "batch as 0, so 1..%lld, start_dim <= end_dim)",
                      n->name, (long long)c->start_dim, (long long)c->end_dim,
                      strop__shape_str(s, buf, sizeof buf), (long long)(full - 1));
  /* per-sample axes a-1 .. e-1 merge into one */
  strop__shape o = {0, {0}};
  for (int i = 0; i < a - 1; i++) o.d[o.rank++] = s->d[i];
  int64_t p = 1;
  for (int64_t i = a - 1; i <= e - 1; i++) p *= s->d[i];
  o.d[o.rank++] = p;
  for (int64_t i = e; i < s->rank; i++) o.d[o.rank++] = s->d[i];
  *out = o;
  return STROP_OK;
}

static const strop__optdef RESHAPE_OPTIONS[] = {
    {.name = "shape",
     .type = STROP__OT_INT_LIST,
     .off = offsetof(reshape_cfg, shape),
     .count_off = offsetof(reshape_cfg, rank),
     .lo = -1,
     .hi = INT32_MAX,
     .n = STROP_MAX_RANK,
     .example = "[-1]",
     .doc = "the new per-sample shape; one entry may be -1 (inferred)"},
    {NULL}};

static strop_status reshape_check(void *cfg, strop__opts *o) {
  reshape_cfg *c = cfg;
  int neg = 0;
  for (int i = 0; i < c->rank; i++) {
    if (c->shape[i] == 0)
      return strop__opt_error(o, "shape", "entry %d is 0; dimensions must be >= 1 (or one -1)",
                              i);
    neg += c->shape[i] == -1;
  }
  if (neg > 1) return strop__opt_error(o, "shape", "only one entry may be -1, got %d", neg);
  return STROP_OK;
}

static strop_status reshape_shape(const strop__node *n, const strop__shape *in,
                                  strop__shape *out) {
  const reshape_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  int64_t total = (int64_t)strop__shape_numel(s), known = 1;
  int free_at = -1;
  strop__shape o = {c->rank, {0}};
  char b1[96], b2[96];
  for (int i = 0; i < c->rank; i++) {
    o.d[i] = c->shape[i];
    if (c->shape[i] == -1) free_at = i;
    else known *= c->shape[i];
  }
  if (free_at >= 0 && known > 0 && total % known == 0) o.d[free_at] = total / known;
  if ((free_at >= 0 && (known <= 0 || total % known != 0)) || (free_at < 0 && known != total)) {
    strop__shape want = {c->rank, {0}};
    for (int i = 0; i < c->rank; i++) want.d[i] = c->shape[i];
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (reshape): shape %s does not fit the %lld values of input "
                      "shape %s (shape is per sample, without the batch)",
                      n->name, strop__shape_str(&want, b1, sizeof b1), (long long)total,
                      strop__shape_str(s, b2, sizeof b2));
  }
  *out = o;
  return STROP_OK;
}

static strop_status copy_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 strop__act *out) {
  (void)n;
  (void)x;
  size_t cnt = (size_t)in[0].n * strop__shape_numel(&in[0].shape);
  if (out->data != in[0].data) memcpy(out->data, in[0].data, cnt * sizeof(float));
  return STROP_OK;
}

static strop_status copy_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                  const strop__act *out, const float *dout, float *const *din) {
  (void)n;
  (void)out;
  if (!din[0]) return STROP_OK;
  size_t cnt = (size_t)in[0].n * strop__shape_numel(&in[0].shape);
  float *dx = din[0];
  if (x->din_assign) {
    memcpy(dx, dout, cnt * sizeof(float));
    return STROP_OK;
  }
  for (size_t i = 0; i < cnt; i++) dx[i] += dout[i];
  return STROP_OK;
}

const strop__layer_vtable strop__layer_flatten = {
    .type = "flatten",
    .cfg_size = sizeof(flatten_cfg),
    .n_inputs = 1,
    .doc = "merges dimensions start_dim..end_dim into one (torch.nn.Flatten)",
    .flags = STROP__LAYER_ASSIGNS_DIN,
    .options = FLATTEN_OPTIONS,
    .shape = flatten_shape,
    .infer = strop__node_infer_shape,
    .init = NULL,
    .forward = copy_forward,
    .backward = copy_backward,
};

const strop__layer_vtable strop__layer_reshape = {
    .type = "reshape",
    .cfg_size = sizeof(reshape_cfg),
    .n_inputs = 1,
    .doc = "relabels each sample's dimensions (torch.reshape of each sample)",
    .flags = STROP__LAYER_ASSIGNS_DIN,
    .options = RESHAPE_OPTIONS,
    .check = reshape_check,
    .shape = reshape_shape,
    .infer = strop__node_infer_shape,
    .init = NULL,
    .forward = copy_forward,
    .backward = copy_backward,
};
