/* SPDX-License-Identifier: MIT */
/* strop tests — the data-parallel trainer over real MPI ranks (run by mpirun, see
 * CMakeLists.txt): parity with one process (with dropout too), sums overlapped with the backward, a resume in one process from a group's
 * checkpoint, and a rank that dies. Rank 0 reports; the others print only errors.
 * Usage: dist_mpi parity | overlap | dropout | syncbn | resume DIR | die */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dist_scenario.h"

/* Same reasoning and values as check_dist.c's TOL_SGD. */
#define TOL_SGD 2e-5

static sc_run scenario(int64_t steps, int64_t epochs) {
  sc_run r;
  memset(&r, 0, sizeof r);
  r.samples = 640;
  r.batch = 64;
  r.steps = steps;
  r.epochs = epochs;
  r.optim = STROP_OPTIM_SGD;
  return r;
}

static int fail(int rank, const char *what, const char *detail) {
  fprintf(stderr, "dist_mpi: rank %d: %s: %s\n", rank, what, detail);
  return 1;
}

/* Every rank's weights equal rank 0's, bit for bit. */
static int same_on_all_ranks(strop_dist *d, const sc_run *r) {
  float *w0 = malloc(r->n * sizeof *w0);
  memcpy(w0, r->w, r->n * sizeof *w0);
  MPI_Bcast(w0, (int)r->n, MPI_FLOAT, 0, MPI_COMM_WORLD);
  double bad = memcmp(w0, r->w, r->n * sizeof *w0) != 0;
  free(w0);
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  (void)d;
  return bad == 0;
}

static int parity(strop_dist *d, int rank) {
  sc_run g = scenario(20, 3);
  sc_fit(d, &g);
  if (g.status) return fail(rank, "fit", g.error);
  if (!same_on_all_ranks(d, &g)) return fail(rank, "parity", "the ranks' weights differ");
  int rc = 0;
  if (rank == 0) {
    sc_run one = scenario(20, 3);
    sc_fit(NULL, &one);
    double rel = sc_max_rel(g.w, one.w, one.n);
    printf("dist_mpi parity: %d ranks, global batch 64, 20 SGD steps: max rel diff %.3g "
           "(tolerance %g), steps %lld and %lld\n",
           strop_dist_size(d), rel, TOL_SGD, (long long)g.global_step,
           (long long)one.global_step);
    if (!(rel <= TOL_SGD) || g.global_step != 20 || one.global_step != 20)
      rc = fail(rank, "parity", "the group's weights differ from one process's");
    free(one.w);
  }
  free(g.w);
  return rc;
}

/* MPI_Iallreduce started as the backward makes each bucket final (tied weights, buckets of 40
 * floats: packed ones and tensors alone) gives the same weights, bit for bit, as the same
 * buckets summed after the backward, and those of one process within the tolerance. */
static int overlap(strop_dist *d, int rank) {
  sc_run ov = scenario(20, 3), late = scenario(20, 3);
  ov.tied = late.tied = 1;
  ov.bucket_max = late.bucket_max = 40;
  late.no_overlap = 1;
  sc_fit(d, &ov);
  sc_fit(d, &late);
  if (ov.status) return fail(rank, "fit (overlapped)", ov.error);
  if (late.status) return fail(rank, "fit (after the backward)", late.error);
  if (!same_on_all_ranks(d, &ov)) return fail(rank, "overlap", "the ranks' weights differ");
  int rc = 0;
  if (memcmp(ov.w, late.w, ov.n * sizeof *ov.w) != 0)
    rc = fail(rank, "overlap", "the overlapped sums differ from those after the backward");
  if (rank == 0 && !rc) {
    sc_run one = scenario(20, 3);
    one.tied = 1;
    sc_fit(NULL, &one);
    double rel = sc_max_rel(ov.w, one.w, one.n);
    printf("dist_mpi overlap: %d ranks, MPI_Iallreduce during the backward = after it, bit for "
           "bit; vs one process max rel diff %.3g (tolerance %g)\n",
           strop_dist_size(d), rel, TOL_SGD);
    if (!(rel <= TOL_SGD)) rc = fail(rank, "overlap", "differs from one process");
    free(one.w);
  }
  free(ov.w);
  free(late.w);
  return rc;
}

/* With dropout (p 0.3) each rank's rows get the masks one process draws for them: 2 ranks
 * match one process within the same tolerance as without. */
static int dropout(strop_dist *d, int rank) {
  sc_run g = scenario(20, 3);
  g.dropout = 0.3f;
  sc_fit(d, &g);
  if (g.status) return fail(rank, "fit", g.error);
  if (!same_on_all_ranks(d, &g)) return fail(rank, "dropout", "the ranks' weights differ");
  int rc = 0;
  if (rank == 0) {
    sc_run one = scenario(20, 3);
    one.dropout = 0.3f;
    sc_fit(NULL, &one);
    double rel = sc_max_rel(g.w, one.w, one.n);
    printf("dist_mpi dropout: %d ranks, dropout 0.3, 20 SGD steps: max rel diff %.3g "
           "(tolerance %g)\n",
           strop_dist_size(d), rel, TOL_SGD);
    if (!(rel <= TOL_SGD)) rc = fail(rank, "dropout", "differs from one process");
    free(one.w);
  }
  free(g.w);
  return rc;
}

/* A BatchNorm in training mode: with STROP_TRAIN_SYNC_BATCHNORM the ranks normalise with the
 * statistics of the global batch, and match one process within the same tolerance; without it
 * each normalises its 32 rows alone, far from one process. */
static int syncbn(strop_dist *d, int rank) {
  sc_run g = scenario(20, 3), own = scenario(20, 3);
  g.batchnorm = 2;
  own.batchnorm = 1;
  sc_fit(d, &g);
  sc_fit(d, &own);
  if (g.status) return fail(rank, "fit (synced)", g.error);
  if (own.status) return fail(rank, "fit (own statistics)", own.error);
  if (!same_on_all_ranks(d, &g)) return fail(rank, "syncbn", "the ranks' weights differ");
  int rc = 0;
  if (rank == 0) {
    sc_run one = scenario(20, 3);
    one.batchnorm = 1;
    sc_fit(NULL, &one);
    double rel = sc_max_rel(g.w, one.w, one.n), rel_own = sc_max_rel(own.w, one.w, one.n);
    printf("dist_mpi syncbn: %d ranks, BatchNorm1d, 20 SGD steps: max rel diff %.3g with "
           "SyncBatchNorm (tolerance %g), %.3g with each rank's own statistics\n",
           strop_dist_size(d), rel, TOL_SGD, rel_own);
    if (!(rel <= TOL_SGD)) rc = fail(rank, "syncbn", "differs from one process");
    if (!(rel_own > 10 * TOL_SGD)) rc = fail(rank, "syncbn", "own statistics as close");
    free(one.w);
  }
  free(g.w);
  free(own.w);
  return rc;
}

static int resume(strop_dist *d, int rank, const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/dist_mpi.ckpt", dir);
  if (rank == 0) unlink(path);
  MPI_Barrier(MPI_COMM_WORLD);
  sc_run g = scenario(7, 5);
  g.samples = 320;
  g.ckpt_out = path; /* every rank names it; rank 0 writes it */
  sc_fit(d, &g);
  free(g.w);
  if (g.status) return fail(rank, "fit", g.error);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank != 0) return 0;
  sc_run rest = scenario(13, 5), full = scenario(20, 5);
  rest.samples = full.samples = 320;
  rest.ckpt_in = path;
  sc_fit(NULL, &rest);
  sc_fit(NULL, &full);
  int rc = 0;
  if (rest.status) {
    rc = fail(rank, "resume", rest.error);
  } else {
    double rel = sc_max_rel(rest.w, full.w, full.n);
    printf("dist_mpi resume: a %d-rank checkpoint at step 7 resumed in one process to step "
           "%lld: max rel diff to the uninterrupted run %.3g\n",
           strop_dist_size(d), (long long)rest.global_step, rel);
    if (!(rel <= TOL_SGD) || rest.global_step != 20)
      rc = fail(rank, "resume", "differs from the uninterrupted run");
  }
  free(rest.w);
  free(full.w);
  unlink(path);
  return rc;
}

/* Rank 1 dies at its third step without a word; rank 0 would wait in the next all-reduce. */
static int die_at_step(const strop_progress *p, void *u) {
  if (*(int *)u == 1 && p->global_step >= 3) _exit(3);
  return 0;
}

static int die(strop_dist *d, int rank) {
  sc_run g = scenario(0, 100000);
  g.progress = die_at_step;
  g.user_data = &rank;
  sc_fit(d, &g);
  free(g.w);
  return fail(rank, "die", g.status ? g.error : "the fit ended although a rank died");
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv); /* the host's MPI: strop is handed its communicator */
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm world = MPI_COMM_WORLD;
  strop_dist *d = NULL;
  int rc;
  if (strop_dist_init_mpi(&world, &d)) {
    rc = fail(rank, "strop_dist_init_mpi", strop_last_error());
  } else if (argc >= 2 && strcmp(argv[1], "parity") == 0) {
    rc = parity(d, rank);
  } else if (argc >= 2 && strcmp(argv[1], "overlap") == 0) {
    rc = overlap(d, rank);
  } else if (argc >= 2 && strcmp(argv[1], "dropout") == 0) {
    rc = dropout(d, rank);
  } else if (argc >= 2 && strcmp(argv[1], "syncbn") == 0) {
    rc = syncbn(d, rank);
  } else if (argc >= 3 && strcmp(argv[1], "resume") == 0) {
    rc = resume(d, rank, argv[2]);
  } else if (argc >= 2 && strcmp(argv[1], "die") == 0) {
    rc = die(d, rank);
  } else {
    rc = fail(rank, "usage", "dist_mpi parity | overlap | dropout | syncbn | resume DIR | die");
  }
  if (rc) MPI_Abort(MPI_COMM_WORLD, rc);
  strop_dist_free(d);
  MPI_Finalize();
  return 0;
}
