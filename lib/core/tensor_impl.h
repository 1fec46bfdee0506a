/* SPDX-License-Identifier: MIT */
/* strop — the tensor's private layout, for modules inside the library that read shapes
 * and data directly. Never installed. */
#ifndef STROP_TENSOR_IMPL_H
#define STROP_TENSOR_IMPL_H

#include "core.h"

typedef struct strop__storage {
  float *data;
  size_t count; /* floats in the buffer */
  _Atomic long refs;
  int owned; /* 1: freed with the last reference; 0: the caller's buffer */
} strop__storage;

struct strop_tensor {
  strop__storage *st;
  float *data; /* st->data (views share it) */
  int rank;
  int64_t dims[STROP_MAX_RANK];
  size_t numel;
};

/* Validates rank/dims and computes the element count; names fn in the error. */
strop_status strop__dims_numel(const char *fn, int rank, const int64_t *dims, size_t *numel);

#endif
