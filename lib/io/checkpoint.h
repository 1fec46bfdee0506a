/* SPDX-License-Identifier: MIT */
/* strop — checkpoints: one safetensors file holding the model's weights under their
 * state_dict names plus named sections other modules add (optimizer slots, scheduler, data
 * order, RNG streams, step), written atomically. The trainer drives this API. */
#ifndef STROP_IO_CHECKPOINT_H
#define STROP_IO_CHECKPOINT_H

#include "core/core.h"
#include "io/safetensors.h"
#include "strop/model.h"

/* Section prefixes (tensor names) by convention; model tensor names must not start with
 * them (saving reports a duplicate name if they collide):
 *   optim.<param>.<slot>   optimizer state (e.g. optim.head.weight.exp_avg), optim.step
 *   sched.<key>            scheduler state
 *   data.<key>             data order (permutation, epoch, cursor)
 *   rng.<owner>            generators as I64 [2] (state, inc): rng.model, rng.data, ...
 *   train.<key>            trainer counters (train.step, train.epoch)
 * Metadata: "format" = "strop-checkpoint", "strop_version", plus what the writer sets. */
#define STROP__CKPT_FORMAT "strop-checkpoint"

typedef struct strop__ckpt_writer strop__ckpt_writer;

/* Starts a checkpoint for path (nothing touches the disk until commit). */
strop_status strop__ckpt_writer_begin(const char *fn, const char *path, strop__ckpt_writer **out);
/* The model's parameters and buffers (borrowed until commit/abort) and its RNG as rng.model. */
strop_status strop__ckpt_add_model(strop__ckpt_writer *w, const strop_model *m);
/* Borrowing adds: data must stay valid and unchanged until commit or abort. */
strop_status strop__ckpt_add_f32(strop__ckpt_writer *w, const char *name, int rank,
                                 const int64_t *dims, const float *data);
strop_status strop__ckpt_add_i64(strop__ckpt_writer *w, const char *name, int rank,
                                 const int64_t *dims, const int64_t *data);
/* Copying adds, for transient values. */
strop_status strop__ckpt_add_f32_copy(strop__ckpt_writer *w, const char *name, int rank,
                                      const int64_t *dims, const float *data);
strop_status strop__ckpt_add_i64_copy(strop__ckpt_writer *w, const char *name, int rank,
                                      const int64_t *dims, const int64_t *data);
/* A scalar counter (stored as I64 with shape []; the bits of v). */
strop_status strop__ckpt_add_u64(strop__ckpt_writer *w, const char *name, uint64_t v);
/* A generator's full state, I64 [2]. */
strop_status strop__ckpt_add_rng(strop__ckpt_writer *w, const char *name, const strop__rng *r);
strop_status strop__ckpt_set_meta(strop__ckpt_writer *w, const char *key, const char *value);
/* Writes atomically (temp file, fsync, rename, fsync folder) and frees the writer, whether it
 * succeeds or not: on failure the old checkpoint is intact and no temp file remains. */
strop_status strop__ckpt_commit(strop__ckpt_writer *w);
/* Frees the writer without writing. NULL is a no-op. */
void strop__ckpt_abort(strop__ckpt_writer *w);

/* ---- reading ---- */
typedef strop__st_file strop__ckpt;

/* Opens and validates; refuses files whose metadata "format" is not strop-checkpoint. */
strop_status strop__ckpt_open(const char *fn, const char *path, strop__ckpt **out);
void strop__ckpt_close(strop__ckpt *c);
const strop__st_tensor *strop__ckpt_find(const strop__ckpt *c, const char *name);
const char *strop__ckpt_meta(const strop__ckpt *c, const char *key);
/* Copies a section into dst; STROP_E_NOT_FOUND when absent, STROP_E_SHAPE when its element
 * count is not count (both name the tensor). */
strop_status strop__ckpt_read_f32(const char *fn, const strop__ckpt *c, const char *name,
                                  float *dst, size_t count);
strop_status strop__ckpt_read_i64(const char *fn, const strop__ckpt *c, const char *name,
                                  int64_t *dst, size_t count);
strop_status strop__ckpt_read_u64(const char *fn, const strop__ckpt *c, const char *name,
                                  uint64_t *out);
strop_status strop__ckpt_read_rng(const char *fn, const strop__ckpt *c, const char *name,
                                  strop__rng *out);
/* Loads every model tensor (strict: all present with their shapes, else the model is
 * unchanged) and restores rng.model; other sections are ignored. */
strop_status strop__ckpt_load_model(const char *fn, const strop__ckpt *c, strop_model *m);

#endif
