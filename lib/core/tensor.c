/* SPDX-License-Identifier: MIT */
/* strop — float32 tensors with reference-counted storage, so views and wrapped caller
 * buffers have one clear lifetime rule. */
#include <stdatomic.h>
#include <string.h>

#include "tensor_impl.h"

strop_status strop__dims_numel(const char *fn, int rank, const int64_t *dims, size_t *numel) {
  if (rank < 1 || rank > STROP_MAX_RANK)
    return strop__err(STROP_E_INVALID_ARG, "%s: rank must be 1..%d, got %d", fn, STROP_MAX_RANK,
                      rank);
  if (!dims) return strop__err(STROP_E_INVALID_ARG, "%s: dims is NULL", fn);
  size_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] <= 0)
      return strop__err(STROP_E_INVALID_ARG, "%s: dims[%d] must be > 0, got %lld", fn, i,
                        (long long)dims[i]);
    if ((uint64_t)dims[i] > SIZE_MAX || strop__mul_overflow(n, (size_t)dims[i], &n))
      return strop__err(STROP_E_SHAPE, "%s: element count overflows at dims[%d] = %lld", fn, i,
                        (long long)dims[i]);
  }
  if (strop__mul_overflow(n, sizeof(float), &(size_t){0}))
    return strop__err(STROP_E_SHAPE, "%s: %zu elements overflow the byte size", fn, n);
  *numel = n;
  return STROP_OK;
}

static strop_status make(const char *fn, strop__storage *st, int rank, const int64_t *dims,
                         size_t numel, strop_tensor **out) {
  strop_tensor *t = strop__malloc(sizeof *t);
  if (!t) return STROP__NOMEM(fn);
  memset(t, 0, sizeof *t);
  t->st = st;
  t->data = st->data;
  t->rank = rank;
  memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
  t->numel = numel;
  atomic_fetch_add(&st->refs, 1);
  *out = t;
  return STROP_OK;
}

static strop_status new_owned(const char *fn, int rank, const int64_t *dims, strop_tensor **out) {
  size_t n;
  strop_status s = strop__dims_numel(fn, rank, dims, &n);
  if (s) return s;
  strop__storage *st = strop__malloc(sizeof *st);
  if (!st) return STROP__NOMEM(fn);
  st->data = strop__malloc_aligned(n * sizeof(float));
  if (!st->data) {
    strop__free(st);
    return STROP__NOMEM(fn);
  }
  memset(st->data, 0, n * sizeof(float));
  st->count = n;
  atomic_init(&st->refs, 0);
  st->owned = 1;
  s = make(fn, st, rank, dims, n, out);
  if (s) {
    strop__free_aligned(st->data);
    strop__free(st);
  }
  return s;
}

strop_status strop_tensor_create(int rank, const int64_t *dims, strop_tensor **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "strop_tensor_create: out is NULL");
  *out = NULL;
  return new_owned("strop_tensor_create", rank, dims, out);
}

strop_status strop_tensor_from_data(const float *data, size_t count, int rank,
                                    const int64_t *dims, strop_tensor **out) {
  static const char fn[] = "strop_tensor_from_data";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!data) return strop__err(STROP_E_INVALID_ARG, "%s: data is NULL", fn);
  size_t n;
  strop_status s = strop__dims_numel(fn, rank, dims, &n);
  if (s) return s;
  if (count != n)
    return strop__err(STROP_E_SHAPE, "%s: shape holds %zu elements but count is %zu", fn, n,
                      count);
  s = new_owned(fn, rank, dims, out);
  if (s) return s;
  memcpy((*out)->data, data, n * sizeof(float));
  return STROP_OK;
}

strop_status strop_tensor_wrap(float *data, size_t count, int rank, const int64_t *dims,
                               strop_tensor **out) {
  static const char fn[] = "strop_tensor_wrap";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!data) return strop__err(STROP_E_INVALID_ARG, "%s: data is NULL", fn);
  size_t n;
  strop_status s = strop__dims_numel(fn, rank, dims, &n);
  if (s) return s;
  if (count < n)
    return strop__err(STROP_E_SHAPE, "%s: shape needs %zu elements but the buffer holds %zu", fn,
                      n, count);
  strop__storage *st = strop__malloc(sizeof *st);
  if (!st) return STROP__NOMEM(fn);
  st->data = data;
  st->count = count;
  atomic_init(&st->refs, 0);
  st->owned = 0;
  s = make(fn, st, rank, dims, n, out);
  if (s) strop__free(st);
  return s;
}

strop_status strop_tensor_copy(const strop_tensor *src, strop_tensor **out) {
  static const char fn[] = "strop_tensor_copy";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!src) return strop__err(STROP_E_INVALID_ARG, "%s: src is NULL", fn);
  strop_status s = new_owned(fn, src->rank, src->dims, out);
  if (s) return s;
  memcpy((*out)->data, src->data, src->numel * sizeof(float));
  return STROP_OK;
}

strop_status strop_tensor_reshape(const strop_tensor *src, int rank, const int64_t *dims,
                                  strop_tensor **out) {
  static const char fn[] = "strop_tensor_reshape";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!src) return strop__err(STROP_E_INVALID_ARG, "%s: src is NULL", fn);
  if (rank < 1 || rank > STROP_MAX_RANK || !dims)
    return strop__err(STROP_E_INVALID_ARG, "%s: rank must be 1..%d with dims, got %d", fn,
                      STROP_MAX_RANK, rank);
  int64_t d[STROP_MAX_RANK];
  int infer = -1;
  size_t known = 1;
  for (int i = 0; i < rank; i++) {
    d[i] = dims[i];
    if (dims[i] == -1) {
      if (infer >= 0) return strop__err(STROP_E_SHAPE, "%s: only one dimension may be -1", fn);
      infer = i;
    } else if (dims[i] <= 0) {
      return strop__err(STROP_E_INVALID_ARG, "%s: dims[%d] must be > 0 or -1, got %lld", fn, i,
                        (long long)dims[i]);
    } else if ((uint64_t)dims[i] > SIZE_MAX ||
               strop__mul_overflow(known, (size_t)dims[i], &known)) {
      return strop__err(STROP_E_SHAPE, "%s: element count overflows", fn);
    }
  }
  if (infer >= 0) {
    if (known == 0 || src->numel % known)
      return strop__err(STROP_E_SHAPE,
                        "%s: cannot infer dims[%d]: %zu elements not divisible "
                        "by %zu",
                        fn, infer, src->numel, known);
    d[infer] = (int64_t)(src->numel / known);
    known = src->numel;
  }
  if (known != src->numel)
    return strop__err(STROP_E_SHAPE, "%s: new shape holds %zu elements, tensor has %zu", fn,
                      known, src->numel);
  return make(fn, src->st, rank, d, known, out);
}

strop_status strop_tensor_fill(strop_tensor *t, float value) {
  if (!t) return strop__err(STROP_E_INVALID_ARG, "strop_tensor_fill: t is NULL");
  for (size_t i = 0; i < t->numel; i++) t->data[i] = value;
  return STROP_OK;
}

strop_status strop_tensor_copy_from(strop_tensor *t, const float *src, size_t count) {
  if (!t || !src)
    return strop__err(STROP_E_INVALID_ARG, "strop_tensor_copy_from: %s is NULL", t ? "src" : "t");
  if (count != t->numel)
    return strop__err(STROP_E_SHAPE,
                      "strop_tensor_copy_from: count is %zu, tensor has %zu "
                      "elements",
                      count, t->numel);
  memmove(t->data, src, count * sizeof(float));
  return STROP_OK;
}

strop_status strop_tensor_copy_to(const strop_tensor *t, float *dst, size_t count) {
  if (!t || !dst)
    return strop__err(STROP_E_INVALID_ARG, "strop_tensor_copy_to: %s is NULL", t ? "dst" : "t");
  if (count < t->numel)
    return strop__err(STROP_E_SHAPE,
                      "strop_tensor_copy_to: buffer holds %zu floats, tensor has "
                      "%zu elements",
                      count, t->numel);
  memmove(dst, t->data, t->numel * sizeof(float));
  return STROP_OK;
}

float *strop_tensor_data(strop_tensor *t) { return t ? t->data : NULL; }
const float *strop_tensor_data_const(const strop_tensor *t) { return t ? t->data : NULL; }
int strop_tensor_rank(const strop_tensor *t) { return t ? t->rank : 0; }

int64_t strop_tensor_dim(const strop_tensor *t, int i) {
  if (!t) {
    strop__err(STROP_E_INVALID_ARG, "strop_tensor_dim: t is NULL");
    return -1;
  }
  int j = i < 0 ? t->rank + i : i;
  if (j < 0 || j >= t->rank) {
    strop__err(STROP_E_INVALID_ARG, "strop_tensor_dim: index %d out of range for rank %d", i,
               t->rank);
    return -1;
  }
  return t->dims[j];
}

int64_t strop_tensor_numel(const strop_tensor *t) { return t ? (int64_t)t->numel : -1; }

int strop_tensor_shape(const strop_tensor *t, int64_t *dims, int cap) {
  if (!t || (!dims && cap > 0)) {
    strop__err(STROP_E_INVALID_ARG, "strop_tensor_shape: %s is NULL", t ? "dims" : "t");
    return -1;
  }
  for (int i = 0; i < t->rank && i < cap; i++) dims[i] = t->dims[i];
  return t->rank;
}

void strop_tensor_free(strop_tensor *t) {
  if (!t) return;
  strop__storage *st = t->st;
  if (atomic_fetch_sub(&st->refs, 1) == 1) {
    if (st->owned) strop__free_aligned(st->data);
    strop__free(st);
  }
  strop__free(t);
}
