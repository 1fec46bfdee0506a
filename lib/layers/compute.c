/* SPDX-License-Identifier: MIT */
/* strop — linear products in the model's compute dtype (strop_model_set_compute_dtype): an FP32
 * weight's BF16 copy, kept until the weight's version changes, and the products through it. A
 * weight borrowed from a mapped file gives its pages back once the copy is made: the copy
 * stands in for it in memory as in the products. */
#include "layers/layer.h"
#include "ops/bf16gemm.h"
#include "ops/dense.h"

int strop__compute_bf16(const strop__exec *x, const strop__param *w) {
  return x->compute_dtype == STROP__LOWP_BF16 && w && !w->lowp.dtype && w->data && w->rank == 2;
}

/* Makes q from w. A weight borrowed from a mapped file whose panels are its rows ([out, in]: an
 * LM head's 50257 x 768) is read and handed back a few MB at a time, so that its pages and the
 * copy are not both in RSS at once (154 MB more at GPT-2's head, at the step's peak). */
static void fill(strop__param *w, strop__lowp *q) {
  if (!strop__mapping_is_file(w->map) || q->scale_cols) {
    strop__bf16_shadow_fill(q, w->data);
    return;
  }
  const size_t row = (size_t)w->dims[1], block = 32 * row; /* a panel's rows */
  const int64_t blocks = (w->dims[0] + 31) / 32;
  const int64_t step = block * sizeof(float) >= (8u << 20)
                           ? 1
                           : (int64_t)((8u << 20) / (block * sizeof(float)));
  for (int64_t b = 0; b < blocks; b += step) {
    strop__bf16_shadow_fill_blocks(q, w->data, b, b + step);
    (void)strop__param_drop_range(w, (size_t)b * block, (size_t)step * block);
  }
}

const strop__lowp *strop__param_shadow(strop__param *w, int scale_cols) {
  strop__lowp *q = &w->shadow;
  const int64_t rows = w->dims[0], cols = w->dims[1];
  const int same = q->dtype && q->rows == rows && q->cols == cols && q->scale_cols == scale_cols;
  /* a writable view may have changed the values without a version bump: made again each time */
  if (same && w->shadow_version == w->version && !w->viewed) {
    /* a frozen weight borrowed from a mapped file is read through its copy only: pages that
     * came back (a tied embedding's rows read since, a save) are handed back again */
    if (w->shadow_released) w->shadow_released = strop__param_drop_pages(w);
    return q;
  }
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
  fill(w, q);
  w->shadow_version = w->version;
  w->shadow_released = strop__param_drop_pages(w);
  return q;
}

static strop_status nomem(const strop__node *n, const strop__param *w, const char *what) {
  return strop__err(STROP_E_NOMEM, "layer '%s' (%s): out of memory for the BF16 %s of '%s'",
                    n->name, n->vt->type, what, w->name);
}

/* A trained weight of a model whose weight cache is off (strop_model_set_weight_cache): its
 * products round and pack it from FP32 per call, as the weight gradient packs its operands,
 * and no copy is kept — the same bits (each element's sum in k order either way), 2 bytes per
 * weight less from the forward to the backward, the products a little slower (GPT-2 small:
 * about 1% of the step). Without vdpbf16ps the copy is kept: the exact fallback multiplies it. */
static int packed_per_call(const strop__exec *x, const strop__param *w) {
  return !x->weight_cache && w->trainable && !w->map && strop__bf16_dot_enabled();
}

strop_status strop__linear_forward_c(const strop__node *n, const strop__exec *x, strop__param *w,
                                     const float *xin, const float *b, float *y, int64_t m,
                                     int64_t in, int64_t out, int w_in_out) {
  if (packed_per_call(x, w) && m > 0) {
    strop__lowp_free(&w->shadow); /* (one made while the cache was on) */
    return strop__linear_forward_bf16_packed(xin, w->data, b, y, m, in, out, w_in_out)
               ? nomem(n, w, "product")
               : STROP_OK;
  }
  const strop__lowp *q = strop__param_shadow(w, w_in_out);
  if (!q || strop__linear_forward_bf16(xin, q, b, y, m, in, out)) return nomem(n, w, "product");
  return STROP_OK;
}

strop_status strop__linear_backward_c(const strop__node *n, const strop__exec *x, strop__param *w,
                                      const float *xin, const uint16_t *xh, const float *dy,
                                      float *dx, float *dw, float *db, int64_t m, int64_t in,
                                      int64_t out, unsigned assign, int *finite) {
  const strop__lowp *q = NULL;
  if (finite) *finite = 0;
  if (dx && packed_per_call(x, w) && m > 0) { /* dx packed from w, then dW and db as before */
    if (strop__linear_dx_bf16_packed(dy, w->data, dx, m, in, out,
                                     (assign & STROP__LB_W_IN_OUT) != 0,
                                     (assign & STROP__LB_ASSIGN_DX) != 0))
      return nomem(n, w, "backward");
    dx = NULL;
    if (!dw && !db) return STROP_OK;
  }
  if (dx && !(q = strop__param_shadow(w, (assign & STROP__LB_W_IN_OUT) != 0)))
    return nomem(n, w, "backward");
  if (strop__linear_backward_bf16_seen(xin, xh, q, dy, dx, dw, db, m, in, out, assign, finite))
    return nomem(n, w, "backward");
  return STROP_OK;
}
