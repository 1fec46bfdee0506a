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
#include "pool_profile.h"

#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#  define CPU_RELAX() _mm_pause()
#else
#  define CPU_RELAX() ((void)0)
#endif

enum { MAX_WORKERS = STROP__MAX_THREADS - 1 };
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
  /* workers 0 .. helpers-1 take part in this run (the run's thread count less the caller):
   * a run may have more chunks than threads, and the pool more workers than the run wants */
  _Atomic int helpers;
  struct {
    int index;     /* the worker's number */
    uint32_t seen; /* the run number current when it was started */
  } start[MAX_WORKERS];
  int profile; /* this run's chunks are timed (strop__pool_profile) */
  /* with profile: the chunks' thread CPU time (ns) and count, on the caller ([0]) and the
   * workers ([1]) */
  _Atomic int64_t work_ns[2], work_chunks[2];
} P = {.run_lock = PTHREAD_MUTEX_INITIALIZER,
       .mu = PTHREAD_MUTEX_INITIALIZER,
       .cv = PTHREAD_COND_INITIALIZER};

static _Thread_local int t_in_run;

static void chunk_range(int64_t n, int chunks, int c, int64_t *lo, int64_t *hi) {
  *lo = n * c / chunks;
  *hi = n * (c + 1) / chunks;
}

static int64_t thread_cpu_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* who: -1 on the thread that started the run, else the worker's number */
static void claim_all(uint32_t run, int who) {
  const int caller = who < 0;
  for (;;) {
    uint64_t t = atomic_load_explicit(&P.ticket, memory_order_acquire);
    if ((uint32_t)(t >> 32) != run) return;
    const uint32_t c = (uint32_t)t;
    /* a worker the run does not want stays out (a later run's count, read late, only keeps it
     * out of a run whose ticket its compare-and-swap would not match anyway) */
    if (!caller && who >= atomic_load_explicit(&P.helpers, memory_order_acquire)) return;
    /* acquire: a chunk count of the next run is only seen after this run's ticket was closed,
     * so the compare-and-swap below cannot succeed on a stale ticket */
    if (c >= (uint32_t)atomic_load_explicit(&P.chunks, memory_order_acquire)) return;
    if (!atomic_compare_exchange_weak_explicit(&P.ticket, &t, t + 1, memory_order_acq_rel,
                                               memory_order_acquire))
      continue;
    /* holding an unfinished chunk of this run: the run cannot end, its fields are stable */
    int64_t lo, hi;
    chunk_range(P.n, atomic_load_explicit(&P.chunks, memory_order_relaxed), (int)c, &lo, &hi);
    if (P.profile) {
      const int64_t t0 = thread_cpu_ns();
      P.fn(P.ctx, lo, hi, (int)c);
      atomic_fetch_add_explicit(&P.work_ns[!caller], thread_cpu_ns() - t0, memory_order_relaxed);
      atomic_fetch_add_explicit(&P.work_chunks[!caller], 1, memory_order_relaxed);
    } else {
      P.fn(P.ctx, lo, hi, (int)c);
    }
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

/* arg: its P.start entry: its number and the run number current when it was started (before
 * the run that started it was published), so a worker that starts late still joins that run */
static void *worker(void *arg) {
  t_in_run = 1; /* anything a worker calls runs serially inside it */
  const int index = ((const int *)arg)[0];
  uint32_t seen = P.start[index].seen;
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
    claim_all(g, index);
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
    P.start[P.nworkers].index = P.nworkers;
    P.start[P.nworkers].seen = run_of_ticket();
    if (pthread_create(&P.tid[P.nworkers], NULL, worker, &P.start[P.nworkers]) != 0) break;
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

/* A split-independent run may be cut into up to strop__par_for_split chunks per thread: the
 * caller and the workers claim them as they come, so a worker that arrives late (asleep after a
 * long pass, or not scheduled on a loaded machine) could still take a share instead of leaving
 * the caller to run every chunk of a short pass alone. 1 by default: 4 was no faster under load
 * (calling thread 0.989-0.997x, docs/performance.md 2026-12-05, branch tt); bench_big's
 * PAR_SPLIT=ab measures it again. */
enum { PAR_FOR_SPLIT = 1 };
int strop__par_for_split = PAR_FOR_SPLIT;
int strop__split_passes = 1;

int strop__pool_profile = 0;
double strop__pool_par_s = 0.0, strop__pool_lone_s = 0.0;
strop__pool_account strop__pool_accounts[STROP__POOL_ACCOUNTS];
int strop__pool_naccounts = 0;

static double thread_cpu_s(void) { return 1e-9 * (double)thread_cpu_ns(); }

/* w: the run's chunk CPU times (ns) and counts, on the caller and the workers (par runs) */
static void account(strop__par_fn fn, int chunks, int par, double s, const int64_t w[4]) {
  *(par ? &strop__pool_par_s : &strop__pool_lone_s) += s;
  int i = 0;
  while (i < strop__pool_naccounts && strop__pool_accounts[i].fn != fn) i++;
  if (i == STROP__POOL_ACCOUNTS) return;
  strop__pool_account *a = &strop__pool_accounts[i];
  if (i == strop__pool_naccounts) {
    *a = (strop__pool_account){.fn = fn};
    strop__pool_naccounts++;
  }
  if (chunks > a->chunks) a->chunks = chunks;
  a->runs++;
  if (par) {
    a->par_s += s;
    a->own_s += 1e-9 * (double)w[0];
    a->worker_s += 1e-9 * (double)w[1];
    a->own_chunks += w[2];
    a->worker_chunks += w[3];
  } else {
    a->lone_runs++, a->lone_s += s;
  }
}

static void par_run(int threads, int chunks, int64_t n, strop__par_fn fn, void *ctx, int *par,
                    int64_t *w);

/* a run of `chunks` chunks on at most `threads` threads (the caller and threads - 1 workers) */
static void run_on(int threads, int chunks, int64_t n, strop__par_fn fn, void *ctx) {
  static _Thread_local int depth; /* a run inside a lone run is counted in the outer one */
  int par = 0;
  if (!strop__pool_profile || t_in_run || depth) {
    par_run(threads, chunks, n, fn, ctx, &par, NULL);
    return;
  }
  int64_t w[4] = {0, 0, 0, 0};
  depth = 1;
  const double t0 = thread_cpu_s();
  par_run(threads, chunks, n, fn, ctx, &par, w);
  account(fn, chunks, par, thread_cpu_s() - t0, w);
  depth = 0;
}

void strop__par_run(int chunks, int64_t n, strop__par_fn fn, void *ctx) {
  run_on(chunks, chunks, n, fn, ctx);
}

/* *par: 1 when the run went to the workers; w (profiling, or NULL): see account */
static void par_run(int threads, int chunks, int64_t n, strop__par_fn fn, void *ctx, int *par,
                    int64_t *w) {
  *par = 0;
  if (n <= 0) return;
  if (chunks > n) chunks = (int)n;
  if (threads > chunks) threads = chunks;
  int serial = threads <= 1 || t_in_run || pthread_mutex_trylock(&P.run_lock) != 0;
  if (!serial) {
    grow(threads - 1);
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
  *par = 1;
  P.fn = fn;
  P.ctx = ctx;
  P.n = n;
  P.profile = w != NULL;
  atomic_store_explicit(&P.helpers, threads - 1 < P.nworkers ? threads - 1 : P.nworkers,
                        memory_order_relaxed);
  for (int i = 0; i < 2; i++) {
    atomic_store_explicit(&P.work_ns[i], 0, memory_order_relaxed);
    atomic_store_explicit(&P.work_chunks[i], 0, memory_order_relaxed);
  }
  atomic_store_explicit(&P.pending, chunks, memory_order_relaxed);
  atomic_store_explicit(&P.chunks, chunks, memory_order_release);
  uint32_t run = run_of_ticket() + 1;
  pthread_mutex_lock(&P.mu);
  atomic_store_explicit(&P.ticket, (uint64_t)run << 32, memory_order_release);
  pthread_cond_broadcast(&P.cv);
  pthread_mutex_unlock(&P.mu);
  t_in_run = 1;
  claim_all(run, -1);
  t_in_run = 0;
  /* the chunks still running are a worker's, already under way: spin, yielding now and then */
  for (unsigned spins = 1; atomic_load_explicit(&P.pending, memory_order_acquire) > 0; spins++) {
    CPU_RELAX();
    if ((spins & 4095) == 0) sched_yield();
  }
  if (w)
    for (int i = 0; i < 2; i++) {
      w[i] = atomic_load_explicit(&P.work_ns[i], memory_order_relaxed);
      w[2 + i] = atomic_load_explicit(&P.work_chunks[i], memory_order_relaxed);
    }
  /* close the run: a worker that loaded this run's ticket late fails its compare-and-swap
   * instead of claiming a chunk index past the end while the next run is being set up */
  atomic_store_explicit(&P.ticket, ((uint64_t)run << 32) | TICKET_CLOSED, memory_order_relaxed);
  pthread_mutex_unlock(&P.run_lock);
}

void strop__par_for(int64_t n, int64_t grain, strop__par_fn fn, void *ctx) {
  const int threads = strop__num_threads();
  if (threads <= 1) {
    strop__par_run(1, n, fn, ctx);
    return;
  }
  run_on(threads, strop__par_chunks(threads * strop__par_for_split, n, grain), n, fn, ctx);
}

void strop__par_for_pass(int64_t n, int64_t grain, strop__par_fn fn, void *ctx) {
  if (strop__split_passes) strop__par_for(n, grain, fn, ctx);
  else if (n > 0) fn(ctx, 0, n, 0);
}

static void zero_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  memset((float *)ctx + lo, 0, sizeof(float) * (size_t)(hi - lo));
}

void strop__par_zero(float *p, size_t n) { strop__par_for((int64_t)n, 65536, zero_range, p); }
