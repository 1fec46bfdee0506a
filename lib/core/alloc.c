/* SPDX-License-Identifier: MIT */
/* strop — the single allocator. Everything allocates through here so tests can count
 * allocations (no heap use in a warm step) and make the Nth one fail (clean OOM paths). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#if defined(__GLIBC__)
#  include <malloc.h>
#  define usable_size(p) malloc_usable_size(p)
#else
#  define usable_size(p) ((size_t)0) /* no byte accounting: strop__alloc_peak() stays 0 */
#endif

static _Atomic int64_t g_count;
static _Atomic int64_t g_live;
static _Atomic int64_t g_fail_at; /* 0 = off; else countdown to the failing call */
static _Atomic int g_failed;
static _Thread_local int64_t t_fail_at; /* the same, for this thread's calls alone */
static _Atomic int64_t g_bytes;         /* usable bytes of the live allocations */
static _Atomic int64_t g_bytes_peak;    /* high-water mark of g_bytes since the last reset */

void strop__alloc_fail_at(int64_t n) {
  atomic_store(&g_fail_at, n < 0 ? 0 : n);
  atomic_store(&g_failed, 0);
}
void strop__alloc_fail_at_thread(int64_t n) {
  t_fail_at = n < 0 ? 0 : n;
  atomic_store(&g_failed, 0);
}
int64_t strop__alloc_count(void) { return atomic_load(&g_count); }
int64_t strop__alloc_live(void) { return atomic_load(&g_live); }
int strop__alloc_failed(void) { return atomic_load(&g_failed); }
int64_t strop__alloc_peak(void) { return atomic_load(&g_bytes_peak); }
void strop__alloc_peak_reset(void) { atomic_store(&g_bytes_peak, atomic_load(&g_bytes)); }

/* Books n more (or, negative, fewer) live bytes and raises the high-water mark. */
static void book(int64_t n) {
  int64_t now = atomic_fetch_add(&g_bytes, n) + n, peak = atomic_load(&g_bytes_peak);
  while (now > peak && !atomic_compare_exchange_weak(&g_bytes_peak, &peak, now)) {
  }
}

/* Returns 1 when this allocation must fail by the test hook. */
static int should_fail(void) {
  if (t_fail_at > 0 && --t_fail_at == 0) {
    atomic_store(&g_failed, 1);
    return 1;
  }
  int64_t n = atomic_load(&g_fail_at);
  if (n <= 0) return 0;
  n = atomic_fetch_sub(&g_fail_at, 1);
  if (n == 1) {
    atomic_store(&g_failed, 1);
    return 1;
  }
  return 0;
}

int strop__mul_overflow(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a) return 1;
  *out = a * b;
  return 0;
}

void *strop__malloc(size_t n) {
  if (should_fail()) return NULL;
  void *p = malloc(n ? n : 1);
  if (p) {
    atomic_fetch_add(&g_count, 1);
    atomic_fetch_add(&g_live, 1);
    book((int64_t)usable_size(p));
  }
  return p;
}

void *strop__calloc(size_t count, size_t size) {
  if (should_fail()) return NULL;
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (p) {
    atomic_fetch_add(&g_count, 1);
    atomic_fetch_add(&g_live, 1);
    book((int64_t)usable_size(p));
  }
  return p;
}

void *strop__realloc(void *p, size_t n) {
  if (!p) return strop__malloc(n);
  if (should_fail()) return NULL;
  int64_t old = (int64_t)usable_size(p);
  void *q = realloc(p, n ? n : 1);
  if (q) {
    atomic_fetch_add(&g_count, 1);
    book((int64_t)usable_size(q)); /* a moving realloc holds both blocks for a while */
    book(-old);
  }
  return q;
}

void strop__free(void *p) {
  if (!p) return;
  atomic_fetch_sub(&g_live, 1);
  book(-(int64_t)usable_size(p));
  free(p);
}

void *strop__malloc_aligned(size_t n) {
  if (should_fail()) return NULL;
  void *p = NULL;
  size_t sz = (n + 63) & ~(size_t)63;
  if (sz < n || posix_memalign(&p, 64, sz ? sz : 64) != 0) return NULL;
  atomic_fetch_add(&g_count, 1);
  atomic_fetch_add(&g_live, 1);
  book((int64_t)usable_size(p));
  return p;
}

void strop__free_aligned(void *p) { strop__free(p); }

char *strop__strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = strop__malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}
