/* SPDX-License-Identifier: MIT */
/* strop — linear products in the model's compute dtype (strop_model_set_compute_dtype): an FP32
 * weight's BF16 copy, kept until the weight's version changes, and the products through it. */
#include "layers/layer.h"
#include "ops/bf16gemm.h"
#include "ops/dense.h"

int strop__compute_bf16(const strop__exec *x, const strop__param *w) {
  return x->compute_dtype == STROP__LOWP_BF16 && w && !w->lowp.dtype && w->data && w->rank == 2;
}

const strop__lowp *strop__param_shadow(strop__param *w, int scale_cols) {
  strop__lowp *q = &w->shadow;
  const int64_t rows = w->dims[0], cols = w->dims[1];
  const int same = q->dtype && q->rows == rows && q->cols == cols && q->scale_cols == scale_cols;
  /* a writable view may have changed the values without a version bump: made again each time */
  if (same && w->shadow_version == w->version && !w->viewed) return q;
  if (!same) { /* held in the kernel's panels: its products then pack nothing */
    strop__lowp_free(q);
    void *v = strop__malloc_aligned(
        strop__bf16_panels_bytes(scale_cols ? cols : rows, scale_cols ? rows : cols) + 1);
    if (!v) return NULL;
    q->dtype = STROP__LOWP_BF16;
    q->rows = rows;
    q->cols = cols;
    q->scale_cols = scale_cols;
    q->panels = 1;
    q->v = v;
  }
  strop__bf16_shadow_fill(q, w->data);
  w->shadow_version = w->version;
  return q;
}

int64_t strop__param_shadow_unit(const strop__param *w) {
  const strop__lowp *q = &w->shadow;
  if (!strop__shadow_follows || q->dtype != STROP__LOWP_BF16 || !q->panels || !w->data ||
      w->rank != 2 || w->viewed || w->shadow_version != w->version || q->rows != w->dims[0] ||
      q->cols != w->dims[1])
    return 0;
  /* about 32K values a block (their four streams of an Adam update, 512 KB, in L2): larger
   * blocks write longer runs of each panel (a block of a few rows of W [in, out] writes a
   * short piece into every panel, each a page of its own: 8K values a block took as long as
   * the copy's own pass, 32K saved 23% of update and pass together, 128K less again) */
  const int64_t per = q->cols > 0 ? 32768 / q->cols : 1;
  if (!q->scale_cols) return 32 * (per / 32 > 1 ? per / 32 : 1); /* whole panels of 32 outputs */
  return per / 2 > 1 ? 2 * (per / 2) : 2;                        /* pairs of inputs */
}

void strop__param_shadow_rows(strop__param *w, int64_t r0, int64_t r1) {
  strop__bf16_shadow_fill_rows(&w->shadow, w->data, r0, r1);
}

void strop__param_shadow_current(strop__param *w) { w->shadow_version = w->version; }

int strop__shadow_follows = 0;

static strop_status nomem(const strop__node *n, const strop__param *w, const char *what) {
  return strop__err(STROP_E_NOMEM, "layer '%s' (%s): out of memory for the BF16 %s of '%s'",
                    n->name, n->vt->type, what, w->name);
}

strop_status strop__linear_forward_c(const strop__node *n, strop__param *w, const float *x,
                                     const float *b, float *y, int64_t m, int64_t in, int64_t out,
                                     int w_in_out) {
  const strop__lowp *q = strop__param_shadow(w, w_in_out);
  if (!q || strop__linear_forward_bf16(x, q, b, y, m, in, out)) return nomem(n, w, "product");
  return STROP_OK;
}

strop_status strop__linear_backward_c(const strop__node *n, strop__param *w, const float *x,
                                      const float *dy, float *dx, float *dw, float *db, int64_t m,
                                      int64_t in, int64_t out, unsigned assign) {
  const strop__lowp *q = NULL;
  if (dx && !(q = strop__param_shadow(w, (assign & STROP__LB_W_IN_OUT) != 0)))
    return nomem(n, w, "backward");
  if (strop__linear_backward_bf16(x, q, dy, dx, dw, db, m, in, out, assign))
    return nomem(n, w, "backward");
  return STROP_OK;
}
