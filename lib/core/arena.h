/* SPDX-License-Identifier: MIT */
/* strop — the step arena: a bump allocator reset once per training step. After the first
 * step it has grown to the step's needs and a step allocates nothing from the heap. */
#ifndef STROP_ARENA_H
#define STROP_ARENA_H

#include "core.h"

typedef struct strop__arena_chunk strop__arena_chunk;
typedef struct strop__arena {
  strop__arena_chunk *head; /* current chunk; older chunks follow */
  size_t used_total;        /* bytes handed out since the last reset */
  size_t peak;              /* largest used_total seen: the size to consolidate to */
} strop__arena;

void strop__arena_init(strop__arena *a);
/* 64-byte aligned memory valid until the next reset; NULL on OOM (error not set). */
void *strop__arena_alloc(strop__arena *a, size_t bytes);
/* Same, zero-filled. */
void *strop__arena_calloc(strop__arena *a, size_t bytes);
/* Forget everything handed out; when the last step spilled over several chunks, or grew
 * chunks it rolled back before its end, replace them with one chunk of the peak size so the
 * next step fits in one. */
void strop__arena_reset(strop__arena *a);
void strop__arena_destroy(strop__arena *a);
/* What an arena holds from the heap once warm when its steps peak at `peak` bytes: one chunk
 * of that size, or of the smallest chunk size. */
size_t strop__arena_footprint(size_t peak);
/* A point to roll back to: everything handed out after it is given back by
 * strop__arena_rollback (scratch of one kernel call, a checkpointed block's recompute). Chunks
 * the arena grew in between are freed. */
typedef struct strop__arena_mark {
  strop__arena_chunk *chunk;
  size_t used, total;
} strop__arena_mark;
strop__arena_mark strop__arena_get_mark(const strop__arena *a);
void strop__arena_rollback(strop__arena *a, strop__arena_mark mark);

/* A block of a step's memory whose lifetime is known before the step runs: live over the
 * ticks [first, last] of the caller's clock (inclusive; last = INT_MAX: to the step's end). */
typedef struct strop__arena_block {
  size_t bytes;    /* in: its size */
  int first, last; /* in: the ticks it is live over */
  int id;          /* in: the caller's name for it */
  size_t off;      /* out: its offset in the plan, a multiple of 64 */
} strop__arena_block;
/* Plans n blocks into one region so that no two blocks live at a common tick share a byte:
 * greedy by size, as ML compilers plan their tensors (the largest block first; each in the
 * smallest gap, among the blocks already placed that it meets in time, that holds it, else
 * above them all). Sorts b (by size, largest first); placed is scratch of n ints. Returns the
 * bytes the region needs. */
size_t strop__arena_plan(strop__arena_block *b, int n, int *placed);

#endif
