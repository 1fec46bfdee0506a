/* SPDX-License-Identifier: MIT */
/* strop bench — data-parallel scaling (issue 22): one fine-tuning epoch of the Fashion base CNN
 * on the ranks mpirun starts, through a host-style collective that times every all-reduce.
 * Prints, from rank 0: ranks, epoch seconds, seconds inside all-reduces, bytes per step and
 * the trainable size. Built only with -DSTROP_WITH_MPI=ON; bench/dist_scaling.sh runs it.
 * Usage: mpirun -np N dist_scaling SPEC [samples=4096] [batch=64] [full|head]
 *        [overlap|blocking] (overlap: the gradients' sums start during the backward) */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strop/strop.h>

typedef struct timed {
  MPI_Comm comm;
  double secs;   /* inside the collectives */
  double fsecs;  /* of which in the gradients' (float) sums: the part overlap can hide; the
                    rest is the per-step headers, where a rank waits for the slower one */
  int64_t bytes; /* this rank's payload handed to all-reduces */
  int64_t reduces;
} timed;

static int t_rank(void *c) {
  int r;
  MPI_Comm_rank(((timed *)c)->comm, &r);
  return r;
}
static int t_size(void *c) {
  int n;
  MPI_Comm_size(((timed *)c)->comm, &n);
  return n;
}
static int t_sum_f(void *c, float *v, int64_t n) {
  timed *t = c;
  double t0 = MPI_Wtime();
  int rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, t->comm);
  t->secs += MPI_Wtime() - t0;
  t->fsecs += MPI_Wtime() - t0;
  t->bytes += n * 4;
  t->reduces++;
  return rc != MPI_SUCCESS;
}
/* The asynchronous sum (overlap mode): the time counted is what the step spends in MPI --
 * starting, testing between layers, and waiting at the end -- not the sum's wall time. */
static int t_isum_f(void *c, float *v, int64_t n, void **req) {
  timed *t = c;
  double t0 = MPI_Wtime();
  MPI_Request *r = malloc(sizeof *r);
  int rc = r ? MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, t->comm, r) : 1;
  t->secs += MPI_Wtime() - t0;
  t->fsecs += MPI_Wtime() - t0;
  t->bytes += n * 4;
  t->reduces++;
  *req = r;
  return rc != MPI_SUCCESS;
}
static int t_test(void *c, void *req, int *done) {
  timed *t = c;
  double t0 = MPI_Wtime();
  int rc = *(MPI_Request *)req == MPI_REQUEST_NULL ? (*done = 1, MPI_SUCCESS)
                                                   : MPI_Test(req, done, MPI_STATUS_IGNORE);
  t->secs += MPI_Wtime() - t0;
  t->fsecs += MPI_Wtime() - t0;
  return rc != MPI_SUCCESS;
}
static int t_wait(void *c, void *req) {
  timed *t = c;
  double t0 = MPI_Wtime();
  int rc = MPI_Wait(req, MPI_STATUS_IGNORE);
  t->secs += MPI_Wtime() - t0;
  t->fsecs += MPI_Wtime() - t0;
  free(req);
  return rc != MPI_SUCCESS;
}
static int t_sum_d(void *c, double *v, int64_t n) {
  timed *t = c;
  double t0 = MPI_Wtime();
  int rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, t->comm);
  t->secs += MPI_Wtime() - t0;
  t->bytes += n * 8;
  t->reduces++;
  return rc != MPI_SUCCESS;
}
static int t_bcast(void *c, void *v, size_t bytes, int root) {
  return MPI_Bcast(v, (int)bytes, MPI_BYTE, root, ((timed *)c)->comm) != MPI_SUCCESS;
}
static int t_barrier(void *c) { return MPI_Barrier(((timed *)c)->comm) != MPI_SUCCESS; }

static void check(strop_status s, const char *what) {
  if (!s) return;
  fprintf(stderr, "dist_scaling: %s: %s\n", what, strop_last_error());
  MPI_Abort(MPI_COMM_WORLD, 1);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (argc < 2) {
    fprintf(stderr, "usage: mpirun -np N dist_scaling SPEC [samples] [batch] [full|head] "
                    "[overlap|blocking]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  int64_t samples = argc > 2 ? atoll(argv[2]) : 4096, batch = argc > 3 ? atoll(argv[3]) : 64;
  int head = argc > 4 && !strcmp(argv[4], "head");
  int blocking = argc > 5 && !strcmp(argv[5], "blocking");
  timed tm = {MPI_COMM_WORLD, 0, 0, 0, 0};
  strop_dist_ops ops;
  strop_dist_ops_init(&ops);
  ops.rank = t_rank;
  ops.world_size = t_size;
  ops.allreduce_sum_float = t_sum_f;
  ops.allreduce_sum_double = t_sum_d;
  ops.broadcast = t_bcast;
  ops.barrier = t_barrier;
  if (!blocking) { /* the gradients' sums start during the backward */
    ops.iallreduce_sum_float = t_isum_f;
    ops.test = t_test;
    ops.wait = t_wait;
  }
  strop_dist *d = NULL;
  check(strop_dist_custom(&ops, &tm, &d), "group");
  /* synthetic 28x28 images: the timing does not depend on the pixels */
  float *x = malloc((size_t)samples * 784 * sizeof *x), *y = malloc((size_t)samples * sizeof *y);
  strop_rng *g = NULL;
  check(strop_rng_create(5, &g), "rng");
  check(strop_rng_normal(g, 0, 1, x, (size_t)samples * 784), "data");
  for (int64_t i = 0; i < samples; i++) y[i] = (float)(i % 5);
  int64_t dims[3] = {1, 28, 28};
  strop_dataset *ds = NULL;
  check(strop_dataset_from_memory(x, y, samples, 3, dims, 0, NULL, 5, &ds), "dataset");
  strop_model *m = NULL;
  strop_optimizer *opt = NULL;
  strop_trainer *t = NULL;
  strop_batch_iter *it = NULL;
  check(strop_model_load_spec(argv[1], &m), "spec");
  if (head) check(strop_model_freeze(m, "features.*"), "freeze");
  check(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), "optimizer");
  check(strop_trainer_create(m, opt, &t), "trainer");
  check(strop_trainer_set_dist(t, d), "set_dist");
  check(strop_batch_iter_create(ds, batch, 1, STROP_ITER_SHUFFLE, &it), "iterator");
  strop_fit_options fo;
  strop_fit_options_init(&fo);
  fo.epochs = 1;
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  check(strop_trainer_fit(t, it, NULL, &fo), "fit");
  double epoch = MPI_Wtime() - t0;
  int64_t steps = strop_trainer_global_step(t);
  if (strop_dist_rank(d) == 0)
    printf("ranks %d  mode %s  %s  samples %lld  batch %lld  steps %lld  epoch %.3f s  "
           "in all-reduce %.3f s (%.1f%%), gradients %.3f s (%.1f%%)  bytes/step %.0f  trainable "
           "%lld (%lld bytes)\n",
           strop_dist_size(d), head ? "head" : "full", blocking ? "blocking" : "overlap",
           (long long)samples, (long long)batch, (long long)steps, epoch, tm.secs,
           100 * tm.secs / epoch, tm.fsecs, 100 * tm.fsecs / epoch,
           steps ? (double)tm.bytes / (double)steps : 0.0,
           (long long)strop_model_param_count(m, 1),
           (long long)strop_model_param_count(m, 1) * 4);
  strop_batch_iter_free(it);
  strop_trainer_free(t);
  strop_optimizer_free(opt);
  strop_model_free(m);
  strop_dataset_free(ds);
  strop_rng_free(g);
  free(x);
  free(y);
  strop_dist_free(d);
  MPI_Finalize();
  return 0;
}
