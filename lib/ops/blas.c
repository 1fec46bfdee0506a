/* SPDX-License-Identifier: MIT */
/* strop — the BLAS/LAPACK boundary: every call into OpenBLAS goes through here. */
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "core/core.h"
#include "ops/dense.h"
#include "ops/ops.h"

/* OpenBLAS's own entry points (not in every cblas.h). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

/* strop parallelises around BLAS (lib/core/pool.c) and runs every BLAS call single-threaded
 * inside its own threads: OpenBLAS's pool would oversubscribe the cores under ours, and on the
 * small per-image GEMMs of a convolution its threading costs more than it gains. But OpenBLAS's
 * thread count is one setting for the whole process (0.3.21 has no per-call or per-thread
 * form), which the host's numpy uses too: so it is 1 only while a BLAS section of strop is
 * open, and the host's own value again when the last one closes. Sections nest (a thread's
 * inner ones cost a thread-local count) and overlap across threads (the first to open saves
 * the host's value, the last to close puts it back). Setting the count is cheap once OpenBLAS
 * has started its threads: it stores a number; measured in docs/guide.md (threads). */
static pthread_mutex_t g_blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_blas_open; /* sections open, over every thread */
static int g_blas_host; /* the host's count, saved by the first of them */
static _Thread_local int t_blas_depth;

void strop__blas_enter(void) {
  if (t_blas_depth++ > 0) return;
  pthread_mutex_lock(&g_blas_mu);
  if (g_blas_open++ == 0) {
    g_blas_host = openblas_get_num_threads();
    if (g_blas_host != 1) openblas_set_num_threads(1);
  }
  pthread_mutex_unlock(&g_blas_mu);
}

void strop__blas_leave(void) {
  if (--t_blas_depth > 0) return;
  pthread_mutex_lock(&g_blas_mu);
  if (--g_blas_open == 0 && g_blas_host != 1) openblas_set_num_threads(g_blas_host);
  pthread_mutex_unlock(&g_blas_mu);
}

typedef struct gemm_job {
  int ta, tb, split_m;
  int own;  /* strop's AVX-512 kernel (gemm.c) instead of OpenBLAS */
  int gemv; /* a kernel of gemv.c (STROP__GEMV_*) for a product of few rows, or 0 */
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  const float *a, *b;
  float *c;
  int check;      /* strop__sgemm_finite: look at C's final values */
  atomic_int bad; /* ... and one of them was NaN or infinite */
} gemm_job;

enum { GEMM_BLOCK = 16 };

/* 1 when an m x n block of C (row stride ldc) holds a NaN or an infinity. */
static int block_nonfinite(const float *c, int64_t m, int64_t n, int64_t ldc) {
  for (int64_t i = 0; i < m; i++)
    if (!strop__all_finite_serial(c + i * ldc, (size_t)n)) return 1;
  return 0;
}

/* Debian 12's OpenBLAS (0.3.21) takes a work buffer of 128 MiB and a page from malloc the first
 * time a call finds none of its buffers free, and retries for ever when that fails (OpenBLAS
 * issue 5289, fixed upstream in 2025 by exiting): under a per-process limit (RLIMIT_AS, `ulimit
 * -v`; RLIMIT_DATA, `ulimit -d`) that leaves less room, a product would hang the process. So
 * until a thread has finished an OpenBLAS product (its buffer is then in OpenBLAS's table, kept
 * and reused), it first asks for the room those limits leave (strop__rlimit_room: nothing to
 * read without a limit), and where that is short of a buffer per thread of strop's pool, or
 * cannot be read, the product runs in plain C instead (blas_plain: the same products, summed in
 * k order; slower, and not OpenBLAS's rounding). */
enum { BLAS_BUFFER_ROOM = 136 << 20 };
static _Thread_local int t_blas_had_buffer;

int strop__blas_has_room(void) {
  if (t_blas_had_buffer) return 1;
  uint64_t room = 0;
  return strop__rlimit_room(&room) &&
         room >= (uint64_t)BLAS_BUFFER_ROOM * (uint64_t)strop__num_threads();
}

void strop__blas_had_buffer(void) { t_blas_had_buffer = 1; }

/* C = alpha op(A) op(B) + beta C in plain C (beta 0: C not read, as BLAS) */
static void blas_plain(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
  for (int64_t i = 0; i < m; i++) {
    float *ci = c + i * ldc;
    for (int64_t j = 0; j < n; j++) ci[j] = beta == 0.0f ? 0.0f : beta * ci[j];
    for (int64_t p = 0; p < k; p++) {
      const float aip = alpha * (ta ? a[p * lda + i] : a[i * lda + p]);
      if (tb)
        for (int64_t j = 0; j < n; j++) ci[j] += aip * b[j * ldb + p];
      else
        for (int64_t j = 0; j < n; j++) ci[j] += aip * b[p * ldb + j];
    }
  }
}

static void gemm_call(gemm_job *j, int64_t m, int64_t n, const float *a, const float *b,
                      float *c) {
  int bad = 0;
  if (j->gemv && strop__sgemv(j->gemv, j->tb, m, n, j->k, j->alpha, a, j->lda, b, j->ldb, j->beta,
                              c, j->ldc, j->check ? &bad : NULL) == 0) {
    if (bad) atomic_store(&j->bad, 1);
    return;
  }
  if (j->own && strop__sgemm_own(j->ta, j->tb, m, n, j->k, j->alpha, a, j->lda, b, j->ldb,
                                 j->beta, c, j->ldc, j->check ? &bad : NULL) == 0) {
    if (bad) atomic_store(&j->bad, 1);
    return;
  }
  if (!strop__blas_has_room()) {
    blas_plain(j->ta, j->tb, m, n, j->k, j->alpha, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
    if (j->check && block_nonfinite(c, m, n, j->ldc)) atomic_store(&j->bad, 1);
    return;
  }
  /* the own kernel could not run (no packing buffer): OpenBLAS, in a section of its own */
  const int section = j->own || j->gemv;
  if (section) strop__blas_enter();
  cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans,
              (blasint)m, (blasint)n, (blasint)j->k, j->alpha, a, (blasint)j->lda, b,
              (blasint)j->ldb, j->beta, c, (blasint)j->ldc);
  if (section) strop__blas_leave();
  strop__blas_had_buffer();
  if (j->check && block_nonfinite(c, m, n, j->ldc)) atomic_store(&j->bad, 1);
}

/* Chunk [lo, hi) of GEMM_BLOCK-wide blocks of rows of C (split_m) or of its columns. */
static void gemm_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  gemm_job *j = ctx;
  const int64_t total = j->split_m ? j->m : j->n;
  int64_t s = lo * GEMM_BLOCK, e = hi * GEMM_BLOCK;
  if (e > total) e = total;
  if (s >= e) return;
  if (j->split_m) {
    const float *a = j->ta ? j->a + s : j->a + s * j->lda;
    gemm_call(j, e - s, j->n, a, j->b, j->c + s * j->ldc);
  } else {
    const float *b = j->tb ? j->b + s * j->ldb : j->b + s;
    gemm_call(j, j->m, e - s, j->a, b, j->c + s);
  }
}

/* Below this many multiply-adds a GEMM is not worth waking a worker for. */
#define GEMM_PAR_MIN_MACS (1 << 20)
/* A product of few rows reads 4 bytes of B per multiply-add (bound by memory, not by
 * arithmetic): a worker pays for itself from a smaller size. */
#define GEMV_PAR_MIN_MACS (1 << 18)

strop__gemm_observer_fn strop__gemm_observer = NULL;

double strop__thread_cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int sgemm_run(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc, int check, int64_t m_path) {
  if (m <= 0 || n <= 0) return 1;
  if (k <= 0) {
    /* BLAS leaves C untouched for k = 0 only when beta = 1; make it explicit */
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++)
        c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return !check || !block_nonfinite(c, m, n, ldc);
  }
  const int own = strop__gemm_use_own(trans_a, trans_b, m_path, n, k);
  const int gemv = strop__gemv_pick(trans_a, m_path, own);
  gemm_job j = {.ta = trans_a,
                .tb = trans_b,
                .split_m = !gemv && n < m, /* a product of few rows: its columns */
                .own = own,
                .gemv = gemv,
                .m = m,
                .n = n,
                .k = k,
                .lda = lda,
                .ldb = ldb,
                .ldc = ldc,
                .alpha = alpha,
                .beta = beta,
                .a = a,
                .b = b,
                .c = c,
                .check = check};
  const int64_t blocks = ((j.split_m ? m : n) + GEMM_BLOCK - 1) / GEMM_BLOCK;
  const double macs = (double)m * (double)n * (double)k;
  const int threads = macs >= (gemv ? GEMV_PAR_MIN_MACS : GEMM_PAR_MIN_MACS)
                          ? strop__num_threads()
                          : 1;
  /* the own kernels never call OpenBLAS: no section to open for them */
  const int blas = !j.own && !j.gemv;
  strop__gemm_observer_fn obs = strop__gemm_observer;
  const double t0 = obs ? strop__thread_cpu_now() : 0.0;
  if (blas) strop__blas_enter();
  /* splitting rows or columns of C leaves every element's sum over k as it was */
  strop__par_run(strop__par_chunks(threads, blocks, 1), blocks, gemm_chunk, &j);
  if (blas) strop__blas_leave();
  if (obs) obs(trans_a, trans_b, m, n, k, alpha, gemv ? 2 : own, strop__thread_cpu_now() - t0);
  return !atomic_load(&j.bad);
}

void strop__sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc) {
  (void)sgemm_run(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0, m);
}

void strop__sgemm_rows(int64_t m_all, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc) {
  (void)sgemm_run(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0, m_all);
}

int strop__sgemm_finite(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc) {
  return sgemm_run(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 1, m);
}
