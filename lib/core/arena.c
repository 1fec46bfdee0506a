/* SPDX-License-Identifier: MIT */
/* strop — step arena (see arena.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#  include <malloc.h>
#endif

#include "arena.h"

struct strop__arena_chunk {
  strop__arena_chunk *next;
  size_t cap, used;
  unsigned char *mem;
};

void strop__arena_init(strop__arena *a) { memset(a, 0, sizeof *a); }

static strop__arena_chunk *chunk_new(size_t cap) {
  strop__arena_chunk *c = strop__malloc(sizeof *c);
  if (!c) return NULL;
  c->mem = strop__malloc_aligned(cap);
  if (!c->mem) {
    strop__free(c);
    return NULL;
  }
  c->cap = cap;
  c->used = 0;
  c->next = NULL;
  return c;
}

enum { MIN_CHUNK = 1 << 20 };

size_t strop__arena_footprint(size_t peak) {
  return peak > (size_t)MIN_CHUNK ? peak : (size_t)MIN_CHUNK;
}

void *strop__arena_alloc(strop__arena *a, size_t bytes) {
  size_t need = (bytes + 63) & ~(size_t)63;
  if (need < bytes) return NULL;
  if (need == 0) need = 64;
  strop__arena_chunk *c = a->head;
  if (!c || c->cap - c->used < need) {
    size_t cap = strop__arena_footprint(need);
    if (c && cap < c->cap * 2 && c->cap * 2 > need) cap = c->cap * 2;
    strop__arena_chunk *n = chunk_new(cap);
    if (!n) return NULL;
    n->next = c;
    a->head = n;
    c = n;
  }
  void *p = c->mem + c->used;
  c->used += need;
  a->used_total += need;
  if (a->used_total > a->peak) a->peak = a->used_total;
  return p;
}

void *strop__arena_calloc(strop__arena *a, size_t bytes) {
  void *p = strop__arena_alloc(a, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

/* Chunks given back while the arena grows (a first step) go back to the system: glibc keeps
 * freed blocks below its adaptive mmap threshold (up to 32 MB) in its heap, where the chunks
 * allocated after them do not fit, so the step would peak at all it ever took. */
static void give_back(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static void free_chain(strop__arena_chunk *c) {
  while (c) {
    strop__arena_chunk *n = c->next;
    strop__free_aligned(c->mem);
    strop__free(c);
    c = n;
  }
}

void strop__arena_reset(strop__arena *a) {
  if (a->head && (a->head->next || a->head->cap < a->peak)) {
    /* several chunks, or one smaller than the step's peak (the chunks it grew were rolled
     * back within the step, to be grown again in the next): one chunk of the peak size */
    free_chain(a->head);
    give_back();
    a->head = chunk_new(a->peak);
  }
  if (a->head) a->head->used = 0;
  a->used_total = 0;
}

void strop__arena_destroy(strop__arena *a) {
  free_chain(a->head);
  memset(a, 0, sizeof *a);
}

strop__arena_mark strop__arena_get_mark(const strop__arena *a) {
  strop__arena_mark mk = {a->head, a->head ? a->head->used : 0, a->used_total};
  return mk;
}

void strop__arena_rollback(strop__arena *a, strop__arena_mark mark) {
  /* chunks grown since the mark hold only what is given back: they go (a step that outgrew
   * the arena, e.g. its first, then peaks at what it holds rather than at all it ever took) */
  strop__arena_chunk *c = a->head;
  while (c && c != mark.chunk) c = c->next;
  if (c != mark.chunk) return; /* a mark from before a reset */
  const int grown = a->head != mark.chunk;
  while (a->head != mark.chunk) {
    strop__arena_chunk *n = a->head->next;
    strop__free_aligned(a->head->mem);
    strop__free(a->head);
    a->head = n;
  }
  if (grown) give_back();
  if (a->head && a->head->used < mark.used) return;
  if (a->head) a->head->used = mark.used;
  a->used_total = mark.total;
}

/* ---- planned blocks ---- */

/* A block's room in a plan: rounded up to 64 bytes, and 64 for an empty one (its pointer is
 * still its own, as the arena's are). */
static size_t block_room(size_t bytes) { return bytes ? (bytes + 63) & ~(size_t)63 : 64; }

static int block_cmp(const void *pa, const void *pb) {
  const strop__arena_block *a = pa, *b = pb;
  if (a->bytes != b->bytes) return a->bytes > b->bytes ? -1 : 1;
  if (a->first != b->first) return a->first < b->first ? -1 : 1;
  return (a->id > b->id) - (a->id < b->id);
}

size_t strop__arena_plan(strop__arena_block *b, int n, int *placed) {
  if (n <= 0) return 0;
  qsort(b, (size_t)n, sizeof *b, block_cmp);
  size_t top = 0;
  int np = 0; /* placed[0..np): the blocks placed so far, by offset */
  for (int i = 0; i < n; i++) {
    const size_t need = block_room(b[i].bytes);
    size_t at = 0, best = SIZE_MAX, best_gap = SIZE_MAX;
    for (int q = 0; q < np; q++) {
      const strop__arena_block *p = &b[placed[q]];
      if (p->last < b[i].first || p->first > b[i].last) continue; /* never live together */
      const size_t gap = p->off > at ? p->off - at : 0;
      if (gap >= need && gap < best_gap) {
        best = at;
        best_gap = gap;
      }
      const size_t end = p->off + block_room(p->bytes);
      if (end > at) at = end;
    }
    b[i].off = best != SIZE_MAX ? best : at;
    if (b[i].off + need > top) top = b[i].off + need;
    int q = np++;
    while (q > 0 && b[placed[q - 1]].off > b[i].off) {
      placed[q] = placed[q - 1];
      q--;
    }
    placed[q] = i;
  }
  return top;
}
