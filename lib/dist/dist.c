/* SPDX-License-Identifier: MIT */
/* strop — the group handle: a host's collectives or MPI's (mpi.c) behind one vtable, and the
 * identity for a lone process, so the trainer calls the same code with or without a group. */
#include <string.h>

#include "core/core.h"
#include "dist/dist_impl.h"

void strop_dist_ops_init(strop_dist_ops *ops) {
  if (!ops) return;
  memset(ops, 0, sizeof *ops);
  ops->size = sizeof *ops;
}

strop_status strop_dist_custom(const strop_dist_ops *ops, void *ctx, strop_dist **out) {
  static const char fn[] = "strop_dist_custom";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!ops) return strop__err(STROP_E_INVALID_ARG, "%s: ops is NULL", fn);
  strop_dist_ops o;
  strop_dist_ops_init(&o);
  strop_status s = strop__options_in(fn, "strop_dist_ops_init", &o, sizeof o, ops);
  if (s) return s;
  const char *missing = !o.rank                   ? "rank"
                        : !o.world_size           ? "world_size"
                        : !o.allreduce_sum_float  ? "allreduce_sum_float"
                        : !o.allreduce_sum_double ? "allreduce_sum_double"
                        : !o.broadcast            ? "broadcast"
                        : !o.barrier              ? "barrier"
                                                  : NULL;
  if (missing) return strop__err(STROP_E_INVALID_ARG, "%s: ops->%s is NULL", fn, missing);
  if (!o.iallreduce_sum_float != !o.wait)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: ops->%s is given but ops->%s is NULL; the asynchronous sum needs "
                      "both (or neither: then the blocking allreduce_sum_float is used)",
                      fn, o.wait ? "wait" : "iallreduce_sum_float",
                      o.wait ? "iallreduce_sum_float" : "wait");
  int rank = o.rank(ctx), size = o.world_size(ctx);
  if (size < 1 || rank < 0 || rank >= size)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: ops report rank %d of %d ranks; a rank is in "
                      "[0, size) and size >= 1",
                      fn, rank, size);
  strop_dist *d = strop__calloc(1, sizeof *d);
  if (!d) return STROP__NOMEM(fn);
  d->ops = o;
  d->ctx = ctx;
  d->rank = rank;
  d->size = size;
  d->fail_status = STROP_E_CALLBACK;
  d->kind = "custom";
  *out = d;
  return STROP_OK;
}

strop_status strop_dist_init_mpi(void *mpi_comm, strop_dist **out) {
  static const char fn[] = "strop_dist_init_mpi";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  strop_dist *d = strop__calloc(1, sizeof *d);
  if (!d) return STROP__NOMEM(fn);
  strop_dist_ops_init(&d->ops);
  d->fail_status = STROP_E_IO;
  d->kind = "MPI";
  strop_status s = strop__dist_mpi_open(mpi_comm, d);
  if (s) {
    strop__free(d);
    return s;
  }
  *out = d;
  return STROP_OK;
}

int strop_dist_rank(const strop_dist *d) { return d ? d->rank : 0; }
int strop_dist_size(const strop_dist *d) { return d ? d->size : 1; }

void strop_dist_free(strop_dist *d) {
  if (!d) return;
  if (d->ops.destroy) d->ops.destroy(d->ctx);
  strop__free(d);
}

static strop_status failed(const strop_dist *d, const char *fn, const char *what) {
  return strop__err(d->fail_status,
                    "%s: rank %d of %d: the %s %s failed; the other ranks "
                    "cannot go on with this step either",
                    fn, d->rank, d->size, d->kind, what);
}

strop_status strop_dist_barrier(strop_dist *d) {
  static const char fn[] = "strop_dist_barrier";
  if (!d) return strop__err(STROP_E_INVALID_ARG, "%s: d is NULL", fn);
  return d->ops.barrier(d->ctx) ? failed(d, fn, "barrier") : STROP_OK;
}

strop_status strop_dist_abort(strop_dist *d, int code) {
  static const char fn[] = "strop_dist_abort";
  if (!d) return strop__err(STROP_E_INVALID_ARG, "%s: d is NULL", fn);
  if (!d->ops.abort_all)
    return strop__err(STROP_E_UNSUPPORTED, "%s: this %s group offers no abort_all", fn, d->kind);
  d->ops.abort_all(d->ctx, code);
  return strop__err(STROP_E_INTERNAL, "%s: abort_all returned", fn);
}

strop_status strop__dist_sum_float(strop_dist *d, const char *fn, float *v, int64_t n) {
  if (!d || d->size == 1 || n == 0) return STROP_OK;
  return d->ops.allreduce_sum_float(d->ctx, v, n) ? failed(d, fn, "all-reduce") : STROP_OK;
}

strop_status strop__dist_sum_double(strop_dist *d, const char *fn, double *v, int64_t n) {
  if (!d || d->size == 1 || n == 0) return STROP_OK;
  return d->ops.allreduce_sum_double(d->ctx, v, n) ? failed(d, fn, "all-reduce") : STROP_OK;
}

strop_status strop__dist_bcast(strop_dist *d, const char *fn, void *v, size_t bytes, int root) {
  if (!d || d->size == 1 || bytes == 0) return STROP_OK;
  return d->ops.broadcast(d->ctx, v, bytes, root) ? failed(d, fn, "broadcast") : STROP_OK;
}

int strop__dist_async(const strop_dist *d) {
  return d && d->size > 1 && d->ops.iallreduce_sum_float && d->ops.wait;
}

strop_status strop__dist_isum_float(strop_dist *d, const char *fn, float *v, int64_t n,
                                    void **req) {
  *req = NULL;
  return d->ops.iallreduce_sum_float(d->ctx, v, n, req) ? failed(d, fn, "all-reduce (started)")
                                                        : STROP_OK;
}

strop_status strop__dist_test(strop_dist *d, const char *fn, void *req, int *done) {
  *done = !req;
  if (!req || !d->ops.test) return STROP_OK;
  return d->ops.test(d->ctx, req, done) ? failed(d, fn, "all-reduce (test)") : STROP_OK;
}

strop_status strop__dist_wait(strop_dist *d, const char *fn, void *req) {
  if (!req) return STROP_OK;
  return d->ops.wait(d->ctx, req) ? failed(d, fn, "all-reduce (wait)") : STROP_OK;
}

strop_status strop__dist_agree(strop_dist *d, const char *fn, strop_status st, const char *what) {
  if (!d || d->size == 1) return st;
  double failed_ranks = st != STROP_OK;
  strop_status s = strop__dist_sum_double(d, fn, &failed_ranks, 1);
  if (st) return st;
  if (s) return s;
  if (failed_ranks > 0)
    return strop__err(STROP_E_IO, "%s: %s failed on %g of %d ranks; rank %d stops with %s", fn,
                      what, failed_ranks, d->size, d->rank, failed_ranks > 1 ? "them" : "it");
  return STROP_OK;
}

void strop__dist_share(const strop_dist *d, int64_t n, int64_t *off, int64_t *cnt) {
  strop__dist_share_of(d, d ? d->rank : 0, n, off, cnt);
}

void strop__dist_share_of(const strop_dist *d, int rank, int64_t n, int64_t *off, int64_t *cnt) {
  int64_t r = rank, p = d ? d->size : 1;
  if (n >= 2 * p || n < 2) { /* every share has 2 rows or more (or rank 0 has the only one) */
    int64_t q = n / p, extra = n % p;
    *off = r * q + (r < extra ? r : extra);
    *cnt = q + (r < extra);
    return;
  }
  /* a small batch: pairs (the last rank with rows takes the odd one), never a share of one
   * row, which a batch-statistics layer could not normalise though the whole batch could be */
  int64_t pairs = n / 2;
  *off = r < pairs ? 2 * r : n;
  *cnt = r < pairs ? 2 + (r == pairs - 1 ? n % 2 : 0) : 0;
}
