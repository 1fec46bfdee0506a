/* SPDX-License-Identifier: MIT */
/* strop — the collective interface the trainer uses: a group handle over a small vtable
 * (MPI, a host's own, or none: a lone process whose collectives are the identity). */
#ifndef STROP_DIST_IMPL_H
#define STROP_DIST_IMPL_H

#include "strop/dist.h"

struct strop_dist {
  strop_dist_ops ops;
  void *ctx;
  int rank, size;
  strop_status fail_status; /* what a failed callback becomes: STROP_E_IO (MPI), _CALLBACK */
  const char *kind;         /* "MPI" or "custom", for error sentences */
};

/* The collectives, named by fn in errors. d NULL is one process: the identity. */
strop_status strop__dist_sum_float(strop_dist *d, const char *fn, float *v, int64_t n);
strop_status strop__dist_sum_double(strop_dist *d, const char *fn, double *v, int64_t n);
strop_status strop__dist_bcast(strop_dist *d, const char *fn, void *v, size_t bytes, int root);

/* The asynchronous sum (the ops' iallreduce_sum_float, test and wait): 1 when d offers it and
 * has more than one rank. start sets *req (NULL: done already); every started sum is waited
 * for exactly once, in any order; test only lets it progress (*done: 1 once it completed). */
int strop__dist_async(const strop_dist *d);
strop_status strop__dist_isum_float(strop_dist *d, const char *fn, float *v, int64_t n,
                                    void **req);
strop_status strop__dist_test(strop_dist *d, const char *fn, void *req, int *done);
strop_status strop__dist_wait(strop_dist *d, const char *fn, void *req);

/* The ranks agree on whether a step that only some of them ran (rank 0 writing a file) went
 * well: st is this rank's outcome; returns st where it failed, STROP_E_IO saying how many
 * ranks failed elsewhere, or the collective's failure. With d NULL: st. */
strop_status strop__dist_agree(strop_dist *d, const char *fn, strop_status st, const char *what);

/* Rows [*off, *off + *cnt) of a batch of n rows that rank takes: contiguous, rank 0 first (so
 * the ranks' rows in order are the batch); sizes differ by at most one when n >= 2 x ranks,
 * else shares of 2 rows (3 for the last) and empty ones: never 1 row of a larger batch. */
void strop__dist_share(const strop_dist *d, int64_t n, int64_t *off, int64_t *cnt);
/* The same for rank (of d's ranks). */
void strop__dist_share_of(const strop_dist *d, int rank, int64_t n, int64_t *off, int64_t *cnt);

/* The MPI implementation (mpi.c): fills d's ops, ctx, rank and size. */
strop_status strop__dist_mpi_open(void *comm, strop_dist *d);

#endif
