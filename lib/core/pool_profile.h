/* SPDX-License-Identifier: MIT */
/* strop — the worker pool's account for benchmarks (pool.c): where a step's calling thread
 * spends its CPU time, in runs split over the workers, in runs alone, or outside any run. */
#ifndef STROP_CORE_POOL_PROFILE_H
#define STROP_CORE_POOL_PROFILE_H

#include "core/core.h"

/* Benchmarks' account of where a step's calling thread runs (off: 0, the default; reading the
 * thread's CPU clock costs a system call per run): with strop__pool_profile set, every run a
 * host thread starts adds its CPU time in the run to par_s when it went to the workers (more
 * than one chunk, the pool free), else to lone_s (one chunk, or the pool busy or nested), and
 * the run's callback to the table below. The rest of that thread's CPU time is outside any run:
 * the passes nobody split. One thread profiles at a time. */
typedef struct strop__pool_account {
  strop__par_fn fn;
  int chunks; /* the largest chunk count seen */
  int64_t runs, lone_runs;
  double par_s, lone_s; /* the caller's CPU time in this fn's runs, split / alone */
  /* in the split runs: the chunks' CPU time and count on the caller and on the workers (the
   * caller's par_s less own_s is its wait for the workers) */
  double own_s, worker_s;
  int64_t own_chunks, worker_chunks;
} strop__pool_account;
enum { STROP__POOL_ACCOUNTS = 128 };
/* chunks per thread of a strop__par_for run at most (1, the default: one chunk per thread; 4
 * was tried): bench_big's PAR_SPLIT=ab switch */
extern int strop__par_for_split;
/* 1 (the default): the passes branch tt split over the threads (a linear's bias rows and bias
 * gradient, layer norm's parameter gradients, the BF16 weight panels of 768-wide outputs, the
 * gated MLP's SiLU gate forward and backward) run split; 0: on the calling thread, as before 2026-12-05 — the same bits; bench_big's
 * SPLIT_PASSES=ab switch */
extern int strop__split_passes;
/* One of those passes: strop__par_for with strop__split_passes, else fn over [0, n) on the
 * calling thread (chunk 0). */
void strop__par_for_pass(int64_t n, int64_t grain, strop__par_fn fn, void *ctx);
extern int strop__pool_profile;
extern double strop__pool_par_s, strop__pool_lone_s;
extern strop__pool_account strop__pool_accounts[STROP__POOL_ACCOUNTS];
extern int strop__pool_naccounts;

#endif
