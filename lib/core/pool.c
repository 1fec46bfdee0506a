/* SPDX-License-Identifier: MIT */
/* strop — the worker pool behind strop's own kernels. One process-wide pool of persistent
 * threads; a parallel run splits [0, n) into a fixed number of contiguous chunks, and the caller
 * and the workers claim chunks until none is left. Which thread runs a chunk does not matter:
 * a chunk's range and scratch index depend only on (n, chunks), so results do not depend on
 * timing. Runs fall back to a serial loop over the same chunks when the pool is busy (another
 * host thread is using it), when called from inside a run (nested), or when no worker could be
 * started. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core.h"

#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#  define CPU_RELAX() _mm_pause()
#else
#  define CPU_RELAX() ((void)0)
#endif

enum { MAX_WORKERS = 63 };
#define TICKET_CLOSED 0xffffffffu
/* How long an idle worker spins before it sleeps: a training step's parallel runs are a few
 * hundred microseconds apart, and waking a sleeping thread costs tens of microseconds. */
#define SPIN_NS 1000000L

static struct {
  pthread_mutex_t run_lock; /* one run at a time; others go serial */
  pthread_mutex_t mu;       /* with cv: sleeping workers */
  pthread_cond_t cv;
  pthread_t tid[MAX_WORKERS];
  int nworkers;
  int stop;
  int atfork_done;
  /* run number (high 32 bits) and next chunk to claim (low 32): a worker that wakes late
   * cannot claim a chunk of a later run, because its compare-and-swap names the run */
  _Atomic uint64_t ticket;
  _Atomic int pending; /* chunks not yet finished */
  strop__par_fn fn;
  void *ctx;
  int64_t n;
  _Atomic int chunks;
} P = {.run_lock = PTHREAD_MUTEX_INITIALIZER,
       .mu = PTHREAD_MUTEX_INITIALIZER,
       .cv = PTHREAD_COND_INITIALIZER};

static _Thread_local int t_in_run;

static void chunk_range(int64_t n, int chunks, int c, int64_t *lo, int64_t *hi) {
  *lo = n * c / chunks;
  *hi = n * (c + 1) / chunks;
}

static void claim_all(uint32_t run) {
  for (;;) {
    uint64_t t = atomic_load_explicit(&P.ticket, memory_order_acquire);
    if ((uint32_t)(t >> 32) != run) return;
    const uint32_t c = (uint32_t)t;
    /* acquire: a chunk count of the next run is only seen after this run's ticket was closed,
     * so the compare-and-swap below cannot succeed on a stale ticket */
    if (c >= (uint32_t)atomic_load_explicit(&P.chunks, memory_order_acquire)) return;
    if (!atomic_compare_exchange_weak_explicit(&P.ticket, &t, t + 1, memory_order_acq_rel,
                                               memory_order_acquire))
      continue;
    /* holding an unfinished chunk of this run: the run cannot end, its fields are stable */
    int64_t lo, hi;
    chunk_range(P.n, atomic_load_explicit(&P.chunks, memory_order_relaxed), (int)c, &lo, &hi);
    P.fn(P.ctx, lo, hi, (int)c);
    atomic_fetch_sub_explicit(&P.pending, 1, memory_order_acq_rel);
  }
}

static long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

static uint32_t run_of_ticket(void) {
  return (uint32_t)(atomic_load_explicit(&P.ticket, memory_order_acquire) >> 32);
}

/* arg: the run number current when the worker was started (before the run that started it
 * was published), so a worker that starts late still joins that run */
static void *worker(void *arg) {
  t_in_run = 1; /* anything a worker calls runs serially inside it */
  uint32_t seen = (uint32_t)(uintptr_t)arg;
  for (;;) {
    uint32_t g;
    long start = now_ns();
    for (unsigned spins = 1; (g = run_of_ticket()) == seen; spins++) {
      CPU_RELAX();
      if ((spins & 255) == 0 && now_ns() - start > SPIN_NS) break;
    }
    if (g == seen) {
      pthread_mutex_lock(&P.mu);
      while ((g = run_of_ticket()) == seen && !P.stop) pthread_cond_wait(&P.cv, &P.mu);
      int stop = P.stop;
      pthread_mutex_unlock(&P.mu);
      if (stop) return NULL;
    }
    seen = g;
    claim_all(g);
  }
}

static void join_workers(void) {
  pthread_mutex_lock(&P.mu);
  P.stop = 1;
  pthread_cond_broadcast(&P.cv);
  pthread_mutex_unlock(&P.mu);
  for (int i = 0; i < P.nworkers; i++) pthread_join(P.tid[i], NULL);
  P.nworkers = 0;
  P.stop = 0;
}

/* The child of a fork has none of the parent's workers: start afresh. */
static void atfork_child(void) {
  pthread_mutex_init(&P.run_lock, NULL);
  pthread_mutex_init(&P.mu, NULL);
  pthread_cond_init(&P.cv, NULL);
  P.nworkers = 0;
  P.stop = 0;
}

/* Joined when the library is unloaded or the process exits, so no worker runs unmapped code. */
__attribute__((destructor)) static void pool_fini(void) {
  if (pthread_mutex_trylock(&P.run_lock) != 0) return; /* a run is live: leave it alone */
  join_workers();
  pthread_mutex_unlock(&P.run_lock);
}

/* Called with run_lock held. */
static void grow(int want) {
  if (want > MAX_WORKERS) want = MAX_WORKERS;
  if (!P.atfork_done) {
    pthread_atfork(NULL, NULL, atfork_child);
    P.atfork_done = 1;
  }
  while (P.nworkers < want) {
    void *seen = (void *)(uintptr_t)run_of_ticket();
    if (pthread_create(&P.tid[P.nworkers], NULL, worker, seen) != 0) break;
    P.nworkers++;
  }
}

int strop__par_chunks(int nthreads, int64_t n, int64_t grain) {
  if (grain < 1) grain = 1;
  int64_t c = n / grain;
  if (c > nthreads) c = nthreads;
  if (c > MAX_WORKERS + 1) c = MAX_WORKERS + 1;
  return c < 1 ? 1 : (int)c;
}

void strop__par_run(int chunks, int64_t n, strop__par_fn fn, void *ctx) {
  if (n <= 0) return;
  if (chunks > n) chunks = (int)n;
  int serial = chunks <= 1 || t_in_run || pthread_mutex_trylock(&P.run_lock) != 0;
  if (!serial) {
    grow(chunks - 1);
    if (P.nworkers == 0) {
      pthread_mutex_unlock(&P.run_lock);
      serial = 1;
    }
  }
  if (serial) {
    for (int c = 0; c < (chunks < 1 ? 1 : chunks); c++) {
      int64_t lo, hi;
      chunk_range(n, chunks < 1 ? 1 : chunks, c, &lo, &hi);
      fn(ctx, lo, hi, c);
    }
    return;
  }
  P.fn = fn;
  P.ctx = ctx;
  P.n = n;
  atomic_store_explicit(&P.pending, chunks, memory_order_relaxed);
  atomic_store_explicit(&P.chunks, chunks, memory_order_release);
  uint32_t run = run_of_ticket() + 1;
  pthread_mutex_lock(&P.mu);
  atomic_store_explicit(&P.ticket, (uint64_t)run << 32, memory_order_release);
  pthread_cond_broadcast(&P.cv);
  pthread_mutex_unlock(&P.mu);
  t_in_run = 1;
  claim_all(run);
  t_in_run = 0;
  /* the chunks still running are a worker's, already under way: spin, yielding now and then */
  for (unsigned spins = 1; atomic_load_explicit(&P.pending, memory_order_acquire) > 0; spins++) {
    CPU_RELAX();
    if ((spins & 4095) == 0) sched_yield();
  }
  /* close the run: a worker that loaded this run's ticket late fails its compare-and-swap
   * instead of claiming a chunk index past the end while the next run is being set up */
  atomic_store_explicit(&P.ticket, ((uint64_t)run << 32) | TICKET_CLOSED, memory_order_relaxed);
  pthread_mutex_unlock(&P.run_lock);
}

void strop__par_for(int64_t n, int64_t grain, strop__par_fn fn, void *ctx) {
  strop__par_run(strop__par_chunks(strop__num_threads(), n, grain), n, fn, ctx);
}

static void zero_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  memset((float *)ctx + lo, 0, sizeof(float) * (size_t)(hi - lo));
}

void strop__par_zero(float *p, size_t n) { strop__par_for((int64_t)n, 65536, zero_range, p); }
