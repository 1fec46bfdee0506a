/* SPDX-License-Identifier: MIT */
/* strop — the collective interface over MPI (built with -DSTROP_WITH_MPI=ON): a duplicated
 * communicator with MPI_ERRORS_RETURN, so a failed collective is a status the trainer returns. */
#include "core/core.h"
#include "dist/dist_impl.h"

#ifndef STROP_WITH_MPI

strop_status strop__dist_mpi_open(void *comm, strop_dist *d) {
  (void)comm;
  (void)d;
  return strop__err(STROP_E_UNSUPPORTED,
                    "strop_dist_init_mpi: this libstrop was built without "
                    "MPI; configure it with -DSTROP_WITH_MPI=ON (Debian: libopenmpi-dev)");
}

#else

#  include <limits.h>
#  include <mpi.h>
#  include <stdint.h>

/* Groups alive that strop opened on an MPI it initialised itself: the last one finalises. */
static int owned_groups;

typedef struct mpi_ctx {
  MPI_Comm comm;
  int owns_mpi; /* this group counts in owned_groups */
  /* the started sums (MPI_Iallreduce): a token is 1 + its index here; the slots are reused
   * once every started one has been waited for, so a warm step allocates nothing */
  MPI_Request *reqs;
  int n_reqs, cap_reqs, pending;
} mpi_ctx;

/* A count MPI takes (int) at a time: large buffers go in pieces. */
enum { CHUNK = INT_MAX / 16 };

static int m_rank(void *c) {
  int r = 0;
  MPI_Comm_rank(((mpi_ctx *)c)->comm, &r);
  return r;
}

static int m_size(void *c) {
  int n = 1;
  MPI_Comm_size(((mpi_ctx *)c)->comm, &n);
  return n;
}

static int m_sum_float(void *c, float *v, int64_t n) {
  for (int64_t o = 0; o < n; o += CHUNK) {
    int k = (int)(n - o < CHUNK ? n - o : CHUNK);
    if (MPI_Allreduce(MPI_IN_PLACE, v + o, k, MPI_FLOAT, MPI_SUM, ((mpi_ctx *)c)->comm)) return 1;
  }
  return 0;
}

/* An MPI_Iallreduce from the thread that runs the step (MPI_THREAD_FUNNELED is enough: no
 * other thread calls MPI). A buffer beyond one MPI count is summed at once (no token). */
static int m_isum_float(void *c, float *v, int64_t n, void **request) {
  mpi_ctx *x = c;
  *request = NULL;
  if (n > CHUNK) return m_sum_float(c, v, n);
  if (x->n_reqs == x->cap_reqs) {
    int cap = x->cap_reqs ? 2 * x->cap_reqs : 16;
    MPI_Request *r = strop__realloc(x->reqs, (size_t)cap * sizeof *r);
    if (!r) return 1;
    x->reqs = r;
    x->cap_reqs = cap;
  }
  MPI_Request *r = &x->reqs[x->n_reqs];
  if (MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, x->comm, r)) return 1;
  *request = (void *)(intptr_t)++x->n_reqs;
  x->pending++;
  return 0;
}

static MPI_Request *m_req(mpi_ctx *x, void *request) {
  intptr_t k = (intptr_t)request;
  return k >= 1 && k <= x->n_reqs ? &x->reqs[k - 1] : NULL;
}

static int m_test(void *c, void *request, int *done) {
  MPI_Request *r = m_req(c, request);
  if (!r) return 1;
  if (*r == MPI_REQUEST_NULL) { /* a completed MPI_Test freed it: only the wait is left */
    *done = 1;
    return 0;
  }
  return MPI_Test(r, done, MPI_STATUS_IGNORE) != MPI_SUCCESS;
}

static int m_wait(void *c, void *request) {
  mpi_ctx *x = c;
  MPI_Request *r = m_req(x, request);
  if (!r) return 1;
  int rc = *r == MPI_REQUEST_NULL ? MPI_SUCCESS : MPI_Wait(r, MPI_STATUS_IGNORE);
  *r = MPI_REQUEST_NULL;
  if (--x->pending == 0) x->n_reqs = 0;
  return rc != MPI_SUCCESS;
}

static int m_sum_double(void *c, double *v, int64_t n) {
  for (int64_t o = 0; o < n; o += CHUNK) {
    int k = (int)(n - o < CHUNK ? n - o : CHUNK);
    if (MPI_Allreduce(MPI_IN_PLACE, v + o, k, MPI_DOUBLE, MPI_SUM, ((mpi_ctx *)c)->comm))
      return 1;
  }
  return 0;
}

static int m_bcast(void *c, void *v, size_t bytes, int root) {
  for (size_t o = 0; o < bytes; o += CHUNK) {
    int k = (int)(bytes - o < CHUNK ? bytes - o : CHUNK);
    if (MPI_Bcast((char *)v + o, k, MPI_BYTE, root, ((mpi_ctx *)c)->comm)) return 1;
  }
  return 0;
}

static int m_barrier(void *c) { return MPI_Barrier(((mpi_ctx *)c)->comm) != MPI_SUCCESS; }

static void m_abort(void *c, int code) { MPI_Abort(((mpi_ctx *)c)->comm, code); }

static void m_destroy(void *c) {
  mpi_ctx *x = c;
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Comm_free(&x->comm);
  if (x->owns_mpi && --owned_groups == 0 && !fin) MPI_Finalize();
  strop__free(x->reqs);
  strop__free(x);
}

static strop_status mpi_fail(int rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return strop__err(STROP_E_IO, "strop_dist_init_mpi: %s failed: %s", what, msg);
}

strop_status strop__dist_mpi_open(void *comm, strop_dist *d) {
  int init = 0, fin = 0, rc;
  MPI_Finalized(&fin);
  if (fin)
    return strop__err(STROP_E_STATE, "strop_dist_init_mpi: MPI was already finalised in this "
                                     "process; it cannot be started again");
  MPI_Initialized(&init);
  if (!init && comm)
    return strop__err(STROP_E_STATE, "strop_dist_init_mpi: a communicator was given but MPI is "
                                     "not initialised; call MPI_Init first, or pass NULL");
  int owns = 0;
  if (!init) {
    int provided = 0;
    if ((rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)))
      return mpi_fail(rc, "MPI_Init_thread");
    owns = 1;
  } else {
    owns = owned_groups > 0; /* strop started it for an earlier group that is still alive */
  }
  mpi_ctx *x = strop__calloc(1, sizeof *x);
  if (!x) {
    if (owns && owned_groups == 0) MPI_Finalize();
    return STROP__NOMEM("strop_dist_init_mpi");
  }
  MPI_Comm base = comm ? *(MPI_Comm *)comm : MPI_COMM_WORLD;
  if ((rc = MPI_Comm_dup(base, &x->comm))) {
    strop__free(x);
    if (owns && owned_groups == 0) MPI_Finalize();
    return mpi_fail(rc, "MPI_Comm_dup");
  }
  /* errors on the copy return codes instead of aborting the process (the host's own
   * communicator keeps its handler) */
  MPI_Comm_set_errhandler(x->comm, MPI_ERRORS_RETURN);
  x->owns_mpi = owns;
  owned_groups += owns;
  d->ops.rank = m_rank;
  d->ops.world_size = m_size;
  d->ops.allreduce_sum_float = m_sum_float;
  d->ops.allreduce_sum_double = m_sum_double;
  d->ops.broadcast = m_bcast;
  d->ops.barrier = m_barrier;
  d->ops.abort_all = m_abort;
  d->ops.destroy = m_destroy;
  d->ops.iallreduce_sum_float = m_isum_float;
  d->ops.test = m_test;
  d->ops.wait = m_wait;
  d->ctx = x;
  d->rank = m_rank(x);
  d->size = m_size(x);
  return STROP_OK;
}

#endif
