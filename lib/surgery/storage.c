/* SPDX-License-Identifier: MIT */
/* strop — the storage of frozen weights: the model's frozen dtype (FP32, BF16 or int8 with
 * scales per output channel or per group of its inputs) and the one transactional pass that makes every parameter hold it. */
#include <string.h>

#include "surgery/surgery_impl.h"

static const char *dtype_name(int d) {
  return d == STROP__LOWP_BF16 ? "bf16" : d == STROP__LOWP_INT8 ? "int8" : "f32";
}

/* 1 when p is the owner of some other slot's tie (its memory is read through that slot). */
static int is_tie_target(const strop_model *m, const strop__param *p) {
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_params; j++)
      if (strop__param_owner(&m->nodes[i].params[j]) == p && &m->nodes[i].params[j] != p)
        return 1;
  return 0;
}

/* The new storage of one parameter, made before any parameter is touched. */
typedef struct pending {
  strop__param *p;
  float *data;
  strop__lowp lowp;
} pending;

strop_status strop__model_store(const char *fn, strop_model *m, int dtype) {
  int n = 0;
  pending *v = strop__calloc((size_t)(m->n_params ? m->n_params : 1), sizeof *v);
  if (!v) return STROP__NOMEM(fn);
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (p->is_int64) continue;
    const int want = strop__param_lowp_target(p, dtype, is_tie_target(m, p));
    /* a weight borrowed from a mapped file stays there while it is frozen in the storage it
     * has; one that trains (or is converted) is copied out of the mapping (copy on write) */
    const int writable = p->map && p->trainable && want == p->lowp.dtype;
    /* an int8 weight of another group is quantised again (from the values it holds) */
    const int regroup = want == STROP__LOWP_INT8 && p->lowp.dtype == want &&
                        p->lowp.group != m->int8_group;
    if (want == p->lowp.dtype && !writable && !regroup) continue;
    pending *q = &v[n++];
    q->p = p;
    int bad;
    if (writable) {
      const size_t bytes = strop__param_bytes(p);
      bad = !(q->data = strop__malloc_aligned(bytes));
      if (!bad) memcpy(q->data, p->data, bytes);
    } else if (want == STROP__LOWP_F32) {
      bad = !(q->data = strop__malloc_aligned(p->numel * sizeof(float)));
      if (!bad) strop__lowp_expand(&p->lowp, q->data);
    } else {
      float *tmp = NULL;
      const float *src = strop__param_f32(p, &tmp);
      bad = !src || strop__lowp_make(&q->lowp, want, src, p->dims[0], p->dims[1], p->lowp_ok == 2,
                                     m->int8_group);
      strop__free_aligned(tmp);
    }
    if (bad) {
      for (int k = 0; k < n; k++) {
        strop__free_aligned(v[k].data);
        strop__lowp_free(&v[k].lowp);
      }
      strop__free(v);
      return strop__err(STROP_E_NOMEM,
                        "%s: out of memory converting '%s' (%zu values) to %s; "
                        "the model is unchanged",
                        fn, p->name, p->numel, dtype_name(want));
    }
  }
  for (int k = 0; k < n; k++) {
    strop__param *p = v[k].p;
    if (strop__mapping_is_file(p->map) && v[k].data && !p->lowp.dtype)
      strop__mapping_count(0, (int64_t)strop__param_bytes(p));
    strop__param_drop_values(p);
    p->data = v[k].data;
    p->lowp = v[k].lowp;
    p->version++;
  }
  strop__free(v);
  m->frozen_dtype = dtype;
  return STROP_OK;
}

strop_status strop_model_set_frozen_dtype(strop_model *model, int dtype) {
  static const char fn[] = "strop_model_set_frozen_dtype";
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (dtype != STROP_DTYPE_F32 && dtype != STROP_DTYPE_BF16 && dtype != STROP_DTYPE_INT8)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: dtype must be STROP_DTYPE_F32 (0), "
                      "STROP_DTYPE_BF16 (1) or STROP_DTYPE_INT8 (2), got %d",
                      fn, dtype);
  if (!model->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  return strop__model_store(fn, model, dtype);
}

int strop_model_frozen_dtype(const strop_model *model) {
  return model ? model->frozen_dtype : -1;
}

strop_status strop_model_set_frozen_int8_group(strop_model *model, int64_t group) {
  static const char fn[] = "strop_model_set_frozen_int8_group";
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (group != 0 && (group < 8 || group > 65536))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: group must be 0 (one scale per output channel) or in [8, 65536] "
                      "inputs per scale, got %lld",
                      fn, (long long)group);
  if (!model->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  const int64_t old = model->int8_group;
  model->int8_group = group;
  strop_status st = strop__model_store(fn, model, model->frozen_dtype);
  if (st) model->int8_group = old;
  return st;
}

int64_t strop_model_frozen_int8_group(const strop_model *model) {
  return model ? model->int8_group : -1;
}
