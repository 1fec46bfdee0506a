/* SPDX-License-Identifier: MIT */
/* strop — the ready search loop: ask, run the host's trial callback, tell; on one thread or
 * on STROP_TUNE_N_WORKERS threads that share the tuner under its mutex. */
#include <math.h>
#include <string.h>

#include "tune/tune_impl.h"

typedef struct run_ctx {
  strop_tuner *t;
  int64_t n_trials, started;
  strop_trial_fn fn;
  void *user_data;
  strop_status st; /* first error that stops the search */
  char msg[512];   /* its sentence (errors are per thread) */
  int stop;
  int out_of_time; /* STROP_TUNE_TIME_BUDGET ended the search */
  double t0;       /* when the run began */
} run_ctx;

/* Whether an interrupted trial waits to be asked again (mutex held): an exhausted grid still
 * gives those. */
static int has_interrupted(const strop_tuner *t) {
  for (int64_t i = 0; i < t->n_trials; i++)
    if (t->trials[i].status == STROP_TRIAL_INTERRUPTED) return 1;
  return 0;
}

/* Records the first failure with its sentence (mutex held). */
static void fail(run_ctx *c, strop_status st) {
  if (c->st != STROP_OK) return;
  c->st = st;
  snprintf(c->msg, sizeof c->msg, "%s", strop_last_error());
  c->stop = 1;
}

static void *worker(void *arg) {
  run_ctx *c = arg;
  strop_tuner *t = c->t;
  for (;;) {
    pthread_mutex_lock(&t->mu);
    if (!c->stop && t->time_budget > 0 && strop__tune_now() - c->t0 >= t->time_budget) {
      c->stop = c->out_of_time = 1;
      strop__log(STROP_LOG_INFO,
                 "strop_tuner_run: the time budget of %g s is spent after %lld "
                 "trials; no new trial starts",
                 t->time_budget, (long long)c->started);
    }
    if (c->stop || c->started >= c->n_trials || (t->exhausted && !has_interrupted(t))) {
      pthread_mutex_unlock(&t->mu);
      break;
    }
    int64_t id;
    strop_status st = strop__tune_ask_locked(t, &id);
    if (st == STROP_E_STATE && t->exhausted) {
      strop_clear_error();
      pthread_mutex_unlock(&t->mu);
      break;
    }
    if (st != STROP_OK) {
      fail(c, st);
      pthread_mutex_unlock(&t->mu);
      break;
    }
    c->started++;
    pthread_mutex_unlock(&t->mu);

    double value = NAN;
    int rc = c->fn(t, id, &value, c->user_data);
    /* a trial the host stopped has no result: interrupted, to be run again, not failed (the
     * Bayesian model would count a failure as the worst value) */
    int status = rc < 0                     ? STROP_TRIAL_INTERRUPTED
                 : rc == STROP_TRIAL_OK     ? STROP_TRIAL_OK
                 : rc == STROP_TRIAL_PRUNED ? STROP_TRIAL_PRUNED
                                            : STROP_TRIAL_FAILED;
    if (status == STROP_TRIAL_FAILED || status == STROP_TRIAL_INTERRUPTED) value = NAN;

    pthread_mutex_lock(&t->mu);
    st = strop__tune_tell_locked(t, id, value, status);
    if (st != STROP_OK) fail(c, st);
    if (rc < 0) {
      (void)strop__err(STROP_E_CANCELLED,
                       "strop_tuner_run: the trial callback asked to stop "
                       "(trial %lld returned %d)",
                       (long long)id, rc);
      fail(c, STROP_E_CANCELLED);
    }
    pthread_mutex_unlock(&t->mu);
  }
  return NULL;
}

strop_status strop_tuner_run(strop_tuner *t, int64_t n_trials, strop_trial_fn fn,
                             void *user_data) {
  static const char fn_name[] = "strop_tuner_run";
  if (!t || !fn)
    return strop__err(STROP_E_INVALID_ARG, "%s: tuner or trial function is NULL", fn_name);
  if (n_trials < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: n_trials must be >= 0, got %lld", fn_name,
                      (long long)n_trials);
  pthread_mutex_lock(&t->mu);
  strop_status st = STROP_OK;
  if (t->running)
    st = strop__err(STROP_E_STATE, "%s: a run on this tuner is already in progress", fn_name);
  else if (t->n_params == 0)
    st = strop__err(STROP_E_INVALID_ARG,
                    "%s: the search space is empty; add a parameter "
                    "first",
                    fn_name);
  if (st == STROP_OK) t->running = 1;
  int64_t n_workers = t->n_workers;
  pthread_mutex_unlock(&t->mu);
  if (st != STROP_OK) return st;

  run_ctx c;
  memset(&c, 0, sizeof c);
  c.t = t;
  c.n_trials = n_trials;
  c.fn = fn;
  c.user_data = user_data;
  c.t0 = strop__tune_now();
  if (n_workers > n_trials) n_workers = n_trials;
  if (n_workers <= 1) {
    worker(&c);
  } else {
    pthread_t *th = strop__malloc((size_t)n_workers * sizeof *th);
    if (!th) {
      st = STROP__NOMEM(fn_name);
    } else {
      int64_t made = 0;
      for (; made < n_workers; made++)
        if (pthread_create(&th[made], NULL, worker, &c) != 0) break;
      if (made == 0) worker(&c); /* no thread to be had: run them here */
      for (int64_t i = 0; i < made; i++) pthread_join(th[i], NULL);
      strop__free(th);
    }
  }
  pthread_mutex_lock(&t->mu);
  t->running = 0;
  pthread_mutex_unlock(&t->mu);
  if (st != STROP_OK) return st;
  if (c.st != STROP_OK) return strop__err(c.st, "%s", c.msg);
  return STROP_OK;
}
