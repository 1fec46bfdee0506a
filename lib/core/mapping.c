/* SPDX-License-Identifier: MIT */
/* strop — reference-counted read-only file mappings: a safetensors reader and the frozen
 * parameters that borrow their values from it share one mapping, unmapped with the last; and
 * frozen parameters' own memory shared the same way by a model and a surgery plan's clone. */
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core.h"

static _Atomic int64_t borrowed_bytes, copied_bytes;

strop__mapping *strop__mapping_new(const void *base, size_t size) {
  strop__mapping *m = strop__malloc(sizeof *m);
  if (!m) return NULL;
  m->base = base;
  m->size = size;
  m->heap = 0;
  m->aux = NULL;
  atomic_init(&m->refs, 1);
  return m;
}

strop__mapping *strop__mapping_share(void *values, void *aux) {
  strop__mapping *m = strop__mapping_new(values, 0);
  if (!m) return NULL;
  m->heap = 1;
  m->aux = aux;
  return m;
}

int strop__mapping_is_file(const strop__mapping *m) { return m && !m->heap; }

size_t strop__mapping_drop_pages(const void *p, size_t bytes) {
  const long pg = sysconf(_SC_PAGESIZE);
  if (!p || pg <= 0) return 0;
  const uintptr_t mask = (uintptr_t)pg - 1;
  const uintptr_t a = ((uintptr_t)p + mask) & ~mask, e = ((uintptr_t)p + bytes) & ~mask;
  if (e <= a || madvise((void *)a, e - a, MADV_DONTNEED)) return 0;
  return e - a;
}

int strop__mapping_unshare(strop__mapping *m) {
  /* one reference: no other holder can take one meanwhile (a model is used by one thread) */
  if (!m || !m->heap || atomic_load(&m->refs) != 1) return 0;
  strop__free(m);
  return 1;
}

strop__mapping *strop__mapping_ref(strop__mapping *m) {
  if (m) atomic_fetch_add(&m->refs, 1);
  return m;
}

void strop__mapping_unref(strop__mapping *m) {
  if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
  if (m->heap) {
    strop__free_aligned((void *)m->base);
    strop__free(m->aux);
  } else if (m->base) {
    munmap((void *)m->base, m->size);
  }
  strop__free(m);
}

int64_t strop__mapping_borrowed_bytes(void) { return atomic_load(&borrowed_bytes); }
int64_t strop__mapping_copied_bytes(void) { return atomic_load(&copied_bytes); }

void strop__mapping_count(int64_t borrowed, int64_t copied) {
  atomic_fetch_add(&borrowed_bytes, borrowed);
  atomic_fetch_add(&copied_bytes, copied);
}
