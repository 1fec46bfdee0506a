/* SPDX-License-Identifier: MIT */
/* strop — the dataset handle: roots holding storage (memory, borrowed, callback), flattened
 * views (subset, class filter, few-shot, splits, one-hot, reshape), accessors and labels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "data/data_impl.h"

/* ---------------------------------------------------------------- shapes and lifetime ---- */

static strop_status check_shape(const char *fn, const char *what, int rank, const int64_t *dims,
                                int min_rank, size_t *numel) {
  if (rank < min_rank || rank > STROP_MAX_RANK)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s rank must be in [%d, %d], got %d", fn, what,
                      min_rank, STROP_MAX_RANK, rank);
  if (rank > 0 && !dims) return strop__err(STROP_E_INVALID_ARG, "%s: %s dims is NULL", fn, what);
  size_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] <= 0)
      return strop__err(STROP_E_INVALID_ARG, "%s: %s dims[%d] must be > 0, got %lld", fn, what, i,
                        (long long)dims[i]);
    if (strop__mul_overflow(n, (size_t)dims[i], &n) || n > ((size_t)1 << 40))
      return strop__err(STROP_E_SHAPE, "%s: %s element count overflows", fn, what);
  }
  *numel = n;
  return STROP_OK;
}

strop_status strop__ds_new_root(const char *fn, int kind, int64_t n, int in_rank,
                                const int64_t *in_dims, int tgt_rank, const int64_t *tgt_dims,
                                int64_t num_classes, strop_dataset **out) {
  size_t in_numel = 0, tgt_numel = 1;
  if (n < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: n must be >= 1, got %lld", fn, (long long)n);
  strop_status st = check_shape(fn, "input", in_rank, in_dims, 1, &in_numel);
  if (st) return st;
  if (num_classes < STROP_CLASSES_INFER || num_classes > STROP__MAX_CLASSES)
    return strop__err(STROP_E_INVALID_ARG, "%s: num_classes must be in [-1, 2^24], got %lld", fn,
                      (long long)num_classes);
  if (num_classes == 0 && tgt_rank < 1)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: regression (num_classes 0) needs a target rank >= 1, got %d", fn,
                      tgt_rank);
  st = check_shape(fn, "target", tgt_rank, tgt_dims, 0, &tgt_numel);
  if (st) return st;
  size_t total;
  if (strop__mul_overflow(in_numel, (size_t)n, &total) ||
      strop__mul_overflow(tgt_numel, (size_t)n, &total))
    return strop__err(STROP_E_SHAPE, "%s: %lld samples overflow the size", fn, (long long)n);
  strop_dataset *ds = strop__calloc(1, sizeof *ds);
  if (!ds) return STROP__NOMEM(fn);
  atomic_init(&ds->refs, 1);
  ds->kind = kind;
  ds->n = n;
  ds->in_rank = in_rank;
  memcpy(ds->in_dims, in_dims, (size_t)in_rank * sizeof *in_dims);
  ds->in_numel = in_numel;
  ds->tgt_rank = tgt_rank;
  if (tgt_rank) memcpy(ds->tgt_dims, tgt_dims, (size_t)tgt_rank * sizeof *tgt_dims);
  ds->tgt_numel = ds->raw_tgt_numel = tgt_numel;
  ds->num_classes = num_classes;
  *out = ds;
  return STROP_OK;
}

strop_status strop__check_labels(const char *fn, const char *what, const float *y, int64_t n,
                                 int64_t *classes) {
  int64_t c = *classes, mx = -1;
  for (int64_t i = 0; i < n; i++) {
    float v = y[i];
    if (!(v >= 0.0f) || v != floorf(v))
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: %s: label %lld must be a non-negative integer, got %g", fn, what,
                        (long long)i, (double)v);
    if (v >= (float)STROP__MAX_CLASSES)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: %s: label %lld is %.0f; class indices stop "
                        "below 2^24",
                        fn, what, (long long)i, (double)v);
    if (c > 0 && (int64_t)v >= c)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: %s: label %lld is %lld, out of range for %lld classes", fn, what,
                        (long long)i, (long long)v, (long long)c);
    if ((int64_t)v > mx) mx = (int64_t)v;
  }
  if (c == STROP_CLASSES_INFER) *classes = mx + 1;
  return STROP_OK;
}

/* The index of v's first value that is not finite, or n. */
static size_t nonfinite_at(const float *v, size_t n) {
  size_t i = 0;
  while (i < n && isfinite(v[i])) i++;
  return i;
}

strop_status strop__check_finite(const char *fn, const char *what, const float *v, size_t n) {
  const size_t i = nonfinite_at(v, n);
  if (i < n)
    return strop__err(STROP_E_FORMAT, "%s: %s: element %zu is not finite (%g)", fn, what, i,
                      (double)v[i]);
  return STROP_OK;
}

void strop__ds_ref(strop_dataset *ds) { atomic_fetch_add(&ds->refs, 1); }

static void free_names(char **names, int64_t n) {
  if (!names) return;
  for (int64_t i = 0; i < n; i++) strop__free(names[i]);
  strop__free(names);
}

void strop_dataset_free(strop_dataset *ds) {
  if (!ds) return;
  if (atomic_fetch_sub(&ds->refs, 1) != 1) return;
  strop__free(ds->idx);
  strop__free(ds->label_map);
  free_names(ds->class_names, ds->num_classes);
  if (ds->root) {
    strop_dataset_free(ds->root);
  } else {
    strop__free(ds->x_owned);
    strop__free(ds->y_owned);
    if (ds->map) munmap(ds->map, ds->map_len);
    strop__free(ds->buf_owned);
    strop__free(ds->tokens);
    strop__free(ds->starts);
    strop__free(ds->lm_targets);
    strop__free(ds->mask);
    strop__free(ds->types);
    strop__free(ds->img_paths);
    strop__free(ds->img_off);
    strop__free(ds->img_hw);
    if (ds->img_cache) {
      for (int64_t i = 0; i < ds->n; i++) strop__free(atomic_load(&ds->img_cache[i]));
      strop__free((void *)ds->img_cache);
    }
    free_names(ds->img_skipped, ds->img_nskipped);
    if (ds->release) ds->release(ds->release_ud);
  }
  strop__free(ds);
}

/* ------------------------------------------------------------------------ sources ---- */

static strop_status memory_source(const char *fn, const float *inputs, const float *targets,
                                  int64_t n, int in_rank, const int64_t *in_dims, int tgt_rank,
                                  const int64_t *tgt_dims, int64_t num_classes, int copy,
                                  strop_release_fn release, void *ud, strop_dataset **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!inputs || !targets)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, inputs ? "targets" : "inputs");
  if (num_classes != 0) tgt_rank = 0;
  strop_dataset *ds = NULL;
  strop_status st = strop__ds_new_root(fn, STROP__DS_F32, n, in_rank, in_dims, tgt_rank, tgt_dims,
                                       num_classes, &ds);
  if (st) return st;
  if (num_classes != 0) {
    st = strop__check_labels(fn, "targets", targets, n, &ds->num_classes);
    if (!st && ds->num_classes < 1) st = strop__err(STROP_E_INVALID_ARG, "%s: no classes", fn);
    if (st) {
      strop_dataset_free(ds);
      return st;
    }
  }
  /* every input (and a regression's every target) finite, as the loaders check theirs: a NaN
   * sample made every step of fit a skipped one, which fit reported as success */
  for (int part = 0; part < (num_classes == 0 ? 2 : 1); part++) {
    const float *v = part ? targets : inputs;
    const int64_t per = part ? ds->raw_tgt_numel : ds->in_numel;
    const size_t total = (size_t)n * (size_t)per, i = nonfinite_at(v, total);
    if (i < total) {
      st = strop__err(STROP_E_INVALID_ARG,
                      "%s: %s: sample %lld, value %lld is not finite (%g); every value must be",
                      fn, part ? "targets" : "inputs", (long long)(i / (size_t)per),
                      (long long)(i % (size_t)per), (double)v[i]);
      strop_dataset_free(ds);
      return st;
    }
  }
  if (copy) {
    size_t nx = (size_t)n * ds->in_numel, ny = (size_t)n * ds->raw_tgt_numel;
    ds->x_owned = strop__malloc(nx * sizeof(float));
    ds->y_owned = ds->x_owned ? strop__malloc(ny * sizeof(float)) : NULL;
    if (!ds->y_owned) {
      strop_dataset_free(ds);
      return STROP__NOMEM(fn);
    }
    memcpy(ds->x_owned, inputs, nx * sizeof(float));
    memcpy(ds->y_owned, targets, ny * sizeof(float));
    ds->x = ds->x_owned;
    ds->y = ds->y_owned;
  } else {
    ds->x = inputs;
    ds->y = targets;
    ds->release = release;
    ds->release_ud = ud;
  }
  *out = ds;
  return STROP_OK;
}

strop_status strop_dataset_from_memory(const float *inputs, const float *targets, int64_t n,
                                       int in_rank, const int64_t *in_dims, int tgt_rank,
                                       const int64_t *tgt_dims, int64_t num_classes,
                                       strop_dataset **out) {
  return memory_source("strop_dataset_from_memory", inputs, targets, n, in_rank, in_dims,
                       tgt_rank, tgt_dims, num_classes, 1, NULL, NULL, out);
}

strop_status strop_dataset_wrap(const float *inputs, const float *targets, int64_t n, int in_rank,
                                const int64_t *in_dims, int tgt_rank, const int64_t *tgt_dims,
                                int64_t num_classes, strop_release_fn release, void *user_data,
                                strop_dataset **out) {
  return memory_source("strop_dataset_wrap", inputs, targets, n, in_rank, in_dims, tgt_rank,
                       tgt_dims, num_classes, 0, release, user_data, out);
}

strop_status strop_dataset_from_callback(int64_t n, int in_rank, const int64_t *in_dims,
                                         int tgt_rank, const int64_t *tgt_dims,
                                         int64_t num_classes, strop_dataset_fill_fn fill,
                                         void *user_data, strop_dataset **out) {
  const char *fn = "strop_dataset_from_callback";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!fill) return strop__err(STROP_E_INVALID_ARG, "%s: fill is NULL", fn);
  if (num_classes < 0)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: num_classes must be 0 (regression) or > 0, got %lld", fn,
                      (long long)num_classes);
  if (num_classes > 0) tgt_rank = 0;
  strop_dataset *ds = NULL;
  strop_status st = strop__ds_new_root(fn, STROP__DS_CALLBACK, n, in_rank, in_dims, tgt_rank,
                                       tgt_dims, num_classes, &ds);
  if (st) return st;
  ds->fill = fill;
  ds->fill_ud = user_data;
  *out = ds;
  return STROP_OK;
}

/* ------------------------------------------------------------------------- reading ---- */

/* Reads root sample r: inputs (in_numel) and raw targets (raw_tgt_numel). */
static strop_status root_read(const strop_dataset *rt, const char *fn, int64_t r, float *in,
                              float *tgt) {
  switch (rt->kind) {
    case STROP__DS_F32:
      if (in) memcpy(in, rt->x + (size_t)r * rt->in_numel, rt->in_numel * sizeof(float));
      if (tgt)
        memcpy(tgt, rt->y + (size_t)r * rt->raw_tgt_numel, rt->raw_tgt_numel * sizeof(float));
      return STROP_OK;
    case STROP__DS_U8:
      if (in) {
        const uint8_t *p = rt->xu8 + (size_t)r * rt->in_numel;
        for (size_t k = 0; k < rt->in_numel; k++) in[k] = (float)p[k];
      }
      if (tgt)
        memcpy(tgt, rt->y + (size_t)r * rt->raw_tgt_numel, rt->raw_tgt_numel * sizeof(float));
      return STROP_OK;
    case STROP__DS_TOKENS: {
      const int32_t *t = rt->tokens + rt->starts[r];
      int64_t avail = rt->ntokens - rt->starts[r];
      if (in)
        for (int64_t k = 0; k < rt->seq_len; k++) in[k] = k < avail ? (float)t[k] : 0.0f;
      if (tgt) {
        if (rt->lm_targets)
          for (int64_t k = 0; k < rt->seq_len; k++)
            tgt[k] = (float)rt->lm_targets[rt->starts[r] + k];
        else if (rt->lm)
          for (int64_t k = 0; k < rt->seq_len; k++) tgt[k] = (float)t[k + 1];
        else tgt[0] = rt->y[r];
      }
      return STROP_OK;
    }
    case STROP__DS_IMAGES:
      if (in) {
        strop_status st = strop__images_read(rt, fn, r, in, 1.0f, 1);
        if (st) return st;
      }
      if (tgt) tgt[0] = rt->y[r];
      return STROP_OK;
    case STROP__DS_CALLBACK: {
      char msg[512];
      msg[0] = '\0';
      float *tin = in, *ttg = tgt;
      float one;
      /* The callback always gets both buffers. */
      float *scratch = NULL;
      if (!tin || !ttg) {
        size_t need = (tin ? 0 : rt->in_numel) + (ttg ? 0 : rt->raw_tgt_numel);
        scratch = need <= 1 ? &one : strop__malloc(need * sizeof(float));
        if (!scratch) return STROP__NOMEM(fn);
        if (!tin) tin = scratch;
        if (!ttg) ttg = scratch + (in ? 0 : rt->in_numel);
      }
      int rc = rt->fill(r, tin, ttg, msg, sizeof msg, rt->fill_ud);
      msg[sizeof msg - 1] = '\0';
      if (scratch != &one) strop__free(scratch);
      if (rc != 0)
        return strop__err(STROP_E_CALLBACK, "%s: fill callback failed for sample %lld (%d): %s",
                          fn, (long long)r, rc, msg[0] ? msg : "no message");
      if (rt->num_classes > 0 && rt->tgt_rank == 0) {
        float v = ttg[0];
        if (!(v >= 0.0f) || v != floorf(v) || v >= (float)rt->num_classes)
          return strop__err(STROP_E_CALLBACK,
                            "%s: fill callback gave sample %lld the label %g, not a class in "
                            "[0, %lld)",
                            fn, (long long)r, (double)v, (long long)rt->num_classes);
      }
      return STROP_OK;
    }
    default: return strop__err(STROP_E_INTERNAL, "%s: unknown dataset kind %d", fn, rt->kind);
  }
}

strop_status strop__ds_read(const strop_dataset *ds, const char *fn, int64_t i, float *in,
                            float *tgt) {
  const strop_dataset *rt = strop__ds_root(ds);
  int64_t r = ds->idx ? ds->idx[i] : i;
  if (!ds->onehot && !ds->label_map) return root_read(rt, fn, r, in, tgt);
  /* raw targets first land at the end of tgt, then expand forward (one-hot) */
  float *raw = tgt ? tgt + (ds->tgt_numel - ds->raw_tgt_numel) : NULL;
  strop_status st = root_read(rt, fn, r, in, raw);
  if (st || !tgt) return st;
  size_t m = ds->raw_tgt_numel;
  if (ds->label_map)
    for (size_t k = 0; k < m; k++) {
      int64_t c = (int64_t)raw[k];
      raw[k] = (c >= 0 && c < ds->lmap_len) ? (float)ds->label_map[c] : -1.0f;
    }
  if (ds->onehot) {
    size_t C = (size_t)ds->num_classes;
    for (size_t k = 0; k < m; k++) {
      float v = raw[k]; /* raw[k] lies at or after tgt + k*C: read before writing the row */
      float *row = tgt + k * C;
      memset(row, 0, C * sizeof(float));
      if (v >= 0.0f && (size_t)v < C) row[(size_t)v] = 1.0f;
    }
  }
  return STROP_OK;
}

int strop__ds_read_mask(const strop_dataset *ds, int64_t i, float *out) {
  const strop_dataset *rt = strop__ds_root(ds);
  if (!rt->mask) return 0;
  int64_t r = ds->idx ? ds->idx[i] : i;
  memcpy(out, rt->mask + r * rt->mask_len, (size_t)rt->mask_len * sizeof *out);
  return 1;
}

strop_status strop_dataset_set_mask(strop_dataset *ds, const float *mask, size_t count) {
  static const char fn[] = "strop_dataset_set_mask";
  if (!ds) return strop__err(STROP_E_INVALID_ARG, "%s: ds is NULL", fn);
  if (ds->root)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: the dataset is a view (a split, subset or "
                      "reshape): set the masks on the dataset it was made from",
                      fn);
  if (!mask) {
    strop__free(ds->mask);
    ds->mask = NULL;
    ds->mask_len = 0;
    return STROP_OK;
  }
  const int64_t t = ds->in_rank > 0 ? ds->in_dims[0] : 1;
  if (count != (size_t)ds->n * (size_t)t)
    return strop__err(STROP_E_SHAPE,
                      "%s: %zu mask values for %lld samples of %lld positions "
                      "need %lld",
                      fn, count, (long long)ds->n, (long long)t, (long long)(ds->n * t));
  for (size_t i = 0; i < count; i++)
    if (mask[i] != 0.0f && mask[i] != 1.0f)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: mask value %g at sample %lld, position %lld: "
                        "it must be 1 (a token) or 0 (padding)",
                        fn, (double)mask[i], (long long)(i / (size_t)t),
                        (long long)(i % (size_t)t));
  float *m = strop__malloc(count * sizeof *m);
  if (!m) return STROP__NOMEM(fn);
  memcpy(m, mask, count * sizeof *m);
  strop__free(ds->mask);
  ds->mask = m;
  ds->mask_len = t;
  return STROP_OK;
}

int strop_dataset_has_mask(const strop_dataset *ds) {
  return ds && strop__ds_root(ds)->mask ? 1 : 0;
}

int strop__ds_read_types(const strop_dataset *ds, int64_t i, float *out) {
  const strop_dataset *rt = strop__ds_root(ds);
  if (!rt->types) return 0;
  int64_t r = ds->idx ? ds->idx[i] : i;
  memcpy(out, rt->types + r * rt->types_len, (size_t)rt->types_len * sizeof *out);
  return 1;
}

strop_status strop_dataset_set_token_types(strop_dataset *ds, const float *types, size_t count) {
  static const char fn[] = "strop_dataset_set_token_types";
  if (!ds) return strop__err(STROP_E_INVALID_ARG, "%s: ds is NULL", fn);
  if (ds->root)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: the dataset is a view (a split, subset or "
                      "reshape): set the token types on the dataset it was made from",
                      fn);
  if (!types) {
    strop__free(ds->types);
    ds->types = NULL;
    ds->types_len = 0;
    return STROP_OK;
  }
  const int64_t t = ds->in_rank > 0 ? ds->in_dims[0] : 1;
  if (count != (size_t)ds->n * (size_t)t)
    return strop__err(STROP_E_SHAPE,
                      "%s: %zu token types for %lld samples of %lld positions "
                      "need %lld",
                      fn, count, (long long)ds->n, (long long)t, (long long)(ds->n * t));
  for (size_t i = 0; i < count; i++)
    if (!(types[i] >= 0.0f && types[i] < 16777216.0f) || types[i] != floorf(types[i]))
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: token type %g at sample %lld, position %lld: "
                        "it must be an integer in [0, 2^24)",
                        fn, (double)types[i], (long long)(i / (size_t)t),
                        (long long)(i % (size_t)t));
  float *m = strop__malloc(count * sizeof *m);
  if (!m) return STROP__NOMEM(fn);
  memcpy(m, types, count * sizeof *m);
  strop__free(ds->types);
  ds->types = m;
  ds->types_len = t;
  return STROP_OK;
}

int strop_dataset_has_token_types(const strop_dataset *ds) {
  return ds && strop__ds_root(ds)->types ? 1 : 0;
}

strop_status strop__ds_read_scaled(const strop_dataset *ds, const char *fn, int64_t i, float *in,
                                   float *tgt, float scale, int keep) {
  const strop_dataset *rt = strop__ds_root(ds);
  if (rt->kind != STROP__DS_IMAGES || !in) {
    strop_status st = strop__ds_read(ds, fn, i, in, tgt);
    if (st || !in) return st;
    size_t n = ds->in_numel;
    if (ds->var_size) {
      int64_t d[STROP_MAX_RANK];
      (void)strop__ds_sample_dims(ds, i, d);
      n = (size_t)(d[0] * d[1] * d[2]);
    }
    for (size_t k = 0; k < n; k++) in[k] *= scale;
    return STROP_OK;
  }
  int64_t r = ds->idx ? ds->idx[i] : i;
  strop_status st = strop__images_read(rt, fn, r, in, scale, keep);
  if (st || !tgt) return st;
  return strop__ds_read(ds, fn, i, NULL, tgt);
}

int strop__ds_sample_dims(const strop_dataset *ds, int64_t i, int64_t *dims) {
  memcpy(dims, ds->in_dims, (size_t)ds->in_rank * sizeof *dims);
  if (ds->var_size) {
    const strop_dataset *rt = strop__ds_root(ds);
    int64_t r = ds->idx ? ds->idx[i] : i;
    dims[1] = rt->img_hw[2 * r];
    dims[2] = rt->img_hw[2 * r + 1];
  }
  return ds->in_rank;
}

int strop_dataset_sample_shape(const strop_dataset *ds, int64_t index, int64_t *dims, int cap) {
  if (!ds || index < 0 || index >= ds->n || (!dims && cap > 0)) return -1;
  int64_t d[STROP_MAX_RANK];
  int rank = strop__ds_sample_dims(ds, index, d);
  for (int k = 0; k < rank && k < cap; k++) dims[k] = d[k];
  return rank;
}

int strop_dataset_varies(const strop_dataset *ds) { return ds ? ds->var_size : -1; }

strop_status strop_dataset_get(const strop_dataset *ds, int64_t index, float *input,
                               size_t input_cap, float *target, size_t target_cap) {
  const char *fn = "strop_dataset_get";
  if (!ds) return strop__err(STROP_E_INVALID_ARG, "%s: ds is NULL", fn);
  if (index < 0 || index >= ds->n)
    return strop__err(STROP_E_INVALID_ARG, "%s: index %lld out of range [0, %lld)", fn,
                      (long long)index, (long long)ds->n);
  size_t need = ds->in_numel;
  if (ds->var_size) {
    int64_t d[STROP_MAX_RANK];
    (void)strop__ds_sample_dims(ds, index, d);
    need = (size_t)(d[0] * d[1] * d[2]);
  }
  if (input && input_cap < need)
    return strop__err(STROP_E_INVALID_ARG, "%s: input_cap %zu < input size %zu", fn, input_cap,
                      need);
  if (target && target_cap < ds->tgt_numel)
    return strop__err(STROP_E_INVALID_ARG, "%s: target_cap %zu < target size %zu", fn, target_cap,
                      ds->tgt_numel);
  return strop__ds_read(ds, fn, index, input, target);
}

strop_status strop__ds_labels(const strop_dataset *ds, const char *fn, int32_t **out) {
  *out = NULL;
  if (ds->num_classes <= 0 || ds->raw_tgt_numel != 1 || strop__ds_root(ds)->tgt_rank != 0)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: needs a classification dataset with one class index per sample", fn);
  int32_t *lab = strop__malloc((size_t)(ds->n ? ds->n : 1) * sizeof *lab);
  if (!lab) return STROP__NOMEM(fn);
  const strop_dataset *rt = strop__ds_root(ds);
  float *scratch = NULL;
  if (rt->kind == STROP__DS_CALLBACK) {
    scratch = strop__malloc((rt->in_numel + 1) * sizeof(float));
    if (!scratch) {
      strop__free(lab);
      return STROP__NOMEM(fn);
    }
  }
  for (int64_t i = 0; i < ds->n; i++) {
    int64_t r = ds->idx ? ds->idx[i] : i;
    float v;
    if (rt->kind == STROP__DS_CALLBACK) {
      strop_status st = root_read(rt, fn, r, scratch, scratch + rt->in_numel);
      if (st) {
        strop__free(scratch);
        strop__free(lab);
        return st;
      }
      v = scratch[rt->in_numel];
    } else {
      v = rt->y[r];
    }
    int64_t c = (int64_t)v;
    if (ds->label_map) c = (c >= 0 && c < ds->lmap_len) ? ds->label_map[c] : -1;
    lab[i] = (int32_t)c;
  }
  strop__free(scratch);
  *out = lab;
  return STROP_OK;
}

/* ----------------------------------------------------------------------- accessors ---- */

int64_t strop_dataset_size(const strop_dataset *ds) { return ds ? ds->n : -1; }

int strop_dataset_input_shape(const strop_dataset *ds, int64_t *dims, int cap) {
  if (!ds || (!dims && cap > 0)) return -1;
  for (int i = 0; i < ds->in_rank && i < cap; i++) dims[i] = ds->in_dims[i];
  return ds->in_rank;
}

int strop_dataset_target_shape(const strop_dataset *ds, int64_t *dims, int cap) {
  if (!ds || (!dims && cap > 0)) return -1;
  for (int i = 0; i < ds->tgt_rank && i < cap; i++) dims[i] = ds->tgt_dims[i];
  return ds->tgt_rank;
}

int64_t strop_dataset_num_classes(const strop_dataset *ds) { return ds ? ds->num_classes : -1; }

int strop_dataset_class_name(const strop_dataset *ds, int64_t cls, char *buf, size_t cap) {
  if (!ds || !ds->class_names || cls < 0 || cls >= ds->num_classes || !ds->class_names[cls])
    return -1;
  const char *s = ds->class_names[cls];
  size_t n = strlen(s);
  if (buf && cap) {
    size_t m = n < cap - 1 ? n : cap - 1;
    memcpy(buf, s, m);
    buf[m] = '\0';
  }
  return (int)n;
}

strop_status strop_dataset_class_counts(const strop_dataset *ds, int64_t *counts, int64_t cap) {
  const char *fn = "strop_dataset_class_counts";
  if (!ds || !counts)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, ds ? "counts" : "ds");
  if (ds->num_classes > 0 && cap < ds->num_classes)
    return strop__err(STROP_E_INVALID_ARG, "%s: cap %lld < num_classes %lld", fn, (long long)cap,
                      (long long)ds->num_classes);
  int32_t *lab = NULL;
  strop_status st = strop__ds_labels(ds, fn, &lab);
  if (st) return st;
  for (int64_t c = 0; c < ds->num_classes; c++) counts[c] = 0;
  for (int64_t i = 0; i < ds->n; i++)
    if (lab[i] >= 0 && lab[i] < ds->num_classes) counts[lab[i]]++;
  strop__free(lab);
  return STROP_OK;
}

/* --------------------------------------------------------------------------- views ---- */

static char **dup_names(char *const *names, int64_t n, const int64_t *pick) {
  char **d = strop__calloc((size_t)(n ? n : 1), sizeof *d);
  if (!d) return NULL;
  for (int64_t i = 0; i < n; i++) {
    const char *s = names[pick ? pick[i] : i];
    if (s && !(d[i] = strop__strdup(s))) {
      free_names(d, n);
      return NULL;
    }
  }
  return d;
}

/* A view of ds with count samples ds[sel[j]] (sel NULL: all, in order); shape, classes,
 * names, relabelling and one-hot copied. */
static strop_status view_new(const strop_dataset *ds, const char *fn, const int64_t *sel,
                             int64_t count, strop_dataset **out) {
  strop_dataset *v = strop__calloc(1, sizeof *v);
  if (!v) return STROP__NOMEM(fn);
  atomic_init(&v->refs, 1);
  strop_dataset *rt = (strop_dataset *)strop__ds_root(ds);
  v->n = count;
  if (sel || ds->idx) {
    v->idx = strop__malloc((size_t)(count ? count : 1) * sizeof *v->idx);
    if (!v->idx) goto nomem;
    for (int64_t j = 0; j < count; j++) {
      int64_t k = sel ? sel[j] : j;
      v->idx[j] = ds->idx ? ds->idx[k] : k;
    }
  }
  if (ds->label_map) {
    v->label_map = strop__malloc((size_t)ds->lmap_len * sizeof *v->label_map);
    if (!v->label_map) goto nomem;
    memcpy(v->label_map, ds->label_map, (size_t)ds->lmap_len * sizeof *v->label_map);
    v->lmap_len = ds->lmap_len;
  }
  v->num_classes = ds->num_classes;
  if (ds->class_names && !(v->class_names = dup_names(ds->class_names, ds->num_classes, NULL)))
    goto nomem;
  v->onehot = ds->onehot;
  v->in_rank = ds->in_rank;
  memcpy(v->in_dims, ds->in_dims, sizeof v->in_dims);
  v->in_numel = ds->in_numel;
  v->var_size = ds->var_size;
  v->tgt_rank = ds->tgt_rank;
  memcpy(v->tgt_dims, ds->tgt_dims, sizeof v->tgt_dims);
  v->tgt_numel = ds->tgt_numel;
  v->raw_tgt_numel = ds->raw_tgt_numel;
  v->kind = rt->kind;
  strop__ds_ref(rt);
  v->root = rt;
  *out = v;
  return STROP_OK;
nomem:
  strop__free(v->idx);
  strop__free(v->label_map);
  strop__free(v);
  return STROP__NOMEM(fn);
}

strop_status strop_dataset_subset(const strop_dataset *ds, const int64_t *indices, int64_t count,
                                  strop_dataset **out) {
  const char *fn = "strop_dataset_subset";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!ds || (!indices && count > 0))
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, ds ? "indices" : "ds");
  if (count < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: count must be >= 0, got %lld", fn,
                      (long long)count);
  for (int64_t j = 0; j < count; j++)
    if (indices[j] < 0 || indices[j] >= ds->n)
      return strop__err(STROP_E_INVALID_ARG, "%s: indices[%lld] = %lld out of range [0, %lld)",
                        fn, (long long)j, (long long)indices[j], (long long)ds->n);
  return view_new(ds, fn, indices, count, out);
}

strop_status strop_dataset_filter_classes(const strop_dataset *ds, const int64_t *classes,
                                          int64_t count, strop_dataset **out) {
  const char *fn = "strop_dataset_filter_classes";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!ds || !classes)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, ds ? "classes" : "ds");
  if (ds->num_classes <= 0)
    return strop__err(STROP_E_UNSUPPORTED, "%s: not a classification dataset", fn);
  if (ds->onehot)
    return strop__err(STROP_E_UNSUPPORTED, "%s: filter before one_hot, not after", fn);
  if (count < 1 || count > ds->num_classes)
    return strop__err(STROP_E_INVALID_ARG, "%s: count must be in [1, %lld], got %lld", fn,
                      (long long)ds->num_classes, (long long)count);
  for (int64_t i = 0; i < count; i++) {
    if (classes[i] < 0 || classes[i] >= ds->num_classes)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: classes[%lld] = %lld out of range for %lld classes", fn,
                        (long long)i, (long long)classes[i], (long long)ds->num_classes);
    for (int64_t j = 0; j < i; j++)
      if (classes[j] == classes[i])
        return strop__err(STROP_E_INVALID_ARG, "%s: class %lld listed twice (at %lld and %lld)",
                          fn, (long long)classes[i], (long long)j, (long long)i);
  }
  const strop_dataset *rt = strop__ds_root(ds);
  int64_t rc = rt->num_classes; /* root class count: label_map domain */
  int32_t *lab = NULL;
  strop_status st = strop__ds_labels(ds, fn, &lab);
  if (st) return st;
  /* this dataset's class -> new class */
  int32_t *pos = strop__malloc((size_t)ds->num_classes * sizeof *pos);
  int64_t *sel = strop__malloc((size_t)(ds->n ? ds->n : 1) * sizeof *sel);
  int32_t *map = strop__malloc((size_t)rc * sizeof *map);
  strop_dataset *v = NULL;
  if (!pos || !sel || !map) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  for (int64_t c = 0; c < ds->num_classes; c++) pos[c] = -1;
  for (int64_t i = 0; i < count; i++) pos[classes[i]] = (int32_t)i;
  int64_t m = 0;
  for (int64_t i = 0; i < ds->n; i++)
    if (lab[i] >= 0 && pos[lab[i]] >= 0) sel[m++] = i;
  for (int64_t r = 0; r < rc; r++) {
    int64_t c = ds->label_map ? (r < ds->lmap_len ? ds->label_map[r] : -1) : r;
    map[r] = (c >= 0 && c < ds->num_classes) ? pos[c] : -1;
  }
  st = view_new(ds, fn, sel, m, &v);
  if (st) goto done;
  strop__free(v->label_map);
  v->label_map = map;
  v->lmap_len = rc;
  map = NULL;
  if (v->class_names) {
    free_names(v->class_names, v->num_classes);
    v->class_names = dup_names(ds->class_names, count, classes);
    if (!v->class_names) {
      v->num_classes = 0;
      strop_dataset_free(v);
      v = NULL;
      st = STROP__NOMEM(fn);
      goto done;
    }
  }
  v->num_classes = count;
  *out = v;
done:
  strop__free(lab);
  strop__free(pos);
  strop__free(sel);
  strop__free(map);
  return st;
}

/* Per-class lists of sample indices (in index order) built from labels. */
typedef struct {
  int64_t *order; /* indices grouped by class */
  int64_t *start; /* C + 1 offsets */
} by_class;

static strop_status group_by_class(const char *fn, const int32_t *lab, int64_t n, int64_t C,
                                   by_class *g) {
  g->order = strop__malloc((size_t)(n ? n : 1) * sizeof *g->order);
  g->start = strop__calloc((size_t)C + 1, sizeof *g->start);
  if (!g->order || !g->start) {
    strop__free(g->order);
    strop__free(g->start);
    g->order = NULL;
    g->start = NULL;
    return STROP__NOMEM(fn);
  }
  for (int64_t i = 0; i < n; i++)
    if (lab[i] >= 0 && lab[i] < C) g->start[lab[i] + 1]++;
  for (int64_t c = 0; c < C; c++) g->start[c + 1] += g->start[c];
  int64_t *fill = strop__malloc((size_t)(C ? C : 1) * sizeof *fill);
  if (!fill) {
    strop__free(g->order);
    strop__free(g->start);
    g->order = NULL;
    g->start = NULL;
    return STROP__NOMEM(fn);
  }
  memcpy(fill, g->start, (size_t)C * sizeof *fill);
  for (int64_t i = 0; i < n; i++)
    if (lab[i] >= 0 && lab[i] < C) g->order[fill[lab[i]]++] = i;
  strop__free(fill);
  return STROP_OK;
}

/* Partial Fisher-Yates: the first k entries of a become a uniform random k-subset. */
static void shuffle_prefix(strop__rng *r, int64_t *a, int64_t n, int64_t k) {
  for (int64_t i = 0; i < k && i < n - 1; i++) {
    int64_t j = i + (int64_t)strop__rng_below(r, (uint64_t)(n - i));
    int64_t t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

strop_status strop_dataset_few_shot(const strop_dataset *ds, int64_t k, uint64_t seed,
                                    strop_dataset **out) {
  const char *fn = "strop_dataset_few_shot";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!ds) return strop__err(STROP_E_INVALID_ARG, "%s: ds is NULL", fn);
  if (k < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: k must be >= 1, got %lld", fn, (long long)k);
  int32_t *lab = NULL;
  strop_status st = strop__ds_labels(ds, fn, &lab);
  if (st) return st;
  int64_t C = ds->num_classes;
  by_class g;
  st = group_by_class(fn, lab, ds->n, C, &g);
  strop__free(lab);
  if (st) return st;
  for (int64_t c = 0; c < C; c++)
    if (g.start[c + 1] - g.start[c] < k) {
      st = strop__err(STROP_E_INVALID_ARG, "%s: class %lld has %lld samples, fewer than k = %lld",
                      fn, (long long)c, (long long)(g.start[c + 1] - g.start[c]), (long long)k);
      goto done;
    }
  int64_t *sel = strop__malloc((size_t)(C * k) * sizeof *sel);
  if (!sel) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  strop__rng r;
  strop__rng_seed(&r, seed, 0x66657773686f74ULL); /* "fewshot" stream */
  for (int64_t c = 0; c < C; c++) {
    int64_t *a = g.order + g.start[c];
    int64_t m = g.start[c + 1] - g.start[c];
    shuffle_prefix(&r, a, m, k);
    memcpy(sel + c * k, a, (size_t)k * sizeof *sel);
  }
  qsort(sel, (size_t)(C * k), sizeof *sel, cmp_i64);
  st = view_new(ds, fn, sel, C * k, out);
  strop__free(sel);
done:
  strop__free(g.order);
  strop__free(g.start);
  return st;
}

strop_status strop_dataset_split(const strop_dataset *ds, float train_frac, float val_frac,
                                 uint64_t seed, int flags, strop_dataset **train,
                                 strop_dataset **val, strop_dataset **test) {
  const char *fn = "strop_dataset_split";
  if (train) *train = NULL;
  if (val) *val = NULL;
  if (test) *test = NULL;
  if (!ds) return strop__err(STROP_E_INVALID_ARG, "%s: ds is NULL", fn);
  if (!(train_frac >= 0.0f && train_frac <= 1.0f) || !(val_frac >= 0.0f && val_frac <= 1.0f) ||
      train_frac + val_frac > 1.0f + 1e-6f)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: fractions must be in [0, 1] and sum to <= 1, got train %g val %g", fn,
                      (double)train_frac, (double)val_frac);
  if (flags & ~STROP_SPLIT_STRATIFIED)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown flags 0x%x", fn, (unsigned)flags);
  int64_t n = ds->n;
  int64_t *perm = strop__malloc((size_t)(n ? n : 1) * sizeof *perm);
  int8_t *part = strop__malloc((size_t)(n ? n : 1));
  strop_status st = STROP_OK;
  int32_t *lab = NULL;
  by_class g = {NULL, NULL};
  if (!perm || !part) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  strop__rng r;
  strop__rng_seed(&r, seed, 0x73706c6974ULL); /* "split" stream */
  if (flags & STROP_SPLIT_STRATIFIED) {
    st = strop__ds_labels(ds, fn, &lab);
    if (st) goto done;
    st = group_by_class(fn, lab, n, ds->num_classes, &g);
    if (st) goto done;
    for (int64_t i = 0; i < n; i++) part[i] = 2;
    for (int64_t c = 0; c < ds->num_classes; c++) {
      int64_t *a = g.order + g.start[c];
      int64_t m = g.start[c + 1] - g.start[c];
      int64_t nt = llround((double)m * train_frac), nv = llround((double)m * val_frac);
      if (nt > m) nt = m;
      if (nv > m - nt) nv = m - nt;
      shuffle_prefix(&r, a, m, nt + nv);
      for (int64_t j = 0; j < nt + nv; j++) part[a[j]] = j < nt ? 0 : 1;
    }
  } else {
    strop__rng_permutation(&r, n, perm);
    int64_t nt = llround((double)n * train_frac), nv = llround((double)n * val_frac);
    if (nt > n) nt = n;
    if (nv > n - nt) nv = n - nt;
    for (int64_t j = 0; j < n; j++) part[perm[j]] = j < nt ? 0 : (j < nt + nv ? 1 : 2);
  }
  strop_dataset **outs[3] = {train, val, test};
  for (int p = 0; p < 3; p++) {
    if (!outs[p]) continue;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
      if (part[i] == p) perm[m++] = i;
    st = view_new(ds, fn, perm, m, outs[p]);
    if (st) {
      for (int q = 0; q < p; q++)
        if (outs[q]) {
          strop_dataset_free(*outs[q]);
          *outs[q] = NULL;
        }
      goto done;
    }
  }
done:
  strop__free(perm);
  strop__free(part);
  strop__free(lab);
  strop__free(g.order);
  strop__free(g.start);
  return st;
}

strop_status strop_dataset_one_hot(const strop_dataset *ds, strop_dataset **out) {
  const char *fn = "strop_dataset_one_hot";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!ds) return strop__err(STROP_E_INVALID_ARG, "%s: ds is NULL", fn);
  if (ds->num_classes <= 0 || ds->onehot)
    return strop__err(
        STROP_E_UNSUPPORTED, "%s: %s", fn,
        ds->onehot ? "targets are one-hot already" : "regression targets have no classes");
  if (ds->tgt_rank >= STROP_MAX_RANK)
    return strop__err(STROP_E_SHAPE, "%s: target rank %d leaves no room for a class axis", fn,
                      ds->tgt_rank);
  strop_status st = view_new(ds, fn, NULL, ds->n, out);
  if (st) return st;
  strop_dataset *v = *out;
  v->onehot = 1;
  v->tgt_dims[v->tgt_rank++] = v->num_classes;
  v->tgt_numel = v->raw_tgt_numel * (size_t)v->num_classes;
  return STROP_OK;
}

strop_status strop_dataset_reshape(const strop_dataset *ds, int rank, const int64_t *dims,
                                   strop_dataset **out) {
  const char *fn = "strop_dataset_reshape";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!ds) return strop__err(STROP_E_INVALID_ARG, "%s: ds is NULL", fn);
  size_t numel;
  strop_status st = check_shape(fn, "input", rank, dims, 1, &numel);
  if (st) return st;
  if (ds->var_size)
    return strop__err(STROP_E_SHAPE,
                      "%s: the images differ in size; resize or crop them in a "
                      "batch iterator instead",
                      fn);
  if (numel != ds->in_numel)
    return strop__err(STROP_E_SHAPE, "%s: new shape has %zu elements, the inputs have %zu", fn,
                      numel, ds->in_numel);
  st = view_new(ds, fn, NULL, ds->n, out);
  if (st) return st;
  (*out)->in_rank = rank;
  memset((*out)->in_dims, 0, sizeof(*out)->in_dims);
  memcpy((*out)->in_dims, dims, (size_t)rank * sizeof *dims);
  return STROP_OK;
}

strop_status strop_dataset_channel_stats(const strop_dataset *ds, float scale, float *mean,
                                         float *std, int64_t cap, int64_t *channels) {
  const char *fn = "strop_dataset_channel_stats";
  if (!ds || !channels || (cap > 0 && (!mean || !std)))
    return strop__err(STROP_E_INVALID_ARG, "%s: NULL argument", fn);
  if (ds->n < 1)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: the dataset has no samples (an empty subset, "
                      "split or class filter?)",
                      fn);
  int64_t C = ds->in_rank == 3 ? ds->in_dims[0] : 1;
  size_t per = ds->in_numel / (size_t)C;
  double cnt = 0;
  *channels = C;
  double *acc = strop__calloc((size_t)C * 2, sizeof *acc);
  float *buf = strop__malloc(ds->in_numel * sizeof *buf);
  if (!acc || !buf) {
    strop__free(acc);
    strop__free(buf);
    return STROP__NOMEM(fn);
  }
  for (int64_t i = 0; i < ds->n; i++) {
    strop_status st = strop__ds_read(ds, fn, i, buf, NULL);
    if (st) {
      strop__free(acc);
      strop__free(buf);
      return st;
    }
    if (ds->var_size) {
      int64_t d[STROP_MAX_RANK];
      (void)strop__ds_sample_dims(ds, i, d);
      per = (size_t)(d[1] * d[2]);
    }
    cnt += (double)per;
    for (int64_t c = 0; c < C; c++) {
      double s = 0, s2 = 0;
      const float *p = buf + (size_t)c * per;
      for (size_t k = 0; k < per; k++) {
        double v = (double)p[k] * scale;
        s += v;
        s2 += v * v;
      }
      acc[2 * c] += s;
      acc[2 * c + 1] += s2;
    }
  }
  for (int64_t c = 0; c < C && c < cap; c++) {
    double m = acc[2 * c] / cnt, var = acc[2 * c + 1] / cnt - m * m;
    mean[c] = (float)m;
    std[c] = (float)sqrt(var > 0 ? var : 0);
  }
  strop__free(acc);
  strop__free(buf);
  return STROP_OK;
}
