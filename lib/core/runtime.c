/* SPDX-License-Identifier: MIT */
/* strop — version and process-wide thread settings. */
#include <stdatomic.h>
#include <unistd.h>

#include "core.h"
#include "strop/version.h"

#define STR2(x) #x
#define STR(x) STR2(x)

const char *strop_version(void) {
  return STR(STROP_VERSION_MAJOR) "." STR(STROP_VERSION_MINOR) "." STR(STROP_VERSION_PATCH);
}
int strop_version_number(void) { return STROP_VERSION_NUMBER; }

static _Atomic int g_threads;

static int default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > STROP__MAX_THREADS ? STROP__MAX_THREADS : (int)n;
}

strop_status strop_set_num_threads(int n) {
  if (n < 0)
    return strop__err(STROP_E_INVALID_ARG, "strop_set_num_threads: n must be >= 0, got %d", n);
  if (n == 0) n = default_threads();
  /* the pool runs at most STROP__MAX_THREADS; a larger count only grew per-thread buffers
   * (INT_MAX threads took every byte a GEMM could allocate) */
  if (n > STROP__MAX_THREADS) n = STROP__MAX_THREADS;
  atomic_store(&g_threads, n); /* BLAS itself runs single-threaded inside (ops/blas.c) */
  return STROP_OK;
}

int strop_get_num_threads(void) { return strop__num_threads(); }

int strop__num_threads(void) {
  int n = atomic_load(&g_threads);
  return n > 0 ? n : default_threads();
}
