/* SPDX-License-Identifier: MIT */
/* strop tests — tuner suite: the search space and its errors, grid order, seeded random
 * draws, the Gaussian process against numpy, Bayesian optimisation against random search on
 * standard functions, pruning, failed trials, the trials file and resume, parallel runs. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "ops/gp.h"
#include "strop/strop.h"
#include "strop/tune.h"
#include "testutil.h"
#include "tune/gpmodel.h"

#define OK(x) ck_assert_int_eq((x), STROP_OK)

/* The error path contract: the status, and a sentence that mentions `word`. */
#define ERR(call, status, word)                                                           \
  do {                                                                                    \
    strop_clear_error();                                                                  \
    ck_assert_int_eq((call), (status));                                                   \
    ck_assert_msg(strstr(strop_last_error(), (word)) != NULL, "sentence '%s' lacks '%s'", \
                  strop_last_error(), (word));                                            \
  } while (0)

static char *tmp_path(const char *name) {
  static char buf[4][256];
  static int k = 0;
  char *p = buf[k++ % 4];
  snprintf(p, 256, "%s/tune_%d_%s", STROP_BINARY_DIR, (int)getpid(), name);
  return p;
}

/* ---- create and errors ---- */

START_TEST(create_and_space) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_RANDOM, 1, STROP_TUNE_MINIMIZE, &t));
  OK(strop_tuner_add_float(t, "optimizer.lr", 1e-5, 1e-1, 1));
  OK(strop_tuner_add_int(t, "data.batch_size", 8, 256, 1));
  const char *ch[] = {"sgd", "adam", "adamw"};
  OK(strop_tuner_add_categorical(t, "optimizer.name", ch, 3));
  OK(strop_tuner_add_float(t, "stages[1].dropout", 0.0, 0.5, 0));
  ck_assert_int_eq(strop_tuner_num_params(t), 4);
  ck_assert_str_eq(strop_tuner_param_name(t, 2), "optimizer.name");
  ck_assert_int_eq(strop_tuner_param_kind(t, 1), STROP_PARAM_INT);
  ck_assert_ptr_null(strop_tuner_param_name(t, 4));
  ck_assert_int_eq(strop_tuner_param_kind(t, -1), -1);
  int64_t v;
  OK(strop_tuner_get_int(t, STROP_TUNE_N_CANDIDATES, &v));
  ck_assert_int_eq(v, 2000);
  OK(strop_tuner_set_int(t, STROP_TUNE_GRID_POINTS, 3));
  OK(strop_tuner_get_int(t, STROP_TUNE_GRID_POINTS, &v));
  ck_assert_int_eq(v, 3);
  double xi;
  OK(strop_tuner_set_float(t, STROP_TUNE_EI_XI, 0.05));
  OK(strop_tuner_get_float(t, STROP_TUNE_EI_XI, &xi));
  ck_assert_double_eq(xi, 0.05);
  double lo, hi;
  int flags;
  OK(strop_tuner_knob_range(STROP_TUNE_HALVING_ETA, &lo, &hi, &flags));
  ck_assert_double_eq(lo, 2);
  ck_assert_int_eq(flags, STROP_KNOB_INT);
  ck_assert_str_eq(strop_tuner_knob_name(STROP_TUNE_PRUNER), "pruner");
  ck_assert_ptr_null(strop_tuner_knob_name(99));
  /* grid size: 3 lr x 3 batch sizes x 3 names x 3 dropouts */
  ck_assert_int_eq(strop_tuner_grid_size(t), 81);
  int64_t id;
  OK(strop_tuner_ask(t, &id));
  ck_assert_int_eq(id, 0);
  double lr, bs;
  int64_t ibs, idx;
  char name[4];
  size_t len;
  OK(strop_tuner_trial_float(t, id, "optimizer.lr", &lr));
  ck_assert(lr >= 1e-5 && lr <= 1e-1);
  OK(strop_tuner_trial_float(t, id, "data.batch_size", &bs));
  OK(strop_tuner_trial_int(t, id, "data.batch_size", &ibs));
  ck_assert_double_eq(bs, (double)ibs);
  ck_assert(ibs >= 8 && ibs <= 256);
  OK(strop_tuner_trial_categorical(t, id, "optimizer.name", &idx, name, sizeof name, &len));
  ck_assert(idx >= 0 && idx < 3);
  ck_assert_uint_eq(len, strlen(ch[idx]));
  ck_assert(strncmp(name, ch[idx], 3) == 0 && strlen(name) <= 3); /* truncated snprintf-style */
  double byidx;
  OK(strop_tuner_trial_value(t, id, 2, &byidx));
  ck_assert_double_eq(byidx, (double)idx);
  ck_assert_int_eq(strop_tuner_num_trials(t), 1);
  ck_assert_int_eq(strop_tuner_trial_id(t, 0), 0);
  int status;
  double value, secs;
  int64_t nrep;
  OK(strop_tuner_trial_result(t, id, &status, &value, &secs, &nrep));
  ck_assert_int_eq(status, STROP_TRIAL_RUNNING);
  ck_assert(isnan(value));
  OK(strop_tuner_tell(t, id, 0.25, STROP_TRIAL_OK));
  OK(strop_tuner_trial_result(t, id, &status, &value, &secs, &nrep));
  ck_assert_int_eq(status, STROP_TRIAL_OK);
  ck_assert_double_eq(value, 0.25);
  ck_assert(secs >= 0.0);
  int64_t best;
  OK(strop_tuner_best(t, &best, &value));
  ck_assert_int_eq(best, 0);
  strop_tuner_free(t);
  strop_tuner_free(NULL);
}
END_TEST

START_TEST(errors) {
  strop_tuner *t = NULL;
  ERR(strop_tuner_create(7, 1, 0, &t), STROP_E_INVALID_ARG, "strategy");
  ck_assert_ptr_null(t);
  ERR(strop_tuner_create(0, 1, 5, &t), STROP_E_INVALID_ARG, "direction");
  ERR(strop_tuner_create(0, 1, 0, NULL), STROP_E_INVALID_ARG, "NULL");
  OK(strop_tuner_create(STROP_TUNE_GRID, 1, STROP_TUNE_MAXIMIZE, &t));
  int64_t id;
  ERR(strop_tuner_ask(t, &id), STROP_E_INVALID_ARG, "empty");
  ERR(strop_tuner_add_float(NULL, "a", 0, 1, 0), STROP_E_INVALID_ARG, "NULL");
  ERR(strop_tuner_add_float(t, NULL, 0, 1, 0), STROP_E_INVALID_ARG, "name");
  ERR(strop_tuner_add_float(t, "", 0, 1, 0), STROP_E_INVALID_ARG, "empty");
  ERR(strop_tuner_add_float(t, "a", 1, 1, 0), STROP_E_INVALID_ARG, "lo must be < hi");
  ERR(strop_tuner_add_float(t, "a", 2, 1, 0), STROP_E_INVALID_ARG, "lo must be < hi");
  ERR(strop_tuner_add_float(t, "a", 0, INFINITY, 0), STROP_E_INVALID_ARG, "finite");
  ERR(strop_tuner_add_float(t, "a", NAN, 1, 0), STROP_E_INVALID_ARG, "finite");
  ERR(strop_tuner_add_float(t, "a", 0, 1, 1), STROP_E_INVALID_ARG, "lo > 0");
  ERR(strop_tuner_add_float(t, "a", -1, 1, 1), STROP_E_INVALID_ARG, "lo > 0");
  ERR(strop_tuner_add_float(t, "a", 0, 1, 2), STROP_E_INVALID_ARG, "log must be 0 or 1");
  ERR(strop_tuner_add_int(t, "b", 5, 5, 0), STROP_E_INVALID_ARG, "lo must be < hi");
  ERR(strop_tuner_add_int(t, "b", 0, 5, 1), STROP_E_INVALID_ARG, "lo >= 1");
  const char *ch[] = {"x", "y", "x"}, *chn[] = {"x", NULL};
  ERR(strop_tuner_add_categorical(t, "c", ch, 3), STROP_E_INVALID_ARG, "repeated");
  ERR(strop_tuner_add_categorical(t, "c", chn, 2), STROP_E_INVALID_ARG, "NULL or empty");
  ERR(strop_tuner_add_categorical(t, "c", ch, 0), STROP_E_INVALID_ARG, "choices");
  ERR(strop_tuner_add_categorical(t, "c", NULL, 2), STROP_E_INVALID_ARG, "choices is NULL");
  ck_assert_int_eq(strop_tuner_num_params(t), 0); /* nothing was added */
  OK(strop_tuner_add_float(t, "a", 0, 1, 0));
  ERR(strop_tuner_add_int(t, "a", 0, 4, 0), STROP_E_INVALID_ARG, "already exists");
  ERR(strop_tuner_set_int(t, STROP_TUNE_GRID_POINTS, 1), STROP_E_INVALID_ARG, "grid_points");
  ERR(strop_tuner_set_int(t, STROP_TUNE_EI_XI, 1), STROP_E_INVALID_ARG, "not an int knob");
  ERR(strop_tuner_set_int(t, 99, 1), STROP_E_INVALID_ARG, "99");
  ERR(strop_tuner_set_float(t, STROP_TUNE_EI_XI, -1), STROP_E_INVALID_ARG, "ei_xi");
  ERR(strop_tuner_set_float(t, STROP_TUNE_PRUNER, 1), STROP_E_INVALID_ARG, "not a float knob");
  ERR(strop_tuner_get_int(t, STROP_TUNE_PRUNER, NULL), STROP_E_INVALID_ARG, "NULL");
  ERR(strop_tuner_knob_range(-1, NULL, NULL, NULL), STROP_E_INVALID_ARG, "unknown knob");
  ERR(strop_tuner_best(t, &id, NULL), STROP_E_STATE, "no trial");
  OK(strop_tuner_set_int(t, STROP_TUNE_GRID_POINTS, 2));
  OK(strop_tuner_ask(t, &id));
  ERR(strop_tuner_add_float(t, "z", 0, 1, 0), STROP_E_STATE, "fixed");
  double v;
  int64_t iv;
  ERR(strop_tuner_trial_float(t, 42, "a", &v), STROP_E_NOT_FOUND, "42");
  ERR(strop_tuner_trial_float(t, id, "nope", &v), STROP_E_NOT_FOUND, "nope");
  ERR(strop_tuner_trial_float(t, id, NULL, &v), STROP_E_INVALID_ARG, "NULL");
  ERR(strop_tuner_trial_int(t, id, "a", &iv), STROP_E_INVALID_ARG, "not an int");
  ERR(strop_tuner_trial_categorical(t, id, "a", NULL, NULL, 0, NULL), STROP_E_INVALID_ARG,
      "not categorical");
  ERR(strop_tuner_trial_categorical(t, id, "a", NULL, NULL, 5, NULL), STROP_E_INVALID_ARG,
      "buf is NULL");
  ERR(strop_tuner_trial_value(t, id, 3, &v), STROP_E_INVALID_ARG, "out of range");
  ERR(strop_tuner_trial_result(t, 42, NULL, NULL, NULL, NULL), STROP_E_NOT_FOUND, "42");
  ERR(strop_tuner_trial_report_at(t, id, 0, NULL, NULL), STROP_E_INVALID_ARG, "out of range");
  int prune = 7;
  ERR(strop_tuner_report(t, 42, 1, 0.5, &prune), STROP_E_NOT_FOUND, "42");
  ck_assert_int_eq(prune, 0);
  ERR(strop_tuner_report(t, id, 1, NAN, &prune), STROP_E_INVALID_ARG, "not finite");
  OK(strop_tuner_report(t, id, 3, 0.5, &prune));
  ERR(strop_tuner_report(t, id, 3, 0.4, &prune), STROP_E_INVALID_ARG, "does not increase");
  ERR(strop_tuner_tell(t, 42, 1.0, STROP_TRIAL_OK), STROP_E_NOT_FOUND, "42");
  ERR(strop_tuner_tell(t, id, 1.0, STROP_TRIAL_RUNNING), STROP_E_INVALID_ARG, "status");
  ERR(strop_tuner_tell(NULL, id, 1.0, STROP_TRIAL_OK), STROP_E_INVALID_ARG, "NULL");
  OK(strop_tuner_tell(t, id, 1.0, STROP_TRIAL_OK));
  ERR(strop_tuner_tell(t, id, 1.0, STROP_TRIAL_OK), STROP_E_STATE, "already told");
  ERR(strop_tuner_report(t, id, 4, 0.5, NULL), STROP_E_STATE, "already told");
  /* exhaust the 2-point grid */
  OK(strop_tuner_ask(t, &id));
  ck_assert_int_eq(strop_tuner_is_exhausted(t), 0);
  ERR(strop_tuner_ask(t, &id), STROP_E_STATE, "exhausted");
  ck_assert_int_eq(strop_tuner_is_exhausted(t), 1);
  ERR(strop_tuner_ask(t, &id), STROP_E_STATE, "exhausted");
  ERR(strop_tuner_ask(t, NULL), STROP_E_INVALID_ARG, "NULL");
  ERR(strop_tuner_run(t, -1, NULL, NULL), STROP_E_INVALID_ARG, "NULL");
  ERR(strop_tuner_set_log(t, "/nonexistent-dir/x/trials.jsonl"), STROP_E_IO, "nonexistent");
  ERR(strop_tuner_resume(t, "/nonexistent-dir/x/trials.jsonl"), STROP_E_STATE, "trials");
  ERR(strop_tuner_resume(NULL, "x"), STROP_E_INVALID_ARG, "NULL");
  ck_assert_int_eq(strop_tuner_num_trials(NULL), -1);
  ck_assert_int_eq(strop_tuner_num_params(NULL), -1);
  ck_assert_int_eq(strop_tuner_grid_size(NULL), -1);
  ck_assert_int_eq(strop_tuner_is_exhausted(NULL), 0);
  strop_tuner_free(t);
}
END_TEST

static int create_add(void *ctx) {
  strop_tuner **out = ctx;
  strop_tuner *t = NULL;
  strop_status st = strop_tuner_create(STROP_TUNE_BAYES, 3, STROP_TUNE_MINIMIZE, &t);
  if (st != STROP_OK) return st;
  const char *ch[] = {"relu", "gelu", "tanh"};
  if ((st = strop_tuner_add_float(t, "optimizer.lr", 1e-4, 1e-1, 1)) != STROP_OK ||
      (st = strop_tuner_add_int(t, "data.batch_size", 16, 128, 1)) != STROP_OK ||
      (st = strop_tuner_add_categorical(t, "model.act", ch, 3)) != STROP_OK ||
      (st = strop_tuner_add_float(t, "model.dropout", 0, 0.5, 0)) != STROP_OK ||
      (st = strop_tuner_add_float(t, "x1", 0, 1, 0)) != STROP_OK ||
      (st = strop_tuner_add_float(t, "x2", 0, 1, 0)) != STROP_OK ||
      (st = strop_tuner_add_float(t, "x3", 0, 1, 0)) != STROP_OK ||
      (st = strop_tuner_add_float(t, "x4", 0, 1, 0)) != STROP_OK ||
      (st = strop_tuner_add_float(t, "x5", 0, 1, 0)) != STROP_OK ||
      (st = strop_tuner_add_float(t, "x6", 0, 1, 0)) != STROP_OK) {
    strop_tuner_free(t);
    return st;
  }
  *out = t;
  return STROP_OK;
}

static void free_tuner(void *ctx) {
  strop_tuner **t = ctx;
  strop_tuner_free(*t);
  *t = NULL;
}

START_TEST(alloc_sweep_create) {
  strop_tuner *t = NULL;
  int n = strop_test_alloc_sweep(create_add, free_tuner, &t);
  ck_assert_int_gt(n, 10);
}
END_TEST

/* A whole Bayesian step under allocation failure: tell a few trials, then ask the GP. */
static int bayes_step(void *ctx) {
  (void)ctx;
  strop_tuner *t = NULL;
  strop_status st = strop_tuner_create(STROP_TUNE_BAYES, 5, STROP_TUNE_MINIMIZE, &t);
  if (st != STROP_OK) return st;
  const char *ch[] = {"a", "b"};
  if ((st = strop_tuner_add_float(t, "x", -1, 1, 0)) != STROP_OK ||
      (st = strop_tuner_add_categorical(t, "c", ch, 2)) != STROP_OK ||
      (st = strop_tuner_set_int(t, STROP_TUNE_N_INITIAL, 3)) != STROP_OK ||
      (st = strop_tuner_set_int(t, STROP_TUNE_N_CANDIDATES, 300)) != STROP_OK)
    goto out;
  for (int i = 0; i < 5; i++) {
    int64_t id;
    double x;
    if ((st = strop_tuner_ask(t, &id)) != STROP_OK) goto out;
    if ((st = strop_tuner_trial_float(t, id, "x", &x)) != STROP_OK) goto out;
    int prune;
    if ((st = strop_tuner_report(t, id, 1, x * x + 1, &prune)) != STROP_OK) goto out;
    if ((st = strop_tuner_tell(t, id, x * x, i == 2 ? STROP_TRIAL_FAILED : STROP_TRIAL_OK)) !=
        STROP_OK)
      goto out;
  }
out:
  strop_tuner_free(t);
  return st;
}

/* The GP's kernels in plain C (taken where OpenBLAS cannot get its work buffer) against
 * LAPACK's on a random symmetric positive definite matrix, and a matrix that is not. */
START_TEST(gp_plain_matches_lapack) {
  enum { N = 37, M = 5 };
  static double base[N * N], a[2][N * N], inv[2][N * N], x[2][2][N], b[2][N * M];
  uint64_t s = 7;
  for (int i = 0; i < N * N; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    base[i] = (double)(s >> 11) / 9007199254740992.0 - 0.5;
  }
  double spd[N * N];
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double t = i == j ? N : 0.0;
      for (int k = 0; k < N; k++) t += base[i * N + k] * base[j * N + k];
      spd[i * N + j] = t;
    }
  for (int plain = 0; plain < 2; plain++) {
    strop__gp_plain = plain;
    memcpy(a[plain], spd, sizeof spd);
    for (int i = 0; i < N; i++) /* the upper triangle is not read */
      for (int j = i + 1; j < N; j++) a[plain][i * N + j] = 1e300;
    ck_assert_int_eq(strop__dpotrf_lower(N, a[plain]), 0);
    memcpy(inv[plain], a[plain], sizeof spd);
    ck_assert_int_eq(strop__dpotri_lower(N, inv[plain]), 0);
    for (int t = 0; t < 2; t++) {
      for (int i = 0; i < N; i++) x[plain][t][i] = sin(0.3 * i + t);
      strop__dtrsv_lower(t, N, a[plain], x[plain][t]);
    }
    for (int i = 0; i < N * M; i++) b[plain][i] = cos(0.1 * i);
    strop__dtrsm_lower_left(N, M, a[plain], b[plain]);
  }
  strop__gp_plain = 0;
  for (int i = 0; i < N * N; i++) {
    ck_assert_double_eq_tol(a[1][i], a[0][i], 1e-12 * N);
    ck_assert_double_eq_tol(inv[1][i], inv[0][i], 1e-12);
  }
  /* the inverse is one: (L L^T) K^-1 = I */
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double t = 0.0;
      for (int k = 0; k < N; k++) t += spd[i * N + k] * inv[1][k * N + j];
      ck_assert_double_eq_tol(t, i == j ? 1.0 : 0.0, 1e-9);
    }
  for (int i = 0; i < N; i++) {
    ck_assert_double_eq_tol(x[1][0][i], x[0][0][i], 1e-12);
    ck_assert_double_eq_tol(x[1][1][i], x[0][1][i], 1e-12);
  }
  for (int i = 0; i < N * M; i++) ck_assert_double_eq_tol(b[1][i], b[0][i], 1e-12);
  /* not positive definite at the 4th leading minor: both say 4 */
  for (int plain = 0; plain < 2; plain++) {
    strop__gp_plain = plain;
    memcpy(a[plain], spd, sizeof spd);
    a[plain][3 * N + 3] = -1.0;
    ck_assert_int_eq(strop__dpotrf_lower(N, a[plain]), 4);
  }
  strop__gp_plain = 0;
}
END_TEST

/* Under a per-process address-space limit that leaves OpenBLAS no room for its work buffer
 * (Debian 12's 0.3.21 would retry that malloc for ever), a Bayesian search still runs: the GP's
 * kernels take their plain-C path. The child carries an alarm: a hang ends it. */
START_TEST(bayes_under_address_limit) {
#if defined(__SANITIZE_ADDRESS__)
  printf("bayes_under_address_limit: AddressSanitizer, skipped\n");
#else
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    alarm(30);
    if (strop_set_num_threads(1)) _exit(10);
    if (strop_test_limit_address_space(48)) _exit(11);
    _exit(bayes_step(NULL) == STROP_OK ? 0 : 12);
  }
  strop_test_wait_child(pid);
#endif
}
END_TEST

START_TEST(alloc_sweep_bayes) {
  int n = strop_test_alloc_sweep(bayes_step, NULL, NULL);
  ck_assert_int_gt(n, 20);
}
END_TEST

/* ---- grid ---- */

START_TEST(grid_order) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_GRID, 9, STROP_TUNE_MINIMIZE, &t));
  OK(strop_tuner_set_int(t, STROP_TUNE_GRID_POINTS, 3));
  OK(strop_tuner_add_float(t, "lr", 1e-4, 1e-2, 1)); /* 1e-4, 1e-3, 1e-2 */
  OK(strop_tuner_add_int(t, "bs", 1, 2, 0));         /* 2 values (fewer than K) */
  const char *ch[] = {"p", "q"};
  OK(strop_tuner_add_categorical(t, "opt", ch, 2));
  OK(strop_tuner_add_float(t, "wd", 0, 1, 0)); /* 0, 0.5, 1 */
  ck_assert_int_eq(strop_tuner_grid_size(t), 36);
  const double lrs[] = {1e-4, 1e-3, 1e-2}, wds[] = {0, 0.5, 1};
  int64_t k = 0;
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 2; b++)
      for (int c = 0; c < 2; c++)
        for (int d = 0; d < 3; d++, k++) {
          int64_t id, bs, ci;
          double lr, wd;
          OK(strop_tuner_ask(t, &id));
          ck_assert_int_eq(id, k);
          OK(strop_tuner_trial_float(t, id, "lr", &lr));
          OK(strop_tuner_trial_int(t, id, "bs", &bs));
          OK(strop_tuner_trial_categorical(t, id, "opt", &ci, NULL, 0, NULL));
          OK(strop_tuner_trial_float(t, id, "wd", &wd));
          ck_assert_msg(fabs(lr - lrs[a]) < 1e-15, "trial %lld lr %g", (long long)id, lr);
          ck_assert_int_eq(bs, b + 1);
          ck_assert_int_eq(ci, c);
          ck_assert_double_eq_tol(wd, wds[d], 1e-15);
          OK(strop_tuner_tell(t, id, (double)k,
                              k % 5 == 0 ? STROP_TRIAL_FAILED : STROP_TRIAL_OK));
        }
  int64_t id;
  ck_assert_int_eq(strop_tuner_ask(t, &id), STROP_E_STATE);
  ck_assert_int_eq(strop_tuner_is_exhausted(t), 1);
  strop_tuner_free(t);
}
END_TEST

/* Integer grids: K evenly spaced values, rounded, without repeats; log-spaced when log. */
START_TEST(grid_ints) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_GRID, 9, STROP_TUNE_MINIMIZE, &t));
  OK(strop_tuner_set_int(t, STROP_TUNE_GRID_POINTS, 4));
  OK(strop_tuner_add_int(t, "bs", 8, 512, 1)); /* 8, 32, 128, 512 */
  ck_assert_int_eq(strop_tuner_grid_size(t), 4);
  const int64_t want[] = {8, 32, 128, 512};
  for (int i = 0; i < 4; i++) {
    int64_t id, bs;
    OK(strop_tuner_ask(t, &id));
    OK(strop_tuner_trial_int(t, id, "bs", &bs));
    ck_assert_int_eq(bs, want[i]);
  }
  strop_tuner_free(t);
}
END_TEST

/* ---- random ---- */

static void draw(int strategy, uint64_t seed, int n, double *out) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(strategy, seed, STROP_TUNE_MINIMIZE, &t));
  OK(strop_tuner_add_float(t, "lr", 1e-5, 1, 1));
  OK(strop_tuner_add_int(t, "epochs", 1, 20, 0));
  const char *ch[] = {"a", "b", "c", "d"};
  OK(strop_tuner_add_categorical(t, "k", ch, 4));
  for (int i = 0; i < n; i++) {
    int64_t id;
    OK(strop_tuner_ask(t, &id));
    for (int p = 0; p < 3; p++) OK(strop_tuner_trial_value(t, id, p, &out[i * 3 + p]));
    OK(strop_tuner_tell(t, id, out[i * 3], STROP_TRIAL_OK));
  }
  strop_tuner_free(t);
}

START_TEST(random_reproducible) {
  enum { N = 400 };
  double *a = malloc(N * 3 * sizeof *a), *b = malloc(N * 3 * sizeof *b),
         *c = malloc(N * 3 * sizeof *c);
  draw(STROP_TUNE_RANDOM, 42, N, a);
  draw(STROP_TUNE_RANDOM, 42, N, b);
  draw(STROP_TUNE_RANDOM, 43, N, c);
  ck_assert(memcmp(a, b, N * 3 * sizeof *a) == 0);
  int same = 0, ep_hist[21] = {0}, cat_hist[4] = {0};
  double log_mean = 0;
  for (int i = 0; i < N; i++) {
    same += a[i * 3] == c[i * 3];
    ck_assert(a[i * 3] >= 1e-5 && a[i * 3] <= 1);
    log_mean += log10(a[i * 3]) / N;
    ck_assert(a[i * 3 + 1] >= 1 && a[i * 3 + 1] <= 20 && a[i * 3 + 1] == floor(a[i * 3 + 1]));
    ep_hist[(int)a[i * 3 + 1]]++;
    cat_hist[(int)a[i * 3 + 2]]++;
  }
  ck_assert_int_eq(same, 0);
  /* log-uniform on [1e-5, 1]: mean of log10 is -2.5 (sd 1.44, so +-0.25 is > 3 sigma) */
  ck_assert_double_lt(fabs(log_mean + 2.5), 0.25);
  for (int e = 1; e <= 20; e++) ck_assert_int_gt(ep_hist[e], 5); /* ends included */
  for (int k = 0; k < 4; k++) ck_assert_int_gt(cat_hist[k], 60);
  free(a);
  free(b);
  free(c);
}
END_TEST

/* ---- the Gaussian process against numpy ---- */

typedef struct fixture {
  char key[32];
  int n;
  double *v;
} fixture;

static double *fx_get(fixture *f, int nf, const char *key, int *n) {
  for (int i = 0; i < nf; i++)
    if (strcmp(f[i].key, key) == 0) {
      if (n) *n = f[i].n;
      return f[i].v;
    }
  ck_abort_msg("fixture key %s missing", key);
  return NULL;
}

static int fx_load(fixture *f, int cap) {
  FILE *fp = fopen(STROP_TEST_DATA "/tune/gp_small.txt", "r");
  ck_assert_ptr_nonnull(fp);
  char line[8192];
  int nf = 0;
  while (fgets(line, sizeof line, fp)) {
    if (line[0] == '#') continue;
    ck_assert_int_lt(nf, cap);
    char *p = line;
    int used;
    ck_assert_int_eq(sscanf(p, "%31s %d%n", f[nf].key, &f[nf].n, &used), 2);
    p += used;
    f[nf].v = malloc((size_t)f[nf].n * sizeof(double));
    for (int i = 0; i < f[nf].n; i++) {
      ck_assert_int_eq(sscanf(p, "%lf%n", &f[nf].v[i], &used), 1);
      p += used;
    }
    nf++;
  }
  fclose(fp);
  return nf;
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-12); }

START_TEST(gp_matches_numpy) {
  fixture f[32];
  int nf = fx_load(f, 32);
  const char *cases[] = {"a", "b"};
  for (int c = 0; c < 2; c++) {
    char k[32];
#define GET(name) (snprintf(k, sizeof k, "%s." name, cases[c]), fx_get(f, nf, k, NULL))
    double *dims = GET("dims");
    int64_t n = (int64_t)dims[0], d = (int64_t)dims[1], m = (int64_t)dims[2];
    strop__gp gp;
    OK(strop__gp_init(&gp, n, d, GET("x"), GET("y")));
    OK(strop__gp_set_theta(&gp, GET("theta")));
    double mean[8], var[8], *work = malloc((size_t)(n * m) * sizeof *work);
    strop__gp_predict(&gp, m, GET("xs"), mean, var, work);
    double *em = GET("mean"), *ev = GET("var");
    for (int64_t i = 0; i < m; i++) {
      ck_assert_msg(rel(mean[i], em[i]) < 1e-6, "case %s mean[%lld] %.12g vs %.12g", cases[c],
                    (long long)i, mean[i], em[i]);
      ck_assert_msg(rel(var[i], ev[i]) < 1e-6, "case %s var[%lld] %.12g vs %.12g", cases[c],
                    (long long)i, var[i], ev[i]);
    }
    double grad[8], *eg = GET("grad");
    double nl = strop__gp_nlml(&gp, GET("theta"), grad);
    ck_assert_msg(rel(nl, GET("nlml")[0]) < 1e-6, "nlml %.12g vs %.12g", nl, GET("nlml")[0]);
    /* the reference gradient is a central difference: absolute floor 1e-5 */
    for (int64_t i = 0; i < d + 2; i++)
      ck_assert_msg(fabs(grad[i] - eg[i]) < 1e-6 * fabs(eg[i]) + 1e-5,
                    "case %s grad[%lld] %.10g vs %.10g", cases[c], (long long)i, grad[i], eg[i]);
    free(work);
    strop__gp_free(&gp);
#undef GET
  }
  for (int i = 0; i < nf; i++) free(f[i].v);
}
END_TEST

/* Fitting raises the marginal likelihood and recovers a short length scale on the varying
 * dimension and a long one on the flat dimension. */
START_TEST(gp_fit_ard) {
  enum { N = 30 };
  double x[N * 2], y[N];
  strop__rng r;
  strop__rng_seed(&r, 11, 0);
  for (int i = 0; i < N; i++) {
    x[i * 2] = strop__rng_uniform(&r);
    x[i * 2 + 1] = strop__rng_uniform(&r);
    y[i] = sin(6.0 * x[i * 2]);
  }
  strop__gp gp;
  OK(strop__gp_init(&gp, N, 2, x, y));
  double th0[4] = {log(0.5), log(0.5), 0.0, log(1e-3)};
  double before = strop__gp_nlml(&gp, th0, NULL);
  OK(strop__gp_fit(&gp, NULL, 2, &r));
  double after = strop__gp_nlml(&gp, gp.theta, NULL);
  ck_assert_double_lt(after, before - 5.0);
  ck_assert_double_lt(exp(gp.theta[0]), 1.0);
  ck_assert_double_gt(exp(gp.theta[1]), 3.0 * exp(gp.theta[0]));
  strop__gp_free(&gp);
}
END_TEST

/* ---- Bayesian optimisation against random search ---- */

typedef struct objective {
  const char *name;
  double fmin;
  double target; /* the stated regret */
  double ratio;  /* asserted: BO's mean best regret < ratio x random's */
  void (*setup)(strop_tuner *t);
  double (*eval)(strop_tuner *t, int64_t id);
} objective;

static double getf(strop_tuner *t, int64_t id, const char *name) {
  double v;
  OK(strop_tuner_trial_float(t, id, name, &v));
  return v;
}

static void branin_setup(strop_tuner *t) {
  OK(strop_tuner_add_float(t, "x1", -5, 10, 0));
  OK(strop_tuner_add_float(t, "x2", 0, 15, 0));
}
static double branin(strop_tuner *t, int64_t id) {
  double x1 = getf(t, id, "x1"), x2 = getf(t, id, "x2");
  double b = 5.1 / (4 * M_PI * M_PI), c = 5 / M_PI, s = 10, tt = 1 / (8 * M_PI);
  double q = x2 - b * x1 * x1 + c * x1 - 6;
  return q * q + s * (1 - tt) * cos(x1) + s;
}

static const double H_A[4][4] = {{10, 3, 17, 3.5},
                                 {0.05, 10, 17, 0.1},
                                 {3, 3.5, 1.7, 10},
                                 {17, 8, 0.05, 10}};
static const double H_P[4][4] = {{0.1312, 0.1696, 0.5569, 0.0124},
                                 {0.2329, 0.4135, 0.8307, 0.3736},
                                 {0.2348, 0.1451, 0.3522, 0.2883},
                                 {0.4047, 0.8828, 0.8732, 0.5743}};
static void hartmann_setup(strop_tuner *t) {
  const char *n[] = {"h1", "h2", "h3", "h4"};
  for (int i = 0; i < 4; i++) OK(strop_tuner_add_float(t, n[i], 0, 1, 0));
}
static double hartmann4(strop_tuner *t, int64_t id) {
  const char *n[] = {"h1", "h2", "h3", "h4"};
  const double al[4] = {1.0, 1.2, 3.0, 3.2};
  double x[4], f = 0;
  for (int j = 0; j < 4; j++) x[j] = getf(t, id, n[j]);
  for (int i = 0; i < 4; i++) {
    double s = 0;
    for (int j = 0; j < 4; j++) s += H_A[i][j] * (x[j] - H_P[i][j]) * (x[j] - H_P[i][j]);
    f -= al[i] * exp(-s);
  }
  return f;
}

/* A fine-tuning-like bowl in log space: lr, weight decay and batch size (log int) plus an
 * optimizer choice; minimum 0 at lr 1e-3, wd 1e-4, batch 64, adam. */
static void bowl_setup(strop_tuner *t) {
  OK(strop_tuner_add_float(t, "optimizer.lr", 1e-6, 1, 1));
  OK(strop_tuner_add_float(t, "optimizer.weight_decay", 1e-7, 1e-1, 1));
  OK(strop_tuner_add_int(t, "data.batch_size", 4, 1024, 1));
  const char *ch[] = {"sgd", "adam", "rmsprop"};
  OK(strop_tuner_add_categorical(t, "optimizer.name", ch, 3));
}
static double bowl(strop_tuner *t, int64_t id) {
  double lr = getf(t, id, "optimizer.lr"), wd = getf(t, id, "optimizer.weight_decay");
  int64_t bs, ci;
  OK(strop_tuner_trial_int(t, id, "data.batch_size", &bs));
  OK(strop_tuner_trial_categorical(t, id, "optimizer.name", &ci, NULL, 0, NULL));
  double a = log10(lr) + 3, b = log10(wd) + 4, c = log2((double)bs) - 6;
  return a * a + 0.5 * b * b + 0.25 * c * c + (ci == 1 ? 0.0 : 1.0);
}

/* Measured with 10 seeds and 30 evaluations (mean best regret, Bayes / random, ratio):
 * branin 0.033 / 2.16 (0.015), hartmann4 0.226 / 0.606 (0.373; over 30 seeds about 0.18 /
 * 0.64 — its local minimum at regret 0.2 traps some seeds), logbowl 0.010 / 1.02 (0.010).
 * Asserted: ratio < 0.1 for branin and logbowl, < 0.6 for hartmann4. Evaluations to reach the
 * target regret (31 = not within 30): branin (0.1) 21.6 / 31.0, hartmann4 (0.4) 20.3 / 29.3,
 * logbowl (0.1) 17.6 / 31.0; asserted: at least 4 fewer. */
static const objective OBJECTIVES[] = {
    {"branin", 0.397887357729738, 0.1, 0.1, branin_setup, branin},
    {"hartmann4", -3.729840584485592, 0.4, 0.6, hartmann_setup, hartmann4},
    {"logbowl", 0.0, 0.1, 0.1, bowl_setup, bowl},
};

#define BO_EVALS 30
#define BO_SEEDS 10

/* Best regret after BO_EVALS evaluations; *hit gets the evaluation count at which the regret
 * first fell to the target (BO_EVALS + 1 when it never did). */
static double regret_after(const objective *o, int strategy, uint64_t seed, int *hit) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(strategy, seed, STROP_TUNE_MINIMIZE, &t));
  o->setup(t);
  double best = HUGE_VAL;
  *hit = BO_EVALS + 1;
  for (int i = 0; i < BO_EVALS; i++) {
    int64_t id;
    OK(strop_tuner_ask(t, &id));
    double v = o->eval(t, id);
    best = v < best ? v : best;
    if (best - o->fmin <= o->target && *hit > BO_EVALS) *hit = i + 1;
    OK(strop_tuner_tell(t, id, v, STROP_TRIAL_OK));
  }
  double bv;
  OK(strop_tuner_best(t, NULL, &bv));
  ck_assert_double_eq(bv, best);
  strop_tuner_free(t);
  return best - o->fmin;
}

START_TEST(bayes_beats_random) {
  const objective *o = &OBJECTIVES[_i];
  double bo = 0, rnd = 0, bo_hit = 0, rnd_hit = 0;
  for (uint64_t s = 1; s <= BO_SEEDS; s++) {
    int h;
    bo += regret_after(o, STROP_TUNE_BAYES, s, &h) / BO_SEEDS;
    bo_hit += (double)h / BO_SEEDS;
    rnd += regret_after(o, STROP_TUNE_RANDOM, s, &h) / BO_SEEDS;
    rnd_hit += (double)h / BO_SEEDS;
  }
  fprintf(stderr,
          "tune: %-10s after %d evals, mean regret bayes %.4g random %.4g (ratio %.3f);"
          " evals to regret %g: bayes %.1f random %.1f (%d = never)\n",
          o->name, BO_EVALS, bo, rnd, bo / rnd, o->target, bo_hit, rnd_hit, BO_EVALS + 1);
  ck_assert_msg(bo < o->ratio * rnd, "%s: bayes %.5g vs random %.5g", o->name, bo, rnd);
  /* reaching the stated regret takes at least 4 evaluations fewer on average */
  ck_assert_msg(bo_hit < rnd_hit - 4.0,
                "%s: evaluations to regret %g: bayes %.1f vs random "
                "%.1f",
                o->name, o->target, bo_hit, rnd_hit);
}
END_TEST

/* ---- pruning ---- */

/* Trials whose curve is v(step) = q + 1/step; quality q set per trial. */
START_TEST(median_prunes_bad_keeps_good) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_RANDOM, 1, STROP_TUNE_MAXIMIZE, &t));
  OK(strop_tuner_add_float(t, "x", 0, 1, 0));
  OK(strop_tuner_set_int(t, STROP_TUNE_PRUNER, STROP_PRUNER_MEDIAN));
  OK(strop_tuner_set_int(t, STROP_TUNE_PRUNE_WARMUP_TRIALS, 4));
  OK(strop_tuner_set_int(t, STROP_TUNE_PRUNE_WARMUP_STEPS, 2));
  /* accuracies climbing to 0.6 .. 0.9 */
  const double q[] = {0.6, 0.7, 0.8, 0.9};
  for (int i = 0; i < 4; i++) {
    int64_t id;
    OK(strop_tuner_ask(t, &id));
    for (int s = 1; s <= 5; s++) {
      int prune;
      OK(strop_tuner_report(t, id, s, q[i] - 0.1 / s, &prune));
      ck_assert_int_eq(prune, 0); /* warm-up: fewer than 4 finished trials */
    }
    OK(strop_tuner_tell(t, id, q[i], STROP_TRIAL_OK));
  }
  /* a clearly bad trial: below every curve; pruned at step 2 (step 1 is warm-up) */
  int64_t bad, good;
  int prune;
  OK(strop_tuner_ask(t, &bad));
  OK(strop_tuner_report(t, bad, 1, 0.1, &prune));
  ck_assert_int_eq(prune, 0);
  OK(strop_tuner_report(t, bad, 2, 0.15, &prune));
  ck_assert_int_eq(prune, 1);
  OK(strop_tuner_tell(t, bad, NAN, STROP_TRIAL_PRUNED));
  int st;
  double v;
  OK(strop_tuner_trial_result(t, bad, &st, &v, NULL, NULL));
  ck_assert_int_eq(st, STROP_TRIAL_PRUNED);
  ck_assert_double_eq(v, 0.15); /* the last reported value */
  /* a good trial above the median all the way */
  OK(strop_tuner_ask(t, &good));
  for (int s = 1; s <= 5; s++) {
    OK(strop_tuner_report(t, good, s, 0.95 - 0.1 / s, &prune));
    ck_assert_int_eq(prune, 0);
  }
  OK(strop_tuner_tell(t, good, 0.95, STROP_TRIAL_OK));
  int64_t best;
  OK(strop_tuner_best(t, &best, &v));
  ck_assert_int_eq(best, good);
  strop_tuner_free(t);
}
END_TEST

/* Asynchronous successive halving with eta 3: each rung keeps about a third, the best trial
 * goes all the way, a trial worse than all others stops at the first rung. */
START_TEST(halving_fraction) {
  enum { N = 243 };
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_RANDOM, 1, STROP_TUNE_MINIMIZE, &t));
  OK(strop_tuner_add_float(t, "x", 0, 1, 0));
  OK(strop_tuner_set_int(t, STROP_TUNE_PRUNER, STROP_PRUNER_HALVING));
  OK(strop_tuner_set_int(t, STROP_TUNE_HALVING_ETA, 3));
  OK(strop_tuner_set_int(t, STROP_TUNE_HALVING_MIN_RESOURCE, 1));
  int64_t perm[N];
  strop__rng r;
  strop__rng_seed(&r, 5, 0);
  strop__rng_permutation(&r, N, perm);
  int reached[4] = {0}; /* trials that passed rung 0 (step 1), 1 (step 3), 2 (step 9) */
  int best_steps = 0;
  for (int i = 0; i < N; i++) {
    double quality = (double)perm[i] / N; /* loss; perm[i] == 0 is the best trial */
    int64_t id;
    OK(strop_tuner_ask(t, &id));
    int prune = 0, s;
    for (s = 1; s <= 27 && !prune; s++) {
      OK(strop_tuner_report(t, id, s, quality + 1.0 / s, &prune));
      if (!prune && s == 1) reached[0]++;
      if (!prune && s == 3) reached[1]++;
      if (!prune && s == 9) reached[2]++;
    }
    if (perm[i] == 0) best_steps = s - 1;
    OK(strop_tuner_tell(t, id, quality, prune ? STROP_TRIAL_PRUNED : STROP_TRIAL_OK));
  }
  fprintf(stderr, "tune: halving eta 3 over %d trials: passed rungs %d %d %d\n", N, reached[0],
          reached[1], reached[2]);
  double f0 = (double)reached[0] / N, f1 = (double)reached[1] / reached[0],
         f2 = (double)reached[2] / reached[1];
  ck_assert_msg(f0 > 0.25 && f0 < 0.42, "rung 0 kept %.3f", f0);
  ck_assert_msg(f1 > 0.25 && f1 < 0.5, "rung 1 kept %.3f", f1);
  ck_assert_msg(f2 > 0.2 && f2 < 0.6, "rung 2 kept %.3f", f2);
  ck_assert_int_eq(best_steps, 27);
  /* a trial worse than everything is stopped at the first rung */
  int64_t id;
  int prune;
  OK(strop_tuner_ask(t, &id));
  OK(strop_tuner_report(t, id, 1, 100.0, &prune));
  ck_assert_int_eq(prune, 1);
  strop_tuner_free(t);
}
END_TEST

/* ---- failed trials and the run loop ---- */

typedef struct run_ud {
  int calls;
  int fail_every;
  int stop_at;
  pthread_mutex_t mu;
} run_ud;

static int quad_trial(strop_tuner *t, int64_t id, double *value_out, void *user_data) {
  run_ud *u = user_data;
  pthread_mutex_lock(&u->mu);
  int call = u->calls++;
  pthread_mutex_unlock(&u->mu);
  if (u->stop_at && call == u->stop_at) return -1;
  if (u->fail_every && call % u->fail_every == 1) return STROP_TRIAL_FAILED; /* diverged */
  double x, y;
  if (strop_tuner_trial_float(t, id, "x", &x) != STROP_OK) return STROP_TRIAL_FAILED;
  if (strop_tuner_trial_float(t, id, "y", &y) != STROP_OK) return STROP_TRIAL_FAILED;
  for (int s = 1; s <= 3; s++) {
    int prune;
    if (strop_tuner_report(t, id, s, (x - 0.3) * (x - 0.3) + y * y + 1.0 / s, &prune) != STROP_OK)
      return STROP_TRIAL_FAILED;
  }
  *value_out = (x - 0.3) * (x - 0.3) + y * y;
  return STROP_TRIAL_OK;
}

START_TEST(failed_trials_recorded) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_BAYES, 3, STROP_TUNE_MINIMIZE, &t));
  OK(strop_tuner_add_float(t, "x", -1, 1, 0));
  OK(strop_tuner_add_float(t, "y", -1, 1, 0));
  OK(strop_tuner_set_int(t, STROP_TUNE_N_INITIAL, 4));
  run_ud u = {0, 3, 0, PTHREAD_MUTEX_INITIALIZER};
  OK(strop_tuner_run(t, 20, quad_trial, &u));
  ck_assert_int_eq(u.calls, 20);
  ck_assert_int_eq(strop_tuner_num_trials(t), 20);
  int failed = 0;
  for (int64_t i = 0; i < 20; i++) {
    int st;
    double v;
    OK(strop_tuner_trial_result(t, strop_tuner_trial_id(t, i), &st, &v, NULL, NULL));
    if (st == STROP_TRIAL_FAILED) {
      failed++;
      ck_assert(isnan(v));
    }
  }
  ck_assert_int_eq(failed, 7); /* calls 1, 4, 7, ... 19 */
  double best;
  OK(strop_tuner_best(t, NULL, &best));
  ck_assert_double_lt(best, 0.05);
  /* a negative return stops the search */
  u.calls = 0;
  u.stop_at = 2;
  ck_assert_int_eq(strop_tuner_run(t, 10, quad_trial, &u), STROP_E_CANCELLED);
  ck_assert(strstr(strop_last_error(), "asked to stop") != NULL);
  ck_assert_int_eq(strop_tuner_num_trials(t), 23);
  strop_tuner_free(t);
}
END_TEST

/* Issue 17: a trial the host stops (Ctrl-C: the callback returns a negative value) is recorded
 * as interrupted, not failed -- the Bayesian model would count a failure as the worst value --
 * and it is asked again first, with its id and values, in this run and after a resume. */
START_TEST(interrupted_trial_is_asked_again) {
  char *path = tmp_path("interrupted.jsonl");
  unlink(path);
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_BAYES, 8, STROP_TUNE_MINIMIZE, &t));
  OK(strop_tuner_add_float(t, "x", -1, 1, 0));
  OK(strop_tuner_add_float(t, "y", -1, 1, 0));
  OK(strop_tuner_set_int(t, STROP_TUNE_N_INITIAL, 3));
  OK(strop_tuner_set_log(t, path));
  run_ud u = {0, 0, 4, PTHREAD_MUTEX_INITIALIZER};
  ck_assert_int_eq(strop_tuner_run(t, 10, quad_trial, &u), STROP_E_CANCELLED);
  ck_assert_int_eq(strop_tuner_num_trials(t), 5);
  int st;
  double v, x4, y4;
  OK(strop_tuner_trial_result(t, 4, &st, &v, NULL, NULL));
  ck_assert_int_eq(st, STROP_TRIAL_INTERRUPTED);
  ck_assert(isnan(v));
  OK(strop_tuner_trial_float(t, 4, "x", &x4));
  OK(strop_tuner_trial_float(t, 4, "y", &y4));
  /* in this run: asked again first, same id and values, from its first step */
  int64_t id;
  OK(strop_tuner_ask(t, &id));
  ck_assert_int_eq(id, 4);
  ck_assert_int_eq(strop_tuner_num_trials(t), 5);
  OK(strop_tuner_trial_result(t, 4, &st, NULL, NULL, NULL));
  ck_assert_int_eq(st, STROP_TRIAL_RUNNING);
  int prune;
  OK(strop_tuner_report(t, 4, 1, 0.5, &prune));           /* steps start again */
  OK(strop_tuner_tell(t, 4, 0, STROP_TRIAL_INTERRUPTED)); /* stopped again */
  strop_tuner_free(t);
  /* resumed: the file says interrupted; the first ask gives it again */
  strop_tuner *b = NULL;
  OK(strop_tuner_create(STROP_TUNE_BAYES, 8, STROP_TUNE_MINIMIZE, &b));
  OK(strop_tuner_add_float(b, "x", -1, 1, 0));
  OK(strop_tuner_add_float(b, "y", -1, 1, 0));
  OK(strop_tuner_resume(b, path));
  OK(strop_tuner_set_log(b, path));
  ck_assert_int_eq(strop_tuner_num_trials(b), 5);
  OK(strop_tuner_trial_result(b, 4, &st, NULL, NULL, NULL));
  ck_assert_int_eq(st, STROP_TRIAL_INTERRUPTED);
  OK(strop_tuner_ask(b, &id));
  ck_assert_int_eq(id, 4);
  double x, y;
  OK(strop_tuner_trial_float(b, 4, "x", &x));
  OK(strop_tuner_trial_float(b, 4, "y", &y));
  ck_assert(x == x4 && y == y4);
  OK(strop_tuner_tell(b, 4, 0.125, STROP_TRIAL_OK));
  OK(strop_tuner_ask(b, &id));
  ck_assert_int_eq(id, 5); /* then the search goes on */
  strop_tuner_free(b);
  /* the file has lines 4 (interrupted) twice and 4 (ok): the last one stands */
  strop_tuner *c = NULL;
  OK(strop_tuner_create(STROP_TUNE_BAYES, 8, STROP_TUNE_MINIMIZE, &c));
  OK(strop_tuner_add_float(c, "x", -1, 1, 0));
  OK(strop_tuner_add_float(c, "y", -1, 1, 0));
  OK(strop_tuner_resume(c, path));
  ck_assert_int_eq(strop_tuner_num_trials(c), 5);
  OK(strop_tuner_trial_result(c, 4, &st, &v, NULL, NULL));
  ck_assert_int_eq(st, STROP_TRIAL_OK);
  ck_assert(v == 0.125);
  strop_tuner_free(c);
  /* a host tells interrupted itself; a grid that is exhausted still gives it again */
  strop_tuner *g = NULL;
  OK(strop_tuner_create(STROP_TUNE_GRID, 1, STROP_TUNE_MINIMIZE, &g));
  const char *ab[] = {"a", "b"};
  OK(strop_tuner_add_categorical(g, "c", ab, 2));
  int64_t i0, i1;
  OK(strop_tuner_ask(g, &i0));
  OK(strop_tuner_ask(g, &i1));
  OK(strop_tuner_tell(g, i0, 1.0, STROP_TRIAL_OK));
  OK(strop_tuner_tell(g, i1, NAN, STROP_TRIAL_INTERRUPTED));
  OK(strop_tuner_ask(g, &id)); /* both points were asked: the interrupted one again */
  ck_assert_int_eq(id, i1);
  OK(strop_tuner_tell(g, i1, 2.0, STROP_TRIAL_OK));
  ERR(strop_tuner_ask(g, &id), STROP_E_STATE, "exhausted");
  strop_tuner_free(g);
  unlink(path);
}
END_TEST

/* No trial starts once STROP_TUNE_TIME_BUDGET seconds have passed; the run returns OK. */
static int slow_trial(strop_tuner *t, int64_t id, double *value_out, void *user_data) {
  (void)t;
  (void)id;
  (void)user_data;
  usleep(20000);
  *value_out = 1.0;
  return STROP_TRIAL_OK;
}

START_TEST(time_budget_stops_the_run) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_RANDOM, 2, STROP_TUNE_MINIMIZE, &t));
  OK(strop_tuner_add_float(t, "x", -1, 1, 0));
  double v;
  OK(strop_tuner_get_double(t, STROP_TUNE_TIME_BUDGET, &v));
  ck_assert(v == 0.0); /* no limit by default */
  ERR(strop_tuner_set_double(t, STROP_TUNE_TIME_BUDGET, -1), STROP_E_INVALID_ARG, "time_budget");
  ERR(strop_tuner_set_double(t, STROP_TUNE_TIME_BUDGET, INFINITY), STROP_E_INVALID_ARG,
      "time_budget");
  int key;
  OK(strop_tuner_knob_find("time", &key));
  ck_assert_int_eq(key, STROP_TUNE_TIME_BUDGET);
  OK(strop_tuner_set_double(t, STROP_TUNE_TIME_BUDGET, 0.05));
  /* 100 trials of at least 20 ms each cannot fit in 50 ms: the budget ends the run */
  OK(strop_tuner_run(t, 100, slow_trial, NULL));
  int64_t n = strop_tuner_num_trials(t);
  ck_assert_int_ge(n, 1);
  ck_assert_int_lt(n, 100);
  for (int64_t i = 0; i < n; i++) {
    int st;
    OK(strop_tuner_trial_result(t, strop_tuner_trial_id(t, i), &st, NULL, NULL, NULL));
    ck_assert_int_eq(st, STROP_TRIAL_OK); /* the running one finished */
  }
  strop_tuner_free(t);
}
END_TEST

START_TEST(parallel_workers) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_BAYES, 4, STROP_TUNE_MINIMIZE, &t));
  OK(strop_tuner_add_float(t, "x", -1, 1, 0));
  OK(strop_tuner_add_float(t, "y", -1, 1, 0));
  OK(strop_tuner_set_int(t, STROP_TUNE_N_WORKERS, 3));
  OK(strop_tuner_set_int(t, STROP_TUNE_N_INITIAL, 5));
  run_ud u = {0, 0, 0, PTHREAD_MUTEX_INITIALIZER};
  OK(strop_tuner_run(t, 24, quad_trial, &u));
  ck_assert_int_eq(u.calls, 24);
  ck_assert_int_eq(strop_tuner_num_trials(t), 24);
  for (int64_t i = 0; i < 24; i++) {
    int st;
    ck_assert_int_eq(strop_tuner_trial_id(t, i), i);
    OK(strop_tuner_trial_result(t, i, &st, NULL, NULL, NULL));
    ck_assert_int_eq(st, STROP_TRIAL_OK);
  }
  double best;
  OK(strop_tuner_best(t, NULL, &best));
  ck_assert_double_lt(best, 0.05);
  strop_tuner_free(t);
}
END_TEST

/* ---- the trials file and resume ---- */

static strop_tuner *space(int strategy, uint64_t seed) {
  strop_tuner *t = NULL;
  OK(strop_tuner_create(strategy, seed, STROP_TUNE_MAXIMIZE, &t));
  OK(strop_tuner_set_int(t, STROP_TUNE_GRID_POINTS, 3));
  OK(strop_tuner_add_float(t, "optimizer.lr", 1e-4, 1e-1, 1));
  OK(strop_tuner_add_int(t, "data.batch_size", 16, 64, 0));
  const char *ch[] = {"adam", "sgd \"quoted\"\n"};
  OK(strop_tuner_add_categorical(t, "optimizer.name", ch, 2));
  return t;
}

/* Runs trials [from, to) ask/tell with a deterministic value and every 4th failed. */
static void drive(strop_tuner *t, int from, int to) {
  for (int i = from; i < to; i++) {
    int64_t id;
    OK(strop_tuner_ask(t, &id));
    double lr;
    OK(strop_tuner_trial_float(t, id, "optimizer.lr", &lr));
    int prune;
    OK(strop_tuner_report(t, id, 1, -log10(lr) / 10, &prune));
    OK(strop_tuner_report(t, id, 2, -log10(lr) / 5, &prune));
    OK(strop_tuner_tell(t, id, -log10(lr) / 4, i % 4 == 3 ? STROP_TRIAL_FAILED : STROP_TRIAL_OK));
  }
}

/* Every trial of b exists in a with equal values, status, value and intermediate values. */
static void same_trials(strop_tuner *a, strop_tuner *b, int same_time) {
  for (int64_t i = 0; i < strop_tuner_num_trials(b); i++) {
    int64_t id = strop_tuner_trial_id(b, i);
    for (int p = 0; p < 3; p++) {
      double va, vb;
      OK(strop_tuner_trial_value(a, id, p, &va));
      OK(strop_tuner_trial_value(b, id, p, &vb));
      ck_assert_msg(va == vb, "trial %lld param %d: %.17g vs %.17g", (long long)id, p, va, vb);
    }
    int sa, sb;
    double xa, xb, ta, tb;
    int64_t na, nb;
    OK(strop_tuner_trial_result(a, id, &sa, &xa, &ta, &na));
    OK(strop_tuner_trial_result(b, id, &sb, &xb, &tb, &nb));
    ck_assert_int_eq(sa, sb);
    ck_assert(xa == xb || (isnan(xa) && isnan(xb)));
    ck_assert(!same_time || ta == tb);
    ck_assert_int_eq(na, nb);
    for (int64_t k = 0; k < na; k++) {
      int64_t s1, s2;
      double v1, v2;
      OK(strop_tuner_trial_report_at(a, id, k, &s1, &v1));
      OK(strop_tuner_trial_report_at(b, id, k, &s2, &v2));
      ck_assert_int_eq(s1, s2);
      ck_assert(v1 == v2);
    }
  }
}

START_TEST(trials_file_roundtrip) {
  const int strategies[] = {STROP_TUNE_RANDOM, STROP_TUNE_BAYES, STROP_TUNE_GRID};
  for (int k = 0; k < 3; k++) {
    char *path = tmp_path("trials.jsonl");
    unlink(path);
    /* an uninterrupted search of 12 trials */
    strop_tuner *full = space(strategies[k], 77);
    drive(full, 0, 12);
    /* the same search stopped after 9 told trials and one asked but never told */
    strop_tuner *first = space(strategies[k], 77);
    OK(strop_tuner_set_log(first, path));
    drive(first, 0, 9);
    int64_t lost;
    OK(strop_tuner_ask(first, &lost));
    strop_tuner *back = space(strategies[k], 77);
    OK(strop_tuner_resume(back, path));
    ck_assert_int_eq(strop_tuner_num_trials(back), 9);
    same_trials(first, back, 1); /* the file holds everything, exactly */
    strop_tuner_free(first);
    int64_t id;
    OK(strop_tuner_ask(back, &id));
    ck_assert_int_eq(id, 9); /* continues after the last finished id (9 never finished) */
    if (strategies[k] == STROP_TUNE_RANDOM) {
      for (int p = 0; p < 3; p++) { /* the draw the uninterrupted search made */
        double a, b;
        OK(strop_tuner_trial_value(back, id, p, &a));
        OK(strop_tuner_trial_value(full, 9, p, &b));
        ck_assert(a == b);
      }
    }
    if (strategies[k] == STROP_TUNE_GRID) {
      /* the lost trial's point comes again, then the rest, never a visited one */
      double a, b;
      OK(strop_tuner_trial_value(back, id, 0, &a));
      OK(strop_tuner_trial_value(full, 9, 0, &b));
      ck_assert(a == b);
      int asked = 1;
      while (strop_tuner_ask(back, &id) == STROP_OK) asked++;
      ck_assert_int_eq(asked, 18 - 9);
      for (int64_t i = 0; i < 18; i++)
        for (int64_t j = 0; j < i; j++) {
          int same = 1;
          for (int p = 0; p < 3; p++) {
            double u, v;
            OK(strop_tuner_trial_value(back, strop_tuner_trial_id(back, i), p, &u));
            OK(strop_tuner_trial_value(back, strop_tuner_trial_id(back, j), p, &v));
            same &= u == v;
          }
          ck_assert_msg(!same, "grid point repeated by trials %lld and %lld", (long long)i,
                        (long long)j);
        }
    }
    strop_tuner_free(back);
    strop_tuner_free(full);
    unlink(path);
  }
}
END_TEST

/* the trials a new search of space() reads back from path */
static int64_t trials_in(const char *path) {
  strop_tuner *t = space(STROP_TUNE_RANDOM, 1);
  OK(strop_tuner_resume(t, path));
  const int64_t n = strop_tuner_num_trials(t);
  strop_tuner_free(t);
  return n;
}

/* A resumed random search draws what the uninterrupted one would have. */
START_TEST(resume_continues_stream) {
  char *path = tmp_path("stream.jsonl");
  unlink(path);
  strop_tuner *full = space(STROP_TUNE_RANDOM, 5);
  drive(full, 0, 12);
  strop_tuner *a = space(STROP_TUNE_RANDOM, 5);
  OK(strop_tuner_set_log(a, path));
  drive(a, 0, 6);
  strop_tuner_free(a);
  strop_tuner *b = space(STROP_TUNE_RANDOM, 5);
  OK(strop_tuner_resume(b, path));
  OK(strop_tuner_set_log(b, path));
  drive(b, 6, 12);
  strop_tuner_free(b);
  strop_tuner *c = space(STROP_TUNE_RANDOM, 5);
  OK(strop_tuner_resume(c, path));
  same_trials(full, c, 0);
  strop_tuner_free(c);
  strop_tuner_free(full);
  unlink(path);
}
END_TEST

START_TEST(resume_errors) {
  char *path = tmp_path("bad.jsonl");
  const char *bad[] = {
      "{\"id\":0,\"status\":\"ok\",\"value\":1,\"values\":{\"optimizer.lr\":0.01,"
      "\"data.batch_size\":32}}\n", /* missing */
      "{\"id\":0,\"status\":\"ok\",\"value\":1,\"values\":{\"optimizer.lr\":5,"
      "\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}\n", /* range */
      "{\"id\":0,\"status\":\"ok\",\"value\":1,\"values\":{\"optimizer.lr\":0.01,"
      "\"data.batch_size\":32,\"optimizer.name\":\"lion\"}}\n",    /* choice */
      "{\"id\":0,\"status\":\"meh\",\"value\":1,\"values\":{}}\n", /* status */
      "[1,2]\n{}\n",                                               /* object */
      "{\"id\":0,\"status\":\"ok\",\"value\":1,\"values\":{\"optimizer.lr\":0.01,"
      "\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}\n"
      "{\"id\":0,\"status\":\"ok\",\"value\":2,\"values\":{\"optimizer.lr\":0.01,"
      "\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}\n", /* repeated id */
  };
  const char *words[] = {"missing parameter",      "outside the range",
                         "not one of the choices", "status",
                         "not a JSON object",      "appears twice"};
  for (int i = 0; i < 6; i++) {
    FILE *f = fopen(path, "w");
    fputs(bad[i], f);
    fclose(f);
    strop_tuner *t = space(STROP_TUNE_RANDOM, 1);
    ERR(strop_tuner_resume(t, path), STROP_E_FORMAT, words[i]);
    ck_assert_msg(strstr(strop_last_error(), path) != NULL, "no path in '%s'",
                  strop_last_error());
    ck_assert_int_eq(strop_tuner_num_trials(t), 0); /* unchanged */
    strop_tuner_free(t);
  }
  /* a torn last line is skipped */
  FILE *f = fopen(path, "w");
  fputs("{\"id\":3,\"status\":\"failed\",\"value\":null,\"values\":{\"optimizer.lr\":0.01,"
        "\"data.batch_size\":32,\"optimizer.name\":\"adam\"},\"intermediate\":[[1,0.5]]}\n"
        "{\"id\":4,\"status\":\"ok\",\"val",
        f);
  fclose(f);
  strop_tuner *t = space(STROP_TUNE_RANDOM, 1);
  OK(strop_tuner_resume(t, path));
  ck_assert_int_eq(strop_tuner_num_trials(t), 1);
  int64_t id;
  OK(strop_tuner_ask(t, &id));
  ck_assert_int_eq(id, 4);
  /* ... and cut off, so that the trial told next is a line of its own: a third search reads
   * both (the next line used to be appended to the torn one, and the file refused after) */
  OK(strop_tuner_set_log(t, path));
  OK(strop_tuner_tell(t, id, 0.25, STROP_TRIAL_OK));
  strop_tuner_free(t);
  ck_assert_int_eq(trials_in(path), 2);
  /* a last line without its newline that reads whole (an edited file): kept, and the next
   * line starts after it */
  f = fopen(path, "w");
  fputs("{\"id\":3,\"status\":\"failed\",\"value\":null,\"values\":{\"optimizer.lr\":0.01,"
        "\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}",
        f);
  fclose(f);
  ck_assert_int_eq(trials_in(path), 1);
  t = space(STROP_TUNE_RANDOM, 1);
  OK(strop_tuner_resume(t, path));
  OK(strop_tuner_set_log(t, path));
  OK(strop_tuner_ask(t, &id));
  OK(strop_tuner_tell(t, id, 0.5, STROP_TRIAL_OK));
  strop_tuner_free(t);
  ck_assert_int_eq(trials_in(path), 2);
  t = space(STROP_TUNE_RANDOM, 1);
  ERR(strop_tuner_resume(t, "/nonexistent-dir/trials.jsonl"), STROP_E_IO, "nonexistent");
  strop_tuner_free(t);
  unlink(path);
}
END_TEST

/* Issue 18, item 8: numbers read from a trials file are checked, naming the file and line: a
 * trial id of INT64_MAX made the next id overflow and every later call fail. */
START_TEST(resume_refuses_unusable_numbers) {
  char *path = tmp_path("huge.jsonl");
  static const char *const good =
      "{\"id\":0,\"status\":\"ok\",\"value\":1,\"seconds\":2,\"values\":{\"optimizer.lr\":0.01,"
      "\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}\n";
  static const char *const last =
      "{\"id\":7,\"status\":\"ok\",\"value\":1,\"seconds\":2,\"values\":{\"optimizer.lr\":0.01,"
      "\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}\n";
  static const struct {
    const char *line, *word;
  } bad[] = {
      {"{\"id\":9223372036854775807,\"status\":\"ok\",\"value\":1,\"values\":{\"optimizer.lr\":"
       "0.01,\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}\n",
       "\"id\" must be"},
      {"{\"id\":9007199254740992,\"status\":\"ok\",\"value\":1,\"values\":{\"optimizer.lr\":"
       "0.01,\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}\n",
       "\"id\" must be"},
      {"{\"id\":1,\"status\":\"ok\",\"value\":1,\"seconds\":1e999,\"values\":{\"optimizer.lr\":"
       "0.01,\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}\n",
       "\"seconds\""},
      {"{\"id\":1,\"status\":\"ok\",\"value\":1,\"seconds\":-3,\"values\":{\"optimizer.lr\":"
       "0.01,\"data.batch_size\":32,\"optimizer.name\":\"adam\"}}\n",
       "\"seconds\""},
      {"{\"id\":1,\"status\":\"pruned\",\"value\":1,\"values\":{\"optimizer.lr\":0.01,"
       "\"data.batch_size\":32,\"optimizer.name\":\"adam\"},\"intermediate\":[[1,1e999]]}\n",
       "finite value"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    FILE *f = fopen(path, "w");
    fputs(good, f);
    fputs(bad[i].line, f);
    fputs(last, f); /* not the last line: not taken for a torn one */
    fclose(f);
    strop_tuner *t = space(STROP_TUNE_RANDOM, 1);
    ERR(strop_tuner_resume(t, path), STROP_E_FORMAT, bad[i].word);
    char where[600];
    snprintf(where, sizeof where, "%s:2:", path);
    ck_assert_msg(strstr(strop_last_error(), where) != NULL, "no file:line in '%s'",
                  strop_last_error());
    ck_assert_int_eq(strop_tuner_num_trials(t), 0); /* unchanged: the search starts over */
    int64_t id = -1;
    OK(strop_tuner_ask(t, &id));
    ck_assert_int_eq(id, 0);
    OK(strop_tuner_tell(t, id, 1.0, STROP_TRIAL_OK));
    strop_tuner_free(t);
  }
  unlink(path);
}
END_TEST

static Suite *tune_suite(void) {
  Suite *s = suite_create("tune");
  TCase *tc = tcase_create("create");
  tcase_add_test(tc, create_and_space);
  tcase_add_test(tc, alloc_sweep_create);
  tcase_add_test(tc, alloc_sweep_bayes);
  tcase_add_test(tc, gp_plain_matches_lapack);
  tcase_add_test(tc, bayes_under_address_limit);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, errors);
  tcase_add_test(tc, resume_errors);
  tcase_add_test(tc, resume_refuses_unusable_numbers);
  suite_add_tcase(s, tc);
  tc = tcase_create("grid");
  tcase_add_test(tc, grid_order);
  tcase_add_test(tc, grid_ints);
  suite_add_tcase(s, tc);
  tc = tcase_create("random");
  tcase_add_test(tc, random_reproducible);
  suite_add_tcase(s, tc);
  tc = tcase_create("gp");
  tcase_add_test(tc, gp_matches_numpy);
  tcase_add_test(tc, gp_fit_ard);
  suite_add_tcase(s, tc);
  tc = tcase_create("bayes");
  tcase_add_loop_test(tc, bayes_beats_random, 0, 3);
  suite_add_tcase(s, tc);
  tc = tcase_create("prune");
  tcase_add_test(tc, median_prunes_bad_keeps_good);
  tcase_add_test(tc, halving_fraction);
  suite_add_tcase(s, tc);
  tc = tcase_create("run");
  tcase_add_test(tc, failed_trials_recorded);
  tcase_add_test(tc, interrupted_trial_is_asked_again);
  tcase_add_test(tc, time_budget_stops_the_run);
  tcase_add_test(tc, parallel_workers);
  suite_add_tcase(s, tc);
  tc = tcase_create("io");
  tcase_add_test(tc, trials_file_roundtrip);
  tcase_add_test(tc, resume_continues_stream);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return strop_test_run(tune_suite()); }
