/* SPDX-License-Identifier: MIT */
/* strop — private core services shared by every module: the one allocator (with a
 * test hook that fails the Nth allocation), error sentences, logging and the RNG. */
#ifndef STROP_CORE_H
#define STROP_CORE_H

#define STROP_BUILDING 1
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "strop/error.h"
#include "strop/runtime.h"
#include "strop/tensor.h"

#if defined(__GNUC__)
#  define STROP__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define STROP__PRINTF(a, b)
#endif

/* ---- allocation: every heap allocation of the library goes through these ---- */
void *strop__malloc(size_t n);
void *strop__calloc(size_t count, size_t size);
void *strop__realloc(void *p, size_t n);
void strop__free(void *p);
char *strop__strdup(const char *s);
/* Aligned to 64 bytes (for kernels); free with strop__free_aligned. */
void *strop__malloc_aligned(size_t n);
void strop__free_aligned(void *p);

/* Test hooks. Fail the nth allocation from now on (1 = the next one); 0 switches off.
 * Allocation and live counts let tests see leaks and allocation-free steps. */
void strop__alloc_fail_at(int64_t n);
/* The same for the calling thread's allocations only (0: off): a test whose threads play the
 * ranks of a group fails one rank's Nth allocation, whatever the others allocate. */
void strop__alloc_fail_at_thread(int64_t n);
int64_t strop__alloc_count(void); /* allocations made since start */
int64_t strop__alloc_live(void);  /* allocations not yet freed */
int strop__alloc_failed(void);    /* 1 once the planned failure has happened */
/* Bytes: the most that was live at once since strop__alloc_peak_reset() (which starts the
 * mark at what is live now), so a test can bound what an operation takes. */
int64_t strop__alloc_peak(void);
void strop__alloc_peak_reset(void);

/* size_t arithmetic that reports overflow (returns 1 on overflow). */
int strop__mul_overflow(size_t a, size_t b, size_t *out);

/* ---- UTF-8 (utf8.c) ---- */
/* Length of the UTF-8 sequence at s (n >= 1 bytes available), or 0 if it is invalid. */
size_t strop__utf8_seq(const unsigned char *s, size_t n);
/* 1 if s[0..n) is valid UTF-8 (no overlongs, surrogates or values above U+10FFFF). */
int strop__utf8_valid(const char *s, size_t n);

/* ---- files ---- */
/* Opens path for reading when it is a regular file (without waiting on a FIFO or device);
 * *size_out (may be NULL) gets its size. Errors name fn and the path: STROP_E_IO. */
strop_status strop__open_input(const char *fn, const char *path, int *fd_out, size_t *size_out);
/* Reads a whole (small) file into a NUL-terminated strop__malloc'd buffer, at most max bytes
 * (a larger file is STROP_E_FORMAT naming its size and the limit). The one whole-file reader. */
strop_status strop__read_file(const char *fn, const char *path, size_t max, char **out,
                              size_t *len_out);

/* ---- memory-mapped files shared with parameters (mapping.c) ---- */
/* A read-only mapping of a whole file, unmapped when its last reference goes: a safetensors
 * reader holds one, and so does every frozen parameter whose values point into it (a weight
 * borrowed from its file instead of copied). Never written through: a parameter that is about
 * to change copies its values out first (strop__param_own). The same holds for a frozen
 * parameter's own memory shared by a model and the clone a surgery plan runs on (heap 1:
 * freed, not unmapped, with the last reference), so the plan does not copy the frozen base. */
typedef struct strop__mapping {
  const void *base;
  size_t size;
  _Atomic long refs;
  int heap;  /* 1: base (strop__malloc_aligned) and aux (strop__malloc, or NULL) are heap
                memory, strop__mapping_share's */
  void *aux; /* heap: a second block freed with base (an int8 weight's scales) */
} strop__mapping;
/* Takes over base (munmap'd with the last reference), refs 1; NULL when out of memory (base
 * is then left mapped: the caller unmaps it). */
strop__mapping *strop__mapping_new(const void *base, size_t size);
/* Shares a parameter's own memory: values (strop__malloc_aligned) and aux (strop__malloc, or
 * NULL) are freed with the last reference; refs 1; NULL when out of memory (nothing taken). */
strop__mapping *strop__mapping_share(void *values, void *aux);
strop__mapping *strop__mapping_ref(strop__mapping *m);
void strop__mapping_unref(strop__mapping *m); /* NULL: a no-op */
/* 1 when m maps a file (its pages are the page cache's), 0 for shared heap memory or NULL. */
int strop__mapping_is_file(const strop__mapping *m);
/* Hands the whole pages inside [p, p + bytes) of a private read-only file mapping back to the
 * kernel (madvise MADV_DONTNEED): a later read faults them in again from the page cache, the
 * same bytes. Returns the bytes handed back (0 when none, or when madvise refuses). */
size_t strop__mapping_drop_pages(const void *p, size_t bytes);
/* Shared heap memory with no other reference: frees m alone, so that its memory is its holder's
 * own again, and returns 1. Otherwise (a file, or still shared) 0, nothing changed. */
int strop__mapping_unshare(strop__mapping *m);
/* Bytes of parameter values borrowed from mappings and bytes copied out of them since the
 * process started (tests read them to see that a frozen base is not copied). */
int64_t strop__mapping_borrowed_bytes(void);
int64_t strop__mapping_copied_bytes(void);
void strop__mapping_count(int64_t borrowed, int64_t copied);

/* ---- errors ---- */
/* Sets the thread's error sentence and returns status, so: return strop__err(...). */
strop_status strop__err(strop_status status, const char *fmt, ...) STROP__PRINTF(2, 3);
strop_status strop__verr(strop_status status, const char *fmt, va_list ap);
/* Prefixes the current sentence with "prefix: " (adds context on the way out). */
void strop__err_prefix(const char *fmt, ...) STROP__PRINTF(1, 2);
/* Out of memory, with the function name. */
#define STROP__NOMEM(fn) strop__err(STROP_E_NOMEM, "%s: out of memory", (fn))

/* Copies s into the caller's buf of cap bytes snprintf-style (truncated, NUL-terminated when
 * cap > 0) and returns strlen(s): the "strings out" rule of the public API. A NULL buf with
 * cap > 0 is refused: -1 and an error naming fn. */
int64_t strop__copy_out(const char *fn, const char *s, char *buf, size_t cap);

/* Copies a caller's size-versioned options struct src (its first member is its size_t size)
 * into dst, which the struct's _init already filled: only the bytes src's size covers, so an
 * older, shorter struct keeps the newer fields' defaults; dst's size field is set to
 * dst_size. src NULL leaves dst as it is. A size too small to hold the size field is
 * STROP_E_INVALID_ARG naming fn and the init function to call. */
strop_status strop__options_in(const char *fn, const char *init_fn, void *dst, size_t dst_size,
                               const void *src);

/* ---- glob patterns over names (glob.c) ---- */
/* fnmatch-like over whole names: '*' any run of characters (dots included), '?' one
 * character, "[0-3]" / "[!ab]" a class, '\' escapes. 1 on a match. */
int strop__glob_match(const char *pat, const char *s);
/* 1 if pat has any of * ? [ (so it is a pattern, not an exact name) */
int strop__glob_is_pattern(const char *pat);

/* ---- logging ---- */
void strop__log(int level, const char *fmt, ...) STROP__PRINTF(2, 3);

/* ---- random numbers: PCG32 (O'Neill), portable and serialisable ---- */
typedef struct strop__rng {
  uint64_t state;
  uint64_t inc;
} strop__rng;
void strop__rng_seed(strop__rng *r, uint64_t seed, uint64_t stream);
uint32_t strop__rng_u32(strop__rng *r);
/* the state delta draws of strop__rng_u32 later, in O(log delta) steps (a data-parallel rank
 * skips the draws of the other ranks' rows) */
void strop__rng_advance(strop__rng *r, uint64_t delta);
/* hash.c: a seeded 64-bit hash of n bytes (keys and checksums that detect change and
 * corruption, not attacks), and a 128-bit key k (two lanes of it, seeded apart) updated with
 * n more bytes */
uint64_t strop__hash64(const void *p, size_t n, uint64_t seed);
void strop__hash128_mix(uint64_t k[2], const void *p, size_t n);
/* uniform in [0,1) with 24 random bits */
float strop__rng_uniform(strop__rng *r);
/* standard normal (Box-Muller, one value per call; double inside) */
float strop__rng_normal(strop__rng *r);
/* uniform integer in [0, n) without bias; n >= 1 */
uint64_t strop__rng_below(strop__rng *r, uint64_t n);
void strop__rng_permutation(strop__rng *r, int64_t n, int64_t *out);

/* ---- threads ---- */
int strop__num_threads(void);
/* The most threads strop runs (its pool's workers and the caller): a larger setting or CPU
 * count is taken as this, so per-thread buffers stay bounded. */
enum { STROP__MAX_THREADS = 64 };

/* The worker pool (pool.c). A parallel run splits [0, n) into `chunks` contiguous ranges,
 * chunk c = [n c / chunks, n (c + 1) / chunks), and calls fn(ctx, lo, hi, c) once per chunk on
 * the caller and the pool's workers. The split depends only on (n, chunks), so per-chunk
 * scratch indexed by c and a reduction in chunk order give the same numbers whichever thread
 * ran what. Nested runs, runs while another host thread holds the pool, and runs whose workers
 * could not be started go serially over the same chunks. fn must not fail: kernels only. */
typedef void (*strop__par_fn)(void *ctx, int64_t lo, int64_t hi, int chunk);
/* min(nthreads, n / grain), at least 1: how many chunks a run over n items should use. */
int strop__par_chunks(int nthreads, int64_t n, int64_t grain);
void strop__par_run(int chunks, int64_t n, strop__par_fn fn, void *ctx);
/* strop__par_run with strop__par_chunks(strop__num_threads(), n, grain): for work whose
 * result does not depend on the split (elementwise maps, disjoint writes). */
void strop__par_for(int64_t n, int64_t grain, strop__par_fn fn, void *ctx);
/* Zeroes n floats, split across threads when n is large. */
void strop__par_zero(float *p, size_t n);

/* ---- the machine's memory limits (memlimit.c) ---- */
/* strop_memory_available with the proc and cgroup file systems under `proc` and `sys`
 * ("/proc", "/sys/fs/cgroup"; tests point them at fixtures); source as there. */
/* The least room RLIMIT_AS and RLIMIT_DATA leave this process (limit less VmSize / VmData):
 * 1 with *room (UINT64_MAX when neither is set); 0 when one is set and what the process has
 * taken of it cannot be read (near such a limit, reading may itself fail to allocate). */
int strop__rlimit_room(uint64_t *room);
strop_status strop__memory_available_at(const char *proc, const char *sys, size_t *bytes,
                                        char *source, size_t cap);

#endif
