/* SPDX-License-Identifier: MIT */
/* strop — safetensors files, the internal API: a validating memory-mapped reader and an
 * atomic writer. Weights, checkpoints, optimizer and trainer state all go through it. */
#ifndef STROP_IO_SAFETENSORS_H
#define STROP_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "strop/io.h"

/* Dtypes in the order of safetensors' names; sizes in bytes. */
typedef enum strop__dtype {
  STROP__DT_BOOL,
  STROP__DT_U8,
  STROP__DT_I8,
  STROP__DT_F8_E5M2,
  STROP__DT_F8_E4M3,
  STROP__DT_I16,
  STROP__DT_U16,
  STROP__DT_F16,
  STROP__DT_BF16,
  STROP__DT_I32,
  STROP__DT_U32,
  STROP__DT_F32,
  STROP__DT_F64,
  STROP__DT_I64,
  STROP__DT_U64,
  STROP__DT_COUNT
} strop__dtype;

const char *strop__dtype_name(int dtype);
size_t strop__dtype_size(int dtype);
/* -1 if unknown */
int strop__dtype_parse(const char *name);
/* 1 for F32, F16, BF16, F64: read as float32 without loss of meaning */
int strop__dtype_is_float(int dtype);
/* 1 for the integer dtypes and BOOL */
int strop__dtype_is_int(int dtype);

/* Limits of the reader. */
#define STROP__ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024) /* as the reference library */
#define STROP__ST_MAX_DEPTH 16
/* A dimension of a tensor; the product of the non-zero dimensions times the dtype's size must
 * also fit in int64 (docs/errors.md, input bounds). */
#define STROP__ST_MAX_DIM ((uint64_t)1 << 40)

typedef struct strop__st_tensor {
  const char *name; /* NUL-terminated; owned by the file */
  int dtype;
  int rank; /* 0 for a scalar */
  int64_t dims[STROP_MAX_RANK];
  size_t numel;
  size_t nbytes;
  uint64_t offset;           /* begin, relative to the data area */
  const unsigned char *data; /* into the mapping; NULL when nbytes == 0 */
} strop__st_tensor;

/* The validated file; the public strop_st_file handle. */
struct strop_st_file {
  const unsigned char *base; /* the whole file */
  size_t size;
  strop__mapping *map; /* the file's mapping (NULL over caller memory): the reader holds one
                          reference, each parameter borrowing values from it another */
  char *label;         /* path or "<memory>", for messages */
  strop__st_tensor *t; /* header order */
  int n;
  int *by_name; /* indices sorted by name, for lookups */
  const char **meta_keys, **meta_vals;
  int n_meta;
  void *json; /* owns the decoded strings */
};
typedef struct strop_st_file strop__st_file;

/* Opens and validates a file (mmap'd). Errors: "<fn>: <path>: <what>". */
strop_status strop__st_open(const char *fn, const char *path, strop__st_file **out);
/* The same over caller memory, borrowed until close (fuzzing, tests). */
strop_status strop__st_open_mem(const char *fn, const void *buf, size_t len, const char *label,
                                strop__st_file **out);
void strop__st_close(strop__st_file *f);

const strop__st_tensor *strop__st_find(const strop__st_file *f, const char *name);
int strop__st_find_index(const strop__st_file *f, const char *name);
const char *strop__st_meta(const strop__st_file *f, const char *key); /* NULL if absent */

/* A zero-copy float view when the tensor is F32 and 4-byte aligned (little-endian host);
 * else NULL. Valid until close. */
const float *strop__st_f32_view(const strop__st_tensor *t);
/* Copies as float32, converting F16, BF16, F64 and integers; count must equal numel. */
strop_status strop__st_read_f32(const char *fn, const strop__st_tensor *t, float *dst,
                                size_t count);
/* Copies as int64 from I64, I32, I16, I8, U8, U16, U32, BOOL (U64 above INT64_MAX is an
 * error); count must equal numel. */
strop_status strop__st_read_i64(const char *fn, const strop__st_tensor *t, int64_t *dst,
                                size_t count);

/* "[2, 3]" */
const char *strop__dims_str(int rank, const int64_t *dims, char *buf, size_t cap);

/* ---- writer ---- */
typedef struct strop__st_writer strop__st_writer;

strop_status strop__st_writer_create(const char *fn, strop__st_writer **out);
void strop__st_writer_free(strop__st_writer *w);
/* Adds a tensor. The _f32/_i64 forms borrow data: it must stay valid and unchanged until
 * the writer is saved or freed. The _copy forms copy it. Names must be unique, non-empty
 * and not "__metadata__"; rank 0..STROP_MAX_RANK, dims >= 0. */
strop_status strop__st_writer_add_f32(strop__st_writer *w, const char *name, int rank,
                                      const int64_t *dims, const float *data);
strop_status strop__st_writer_add_i64(strop__st_writer *w, const char *name, int rank,
                                      const int64_t *dims, const int64_t *data);
strop_status strop__st_writer_add_f32_copy(strop__st_writer *w, const char *name, int rank,
                                           const int64_t *dims, const float *data);
strop_status strop__st_writer_add_i64_copy(strop__st_writer *w, const char *name, int rank,
                                           const int64_t *dims, const int64_t *data);
/* Sets (or replaces) a __metadata__ entry; both strings copied (valid UTF-8). */
strop_status strop__st_writer_set_meta(strop__st_writer *w, const char *key, const char *value);
/* Writes the file atomically (temp file beside it, fsync, rename, fsync folder). The writer
 * stays usable (it can be saved again). */
strop_status strop__st_writer_save(strop__st_writer *w, const char *path);
/* The whole file image in memory (strop__malloc'd; free with strop__free). */
strop_status strop__st_writer_to_mem(strop__st_writer *w, unsigned char **out, size_t *len);

#endif
